//! Token binding (Approov `pay` style): a claim carries the base64 SHA-256 of another header's
//! value, so a stolen attestation token cannot be replayed with another credential.
//!
//! Approov emits the standard base64 alphabet with `=` padding; the URL-safe alphabet without
//! padding is accepted too (some SDKs and proxies re-encode). The hash is over the exact header
//! value as received (e.g. the whole `Bearer ...` Authorization value). The comparison is on the
//! decoded 32 bytes, in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::gate::nonce::decode_any_base64;
use crate::Error;

/// Check that `claim` (the token's binding claim) is base64(SHA-256(`bound_value`)).
pub fn check(claim: Option<&serde_json::Value>, bound_value: Option<&str>) -> Result<(), Error> {
    let claim = claim
        .and_then(|v| v.as_str())
        .ok_or(Error::BindingMismatch)?;
    let bound_value = bound_value.ok_or(Error::BindingMismatch)?;
    if claim.len() > 64 {
        return Err(Error::BindingMismatch);
    }
    let expected = decode_any_base64(claim).ok_or(Error::BindingMismatch)?;
    let actual = Sha256::digest(bound_value.as_bytes());
    if expected.len() == actual.len() && bool::from(expected.as_slice().ct_eq(actual.as_slice())) {
        Ok(())
    } else {
        Err(Error::BindingMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64ct::{Base64, Base64UrlUnpadded, Encoding};
    use serde_json::json;

    #[test]
    fn standard_and_url_safe_encodings_match() {
        let value = "Bearer abc.def.ghi";
        let digest = Sha256::digest(value.as_bytes());
        let std = Base64::encode_string(&digest);
        let url = Base64UrlUnpadded::encode_string(&digest);
        assert!(check(Some(&json!(std)), Some(value)).is_ok());
        assert!(check(Some(&json!(url)), Some(value)).is_ok());
    }

    #[test]
    fn mismatch_missing_or_wrong_type_is_refused() {
        let digest = Sha256::digest(b"Bearer abc");
        let std = Base64::encode_string(&digest);
        assert_eq!(
            check(Some(&json!(std)), Some("Bearer abd")),
            Err(Error::BindingMismatch)
        );
        assert_eq!(check(Some(&json!(std)), None), Err(Error::BindingMismatch));
        assert_eq!(check(None, Some("Bearer abc")), Err(Error::BindingMismatch));
        assert_eq!(
            check(Some(&json!(42)), Some("Bearer abc")),
            Err(Error::BindingMismatch)
        );
        assert_eq!(
            check(Some(&json!("!!")), Some("Bearer abc")),
            Err(Error::BindingMismatch)
        );
        let short = Base64::encode_string(&digest[..16]);
        assert_eq!(
            check(Some(&json!(short)), Some("Bearer abc")),
            Err(Error::BindingMismatch)
        );
    }
}
