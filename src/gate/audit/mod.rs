//! The tamper-evident decision log (issue 17), pure: every decision becomes a canonical record
//! ([`record`], RFC 8785 [`jcs`]), a leaf of an RFC 6962 Merkle tree ([`merkle`]) sequenced by
//! a Durable Object (`src/edge/audit_log.rs`), whose tree heads are C2SP checkpoints signed with
//! the gateway key ([`checkpoint`]). The same code verifies proofs and exports offline
//! (`attestgate audit verify`).

pub mod batch;
pub mod checkpoint;
pub mod export;
pub mod jcs;
pub mod merkle;
pub mod read;
pub mod record;
pub mod sequencer;
pub mod tiles;

/// Standard base64 with padding (RFC 4648 §4: checkpoints, proofs), from the gateway's
/// base64url encoder: one alphabet's code in the Worker, not two.
pub fn std_b64(bytes: &[u8]) -> String {
    let mut out: String = crate::jose::b64::encode(bytes)
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while out.len() % 4 != 0 {
        out.push('=');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn std_b64_is_rfc4648_base64() {
        use base64ct::{Base64, Encoding};
        for n in 0..40u8 {
            let bytes: Vec<u8> = (0..n)
                .map(|i| i.wrapping_mul(97).wrapping_add(250))
                .collect();
            assert_eq!(super::std_b64(&bytes), Base64::encode_string(&bytes));
        }
    }
}
