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

use std::collections::HashMap;
use std::net::IpAddr;

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
    pub fn from_header(value: Option<&str>) -> Self {
        match value.and_then(|v| v.trim().parse::<IpAddr>().ok()) {
            Some(IpAddr::V4(a)) => ClientKey::V4(a.octets()),
            Some(IpAddr::V6(a)) => match a.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(v4.octets()),
                None => {
                    let o = a.octets();
                    ClientKey::V6([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
                }
            },
            None => ClientKey::Unknown,
        }
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

/// Buckets for at most `capacity` clients.
#[derive(Debug)]
pub struct RateLimiter {
    limit: Limit,
    capacity: usize,
    /// Theoretical arrival time per client, unix milliseconds.
    tat: HashMap<ClientKey, i64>,
}

impl RateLimiter {
    pub fn new(limit: Limit, capacity: usize) -> Self {
        Self {
            limit: Limit {
                burst: limit.burst.max(1),
                interval_ms: limit.interval_ms.max(1),
            },
            capacity: capacity.max(1),
            tat: HashMap::new(),
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
        let interval = self.limit.interval_ms;
        let tolerance = interval.saturating_mul(i64::from(self.limit.burst) - 1);
        // Never behind now (a full bucket), never further ahead than an empty one: a clock that
        // jumps back cannot lock a client out for longer than the limit itself does.
        let tat = self.tat.get(&key).copied().unwrap_or(now_ms).clamp(
            now_ms,
            now_ms.saturating_add(tolerance).saturating_add(interval),
        );
        let ahead = tat.saturating_sub(now_ms);
        if ahead > tolerance {
            // Keep the clamped time, so a clock jump back is forgotten after one interval.
            if let Some(slot) = self.tat.get_mut(&key) {
                *slot = tat;
            }
            let wait_ms = ahead - tolerance;
            let secs = (wait_ms.saturating_add(999) / 1000).clamp(1, i64::from(u32::MAX));
            return Verdict::Limited {
                retry_after_secs: u32::try_from(secs).unwrap_or(u32::MAX),
            };
        }
        if !self.tat.contains_key(&key) && self.tat.len() >= self.capacity {
            self.evict(now_ms);
        }
        self.tat.insert(key, tat.saturating_add(interval));
        Verdict::Allow
    }

    /// Make room for one entry: drop every client whose bucket is full again (the same as not
    /// being tracked); if none is, drop the one nearest to full (it loses the least).
    fn evict(&mut self, now_ms: i64) {
        self.tat.retain(|_, tat| *tat > now_ms);
        if self.tat.len() < self.capacity {
            return;
        }
        if let Some(key) = self
            .tat
            .iter()
            .min_by_key(|(_, tat)| **tat)
            .map(|(key, _)| *key)
        {
            self.tat.remove(&key);
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
}
