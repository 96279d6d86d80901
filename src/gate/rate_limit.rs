//! Per-client rate limiting of the challenge endpoint: a token bucket per client address, in a
//! table of bounded size, per isolate. Pure: the caller passes the time (milliseconds).
//!
//! The bucket is kept as GCRA (the generic cell rate algorithm, equivalent to a token bucket):
//! one "theoretical arrival time" per client. Each allowed request moves it `interval_ms` into
//! the future; a request is refused while it is more than `(burst - 1) × interval_ms` ahead of
//! now. A client that waits long enough is back to a full bucket, which is the same as having no
//! entry: such entries are the first to go when the table is full.
//!
//! Keys: an IPv4 address, or the /64 prefix of an IPv6 address (one subscriber usually holds a
//! whole /64, so keying on the full address would give a client 2^64 buckets). An address that
//! does not parse shares one bucket (on Cloudflare the runtime always sets `CF-Connecting-IP`).

/// A token bucket: `burst` requests at once, refilled at one request per `interval_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub burst: u32,
    pub interval_ms: i64,
}

/// The challenge endpoint's limit per client address and isolate: bursts of 500, then 20 per
/// second sustained. A client takes one challenge per attestation or DPoP exchange (and DPoP
/// clients get the next nonce with every answer), so no real client comes near it; it still
/// holds when many clients share an address (carrier-grade NAT, office egress), since an
/// address's requests spread over several isolates.
pub const CHALLENGE_LIMIT: Limit = Limit {
    burst: 500,
    interval_ms: 50,
};

/// Most client addresses tracked per isolate (about 32 bytes each).
pub const MAX_TRACKED: usize = 4096;

/// Who is asking: an IPv4 address, an IPv6 /64, or "unknown".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    V4([u8; 4]),
    V6([u8; 8]),
    Unknown,
}

impl ClientKey {
    /// From the `CF-Connecting-IP` header value (absent or unparsable: [`ClientKey::Unknown`]).
    /// A small parser of its own (the standard library's address parser is several KB of
    /// wasm): dotted IPv4, and IPv6 with `::` and an embedded IPv4 tail.
    pub fn from_header(value: Option<&str>) -> Self {
        let Some(text) = value.map(str::trim) else {
            return ClientKey::Unknown;
        };
        if text.len() > 45 {
            return ClientKey::Unknown;
        }
        if let Some(v4) = parse_v4(text.as_bytes()) {
            return ClientKey::V4(v4);
        }
        match parse_v6(text.as_bytes()) {
            // ::ffff:a.b.c.d is an IPv4 client.
            Some([0, 0, 0, 0, 0, 0xffff, hi, lo]) => {
                let [a, b] = hi.to_be_bytes();
                let [c, d] = lo.to_be_bytes();
                ClientKey::V4([a, b, c, d])
            }
            Some(g) => {
                let mut prefix = [0u8; 8];
                for (pair, group) in prefix.chunks_exact_mut(2).zip(g) {
                    pair.copy_from_slice(&group.to_be_bytes());
                }
                ClientKey::V6(prefix)
            }
            None => ClientKey::Unknown,
        }
    }

    fn code(self) -> u128 {
        match self {
            ClientKey::Unknown => 0,
            ClientKey::V4(a) => 1 << 64 | u128::from(u32::from_be_bytes(a)),
            ClientKey::V6(p) => 2 << 64 | u128::from(u64::from_be_bytes(p)),
        }
    }
}

/// `a.b.c.d`, each part 1–3 decimal digits up to 255, no leading zero (as the standard
/// library: `01` could be read as octal), nothing after.
fn parse_v4(t: &[u8]) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut i = 0;
    for (n, slot) in out.iter_mut().enumerate() {
        if n > 0 {
            if t.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let start = i;
        let mut value = 0u32;
        while let Some(d) = t.get(i).filter(|b| b.is_ascii_digit()) {
            value = value * 10 + u32::from(d - b'0');
            i += 1;
            if i - start > 3 {
                return None;
            }
        }
        let leading_zero = i - start > 1 && t.get(start) == Some(&b'0');
        if i == start || value > 255 || leading_zero {
            return None;
        }
        *slot = value as u8;
    }
    (i == t.len()).then_some(out)
}

/// Eight 16-bit groups of 1–4 hex digits, `::` standing for one or more zero groups (once),
/// the last 32 bits optionally as an IPv4 tail.
fn parse_v6(t: &[u8]) -> Option<[u16; 8]> {
    let mut groups = [0u16; 8];
    let mut n = 0;
    let mut gap = None;
    let mut i = 0;
    if t.starts_with(b"::") {
        gap = Some(0);
        i = 2;
        if i == t.len() {
            return Some(groups);
        }
    }
    loop {
        if let Some([a, b, c, d]) = t.get(i..).and_then(parse_v4) {
            let pair = groups.get_mut(n..n + 2)?;
            pair.copy_from_slice(&[u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d])]);
            n += 2;
            break;
        }
        let start = i;
        let mut value = 0u32;
        while let Some(h) = t.get(i).and_then(|b| char::from(*b).to_digit(16)) {
            value = value * 16 + h;
            i += 1;
            if i - start > 4 {
                return None;
            }
        }
        if i == start {
            return None;
        }
        *groups.get_mut(n)? = value as u16;
        n += 1;
        match t.get(i) {
            None => break,
            Some(b':') if t.get(i + 1) == Some(&b':') => {
                if gap.is_some() {
                    return None;
                }
                gap = Some(n);
                i += 2;
                if i == t.len() {
                    break;
                }
            }
            Some(b':') if i + 1 < t.len() => i += 1,
            _ => return None,
        }
    }
    match gap {
        None if n == 8 => Some(groups),
        Some(g) if n < 8 => {
            let mut out = [0u16; 8];
            out.get_mut(..g)?.copy_from_slice(groups.get(..g)?);
            out.get_mut(8 - (n - g)..)?
                .copy_from_slice(groups.get(g..n)?);
            Some(out)
        }
        _ => None,
    }
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Refused: the next request would be allowed in this many seconds (at least 1).
    Limited {
        retry_after_secs: u32,
    },
}

/// Buckets for at most `capacity` clients: a plain table scanned in full (a few thousand entries,
/// on the challenge endpoint only), which keeps the wasm small.
#[derive(Debug)]
pub struct RateLimiter {
    limit: Limit,
    capacity: usize,
    /// (client, theoretical arrival time in unix milliseconds).
    tat: Vec<(u128, i64)>,
}

impl RateLimiter {
    pub fn new(limit: Limit, capacity: usize) -> Self {
        Self {
            limit: Limit {
                burst: limit.burst.max(1),
                interval_ms: limit.interval_ms.max(1),
            },
            capacity: capacity.max(1),
            tat: Vec::new(),
        }
    }

    /// The challenge endpoint's limiter ([`CHALLENGE_LIMIT`], [`MAX_TRACKED`]).
    pub fn for_challenges() -> Self {
        Self::new(CHALLENGE_LIMIT, MAX_TRACKED)
    }

    /// How many clients are tracked now.
    pub fn tracked(&self) -> usize {
        self.tat.len()
    }

    /// Count one request of `key` at `now_ms`.
    pub fn check(&mut self, key: ClientKey, now_ms: i64) -> Verdict {
        let key = key.code();
        let interval = self.limit.interval_ms;
        let tolerance = interval.saturating_mul(i64::from(self.limit.burst) - 1);
        let slot = self.tat.iter().position(|(k, _)| *k == key);
        // Never behind now (a full bucket), never further ahead than an empty one: a clock that
        // jumps back cannot lock a client out for longer than the limit itself does.
        let tat = slot
            .and_then(|i| self.tat.get(i))
            .map_or(now_ms, |(_, t)| *t)
            .clamp(
                now_ms,
                now_ms.saturating_add(tolerance).saturating_add(interval),
            );
        let ahead = tat.saturating_sub(now_ms);
        if ahead > tolerance {
            // Keep the clamped time, so a clock jump back is forgotten after one interval.
            if let Some(entry) = slot.and_then(|i| self.tat.get_mut(i)) {
                entry.1 = tat;
            }
            let wait_ms = ahead - tolerance;
            let secs = (wait_ms.saturating_add(999) / 1000).clamp(1, i64::from(u32::MAX));
            return Verdict::Limited {
                retry_after_secs: u32::try_from(secs).unwrap_or(u32::MAX),
            };
        }
        let next = tat.saturating_add(interval);
        match slot.and_then(|i| self.tat.get_mut(i)) {
            Some(entry) => entry.1 = next,
            None => {
                if self.tat.len() >= self.capacity {
                    self.evict(now_ms);
                }
                self.tat.push((key, next));
            }
        }
        Verdict::Allow
    }

    /// Make room for one entry: drop every client whose bucket is full again (the same as not
    /// being tracked); if none is, drop the one nearest to full (it loses the least).
    fn evict(&mut self, now_ms: i64) {
        self.tat.retain(|(_, tat)| *tat > now_ms);
        if self.tat.len() < self.capacity {
            return;
        }
        let nearest = self
            .tat
            .iter()
            .enumerate()
            .min_by_key(|(_, (_, tat))| *tat)
            .map(|(i, _)| i);
        if let Some(i) = nearest {
            self.tat.swap_remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ClientKey = ClientKey::V4([192, 0, 2, 1]);
    const B: ClientKey = ClientKey::V4([192, 0, 2, 2]);

    fn small() -> RateLimiter {
        RateLimiter::new(
            Limit {
                burst: 3,
                interval_ms: 1000,
            },
            8,
        )
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let mut r = small();
        let t = 1_700_000_000_000;
        for _ in 0..3 {
            assert_eq!(r.check(A, t), Verdict::Allow);
        }
        assert_eq!(
            r.check(A, t),
            Verdict::Limited {
                retry_after_secs: 1
            }
        );
        // Refused requests do not push the client further back.
        assert_eq!(
            r.check(A, t + 999),
            Verdict::Limited {
                retry_after_secs: 1
            }
        );
        assert_eq!(r.check(A, t + 1000), Verdict::Allow);
        assert!(matches!(r.check(A, t + 1000), Verdict::Limited { .. }));
        // Another client is independent.
        assert_eq!(r.check(B, t), Verdict::Allow);
        // After waiting out the whole bucket, a full burst again.
        let later = t + 10_000;
        for _ in 0..3 {
            assert_eq!(r.check(A, later), Verdict::Allow);
        }
        assert!(matches!(r.check(A, later), Verdict::Limited { .. }));
    }

    #[test]
    fn retry_after_is_rounded_up_and_exact() {
        let mut r = RateLimiter::new(
            Limit {
                burst: 1,
                interval_ms: 2500,
            },
            8,
        );
        assert_eq!(r.check(A, 0), Verdict::Allow);
        assert_eq!(
            r.check(A, 0),
            Verdict::Limited {
                retry_after_secs: 3
            }
        );
        assert_eq!(
            r.check(A, 1500),
            Verdict::Limited {
                retry_after_secs: 1
            }
        );
        assert_eq!(r.check(A, 2500), Verdict::Allow);
    }

    #[test]
    fn the_challenge_limit_allows_its_burst_and_rate() {
        let mut r = RateLimiter::for_challenges();
        let t = 5_000_000;
        for i in 0..CHALLENGE_LIMIT.burst {
            assert_eq!(r.check(A, t), Verdict::Allow, "{i}");
        }
        assert!(matches!(r.check(A, t), Verdict::Limited { .. }));
        // 20 per second sustained.
        let mut allowed = 0;
        for ms in (0..=10_000).step_by(10) {
            if r.check(A, t + ms) == Verdict::Allow {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 200);
    }

    #[test]
    fn memory_is_bounded_and_full_buckets_go_first() {
        let mut r = small();
        let t = 0;
        // A heavy client, then many one-off clients: the table never grows past its capacity.
        for _ in 0..3 {
            r.check(A, t);
        }
        for i in 0..1000u32 {
            let key = ClientKey::V4(i.to_be_bytes());
            assert_eq!(r.check(key, t + i64::from(i)), Verdict::Allow);
            assert!(r.tracked() <= 8);
        }
        // The one-off clients were the ones nearest to full, so the heavy client is still
        // limited (its bucket was never evicted while it was the emptiest).
        assert!(matches!(r.check(A, 999), Verdict::Limited { .. }));
        // Once buckets are full again they are dropped to make room.
        let mut r = small();
        for i in 0..8u32 {
            r.check(ClientKey::V4(i.to_be_bytes()), 0);
        }
        assert_eq!(r.tracked(), 8);
        r.check(B, 60_000);
        assert_eq!(r.tracked(), 1);
    }

    #[test]
    fn a_clock_that_jumps_back_does_not_lock_a_client_out() {
        let mut r = small();
        for _ in 0..3 {
            r.check(A, 1_000_000);
        }
        // Ten minutes back: refused for at most one interval, not for ten minutes.
        assert_eq!(
            r.check(A, 400_000),
            Verdict::Limited {
                retry_after_secs: 1
            }
        );
        assert_eq!(r.check(A, 401_000), Verdict::Allow);
    }

    #[test]
    fn client_keys() {
        assert_eq!(
            ClientKey::from_header(Some("192.0.2.7")),
            ClientKey::V4([192, 0, 2, 7])
        );
        assert_eq!(
            ClientKey::from_header(Some("::ffff:192.0.2.7")),
            ClientKey::V4([192, 0, 2, 7])
        );
        // One IPv6 /64 is one client.
        let a = ClientKey::from_header(Some("2001:db8:1:2::1"));
        let b = ClientKey::from_header(Some("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        let c = ClientKey::from_header(Some("2001:db8:1:3::1"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, ClientKey::V6([0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2]));
        for junk in [None, Some(""), Some("unknown"), Some("1.2.3.4, 5.6.7.8")] {
            assert_eq!(ClientKey::from_header(junk), ClientKey::Unknown);
        }
    }

    #[test]
    fn the_address_parser_agrees_with_the_standard_library() {
        use std::net::IpAddr;
        let cases = [
            "0.0.0.0",
            "255.255.255.255",
            "192.0.2.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "1..2.3",
            " 1.2.3.4",
            "+1.2.3.4",
            "::",
            "::1",
            "1::",
            "2001:db8::1",
            "2001:0db8:0000:0000:0000:0000:0000:0001",
            "2001:db8:1:2:3:4:5:6",
            "2001:db8:1:2:3:4:5:6:7",
            "2001:db8:1:2:3:4:5",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1::2::3",
            ":::",
            "1:::2",
            "12345::",
            "g::",
            "+1::",
            "1:+2::",
            "::ffff:192.0.2.7",
            "::ffff:c000:0207",
            "64:ff9b::192.0.2.7",
            "::192.0.2.7",
            "1:2:3:4:5:6:1.2.3.4",
            "1:2:3:4:5:6:7:1.2.3.4",
            "1.2.3.4:1::",
            "::1.2.3",
            "1.2.3.4::",
            "fe80::1%eth0",
            "[::1]",
            "2001:DB8::A",
            ":1::",
            "1::2:",
            "::1.2.3.4:5",
        ];
        fn standard(text: &str) -> ClientKey {
            match text.trim().parse::<IpAddr>() {
                Ok(IpAddr::V4(a)) => ClientKey::V4(a.octets()),
                Ok(IpAddr::V6(a)) => match a.to_ipv4_mapped() {
                    Some(v4) => ClientKey::V4(v4.octets()),
                    None => {
                        let o = a.octets();
                        ClientKey::V6([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
                    }
                },
                Err(_) => ClientKey::Unknown,
            }
        }
        for text in cases {
            assert_eq!(
                ClientKey::from_header(Some(text)),
                standard(text),
                "{text:?}"
            );
        }
        // And on 200,000 random strings over the characters addresses are made of.
        let alphabet = b"0123456789abcdefABCDEF:.:.::f0";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 40) as usize;
            let text: String = (0..len)
                .map(|i| {
                    let r = seed.rotate_left(i as u32 * 5) ^ (i as u64).wrapping_mul(0x9e37);
                    char::from(alphabet[(r % alphabet.len() as u64) as usize])
                })
                .collect();
            assert_eq!(
                ClientKey::from_header(Some(&text)),
                standard(&text),
                "{text:?}"
            );
        }
    }
}
