//! The decision pipeline: from a request and a matched route to "forward with these headers"
//! or a typed [`crate::Error`]. Pure: keys, replay state, time and randomness come in through seams.

pub mod binding;
pub mod extract;
pub mod key_cache;
pub mod nonce;
