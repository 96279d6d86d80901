//! The JWKS loader (`KeySet::from_jwks`), as the JWKS cache calls it on a fetched document.
//!
//! Properties of an accepted document: every entry of `keys` is either loaded or listed as
//! skipped (never both, never lost), in document order; public keys carry their thumbprint; a
//! `kid` is reported as duplicated exactly when two loaded keys of one algorithm share it, and
//! key selection then refuses it as ambiguous, while every other loaded key is found by its
//! `(alg, kid)`.
#![no_main]

use attestgate::jose::Error;
use attestgate::jose::{JwksLimits, KeyMaterial, KeySet};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn check(data: &[u8]) {
    let limits = JwksLimits::default();
    let Ok((set, report)) = KeySet::from_jwks(data, &limits) else {
        return;
    };
    let doc: Value = serde_json::from_slice(data).expect("the strict reader accepted it");
    let entries = doc["keys"]
        .as_array()
        .expect("accepted documents have a keys array");
    assert!(entries.len() <= limits.max_keys);
    assert_eq!(report.loaded, set.len());
    assert_eq!(set.len() + report.skipped.len(), entries.len());
    let mut indexes: Vec<usize> = report.skipped.iter().map(|s| s.index).collect();
    assert!(
        indexes.windows(2).all(|w| w[0] < w[1]),
        "skipped keys out of order"
    );
    indexes.dedup();
    assert!(indexes.iter().all(|&i| i < entries.len()));
    let _ = report.private_key_found();
    for skipped in &report.skipped {
        assert!(!skipped.reason.reason().is_empty());
    }
    for key in set.keys() {
        let public = !matches!(key.material(), KeyMaterial::Hmac { .. });
        assert_eq!(
            key.thumbprint().is_some(),
            public,
            "thumbprint iff public key"
        );
        let same = set
            .keys()
            .iter()
            .filter(|k| k.alg() == key.alg() && k.kid() == key.kid())
            .count();
        match key.kid() {
            Some(kid) => {
                let reported = report.duplicate_kids.iter().any(|d| d == kid);
                let chosen = set.select(key.alg(), Some(kid));
                if same > 1 {
                    assert!(reported, "duplicate kid {kid:?} not reported");
                    assert_eq!(chosen.map(|_| ()), Err(Error::AmbiguousKey));
                } else {
                    let chosen = chosen.expect("a unique (alg, kid) is found");
                    assert_eq!(chosen.kid(), Some(kid));
                    assert_eq!(chosen.alg(), key.alg());
                }
            }
            None => {
                let of_alg = set.keys().iter().filter(|k| k.alg() == key.alg()).count();
                let chosen = set.select(key.alg(), None).map(|k| k.alg());
                if of_alg == 1 {
                    assert_eq!(chosen, Ok(key.alg()));
                } else {
                    assert_eq!(chosen, Err(Error::KidMissing));
                }
            }
        }
    }
    for kid in &report.duplicate_kids {
        assert!(set.keys().iter().any(|k| k.kid() == Some(kid.as_str())
            && set
                .keys()
                .iter()
                .filter(|o| o.alg() == k.alg() && o.kid() == k.kid())
                .count()
                > 1));
    }
}

fuzz_target!(|data: &[u8]| check(data));
