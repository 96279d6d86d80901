//! Response masking (issue 18): the route's mask rules applied to the origin's JSON answer
//! before it reaches an agent. Pure; the Worker (`src/edge/mask.rs`) pipes the body through.
//!
//! - [`stream`]: the streaming transformer (strict tokenizer, fixed limits);
//! - this module: when a route's mask applies to a request ([`applies`]), the response checks
//!   (status, media type, encoding: [`check_response`]) and the headers of a masked response
//!   ([`masked_headers`]).

pub mod stream;
// The reference slices its location behind `is_empty`/`split_first` checks.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::indexing_slicing)]
pub mod reference;

pub use stream::{Counts, HashKey, Limits, MaskError, Transformer};
