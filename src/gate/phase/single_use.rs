//! The single-use phase (SPEC §3 step 9): the nonces and ids the credential families queued,
//! consumed through the [`ReplayGuard`] only after every other check passed — so a forged or
//! unauthorised credential never burns a nonce or a `jti`. A store that cannot be reached is
//! 503, never an allow.

use crate::gate::nonce::NonceRef;
use crate::gate::seams::ReplayGuard;
use crate::Error;

/// A pending single-use check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SingleUse {
    /// A challenge nonce carried in a token claim (`nonce_claim`).
    Challenge(NonceRef),
    /// The nonce of a DPoP proof.
    DpopNonce(NonceRef),
    /// A token's `(iss, jti)` (`replay = "jti"`).
    Jti { shard: u8, id: String, exp: i64 },
    /// A DPoP proof's `(jkt, jti)`.
    DpopJti { shard: u8, id: String, exp: i64 },
}

/// Run the checks in the order they were queued; the first one already used refuses the
/// request with its own error.
pub async fn run<R: ReplayGuard>(
    checks: Vec<SingleUse>,
    replay: &R,
    now: i64,
) -> Result<(), Error> {
    for check in checks {
        let (fresh, refused) = match &check {
            SingleUse::Challenge(n) => (replay.consume(n, now).await?, Error::ChallengeUsed),
            SingleUse::DpopNonce(n) => (replay.consume(n, now).await?, Error::DpopNonceRequired),
            SingleUse::Jti { shard, id, exp } => (
                replay.first_seen(*shard, id, *exp, now).await?,
                Error::ReplayedToken,
            ),
            SingleUse::DpopJti { shard, id, exp } => (
                replay.first_seen(*shard, id, *exp, now).await?,
                Error::DpopProofInvalid,
            ),
        };
        if !fresh {
            return Err(refused);
        }
    }
    Ok(())
}

/// A fixed-length store key and its shard (of `shards`) for `(kind, scope, id)`: SHA-256 over
/// the length-prefixed parts, so no two different triples collide by concatenation.
pub fn store_key(shards: u8, kind: &str, scope: &str, id: &str) -> (u8, String) {
    let digest = crate::gate::digest::parts(&[kind, scope, id]);
    let first = digest.first().copied().unwrap_or(0);
    (first % shards.max(1), crate::jose::b64::encode(&digest))
}
