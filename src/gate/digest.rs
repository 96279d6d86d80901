//! One digest of several text parts: SHA-256 over each part's length (u64, big-endian) and bytes,
//! so no two different lists of parts hash alike by concatenation. Used for the single-use store
//! keys and the verified-token cache keys.

use sha2::{Digest, Sha256};

/// SHA-256 of the length-prefixed `parts`.
pub fn parts(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in parts {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn boundaries_between_parts_count() {
        assert_ne!(super::parts(&["ab", "c"]), super::parts(&["a", "bc"]));
        assert_ne!(super::parts(&["abc"]), super::parts(&["abc", ""]));
        assert_eq!(super::parts(&["a", "b"]), super::parts(&["a", "b"]));
    }
}
