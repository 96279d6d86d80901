//! `[provider.NAME]`: algorithms, the key origin, issuer and audiences, token types and
//! location, lifetimes, claims and bindings; and the conflicts between providers that may accept
//! the same tokens (issue 12 item 6).

#[cfg(not(target_arch = "wasm32"))]
use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::syntax::{is_header_name, is_identifier, is_printable, is_secret_name, is_token};
#[cfg(not(target_arch = "wasm32"))]
use super::unknown_provider;
use super::Cx;
use crate::alg::Alg;
use crate::diag::Location;
#[cfg(not(target_arch = "wasm32"))]
use crate::model::SourceFile;
use crate::model::{ProviderConfig, SecretConfig};
use crate::policy::{
    Binding, Gateway, KeyOrigin, MemberPath, Provider, Secret, TokenLocation, ROUTE_HEADER,
};

/// `max_lifetime_secs` of a provider that does not set it: one day. Without a bound, a token with
/// `exp` = i64::MAX would be valid forever.
pub const DEFAULT_MAX_LIFETIME_SECS: u64 = 86_400;
/// The largest `max_lifetime_secs` a policy may set: 365 days.
pub const MAX_LIFETIME_SECS: u64 = 31_536_000;

/// Issue 12 item 6: a token's state (DPoP binding, single use, `pay` binding, challenge nonce)
/// belongs to the token, not to the provider that happened to check it. Two providers that may
/// accept the same tokens ([`Provider::may_accept_same_tokens`]) but differ in `proof`, `replay`,
/// `binding` or `nonce_claim` are an error on the provider that lacks the other's setting,
/// unless it lists the other in `weakens` (both, when both have the check with different
/// values). `weakens` naming an unknown provider is an error; one with nothing to acknowledge, a
/// warning.
#[cfg(not(target_arch = "wasm32"))]
pub(super) fn token_state_conflicts(
    cx: &mut Cx,
    providers: &BTreeMap<String, Provider>,
    files: &[SourceFile],
) {
    let checks = |p: &Provider| -> [(&'static str, Option<String>); 4] {
        [
            ("proof", p.dpop.then(|| "proof = \"dpop\"".to_owned())),
            (
                "replay",
                p.replay_jti.then(|| "replay = \"jti\"".to_owned()),
            ),
            (
                "binding",
                p.binding.as_ref().map(|b| {
                    format!(
                        "binding = {{ claim = {:?}, header = {:?} }}",
                        b.claim.as_str(),
                        b.header
                    )
                }),
            ),
            (
                "nonce_claim",
                p.nonce_claim
                    .as_ref()
                    .map(|n| format!("nonce_claim = {:?}", n.as_str())),
            ),
        ]
    };
    for weak in providers.values() {
        let at = |field: &str| Location::provider(&weak.file, &weak.name, field);
        for listed in &weak.weakens {
            match providers.get(listed) {
                None if !files.iter().any(|f| f.model.provider.contains_key(listed)) => {
                    let known: BTreeSet<&str> = providers.keys().map(String::as_str).collect();
                    cx.error(at("weakens"), unknown_provider(listed, &known));
                }
                None => {}
                Some(p) if p.name == weak.name => {
                    cx.error(at("weakens"), "a provider cannot weaken itself")
                }
                Some(strong) => {
                    let differs = checks(weak)
                        .iter()
                        .zip(checks(strong).iter())
                        .any(|((_, w), (_, s))| s.is_some() && w != s);
                    if !weak.may_accept_same_tokens(strong) || !differs {
                        cx.warning(
                            at("weakens"),
                            format!("lists {listed:?}, but no token accepted by both lacks a check of {listed:?}: nothing to acknowledge"),
                        );
                    }
                }
            }
        }
        for strong in providers.values() {
            if strong.name == weak.name || !weak.may_accept_same_tokens(strong) {
                continue;
            }
            if weak.weakens.contains(&strong.name) {
                continue;
            }
            for ((field, w), (_, s)) in checks(weak).iter().zip(checks(strong).iter()) {
                let Some(stronger) = s else { continue };
                if w == s {
                    continue;
                }
                let own = match w {
                    Some(w) => format!("has {w} instead"),
                    None => "does not".to_owned(),
                };
                cx.error(
                    at(field),
                    format!(
                        "providers {:?} and {:?} can accept the same tokens (same {}, overlapping audiences, algorithms and token types), but {:?} checks {stronger} and {:?} {own}: a token refused by {:?} would pass through {:?}; make the issuers, audiences or token types disjoint, give both the same check, or acknowledge the weakening with weakens = [{:?}] on provider {:?}",
                        weak.name,
                        strong.name,
                        if weak.secrets().is_empty() { "issuer" } else { "HMAC secret" },
                        strong.name,
                        weak.name,
                        strong.name,
                        weak.name,
                        strong.name,
                        weak.name
                    ),
                );
            }
        }
    }
}

impl Cx {
    pub(super) fn provider(
        &mut self,
        file: &str,
        name: &str,
        p: &ProviderConfig,
        gateway: &Gateway,
    ) -> Option<Provider> {
        let before = self.errors.len();
        let at = |field: &str| Location::provider(file, name, field);

        if !is_identifier(name) {
            self.error(
                at("name"),
                format!("provider name {name:?} must be letters, digits, '_' or '-', starting with a letter, at most 64 characters"),
            );
        }
        if p.kind != "jwt" {
            self.error(
                at("kind"),
                format!("{:?} is not a known kind (only \"jwt\")", p.kind),
            );
        }

        // algorithms
        let mut algorithms: Vec<Alg> = Vec::new();
        if p.algorithms.is_empty() {
            self.error(at("algorithms"), "is empty: list the algorithms the issuer signs with (ES256, EdDSA, RS256 or HS256)");
        }
        for a in &p.algorithms {
            match Alg::from_header(a) {
                Some(alg) => {
                    if !algorithms.contains(&alg) {
                        algorithms.push(alg);
                    }
                }
                None => {
                    let hint = if Alg::from_header(&a.to_ascii_uppercase()).is_some()
                        || a.eq_ignore_ascii_case("eddsa")
                        || a.eq_ignore_ascii_case("ed25519")
                    {
                        " (names are case-sensitive)"
                    } else {
                        ""
                    };
                    self.error(
                        at("algorithms"),
                        format!("{a:?} is not a supported algorithm{hint}; use ES256, EdDSA (or Ed25519), RS256 or HS256"),
                    );
                }
            }
        }
        let hmac = algorithms.iter().any(|a| a.is_hmac());
        if hmac && algorithms.iter().any(|a| !a.is_hmac()) {
            self.error(
                at("algorithms"),
                "HS256 cannot be mixed with public-key algorithms in one provider (make two providers)",
            );
        }

        // key source: exactly one
        let with_secret = p.secret.is_some() || !p.secrets.is_empty();
        let sources = [
            p.jwks_uri.is_some(),
            p.jwks.is_some(),
            p.secret.is_some(),
            !p.secrets.is_empty(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        let mut keys = None;
        if sources != 1 {
            self.error(
                at("jwks_uri"),
                format!("exactly one key source is required: jwks_uri, jwks, secret or secrets ({sources} given)"),
            );
        } else if let Some(uri) = &p.jwks_uri {
            if self.url(&|| at("jwks_uri"), uri, gateway.allow_insecure_http, true) {
                keys = Some(KeyOrigin::JwksUri(uri.clone()));
            }
        } else if let Some(jwks) = &p.jwks {
            match check_inline_jwks(jwks) {
                Ok(()) => keys = Some(KeyOrigin::Jwks(jwks.clone())),
                Err(m) => self.error(at("jwks"), m),
            }
        } else if let Some(secret) = &p.secret {
            if is_secret_name(secret) {
                keys = Some(KeyOrigin::Secrets(vec![Secret {
                    name: secret.clone(),
                    kid: None,
                }]));
            } else {
                self.error(
                    at("secret"),
                    format!("{secret:?} is not a Worker secret name (letters, digits and '_', not starting with a digit)"),
                );
            }
        } else {
            keys = self
                .secrets(&at("secrets"), &p.secrets)
                .map(KeyOrigin::Secrets);
        }
        if hmac && !with_secret && sources == 1 {
            self.error(
                at("secret"),
                "HS256 needs secret = \"NAME\" or secrets = [{ name = \"NAME\", kid = \"...\" }, ...] (Worker secrets holding the HMAC keys); HMAC keys never come from a JWKS",
            );
        }
        if with_secret && sources == 1 && !algorithms.is_empty() && !hmac {
            self.error(
                at("algorithms"),
                "a provider with a secret only allows HS256 (public-key algorithms need jwks_uri or jwks)",
            );
        }

        // issuer and audiences: required for public-key providers
        let asymmetric = !with_secret;
        match &p.issuer {
            Some(iss) if iss.is_empty() || !is_printable(iss) => self.error(
                at("issuer"),
                "must be a non-empty printable ASCII string (compared exactly with `iss`)",
            ),
            None if asymmetric => self.error(
                at("issuer"),
                "is required for a provider with public keys (jwks_uri or jwks); only secret (HMAC) providers may omit it",
            ),
            _ => {}
        }
        if p.audiences.is_empty() && asymmetric {
            self.error(
                at("audiences"),
                "is required for a provider with public keys: list the `aud` values this gateway accepts",
            );
        }
        for a in &p.audiences {
            if a.is_empty() || !is_printable(a) {
                self.error(
                    at("audiences"),
                    format!("{a:?} must be a non-empty printable ASCII string"),
                );
            }
        }

        if p.token_types.is_empty() {
            self.error(
                at("token_types"),
                "is empty: omit it for the default [\"JWT\", \"at+jwt\"]",
            );
        }
        for t in &p.token_types {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
                self.error(
                    at("token_types"),
                    format!("{t:?} is not a media type like \"at+jwt\""),
                );
            }
        }

        let header = p.from.header.to_ascii_lowercase();
        if !is_header_name(&p.from.header) {
            self.error(
                at("from"),
                format!("header {:?} is not a valid HTTP header name", p.from.header),
            );
        } else if header.starts_with(&gateway.claims_header_prefix) || header == ROUTE_HEADER {
            self.error(
                at("from"),
                format!(
                    "header {header:?} starts with the claims_header_prefix {:?}: those inbound headers are always stripped",
                    gateway.claims_header_prefix
                ),
            );
        }
        if let Some(s) = &p.from.scheme {
            if !is_token(s) {
                self.error(
                    at("from"),
                    format!("scheme {s:?} is not a valid authentication scheme (like \"Bearer\" or \"DPoP\")"),
                );
            }
        }

        if !(1..=86_400).contains(&p.jwks_cache_secs) {
            self.error(
                at("jwks_cache_secs"),
                format!("{} is not in 1..=86400", p.jwks_cache_secs),
            );
        }
        if p.jwks_max_stale_secs > 86_400 {
            self.error(
                at("jwks_max_stale_secs"),
                format!("{} is not in 0..=86400", p.jwks_max_stale_secs),
            );
        }
        let max_lifetime_secs = p.max_lifetime_secs.unwrap_or(DEFAULT_MAX_LIFETIME_SECS);
        if max_lifetime_secs == 0 {
            self.error(
                at("max_lifetime_secs"),
                format!("0 would refuse every token; omit it for the default of {DEFAULT_MAX_LIFETIME_SECS} s (one day)"),
            );
        } else if max_lifetime_secs > MAX_LIFETIME_SECS {
            self.error(
                at("max_lifetime_secs"),
                format!("{max_lifetime_secs} is more than {MAX_LIFETIME_SECS} s (365 days)"),
            );
        }
        let mut required_claims: Vec<MemberPath> = Vec::new();
        for c in &p.required_claims {
            match MemberPath::parse(c) {
                Err(m) => self.error(at("required_claims"), m),
                Ok(path)
                    if required_claims
                        .iter()
                        .any(|r| r.segments() == path.segments()) =>
                {
                    self.error(at("required_claims"), format!("{c:?} is listed twice"))
                }
                Ok(path) => required_claims.push(path),
            }
        }
        let replay_jti = match p.replay.as_deref() {
            None => false,
            Some("jti") => true,
            Some(other) => {
                self.error(
                    at("replay"),
                    format!("{other:?} is not supported (only \"jti\")"),
                );
                false
            }
        };
        let dpop = match p.proof.as_deref() {
            None => false,
            Some("dpop") => true,
            Some(other) => {
                self.error(
                    at("proof"),
                    format!("{other:?} is not supported (only \"dpop\")"),
                );
                false
            }
        };
        let mut binding = None;
        if let Some(b) = &p.binding {
            match MemberPath::parse(&b.claim) {
                Ok(claim) => {
                    binding = Some(Binding {
                        claim,
                        header: b.header.to_ascii_lowercase(),
                    })
                }
                Err(m) => self.error(at("binding"), format!("claim: {m}")),
            }
            if !is_header_name(&b.header) {
                self.error(
                    at("binding"),
                    format!("header {:?} is not a valid HTTP header name", b.header),
                );
            }
        }
        let nonce_claim = match p.nonce_claim.as_deref().map(MemberPath::parse) {
            None => None,
            Some(Ok(path)) => Some(path),
            Some(Err(m)) => {
                self.error(at("nonce_claim"), m);
                None
            }
        };

        // RFC 9728 authorization servers (issue 14 item 5): the issuer of OAuth access tokens
        // (read from `Authorization` with the Bearer or DPoP scheme) when it is an http(s) URL,
        // then the listed ones, each a URL checked like every other URL of the policy.
        let mut authorization_servers: Vec<String> = Vec::new();
        let oauth = header == "authorization"
            && (p.proof.as_deref() == Some("dpop")
                || p.from
                    .scheme
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case("Bearer")));
        if let Some(iss) = p.issuer.as_deref().filter(|_| oauth) {
            let http = super::syntax::check_url(iss, false);
            let insecure = matches!(http, Ok(super::syntax::Scheme::Http));
            if http.is_ok() && (!insecure || gateway.allow_insecure_http) {
                authorization_servers.push(iss.to_owned());
            }
        }
        for url in &p.authorization_servers {
            if !self.url(
                &|| at("authorization_servers"),
                url,
                gateway.allow_insecure_http,
                false,
            ) {
                continue;
            }
            if p.authorization_servers.iter().filter(|u| *u == url).count() > 1 {
                self.error(
                    at("authorization_servers"),
                    format!("{url:?} is listed twice"),
                );
            } else if !authorization_servers.contains(url) {
                // (the issuer, already first, may be listed too)
                authorization_servers.push(url.clone());
            }
        }

        // Issue 16 (compile/deny.rs).
        let status_list = self.status_list_rule(file, name, p.status_list.as_ref(), gateway);
        if self.errors.len() != before {
            return None;
        }
        Some(Provider {
            name: name.to_owned(),
            file: file.to_owned(),
            issuer: p.issuer.clone(),
            audiences: p.audiences.clone(),
            algorithms,
            token_types: p.token_types.clone(),
            from: TokenLocation {
                header,
                scheme: p.from.scheme.clone(),
            },
            keys: keys?,
            jwks_cache_secs: p.jwks_cache_secs,
            jwks_max_stale_secs: p.jwks_max_stale_secs,
            max_lifetime_secs,
            required_claims,
            replay_jti,
            dpop,
            binding,
            nonce_claim,
            weakens: p.weakens.clone(),
            authorization_servers,
            status_list,
        })
    }

    /// `secrets = [{ name, kid }, ...]`: valid names and kids, no name or kid twice, and a `kid`
    /// on every entry when there are several (a token then names its key).
    fn secrets(&mut self, at: &Location, list: &[SecretConfig]) -> Option<Vec<Secret>> {
        let before = self.errors.len();
        let mut out: Vec<Secret> = Vec::new();
        for s in list {
            if !is_secret_name(&s.name) {
                self.error(
                    at.clone(),
                    format!("{:?} is not a Worker secret name (letters, digits and '_', not starting with a digit)", s.name),
                );
            } else if out.iter().any(|o| o.name == s.name) {
                self.error(at.clone(), format!("secret {:?} is listed twice", s.name));
            }
            match &s.kid {
                Some(kid) if kid.is_empty() || kid.len() > 256 || !is_printable(kid) => self.error(
                    at.clone(),
                    format!("kid {kid:?} of secret {:?} must be 1 to 256 printable ASCII characters", s.name),
                ),
                Some(kid) if out.iter().any(|o| o.kid.as_deref() == Some(kid)) => self.error(
                    at.clone(),
                    format!("kid {kid:?} is given to two secrets: a token could not name its key"),
                ),
                None if list.len() > 1 => self.error(
                    at.clone(),
                    format!("secret {:?} has no kid: with several secrets every one needs the kid of the tokens it signs", s.name),
                ),
                _ => {}
            }
            out.push(Secret {
                name: s.name.clone(),
                kid: s.kid.clone(),
            });
        }
        (self.errors.len() == before).then_some(out)
    }
}

/// `{"keys":[{...}, ...]}` with public keys only.
fn check_inline_jwks(jwks: &str) -> Result<(), String> {
    let value: Value = serde_json::from_str(jwks).map_err(|e| format!("is not valid JSON: {e}"))?;
    let keys = value
        .as_object()
        .and_then(|o| o.get("keys"))
        .and_then(Value::as_array)
        .ok_or_else(|| "must be a JSON object {\"keys\": [...]}".to_owned())?;
    if keys.is_empty() {
        return Err("has no keys".to_owned());
    }
    for (i, k) in keys.iter().enumerate() {
        let Some(k) = k.as_object() else {
            return Err(format!("key {i} is not a JSON object"));
        };
        match k.get("kty").and_then(Value::as_str) {
            Some("EC" | "OKP" | "RSA") => {}
            Some("oct") => {
                return Err(format!(
                    "key {i} is a symmetric (oct) key: HMAC keys belong in a Worker secret, never in a policy file"
                ))
            }
            _ => return Err(format!("key {i} has no supported kty (EC, OKP or RSA)")),
        }
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            if k.contains_key(private) {
                return Err(format!(
                    "key {i} contains private key material ({private:?}): publish only public keys"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_jwks() {
        assert!(check_inline_jwks(r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"abc"}]}"#).is_ok());
        assert!(check_inline_jwks(r#"{"keys":[{"kty":"EC","d":"x"}]}"#)
            .unwrap_err()
            .contains("private"));
        assert!(check_inline_jwks(r#"{"keys":[{"kty":"oct","k":"x"}]}"#).is_err());
        assert!(check_inline_jwks(r#"{"keys":[]}"#).is_err());
        assert!(check_inline_jwks("[").is_err());
    }
}
