//! One digest of several text parts: SHA-256 over each part's length (u64, big-endian) and bytes,
//! so no two different lists of parts hash alike by concatenation. Used for the single-use store
//! keys and the verified-token cache keys.

use sha2::{Digest, Sha256};

/// SHA-256 of the length-prefixed `parts` (text or bytes).
pub fn parts<P: AsRef<[u8]>>(parts: &[P]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in parts {
        let part = part.as_ref();
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// Issue 14: the RFC 9530 `Content-Digest` field value of `body` with SHA-256, as the receipt
/// binds it and the gateway sends it: `sha-256=:<standard base64 with padding>:` (a
/// structured-field dictionary with one byte-sequence member, RFC 9530 §2 and RFC 8941 §3.3.5).
pub fn content_digest(body: &[u8]) -> String {
    let digest: [u8; 32] = Sha256::digest(body).into();
    // Standard base64 of 32 bytes is the base64url text (43 characters) with `-`/`_` read as
    // `+`/`/`, and one `=`: the Worker's one base64 encoder serves both (less code).
    let std: String = crate::jose::b64::encode(&digest)
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    format!("sha-256=:{std}=:")
}

#[cfg(test)]
mod tests {
    use sha2::Digest as _;

    /// RFC 9530's example content `{"hello": "world"}` and its `sha-256` Content-Digest (§2,
    /// Appendix B), and no content at all.
    #[test]
    fn content_digest_matches_the_rfc_9530_examples() {
        assert_eq!(
            super::content_digest(b"{\"hello\": \"world\"}"),
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
        );
        // No bytes (a GET): the SHA-256 of the empty string.
        assert_eq!(
            super::content_digest(b""),
            "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
        );
        // Every byte value, every digest shape: the same text as a standard base64 encoder.
        use base64ct::Encoding as _;
        for n in 0..300u32 {
            let body: Vec<u8> = (0..n).map(|i| (i * 7 + n) as u8).collect();
            let digest: [u8; 32] = sha2::Sha256::digest(&body).into();
            assert_eq!(
                super::content_digest(&body),
                format!("sha-256=:{}:", base64ct::Base64::encode_string(&digest))
            );
        }
        // Any change to a byte changes the digest.
        assert_ne!(
            super::content_digest(b"{\"hello\": \"world\"}"),
            super::content_digest(b"{\"hello\": \"world\"} ")
        );
    }

    #[test]
    fn boundaries_between_parts_count() {
        assert_ne!(super::parts(&["ab", "c"]), super::parts(&["a", "bc"]));
        assert_ne!(super::parts(&["abc"]), super::parts(&["abc", ""]));
        assert_eq!(super::parts(&["a", "b"]), super::parts(&["a", "b"]));
    }
}
