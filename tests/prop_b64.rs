//! Property tests of strict base64url (`jose::b64`), with shrinking: a failure is reported as the
//! shortest input that shows it.
//!
//! * `decode(encode(x)) == x` and `decode_public(encode(x)) == x`, for any bytes;
//! * the table decoder (`decode_public`, for token segments) agrees with `decode` and with
//!   `base64ct`'s constant-time decoder itself on any string, accepted or refused;
//! * one spelling per content: a string either decoder accepts re-encodes to itself, so
//!   non-canonical trailing bits, padding and foreign characters are all refused.
//!
//! The unit tests in `src/jose/b64.rs` pin the known cases (RFC alphabet, `QR`/`QUF`, ...).

use attestgate::jose::b64;
use base64ct::{Base64UrlUnpadded, Encoding};
use proptest::prelude::*;

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Strings that are mostly base64url, now and then with a character from outside (padding, the
/// standard alphabet, whitespace, `.`, NUL, non-ASCII).
fn near_base64url() -> impl Strategy<Value = String> {
    let inside = prop::sample::select(ALPHABET).prop_map(char::from);
    let outside = prop::sample::select(vec!['=', '+', '/', ' ', '\n', '.', '\0', 'é', '\u{200b}']);
    let ch = prop_oneof![30 => inside, 1 => outside];
    prop::collection::vec(ch, 0..40).prop_map(|chars| chars.into_iter().collect())
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn round_trip(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let text = b64::encode(&bytes);
        prop_assert!(text.bytes().all(b64::is_alphabet));
        prop_assert_ne!(text.len() % 4, 1);
        prop_assert_eq!(b64::decode(&text), Ok(bytes.clone()));
        prop_assert_eq!(b64::decode_public(&text), Ok(bytes));
    }

    #[test]
    fn table_decoder_agrees_with_constant_time_decoders(text in near_base64url()) {
        let table = b64::decode_public(&text);
        prop_assert_eq!(&table, &b64::decode(&text));
        prop_assert_eq!(table.ok(), Base64UrlUnpadded::decode_vec(&text).ok());
    }

    #[test]
    fn accepted_strings_are_canonical(text in near_base64url()) {
        if let Ok(bytes) = b64::decode_public(&text) {
            prop_assert_eq!(b64::encode(&bytes), text);
        }
    }

    /// Setting any unused bit of the last character of a canonical encoding is refused by both
    /// decoders (ATTACKS #27: no second spelling of a signature).
    #[test]
    fn non_canonical_trailing_bits_are_refused(
        bytes in prop::collection::vec(any::<u8>(), 1..64).prop_filter("a partial last block", |b| b.len() % 3 != 0),
        bit in 0u8..4,
    ) {
        let text = b64::encode(&bytes);
        // One trailing byte leaves 4 unused bits in the last character, two leave 2.
        let unused = if bytes.len() % 3 == 1 { 4 } else { 2 };
        let bit = bit % unused;
        let last = text.as_bytes()[text.len() - 1];
        let value = ALPHABET.iter().position(|&c| c == last).expect("an alphabet character") as u8;
        prop_assert_eq!(value & ((1 << unused) - 1), 0, "the encoder writes zero unused bits");
        let changed = char::from(ALPHABET[usize::from(value | (1 << bit))]);
        let forged = format!("{}{changed}", &text[..text.len() - 1]);
        prop_assert_eq!(b64::decode_public(&forged), Err(attestgate::jose::Error::Base64));
        prop_assert_eq!(b64::decode(&forged), Err(attestgate::jose::Error::Base64));
    }
}
