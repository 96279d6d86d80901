//! JOSE for the gateway: compact JWS parsing, JWK/JWKS, signature verification, JWT claims.
pub mod b64;
