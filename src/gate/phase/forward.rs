//! The forward phase (SPEC §3 step 10) as data: where an allowed request goes and which inbound
//! headers the outbound request loses and which it gets. Pure; `src/edge/forward.rs` only
//! executes it.
//!
//! The target is the route's origin (without a trailing `/`), then the request's path and
//! query exactly as received: the path the gateway matched is the path the origin gets.
//!
//! Deleted from the copy of the inbound headers, each name compared ASCII-case-insensitively
//! **and with `_` read as `-`**, because CGI-style servers (uWSGI, older gunicorn, Puma, ...)
//! read `x_verified_user` and `X-Verified-User` as the same variable:
//!
//! - every header that starts with the claims prefix, on public and protected routes alike;
//! - the method and URL override headers ([`PASSABLE_HEADERS`]: `x-http-method-override`,
//!   `x-http-method`, `x-method-override`, `x-original-url`, `x-rewrite-url`, `forwarded`) and
//!   every `x-forwarded-*`, unless the route lists that exact name in `pass_headers`;
//! - the request headers the route's credential families consumed
//!   ([`crate::gate::family::CredentialFamily::consumes`]; none with `forward_tokens = true`);
//! - `host` and the hop-by-hop headers.
//!
//! Set, after that: the plan's verified-claims headers and `x-verified-route`, then
//! `x-forwarded-host` (the authority the request was sent to), `x-forwarded-proto` (its
//! scheme) and `x-forwarded-for` (the runtime's client address, `CF-Connecting-IP`; omitted
//! when the runtime gave none or it is not an IP literal). A header that is set is not also
//! deleted: setting replaces every inbound value of that exact name.
//!
//! Everything else passes unchanged, `cf-connecting-ip` and the other `cf-*` headers included:
//! Cloudflare sets them at its edge, replacing whatever the client sent.
//!
//! Cost: one pass over the names the runtime lists, a few byte comparisons per name, no
//! allocation (deletions are a lazy filter over the names, the set list borrows the plan).

use crate::gate::extract::HeaderSource;
use crate::gate::phase::receipt::CONTENT_DIGEST_HEADER;
use crate::gate::phase::request::Request;
use crate::gate::Gate;
use crate::policy::{HeaderPlan, Route, PASSABLE_HEADERS};

/// Issue 14: the receipt header (`crate::gate::phase::receipt`). Only the gateway signs
/// receipts: a client-sent one is deleted on every route.
pub use crate::gate::phase::receipt::RECEIPT_HEADER;

/// Issue 14 item 1: the header families the gateway owns, deleted before forwarding on every
/// route with an `upstream` (whether the route reads them or not), so that no client credential
/// reaches an upstream the gateway authenticates to itself: `Authorization` (Bearer, DPoP,
/// Basic), the DPoP proof, Approov and Firebase App Check attestations, the OAuth attestation-based
/// client authentication headers, RFC 9421 HTTP message signatures (and Web Bot Auth's
/// `Signature-Agent`), and the receipt.
pub const GATEWAY_OWNED: [&str; 10] = [
    "authorization",
    "dpop",
    "approov-token",
    "x-firebase-appcheck",
    "oauth-client-attestation",
    "oauth-client-attestation-pop",
    "signature",
    "signature-input",
    "signature-agent",
    RECEIPT_HEADER,
];

/// What the gateway saw of the request, for the `X-Forwarded-*` headers it sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen<'a> {
    /// The request URL's scheme, `http` or `https`.
    pub proto: &'a str,
    /// The authority the request was sent to (the `Host`, with its port if it had one).
    pub host: &'a str,
    /// The runtime's client address (`CF-Connecting-IP`), if it gave one.
    pub client: Option<String>,
}

/// The headers the gateway always sets from what it saw.
pub const X_FORWARDED_HOST: &str = "x-forwarded-host";
pub const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";

const X_FORWARDED: &str = "x-forwarded-";

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Longest client address taken for `X-Forwarded-For` (an IPv6 literal with an IPv4 tail is 45).
const MAX_CLIENT: usize = 45;

/// An allowed request, as it goes to the origin.
#[derive(Debug, Clone)]
pub struct ForwardPlan<'a> {
    /// The matched route (its id, origin, `pass_headers`; public or not).
    pub route: &'a Route,
    /// The origin request's URL: the route's origin, then the request's path and query.
    pub target: String,
    /// The outbound headers, relative to a copy of the inbound ones.
    pub headers: HeaderEdits<'a>,
    /// Issue 15: the body the gateway read and checked, forwarded exactly (byte for byte);
    /// `None`: the inbound body streams through unread.
    pub body: Option<&'a [u8]>,
    /// Issue 14: the receipt to sign (`receipt = true`); the executor signs it and sets it with
    /// [`HeaderEdits::set_receipt`] before sending.
    pub receipt: Option<Box<crate::gate::phase::receipt::ReceiptPlan>>,
    /// Issue 14: the credential the upstream gets (set by the Worker after the deletes; its
    /// header is always among them).
    pub inject: Option<Box<crate::gate::inject::InjectPlan<'a>>>,
}

impl ForwardPlan<'_> {
    pub fn route_id(&self) -> &str {
        &self.route.id
    }

    pub fn is_public(&self) -> bool {
        self.route.is_public()
    }
}

/// Plan the forward of a request allowed on `route` with the verified header plan `claims`.
pub fn plan<'a, H: HeaderSource + ?Sized>(
    gate: &'a Gate,
    route: &'a Route,
    claims: HeaderPlan,
    req: &Request<'a, H>,
) -> ForwardPlan<'a> {
    let url = &req.url;
    let origin = route.origin.trim_end_matches('/');
    let target = match url.query {
        Some(query) => format!("{origin}{}?{query}", url.path),
        None => format!("{origin}{}", url.path),
    };
    let (proto, authority) = url.origin.split_once("://").unwrap_or(("https", url.host));
    let seen = Seen {
        proto,
        host: authority,
        client: req.headers.header("cf-connecting-ip"),
    };
    ForwardPlan {
        route,
        target,
        headers: HeaderEdits::new(&route.pass_headers, gate.consumed(route), claims, seen)
            .with_strips(gate.strips(route)),
        body: None,
        receipt: None,
        inject: None,
    }
}

/// The outbound headers of one allowed request, relative to a copy of the inbound ones.
#[derive(Debug, Clone)]
pub struct HeaderEdits<'a> {
    claims: HeaderPlan,
    pass: &'a [String],
    consumed: &'a [String],
    proto: &'a str,
    host: &'a str,
    /// The client address, when it is an IP literal.
    client: Option<String>,
    /// Issue 14: further headers deleted ([`crate::gate::Gate::strips`]).
    strips: &'a [String],
    /// Issue 14: the `Content-Digest` the receipt binds, and the signed receipt (boxed: most
    /// routes sign none).
    receipt: Option<Box<ReceiptHeaders>>,
}

/// Issue 14: the headers of a receipt route, as the plan and the executor set them.
#[derive(Debug, Clone, Default)]
struct ReceiptHeaders {
    content_digest: String,
    receipt: Option<String>,
}

impl<'a> HeaderEdits<'a> {
    /// The edits for a route that passes `pass` (its `pass_headers`) and whose credential
    /// families consumed `consumed`, with the verified header plan `claims` (its `set` list;
    /// the credential headers it deletes are `consumed`), for a request the gateway saw as
    /// `seen`.
    pub fn new(
        pass: &'a [String],
        consumed: &'a [String],
        claims: HeaderPlan,
        seen: Seen<'a>,
    ) -> Self {
        HeaderEdits {
            claims,
            pass,
            consumed,
            proto: seen.proto,
            host: seen.host,
            client: seen.client.filter(|c| is_ip_literal(c)),
            strips: &[],
            receipt: None,
        }
    }

    /// Issue 14: send `value` as `Content-Digest` (every other spelling of the name inbound is
    /// deleted, the exact one replaced).
    pub fn set_content_digest(&mut self, value: String) {
        self.receipt
            .get_or_insert_with(Default::default)
            .content_digest = value;
    }

    /// Issue 14: send the signed receipt as `Attestgate-Receipt` (after
    /// [`HeaderEdits::set_content_digest`]).
    pub fn set_receipt(&mut self, jws: String) {
        self.receipt.get_or_insert_with(Default::default).receipt = Some(jws);
    }

    /// The signed receipt, once set.
    pub fn receipt(&self) -> Option<&str> {
        self.receipt.as_ref()?.receipt.as_deref()
    }

    fn content_digest(&self) -> Option<&str> {
        self.receipt
            .as_ref()
            .map(|r| r.content_digest.as_str())
            .filter(|d| !d.is_empty())
    }

    /// Also delete `strips` (issue 14: the gateway-owned families, the receipt, cookies and the
    /// injected credential's header), in every `_`/`-` spelling.
    pub fn with_strips(mut self, strips: &'a [String]) -> Self {
        self.strips = strips;
        self
    }

    /// The further headers deleted (issue 14).
    pub fn strips(&self) -> &[String] {
        self.strips
    }

    /// The verified-claims header plan (what the route's `forward` headers became).
    pub fn claims(&self) -> &HeaderPlan {
        &self.claims
    }

    /// The credential headers deleted, as the route's families consumed them.
    pub fn consumed(&self) -> &[String] {
        self.consumed
    }

    /// The inbound headers to delete, in the order given: `names` as the runtime lists them
    /// (lowercase, each once). Lazy: one pass, no allocation.
    pub fn deletes<'n, I>(&'n self, names: I) -> impl Iterator<Item = &'n str> + 'n
    where
        I: IntoIterator<Item = &'n str>,
        I::IntoIter: 'n,
    {
        names
            .into_iter()
            .filter(move |name| self.deletes_name(name))
    }

    /// [`HeaderEdits::deletes`] when the executor sets the header `set_after` (issue 14: the
    /// injected credential's, after the plan's sets): that exact name is not deleted first, the
    /// set replaces every inbound value of it (one call into the runtime instead of two); its
    /// other spellings are deleted as before.
    pub fn deletes_before<'n, I>(
        &'n self,
        names: I,
        set_after: Option<&'n str>,
    ) -> impl Iterator<Item = &'n str> + 'n
    where
        I: IntoIterator<Item = &'n str>,
        I::IntoIter: 'n,
    {
        self.deletes(names)
            .filter(move |name| !set_after.is_some_and(|s| s.eq_ignore_ascii_case(name)))
    }

    /// Whether the inbound header `name` is deleted before forwarding.
    pub fn deletes_name(&self, name: &str) -> bool {
        if self.sets_exactly(name) {
            // Setting it replaces every inbound value of this name.
            return false;
        }
        let n = name.as_bytes();
        if starts_with_folded(n, self.claims.strip_prefix.as_bytes()) {
            return true;
        }
        if starts_with_folded(n, X_FORWARDED.as_bytes())
            || PASSABLE_HEADERS.iter().any(|h| eq_folded(n, h.as_bytes()))
        {
            return !self.pass.iter().any(|p| p.eq_ignore_ascii_case(name));
        }
        name.eq_ignore_ascii_case("host")
            // Issue 14: a receipt only ever comes from the gateway, on every route.
            || eq_folded(n, RECEIPT_HEADER.as_bytes())
            || (self.content_digest().is_some() && eq_folded(n, CONTENT_DIGEST_HEADER.as_bytes()))
            || HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
            || self.consumed.iter().any(|s| eq_folded(n, s.as_bytes()))
            || self.strips.iter().any(|s| eq_folded(n, s.as_bytes()))
            || self
                .claims
                .set
                .iter()
                .any(|(s, _)| eq_folded(n, s.as_bytes()))
    }

    /// The headers to set (lowercase name, value), in order: the verified-claims headers and
    /// `x-verified-route`, then `x-forwarded-host`, `-proto` and (when known) `-for`.
    pub fn sets(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        let claims = self
            .claims
            .set
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()));
        claims.chain(self.forwarded().filter_map(|(n, v)| v.map(|v| (n, v))))
    }

    fn forwarded(&self) -> impl Iterator<Item = (&'static str, Option<&str>)> + '_ {
        [
            (X_FORWARDED_HOST, Some(self.host)),
            (X_FORWARDED_PROTO, Some(self.proto)),
            (X_FORWARDED_FOR, self.client.as_deref()),
            (CONTENT_DIGEST_HEADER, self.content_digest()),
            (RECEIPT_HEADER, self.receipt()),
        ]
        .into_iter()
    }

    /// Whether `name` is exactly (ASCII case aside) one of the headers set.
    fn sets_exactly(&self, name: &str) -> bool {
        self.forwarded()
            .any(|(n, v)| v.is_some() && n.eq_ignore_ascii_case(name))
            || self
                .claims
                .set
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }
}

/// One byte of a header name as CGI-style servers read it: lowercase, `_` as `-`.
fn fold(b: u8) -> u8 {
    match b {
        b'_' => b'-',
        b => b.to_ascii_lowercase(),
    }
}

fn eq_folded(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| fold(*x) == fold(*y))
}

fn starts_with_folded(name: &[u8], prefix: &[u8]) -> bool {
    name.get(..prefix.len())
        .is_some_and(|head| eq_folded(head, prefix))
}

/// An IPv4 or IPv6 literal in shape (hex digits, `.` and `:`, at most 45 bytes): what a runtime
/// puts in `CF-Connecting-IP`. Anything else is not forwarded as the client address.
fn is_ip_literal(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_CLIENT
        && s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_plan() -> HeaderPlan {
        HeaderPlan {
            strip_prefix: "x-verified-".into(),
            strip: vec![
                "x-verified-route".into(),
                "authorization".into(),
                "approov-token".into(),
            ],
            set: vec![
                ("x-verified-user".into(), "user:alice".into()),
                ("x-verified-route".into(), "r".into()),
            ],
        }
    }

    /// The credential headers the route's families consumed.
    fn consumed() -> Vec<String> {
        vec!["authorization".into(), "approov-token".into()]
    }

    fn seen() -> Seen<'static> {
        Seen {
            proto: "https",
            host: "api.example.com",
            client: Some("203.0.113.7".into()),
        }
    }

    fn deleted<'a>(p: &'a HeaderEdits<'a>, names: &'a [&'a str]) -> Vec<&'a str> {
        p.deletes(names.iter().copied()).collect()
    }

    #[test]
    fn claims_prefix_spellings_are_deleted() {
        let hp = header_plan();
        let c = consumed();
        let p = HeaderEdits::new(&[], &c, hp.clone(), seen());
        let names = [
            "x-verified-admin",
            "x_verified_user",
            "x_verified-user",
            "X_Verified-User",
            "x-verified_agent",
            "X-VERIFIED-DEVICE",
            "x-verified-",
            "x_verified_",
        ];
        assert_eq!(deleted(&p, &names), names);
        // Set exactly by the gateway: replaced, not deleted first.
        assert!(!p.deletes_name("x-verified-user"));
        assert!(!p.deletes_name("x-verified-route"));
        // Not the prefix.
        for kept in ["x-verifie", "x-verifiedx", "xverified-user", "x-verified"] {
            assert!(!p.deletes_name(kept), "{kept}");
        }
    }

    #[test]
    fn override_and_forwarding_headers_are_deleted_unless_passed() {
        let hp = header_plan();
        let c = consumed();
        let p = HeaderEdits::new(&[], &c, hp.clone(), seen());
        for name in [
            "x-http-method-override",
            "x-http-method",
            "x-method-override",
            "x-original-url",
            "x-rewrite-url",
            "forwarded",
            "x-forwarded-prefix",
            "x-forwarded-port",
            "x-forwarded-server",
            "x_forwarded_for",
            "x_http_method_override",
            "X-Original-URL",
        ] {
            assert!(p.deletes_name(name), "{name}");
        }
        let pass = vec![
            "x-http-method-override".to_owned(),
            "x-forwarded-prefix".to_owned(),
        ];
        let p = HeaderEdits::new(&pass, &c, hp.clone(), seen());
        assert!(!p.deletes_name("x-http-method-override"));
        assert!(!p.deletes_name("X-HTTP-Method-Override"));
        assert!(!p.deletes_name("x-forwarded-prefix"));
        // Only the exact name is passed: its underscore spelling still goes.
        assert!(p.deletes_name("x_http_method_override"));
        assert!(p.deletes_name("x-method-override"));
        // The claims prefix is never passed.
        let pass = vec!["x-verified-user".to_owned()];
        assert!(HeaderEdits::new(&pass, &c, hp.clone(), seen()).deletes_name("x_verified_user"));
    }

    #[test]
    fn consumed_credentials_host_and_hop_by_hop_are_deleted() {
        let hp = header_plan();
        let c = consumed();
        let p = HeaderEdits::new(&[], &c, hp.clone(), seen());
        for name in [
            "authorization",
            "approov-token",
            "approov_token",
            "host",
            "connection",
            "te",
            "upgrade",
        ] {
            assert!(p.deletes_name(name), "{name}");
        }
        for name in [
            "accept",
            "content-type",
            "cf-connecting-ip",
            "cf-ray",
            "user-agent",
            "dpop",
        ] {
            assert!(!p.deletes_name(name), "{name}");
        }
    }

    #[test]
    fn the_gateway_sets_what_it_saw() {
        let hp = header_plan();
        let c = consumed();
        let p = HeaderEdits::new(&[], &c, hp.clone(), seen());
        let set: Vec<_> = p.sets().collect();
        assert_eq!(
            set,
            [
                ("x-verified-user", "user:alice"),
                ("x-verified-route", "r"),
                ("x-forwarded-host", "api.example.com"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-for", "203.0.113.7"),
            ]
        );
        // The client's values are replaced, so no delete is needed for the exact names.
        for name in ["x-forwarded-host", "x-forwarded-proto", "x-forwarded-for"] {
            assert!(!p.deletes_name(name), "{name}");
        }
    }

    #[test]
    fn without_a_client_address_x_forwarded_for_is_removed_not_set() {
        let hp = header_plan();
        let c = consumed();
        for client in [
            None,
            Some(""),
            Some("evil, 1.2.3.4"),
            Some("localhost"),
            Some("1.2.3.4 "),
        ] {
            let seen = Seen {
                client: client.map(str::to_owned),
                ..seen()
            };
            let p = HeaderEdits::new(&[], &c, hp.clone(), seen);
            assert!(p.sets().all(|(n, _)| n != "x-forwarded-for"), "{client:?}");
            assert!(p.deletes_name("x-forwarded-for"), "{client:?}");
        }
        for client in ["127.0.0.1", "::1", "2001:db8::7", "::ffff:192.0.2.1"] {
            let seen = Seen {
                client: Some(client.to_owned()),
                ..seen()
            };
            let p = HeaderEdits::new(&[], &c, hp.clone(), seen);
            assert!(
                p.sets().any(|s| s == ("x-forwarded-for", client)),
                "{client}"
            );
        }
    }

    #[test]
    fn a_header_set_after_the_edits_is_replaced_not_deleted_first() {
        let hp = header_plan();
        let c = consumed();
        let strips = vec!["authorization".to_owned(), "dpop".to_owned()];
        let p = HeaderEdits::new(&[], &c, hp.clone(), seen()).with_strips(&strips);
        let names = ["authorization", "authorization_", "dpop", "accept", "host"];
        let all: Vec<&str> = p.deletes(names).collect();
        assert_eq!(all, ["authorization", "dpop", "host"]);
        let before: Vec<&str> = p.deletes_before(names, Some("Authorization")).collect();
        assert_eq!(before, ["dpop", "host"]);
        let none: Vec<&str> = p.deletes_before(names, None).collect();
        assert_eq!(none, all);
    }

    #[test]
    fn deletes_keeps_the_runtime_order_in_one_pass() {
        let hp = header_plan();
        let c = consumed();
        let p = HeaderEdits::new(&[], &c, hp.clone(), seen());
        let names = "accept\nauthorization\nhost\nx-forwarded-for\nx-other\nx_verified_user";
        let got: Vec<&str> = p.deletes(names.split('\n')).collect();
        assert_eq!(got, ["authorization", "host", "x_verified_user"]);
    }
}
