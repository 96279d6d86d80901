//! JOSE for the gateway: compact JWS parsing, JWK/JWKS, signature verification, JWT claims.

pub mod alg;
pub mod b64;
pub mod crypto;
pub mod json;
pub mod jwk;
pub mod jws;
