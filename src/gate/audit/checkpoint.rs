//! Checkpoints: the decision log's signed tree heads, as C2SP `tlog-checkpoint` notes
//! (c2sp.org/tlog-checkpoint, c2sp.org/signed-note).
//!
//! ```text
//! api.example.com/attestgate/decisions
//! 20852163
//! CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=
//!
//! — api.example.com/attestgate/decisions Az3grlgt...
//! ```
//!
//! The note text is the origin, the tree size in decimal and the standard-base64 root, each on
//! its own line. One signature line by the gateway key, named by the origin (the key name
//! SHOULD match the origin):
//! - Ed25519 keys: signature type `0x01`, key ID `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]`,
//!   the RFC 8032 signature of the note text;
//! - P-256 keys: signature type `0x02` (the ECDSA type of transparency-dev/witness), key ID
//!   `SHA-256(SubjectPublicKeyInfo DER)[:4]`, the ASN.1 DER ECDSA signature over SHA-256 of the
//!   note text.
//!
//! The signing goes through the [`Signer`] seam (WebCrypto in the Worker). Verification
//! ([`verify`]) takes the gateway's published JWKS keys: a signature counts when its name is
//! the origin and its key ID is one of those keys'; a known key whose signature does not verify
//! rejects the note; unknown signatures are ignored (witness cosignatures).

use base64ct::{Base64, Encoding};
use sha2::{Digest, Sha256};

use super::merkle::Hash;
use crate::jose::{Key, KeyMaterial, Signer, SigningKey};

/// A tree head: what a checkpoint's text says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeHead {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

/// Why a checkpoint was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointError {
    /// Not a signed note, or its text is not a checkpoint.
    Malformed,
    /// No signature by one of the given keys.
    NoKnownSignature,
    /// A signature by one of the given keys does not verify.
    BadSignature,
    /// The key cannot sign or verify checkpoints (not ES256 / EdDSA).
    UnsupportedKey,
    /// The signer failed.
    Signer,
}

/// Most signature lines read (signed-note: at least 16 must be accepted).
const MAX_SIGNATURES: usize = 32;
/// Longest note read.
const MAX_NOTE: usize = 64 * 1024;

/// `origin`, size and root as the note text (ends in a newline).
pub fn text(head: &TreeHead) -> String {
    format!(
        "{}\n{}\n{}\n",
        head.origin,
        head.size,
        super::std_b64(&head.root)
    )
}

/// The DER SubjectPublicKeyInfo of a P-256 point.
fn spki(x: &[u8; 32], y: &[u8; 32]) -> Vec<u8> {
    const PREFIX: [u8; 27] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
    ];
    let mut out = PREFIX.to_vec();
    out.extend_from_slice(x);
    out.extend_from_slice(y);
    out
}

/// The note key ID of `key` under the key name `name`, and whether it is ECDSA.
pub fn key_id(name: &str, key: &Key) -> Option<[u8; 4]> {
    let digest: [u8; 32] = match key.material() {
        KeyMaterial::Ed25519 { x, .. } => {
            let mut h = Sha256::new();
            h.update(name.as_bytes());
            h.update([0x0a, 0x01]);
            h.update(x);
            h.finalize().into()
        }
        KeyMaterial::Ec { x, y, .. } => Sha256::digest(spki(x, y)).into(),
        _ => return None,
    };
    let mut id = [0u8; 4];
    id.copy_from_slice(digest.get(..4)?);
    Some(id)
}

/// The signed-note verifier key (`name+hex(id)+base64(type ‖ key)`) of an Ed25519 key; for a
/// P-256 key, `name+hex(id)+base64(0x02 ‖ SPKI)`.
pub fn vkey(name: &str, key: &Key) -> Option<String> {
    let id = key_id(name, key)?;
    let mut material = Vec::new();
    match key.material() {
        KeyMaterial::Ed25519 { x, .. } => {
            material.push(0x01);
            material.extend_from_slice(x);
        }
        KeyMaterial::Ec { x, y, .. } => {
            material.push(0x02);
            material.extend_from_slice(&spki(x, y));
        }
        _ => return None,
    }
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("{name}+{hex}+{}", Base64::encode_string(&material)))
}

/// Sign `head` with the gateway key: the whole signed note.
pub async fn sign<S: Signer>(
    head: &TreeHead,
    key: &SigningKey,
    signer: &S,
) -> Result<String, CheckpointError> {
    let body = text(head);
    let id = key_id(&head.origin, key.public_key()).ok_or(CheckpointError::UnsupportedKey)?;
    let raw = signer
        .sign(key, body.as_bytes())
        .await
        .map_err(|_| CheckpointError::Signer)?;
    let signature = match key.public_key().material() {
        KeyMaterial::Ec { .. } => der_from_raw(&raw).ok_or(CheckpointError::Signer)?,
        _ => raw,
    };
    let mut blob = id.to_vec();
    blob.extend_from_slice(&signature);
    Ok(format!(
        "{body}\n\u{2014} {} {}\n",
        head.origin,
        super::std_b64(&blob)
    ))
}

/// A parsed note: its text, tree head and signature lines `(name, key id, signature)`.
#[derive(Debug, Clone)]
pub struct Note {
    pub text: String,
    pub head: TreeHead,
    pub signatures: Vec<(String, [u8; 4], Vec<u8>)>,
}

/// Parse a signed note whose text is a checkpoint. Strict: UTF-8 without control characters
/// other than newline, the text separated from the signatures by the last blank line, at least
/// one well-formed signature line, a size in decimal without leading zeros, a 32-byte root.
pub fn parse(note: &str) -> Result<Note, CheckpointError> {
    let bad = CheckpointError::Malformed;
    if note.len() > MAX_NOTE || note.chars().any(|c| c < ' ' && c != '\n') {
        return Err(bad);
    }
    let split = note.rfind("\n\n").ok_or(bad)?;
    let (text, sigs) = (
        note.get(..=split).ok_or(bad)?,
        note.get(split + 2..).ok_or(bad)?,
    );
    if sigs.is_empty() || !sigs.ends_with('\n') {
        return Err(bad);
    }
    let mut signatures = Vec::new();
    for line in sigs.trim_end_matches('\n').split('\n') {
        if signatures.len() == MAX_SIGNATURES {
            return Err(bad);
        }
        let rest = line.strip_prefix("\u{2014} ").ok_or(bad)?;
        let (name, b64) = rest.split_once(' ').ok_or(bad)?;
        if name.is_empty() || name.contains('+') || b64.contains(' ') {
            return Err(bad);
        }
        let blob = Base64::decode_vec(b64).map_err(|_| bad)?;
        if blob.len() < 5 {
            return Err(bad);
        }
        let (id, sig) = blob.split_at(4);
        let id: [u8; 4] = id.try_into().map_err(|_| bad)?;
        signatures.push((name.to_owned(), id, sig.to_vec()));
    }
    let lines: Vec<&str> = text.trim_end_matches('\n').split('\n').collect();
    let (origin, size, root) = match lines.as_slice() {
        [o, s, r, ..] => (*o, *s, *r),
        _ => return Err(bad),
    };
    if origin.is_empty() || lines.iter().any(|l| l.is_empty()) {
        return Err(bad);
    }
    let size_ok = !size.is_empty()
        && size.bytes().all(|b| b.is_ascii_digit())
        && (size == "0" || !size.starts_with('0'));
    let size: u64 = if size_ok {
        size.parse().map_err(|_| bad)?
    } else {
        return Err(bad);
    };
    let root: Hash = Base64::decode_vec(root)
        .map_err(|_| bad)?
        .try_into()
        .map_err(|_| bad)?;
    Ok(Note {
        text: text.to_owned(),
        head: TreeHead {
            origin: origin.to_owned(),
            size,
            root,
        },
        signatures,
    })
}

/// Verify a checkpoint with the gateway's keys (its JWKS): at least one signature named by the
/// origin and made by one of `keys` verifies, and none by those keys fails.
#[cfg(not(target_arch = "wasm32"))]
pub fn verify(note: &str, keys: &[Key]) -> Result<TreeHead, CheckpointError> {
    let parsed = parse(note)?;
    let mut verified = false;
    for (name, id, sig) in &parsed.signatures {
        if *name != parsed.head.origin {
            continue;
        }
        for key in keys {
            if key_id(name, key) != Some(*id) {
                continue;
            }
            let raw = match key.material() {
                KeyMaterial::Ec { .. } => raw_from_der(sig).ok_or(CheckpointError::BadSignature)?,
                _ => sig.clone(),
            };
            crate::jose::verify_native(key, parsed.text.as_bytes(), &raw)
                .map_err(|_| CheckpointError::BadSignature)?;
            verified = true;
        }
    }
    if verified {
        Ok(parsed.head)
    } else {
        Err(CheckpointError::NoKnownSignature)
    }
}

/// One DER INTEGER of a 32-byte big-endian unsigned value.
fn der_int(out: &mut Vec<u8>, v: &[u8]) {
    let mut v = v;
    while v.len() > 1 && v.first() == Some(&0) {
        v = v.get(1..).unwrap_or_default();
    }
    let pad = v.first().is_some_and(|b| b & 0x80 != 0);
    out.push(0x02);
    out.push((v.len() + usize::from(pad)) as u8);
    if pad {
        out.push(0);
    }
    out.extend_from_slice(v);
}

/// `r‖s` (64 bytes) as an ASN.1 DER `ECDSA-Sig-Value`.
pub fn der_from_raw(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() != 64 {
        return None;
    }
    let (r, s) = raw.split_at(32);
    let mut body = Vec::with_capacity(72);
    der_int(&mut body, r);
    der_int(&mut body, s);
    let mut out = vec![0x30, body.len() as u8];
    out.extend_from_slice(&body);
    Some(out)
}

/// A strict DER `ECDSA-Sig-Value` back to `r‖s`; `None` for anything not minimally encoded.
pub fn raw_from_der(der: &[u8]) -> Option<Vec<u8>> {
    fn int(b: &[u8]) -> Option<(&[u8], &[u8])> {
        let (&tag, rest) = b.split_first()?;
        let (&len, rest) = rest.split_first()?;
        let len = usize::from(len);
        if tag != 0x02 || len == 0 || len > 33 || rest.len() < len {
            return None;
        }
        let (v, rest) = rest.split_at(len);
        let first = *v.first()?;
        let second = v.get(1).copied();
        // Minimal: no needless leading zero, never negative.
        if first & 0x80 != 0 || (first == 0 && second.is_some_and(|s| s & 0x80 == 0)) {
            return None;
        }
        let v = if first == 0 && v.len() > 1 {
            v.get(1..)?
        } else {
            v
        };
        if v.len() > 32 {
            return None;
        }
        Some((v, rest))
    }
    let (&tag, rest) = der.split_first()?;
    let (&len, body) = rest.split_first()?;
    if tag != 0x30 || usize::from(len) != body.len() {
        return None;
    }
    let (r, rest) = int(body)?;
    let (s, rest) = int(rest)?;
    if !rest.is_empty() {
        return None;
    }
    let mut out = vec![0u8; 64];
    out.get_mut(32 - r.len()..32)?.copy_from_slice(r);
    out.get_mut(64 - s.len()..)?.copy_from_slice(s);
    Some(out)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::jose::{block_on_ready, NativeSigner};

    fn ed_key(seed: u8) -> SigningKey {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "kid": "gw",
            "x": crate::jose::b64::encode(sk.verifying_key().as_bytes()),
            "d": crate::jose::b64::encode(&[seed; 32])});
        SigningKey::from_jwk(&jwk.to_string()).unwrap()
    }

    fn es_key(seed: u8) -> SigningKey {
        let sk = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
        let p = sk.verifying_key().to_sec1_bytes();
        let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "kid": "gw",
            "x": crate::jose::b64::encode(&p[1..33]), "y": crate::jose::b64::encode(&p[33..65]),
            "d": crate::jose::b64::encode(&[seed; 32])});
        SigningKey::from_jwk(&jwk.to_string()).unwrap()
    }

    fn sign_now(head: &TreeHead, key: &SigningKey) -> String {
        block_on_ready(async {
            Ok::<_, crate::jose::Error>(sign(head, key, &NativeSigner).await.unwrap())
        })
        .unwrap()
    }

    /// The signed-note specification's example (c2sp.org/signed-note, "Example"): the vkey
    /// `example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k` verifies the note.
    #[test]
    fn the_signed_note_example_verifies_with_its_vkey() {
        let material = Base64::decode_vec("AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k").unwrap();
        assert_eq!(material[0], 0x01);
        let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519",
            "x": crate::jose::b64::encode(&material[1..])});
        let key = Key::from_jwk(&jwk).unwrap();
        assert_eq!(
            key_id("example.com/foo", &key),
            Some([0x53, 0x0d, 0x90, 0x3a])
        );
        assert_eq!(
            vkey("example.com/foo", &key).unwrap(),
            "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
        );
        let note = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
        // Not a checkpoint text (one line), but the signature is over exactly that text.
        let sig = Base64::decode_vec(note.rsplit(' ').next().unwrap().trim_end()).unwrap();
        crate::jose::verify_native(&key, b"This is an example message.\n", &sig[4..]).unwrap();
        assert_eq!(parse(note).map(|_| ()), Err(CheckpointError::Malformed));
    }

    #[test]
    fn checkpoints_sign_and_verify_with_both_key_types() {
        let head = TreeHead {
            origin: "api.example.com/attestgate/decisions".into(),
            size: 20852163,
            root: [9u8; 32],
        };
        for key in [ed_key(1), es_key(2)] {
            let note = sign_now(&head, &key);
            assert!(note.starts_with(&format!(
                "api.example.com/attestgate/decisions\n20852163\n{}\n\n\u{2014} api.example.com/attestgate/decisions ",
                Base64::encode_string(&[9u8; 32])
            )));
            assert_eq!(verify(&note, &[key.public_key().clone()]), Ok(head.clone()));
            // Another key: no known signature. A changed size or root: a bad signature.
            let other = ed_key(3);
            assert_eq!(
                verify(&note, &[other.public_key().clone()]),
                Err(CheckpointError::NoKnownSignature)
            );
            let edited = note.replacen("20852163", "20852164", 1);
            assert_eq!(
                verify(&edited, &[key.public_key().clone()]),
                Err(CheckpointError::BadSignature)
            );
            // A witness cosignature (unknown key) next to it is ignored.
            let cosigned = format!("{note}\u{2014} witness.example AAAAAAAA\n");
            assert_eq!(
                verify(&cosigned, &[key.public_key().clone()]),
                Ok(head.clone())
            );
        }
    }

    #[test]
    fn malformed_notes_are_refused() {
        let key = ed_key(4);
        let head = TreeHead {
            origin: "o".into(),
            size: 0,
            root: [0u8; 32],
        };
        let note = sign_now(&head, &key);
        let keys = [key.public_key().clone()];
        assert!(verify(&note, &keys).is_ok());
        for bad in [
            note.replacen("\n0\n", "\n00\n", 1),
            note.replacen("\n0\n", "\n-0\n", 1),
            note.replacen("\n0\n", "\n\n", 1),
            note.replacen("o\n", "o\r\n", 1),
            note.trim_end().to_owned(),
            note.replacen("\u{2014}", "-", 1),
            format!("{}\n", &note[..note.find("\n\n").unwrap()]),
            note.replacen(&Base64::encode_string(&[0u8; 32]), "AAAA", 1),
        ] {
            assert!(verify(&bad, &keys).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn der_round_trips_and_is_strict() {
        for raw in [[0u8; 64], [0xff; 64], {
            let mut r = [1u8; 64];
            r[0] = 0;
            r[1] = 0x80;
            r
        }] {
            let der = der_from_raw(&raw).unwrap();
            assert_eq!(raw_from_der(&der).unwrap(), raw.to_vec());
        }
        // A needless leading zero, a negative integer, trailing bytes.
        assert!(raw_from_der(&[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x02, 0x00, 0x01]).is_none());
        assert!(raw_from_der(&[0x30, 0x06, 0x02, 0x01, 0x81, 0x02, 0x01, 0x01]).is_none());
        assert!(raw_from_der(&[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00]).is_none());
    }
}
