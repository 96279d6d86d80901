//! Token status lists (issue 16 item 5): the fetch behind the core's
//! [`crate::gate::deny::DenySource::list_token`] (the core verifies, decodes and caches,
//! `src/gate/status_list.rs`).
//!
//! One fetch per URI at a time in an isolate: a request that needs a list another request is
//! already fetching waits for that fetch's answer (20 ms polls, within the fetch timeout)
//! instead of starting its own. No redirects, a timeout over the whole exchange, a size cap;
//! anything else than a 200 with a body of at most [`MAX_LIST_TOKEN`] bytes is
//! [`Error::StatusListUnavailable`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use futures_util::StreamExt;
use worker::{Fetch, Headers};

use super::task::{sleep, within};
use crate::gate::status_list::MAX_LIST_TOKEN;
use crate::Error;

/// Time allowed for one list fetch, body included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

type Slot = Rc<RefCell<Option<Result<String, Error>>>>;

thread_local! {
    /// The fetches in flight in this isolate, by URI.
    static FLIGHTS: RefCell<HashMap<String, Slot>> = RefCell::new(HashMap::new());
}

/// The text of the Status List Token at `uri`, one fetch at a time per URI.
pub async fn list_token(uri: &str) -> Result<String, Error> {
    let joined = FLIGHTS.with(|f| f.borrow().get(uri).cloned());
    if let Some(slot) = joined {
        let wait = async {
            loop {
                if let Some(answer) = slot.borrow().clone() {
                    return answer;
                }
                sleep(Duration::from_millis(20)).await;
            }
        };
        return within(FETCH_TIMEOUT, wait)
            .await
            .unwrap_or(Err(Error::StatusListUnavailable));
    }
    let slot: Slot = Rc::new(RefCell::new(None));
    FLIGHTS.with(|f| f.borrow_mut().insert(uri.to_owned(), slot.clone()));
    let answer = within(FETCH_TIMEOUT, fetch(uri))
        .await
        .unwrap_or(Err(Error::StatusListUnavailable));
    *slot.borrow_mut() = Some(answer.clone());
    FLIGHTS.with(|f| f.borrow_mut().remove(uri));
    answer
}

async fn fetch(uri: &str) -> Result<String, Error> {
    let unavailable = |_| Error::StatusListUnavailable;
    let headers = Headers::new();
    headers
        .set("accept", "application/statuslist+jwt")
        .map_err(unavailable)?;
    let req = super::new_request(uri, "GET", &headers, None, true).map_err(unavailable)?;
    let mut resp = Fetch::Request(req.into())
        .send()
        .await
        .map_err(unavailable)?;
    if resp.status_code() != 200 {
        return Err(Error::StatusListUnavailable);
    }
    if let Ok(Some(len)) = resp.headers().get("content-length") {
        if len.parse::<usize>().map_or(true, |n| n > MAX_LIST_TOKEN) {
            return Err(Error::StatusListUnavailable);
        }
    }
    let mut stream = resp.stream().map_err(unavailable)?;
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(unavailable)?;
        if body.len() + chunk.len() > MAX_LIST_TOKEN {
            return Err(Error::StatusListUnavailable);
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(body).map_err(|_| Error::StatusListUnavailable)?;
    Ok(text.trim().to_owned())
}
