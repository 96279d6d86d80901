//! Strict base64url (RFC 7515 §2, RFC 4648 §5): URL alphabet only, no padding, canonical
//! trailing bits. One string decodes to one byte string and back, so a token has exactly one
//! spelling per content (no malleability through the encoding, ATTACKS #27).

use base64ct::{Base64UrlUnpadded, Encoding};

use super::Error;

/// Is `b` one of the 64 characters of the base64url alphabet (`A-Z a-z 0-9 - _`)?
pub fn is_alphabet(b: u8) -> bool {
    DECODE[usize::from(b)] != INVALID
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

/// [`decode`] for public input only (token segments: header, claims, signature), with a lookup
/// table instead of `base64ct`'s constant-time arithmetic. Same language, same bytes, same
/// refusals (tested against [`decode`] below); several times faster in wasm, where decoding
/// the token was the largest single item of the Worker's own per-request work
/// (docs/performance.md). A table lookup's timing depends on the byte looked up, so secrets
/// (HMAC keys, the nonce key) keep going through [`decode`].
pub fn decode_public(input: &str) -> Result<Vec<u8>, Error> {
    let bytes = input.as_bytes();
    if bytes.len() % 4 == 1 {
        return Err(Error::Base64);
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3 + 2);
    let mut quads = bytes.chunks_exact(4);
    for quad in &mut quads {
        let (a, b, c, d) = (
            sextet(quad[0])?,
            sextet(quad[1])?,
            sextet(quad[2])?,
            sextet(quad[3])?,
        );
        let n = (a << 18) | (b << 12) | (c << 6) | d;
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    match *quads.remainder() {
        [] => {}
        [a, b] => {
            let n = (sextet(a)? << 18) | (sextet(b)? << 12);
            // Canonical: the 4 bits of the second character that no byte uses are zero.
            if n & 0xffff != 0 {
                return Err(Error::Base64);
            }
            out.push((n >> 16) as u8);
        }
        [a, b, c] => {
            let n = (sextet(a)? << 18) | (sextet(b)? << 12) | (sextet(c)? << 6);
            if n & 0xff != 0 {
                return Err(Error::Base64);
            }
            out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8]);
        }
        _ => return Err(Error::Base64),
    }
    Ok(out)
}

/// The 6-bit value of one base64url character.
fn sextet(c: u8) -> Result<u32, Error> {
    match DECODE[usize::from(c)] {
        INVALID => Err(Error::Base64),
        v => Ok(u32::from(v)),
    }
}

const INVALID: u8 = 0xff;

/// Character → value for the URL alphabet (RFC 4648 §5); [`INVALID`] elsewhere.
const DECODE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut i = 0;
    while i < 64 {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};

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

    /// The table is the URL alphabet and nothing else (`A-Z a-z 0-9 - _`).
    #[test]
    fn alphabet_is_exactly_the_url_alphabet() {
        for b in 0..=255u8 {
            let url = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
            assert_eq!(is_alphabet(b), url, "{b:#04x}");
        }
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

    /// `decode_public` and `decode` agree on every input: round trips of every length up to
    /// 300, every string of length 0–4 over the alphabet plus foreign characters, and random
    /// strings with foreign characters mixed in.
    #[test]
    fn public_decoder_agrees_with_constant_time_decoder() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for n in 0..300 {
            let data: Vec<u8> = (0..n).map(|_| next() as u8).collect();
            let enc = encode(&data);
            assert_eq!(decode_public(&enc).unwrap(), data);
        }
        let chars: Vec<char> = "AQgw_-z09+/=. \n\u{0}\u{e9}\u{ff}".chars().collect();
        let mut all = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = all
                .iter()
                .filter(|s| s.chars().count() == all.last().map_or(0, |l| l.chars().count()))
                .flat_map(|s| chars.iter().map(move |c| format!("{s}{c}")))
                .collect();
            all.extend(longer);
        }
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/ .";
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let s: String = (0..len)
                .map(|_| {
                    let r = next();
                    // Mostly the alphabet, now and then a foreign character.
                    let i = if r % 16 == 0 {
                        64 + (r >> 8) % 5
                    } else {
                        (r >> 8) % 64
                    };
                    alphabet[i as usize] as char
                })
                .collect();
            all.push(s);
        }
        let mut accepted = 0;
        for s in &all {
            assert_eq!(decode_public(s), decode(s), "{s:?}");
            accepted += usize::from(decode(s).is_ok());
        }
        // Both outcomes were exercised.
        assert!(accepted > 1000 && accepted < all.len() - 1000, "{accepted}");
    }

    #[test]
    fn public_decoder_refuses_what_decode_refuses() {
        for bad in [
            "eyJhbGciOiJFUzI1NiJ9=",
            "QQ==",
            "+_8",
            "-/8",
            "ab cd",
            "abcd\n",
            "abcd\u{200b}",
            "a",
            "abcde",
            "QR",
            "Q_",
            "QUF",
        ] {
            assert_eq!(decode_public(bad), Err(Error::Base64), "{bad:?}");
        }
        assert_eq!(decode_public("QUE").unwrap(), b"AA");
        assert_eq!(decode_public("-_8").unwrap(), [0xfb, 0xff]);
        assert_eq!(decode_public("").unwrap(), b"");
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
