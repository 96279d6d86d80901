//! DPoP proof checks (RFC 9449 §4.3) for providers with `proof = "dpop"`.
//!
//! The proof's signature is verified with its own embedded public `jwk` (ES256 or EdDSA, never a
//! private key); that only proves possession. What binds it: `htm` equals the request method,
//! `htu` equals the request URL (scheme and host compared case-insensitively, default port
//! dropped, no query or fragment), `iat` within the clock skew, a `jti`, `ath` equal to the
//! base64url SHA-256 of the access token, and the access token's `cnf.jkt` equal to the proof
//! key's RFC 7638 thumbprint. The `nonce` and the `jti` are single use; the pipeline consumes
//! them last, after every other check passed.

use crate::jose::{self, b64, Alg, Limits, SignatureVerifier};
use crate::Error;

/// Algorithms accepted for proofs.
pub const PROOF_ALGS: [Alg; 2] = [Alg::Es256, Alg::EdDsa];
/// Every `alg` name a proof may carry for [`PROOF_ALGS`] (the `algs` of the `DPoP` challenge,
/// RFC 9449 §7.1): Ed25519 under both its names (`EdDSA`, and `Ed25519` of RFC 9864).
pub const PROOF_ALG_NAMES: &str = "ES256 EdDSA Ed25519";
/// Longest `jti` accepted in a proof.
pub const MAX_JTI: usize = 256;

/// What the proof must match.
pub struct Expect<'a> {
    pub method: &'a str,
    pub htu: &'a str,
    /// SHA-256 of the access token (what `ath` carries, base64url).
    pub access_token_sha256: &'a [u8; 32],
    /// The access token's `cnf.jkt`.
    pub jkt: Option<&'a str>,
    pub skew_secs: i64,
    pub now: i64,
}

/// A proof that passed every check but the single-use ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub jkt: String,
    pub jti: String,
    pub nonce: Option<String>,
}

/// Verify a DPoP proof against the request and the access token.
pub async fn verify<V: SignatureVerifier>(
    proof: &str,
    expect: &Expect<'_>,
    verifier: &V,
) -> Result<Checked, Error> {
    let invalid = |_| Error::DpopProofInvalid;
    let limits = Limits::default();
    let proof = jose::verify_dpop_proof(proof, &PROOF_ALGS, &limits, verifier)
        .await
        .map_err(invalid)?;
    let jkt = proof.jkt().ok_or(Error::DpopProofInvalid)?.to_owned();
    let claim = |name: &str| proof.claims.get(name);
    let text = |name: &str| claim(name).and_then(|v| v.as_str());

    if text("htm") != Some(expect.method) {
        return Err(Error::DpopProofInvalid);
    }
    let htu = text("htu").ok_or(Error::DpopProofInvalid)?;
    match normalise_htu(htu) {
        Some(got) if Some(&got) == normalise_htu(expect.htu).as_ref() => {}
        _ => return Err(Error::DpopProofInvalid),
    }
    let iat = claim("iat")
        .ok_or(Error::DpopProofInvalid)
        .and_then(|v| jose::claims::numeric_date(v).map_err(invalid))?;
    if iat > expect.now.saturating_add(expect.skew_secs)
        || iat < expect.now.saturating_sub(expect.skew_secs)
    {
        return Err(Error::DpopProofInvalid);
    }
    let jti = text("jti")
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI)
        .ok_or(Error::DpopProofInvalid)?
        .to_owned();
    let ath = b64::encode(expect.access_token_sha256);
    if text("ath") != Some(ath.as_str()) {
        return Err(Error::DpopProofInvalid);
    }
    // A DPoP provider only accepts sender-constrained tokens bound to this proof key.
    if expect.jkt != Some(jkt.as_str()) {
        return Err(Error::DpopProofInvalid);
    }
    let nonce = match claim("nonce") {
        None => None,
        Some(v) => Some(v.as_str().ok_or(Error::DpopProofInvalid)?.to_owned()),
    };
    Ok(Checked { jkt, jti, nonce })
}

/// `scheme://host[:port]/path` with scheme and host lowercased, the default port dropped, and
/// no query or fragment (RFC 9449 §4.3 point 9, RFC 3986 §6.2.2–6.2.3). `None` if not http(s).
pub fn normalise_htu(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let mut authority = authority.to_ascii_lowercase();
    if authority.ends_with(default_port) {
        authority.truncate(authority.len() - default_port.len());
    }
    Some(format!("{scheme}://{authority}{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_alg_names_are_exactly_the_accepted_names() {
        let listed: Vec<&str> = PROOF_ALG_NAMES.split(' ').collect();
        // Every JOSE name the gateway knows, and near misses: listed exactly when accepted.
        let candidates = [
            "ES256", "EdDSA", "Ed25519", "RS256", "HS256", "ES384", "PS256", "ed25519", "EDDSA",
            "none",
        ];
        for name in candidates {
            let accepted = Alg::from_header(name).is_some_and(|a| PROOF_ALGS.contains(&a));
            assert_eq!(listed.contains(&name), accepted, "{name}");
        }
        for name in &listed {
            assert!(candidates.contains(name), "{name}");
        }
        for alg in PROOF_ALGS {
            assert!(listed.contains(&alg.as_str()), "{alg}");
        }
    }

    #[test]
    fn htu_normalisation() {
        let n = |s| normalise_htu(s);
        assert_eq!(
            n("https://API.example.com:443/v1/x?q=1#f"),
            n("https://api.example.com/v1/x")
        );
        assert_eq!(n("HTTP://h:80"), Some("http://h/".into()));
        assert_ne!(n("https://h/v1/x"), n("https://h/v1/y"));
        assert_ne!(n("https://h:8443/x"), n("https://h/x"));
        assert_eq!(n("ftp://h/x"), None);
        assert_eq!(n("https://user@h/x"), None);
        assert_eq!(n("nonsense"), None);
    }
}
