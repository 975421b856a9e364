//! `islets-seal`: what lets an auditor trust that nothing archived was altered or removed
//! inside retention (docs/ARCHIVE.md, "Sealing").
//!
//! * [`EventLeaf`]: one archived event as a Merkle leaf (its `event_id`, the SHA-256 of its
//!   payload bytes as archived and of its attributes), in a documented byte encoding;
//! * [`HourTree`]: an hour's leaves in their fixed order, its RFC 6962 / 9162 root and the
//!   inclusion proof of any event;
//! * [`LogTree`]: the append-only log whose leaves are hour roots, with inclusion and
//!   consistency proofs;
//! * [`Checkpoint`] and [`SignedCheckpoint`]: a log head (size, root, time) signed by a key
//!   the operator controls ([`Ed25519KeyFile`] on the embedded default).
//!
//! Hashing follows RFC 6962 §2.1 (leaf hash `SHA-256(0x00 || leaf)`, node hash
//! `SHA-256(0x01 || left || right)`) through the `ct-merkle` crate; signatures are Ed25519
//! through `aws-lc-rs`. Nothing here is a hand-made primitive.
//!
//! On the archive: [`seal`] writes hour manifests, log entries and signed checkpoints
//! (`seal/` under the root), [`verify`] checks all of it against the objects and rows, and
//! [`prove`] builds the self-contained [`EventProof`] of one event.
//!
//! Depends on `islets-core` only.

#![warn(missing_docs)]

mod checkpoint;
mod error;
mod hour;
mod leaf;
mod log;
mod manifest;
mod proof;
mod sealer;
mod signer;
mod tree;
mod verify;

pub use checkpoint::{Checkpoint, SignedCheckpoint};
pub use error::{Error, Result};
pub use leaf::EventLeaf;
pub use log::{
    CHECKPOINT_PREFIX, LOG_ENTRY_FORMAT, LOG_PREFIX, LogEntry, StoredLog, checkpoint_key,
};
pub use manifest::{HourManifest, MANIFEST_FORMAT, MANIFEST_PREFIX, ManifestLeaf, ManifestObject};
pub use proof::{EventProof, HourInclusion, PROOF_FORMAT, Proven, prove};
pub use sealer::{SealOptions, SealReport, SealedHour, seal};
pub use signer::{ED25519, Ed25519KeyFile, Signer, verify_signature};
pub use tree::{Digest, HourTree, InclusionPath, LogTree, verify_consistency};
pub use verify::{
    CheckpointSummary, Finding, FindingKind, MAX_FINDINGS, VerifyOptions, VerifyReport, verify,
};

#[cfg(test)]
mod tests;
