//! The tamper-evident decision log (issue 17), pure: every decision becomes a canonical record
//! ([`record`], RFC 8785 [`jcs`]), a leaf of an RFC 6962 Merkle tree ([`merkle`]) sequenced by
//! a Durable Object (`src/edge/audit_log.rs`), whose tree heads are C2SP checkpoints signed with
//! the gateway key ([`checkpoint`]). The same code verifies proofs and exports offline
//! (`attestgate audit verify`).

pub mod checkpoint;
pub mod export;
pub mod jcs;
pub mod merkle;
pub mod read;
pub mod record;
pub mod sequencer;
