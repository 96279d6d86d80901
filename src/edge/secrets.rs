//! The [`Secrets`] seam in the Worker: a Worker secret (or, for local development, a plain var of
//! the same name) read once per isolate. A changed secret is a new deployment, and so new
//! isolates; each read of the environment crosses into JavaScript, so the value is kept.

use std::cell::RefCell;

use worker::Env;

use crate::gate::seams::Secrets;

/// The secrets read so far in this isolate, by name (`None`: not set or empty). A handful of
/// names at most (the nonce key and the HMAC providers' secrets): a scanned list.
#[derive(Default)]
pub struct SecretCache(RefCell<Vec<(String, Option<String>)>>);

/// The secrets of this isolate, read from the request's environment the first time each is
/// asked for.
pub struct WorkerSecrets<'a> {
    pub env: &'a Env,
    pub cache: &'a SecretCache,
}

impl Secrets for WorkerSecrets<'_> {
    fn secret(&self, name: &str) -> Option<String> {
        if let Some((_, value)) = self.cache.0.borrow().iter().find(|(n, _)| n == name) {
            return value.clone();
        }
        // A secret and a plain var are both a string on the environment object (what
        // `Env::secret` and `Env::var` check, with more calls into JavaScript); anything else
        // is not a secret.
        let value = js_sys::Reflect::get(self.env, &wasm_bindgen::JsValue::from_str(name))
            .ok()
            .and_then(|v| v.as_string())
            .filter(|s| !s.is_empty());
        self.cache
            .0
            .borrow_mut()
            .push((name.to_owned(), value.clone()));
        value
    }
}
