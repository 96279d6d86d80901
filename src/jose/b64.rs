//! Strict base64url (RFC 7515 §2, RFC 4648 §5): URL alphabet only, no padding, canonical
//! trailing bits. One string decodes to one byte string and back, so a token has exactly one
//! spelling per content (no malleability through the encoding, ATTACKS #27).

use base64ct::{Base64UrlUnpadded, Encoding};

use crate::Error;

/// Is `b` one of the 64 characters of the base64url alphabet (`A-Z a-z 0-9 - _`)?
pub fn is_alphabet(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Decodes strict, unpadded base64url.
///
/// Refused with [`Error::Base64`]: any character outside the URL alphabet (`=`, `+`, `/`,
/// whitespace, ...), a length of 1 mod 4 (impossible for unpadded base64), and non-zero unused
/// bits in the last character. `base64ct` already refuses the latter (it re-encodes the last block
/// and compares, see the tests); [`decode`] checks the alphabet and length itself so the
/// behaviour does not depend on that.
pub fn decode(input: &str) -> Result<Vec<u8>, Error> {
    if !input.bytes().all(is_alphabet) || input.len() % 4 == 1 {
        return Err(Error::Base64);
    }
    Base64UrlUnpadded::decode_vec(input).map_err(|_| Error::Base64)
}

/// Encodes as unpadded base64url.
pub fn encode(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_lengths() {
        let data: Vec<u8> = (0u8..=255).collect();
        for n in 0..40 {
            let enc = encode(&data[..n]);
            assert!(!enc.contains('='));
            assert_eq!(decode(&enc).unwrap(), &data[..n]);
        }
        assert_eq!(encode(&[0xfb, 0xff]), "-_8");
        assert_eq!(decode("-_8").unwrap(), [0xfb, 0xff]);
    }

    #[test]
    fn refuses_padding_and_foreign_alphabet() {
        for bad in [
            "eyJhbGciOiJFUzI1NiJ9=", // padding
            "QQ==",
            "QQ=",
            "+_8", // standard alphabet
            "-/8",
            "ab cd",
            "abcd\n",
            "ab*d",
            "ab%2E",
            "abcd\u{200b}",
            "a", // 1 mod 4
            "abcde",
        ] {
            assert_eq!(decode(bad), Err(Error::Base64), "{bad:?}");
        }
    }

    /// `base64ct` itself refuses non-canonical trailing bits: verified here, not assumed.
    #[test]
    fn refuses_non_canonical_trailing_bits() {
        // "QQ" is canonical for [0x41]; "QR".."QZ" differ only in the 4 unused bits.
        assert_eq!(decode("QQ").unwrap(), [0x41]);
        for bad in ["QR", "QS", "QT", "Qf", "Q_"] {
            assert_eq!(decode(bad), Err(Error::Base64), "{bad}");
            assert!(
                Base64UrlUnpadded::decode_vec(bad).is_err(),
                "base64ct accepted {bad}"
            );
        }
        // Two unused bits: "QUE" is canonical for "AA"; "QUF" sets an unused bit.
        assert_eq!(decode("QUE").unwrap(), b"AA");
        for bad in ["QUF", "QUG", "QUH"] {
            assert_eq!(decode(bad), Err(Error::Base64), "{bad}");
            assert!(
                Base64UrlUnpadded::decode_vec(bad).is_err(),
                "base64ct accepted {bad}"
            );
        }
    }
}
