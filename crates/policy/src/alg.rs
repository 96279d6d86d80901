//! The JWS algorithms the gateway implements, and the one exact mapping from their names. The
//! one vocabulary for policies (`algorithms = [...]`), token headers and keys: the verification
//! core re-exports it as `attestgate::jose::Alg`.

use core::fmt;
use core::str::FromStr;
use serde::{Deserialize, Serialize};

/// A JWS signature algorithm the gateway can verify. Every key is bound to exactly one of these
/// (RFC 8725 §3.1), and a token's `alg` must name one of them *exactly*.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Alg {
    /// ECDSA P-256 with SHA-256, signature as 64-byte `r‖s` (RFC 7518 §3.4).
    Es256,
    /// Ed25519 (RFC 8037); also accepted under its RFC 9864 name `Ed25519`.
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3).
    Rs256,
    /// HMAC with SHA-256 (RFC 7518 §3.2), keyed only from configuration.
    Hs256,
}

/// A configured algorithm name is not one the gateway implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownAlg;

impl fmt::Display for UnknownAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown algorithm: expected one of ES256, EdDSA, Ed25519, RS256, HS256")
    }
}

impl std::error::Error for UnknownAlg {}

impl Alg {
    /// Every algorithm, in a fixed order.
    pub const ALL: [Alg; 4] = [Alg::Es256, Alg::EdDsa, Alg::Rs256, Alg::Hs256];

    /// The algorithm a JOSE header `alg` value names. Exact and case-sensitive (RFC 7515
    /// §4.1.1): `ES256`, `EdDSA`, `Ed25519` (RFC 9864, same verification as `EdDSA`), `RS256`,
    /// `HS256`. Everything else, `none` and every case or whitespace variant included, is `None`.
    pub fn from_header(value: &str) -> Option<Alg> {
        match value {
            "ES256" => Some(Alg::Es256),
            "EdDSA" | "Ed25519" => Some(Alg::EdDsa),
            "RS256" => Some(Alg::Rs256),
            "HS256" => Some(Alg::Hs256),
            _ => None,
        }
    }

    /// Whether this is the HMAC algorithm (keyed only from a Worker secret).
    pub fn is_hmac(self) -> bool {
        self == Alg::Hs256
    }

    /// The canonical JOSE name (`EdDSA` for Ed25519).
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
            Alg::Rs256 => "RS256",
            Alg::Hs256 => "HS256",
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses a configured algorithm name with the same exact table as [`Alg::from_header`], so a
/// policy file and a token header can never disagree about what a name means.
impl FromStr for Alg {
    type Err = UnknownAlg;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Alg::from_header(s).ok_or(UnknownAlg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_names_only() {
        assert_eq!(Alg::from_header("ES256"), Some(Alg::Es256));
        assert_eq!(Alg::from_header("EdDSA"), Some(Alg::EdDsa));
        assert_eq!(Alg::from_header("Ed25519"), Some(Alg::EdDsa));
        assert_eq!(Alg::from_header("RS256"), Some(Alg::Rs256));
        assert_eq!(Alg::from_header("HS256"), Some(Alg::Hs256));
        for bad in [
            "none", "None", "NONE", "nOnE", "", "es256", "ES256 ", " ES256", "ES256\0", "ES256K",
            "PS256", "ES384", "ES512", "EDDSA", "eddsa", "ed25519", "Ed448", "hs256", "RS512",
        ] {
            assert_eq!(Alg::from_header(bad), None, "{bad:?}");
            assert!(bad.parse::<Alg>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn round_trip() {
        for alg in Alg::ALL {
            assert_eq!(Alg::from_header(alg.as_str()), Some(alg));
            assert_eq!(alg.to_string().parse::<Alg>(), Ok(alg));
        }
        assert_eq!("Ed25519".parse::<Alg>(), Ok(Alg::EdDsa));
    }
}
