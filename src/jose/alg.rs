//! The JWS algorithms the gateway implements: one type, defined next to the policy model
//! (`attestgate_policy::Alg`), so a policy's `algorithms`, a token's `alg` header and a key's
//! algorithm are the same values with the same exact name table.

pub use attestgate_policy::{Alg, UnknownAlg};
