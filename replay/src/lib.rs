//! `islets-replay`: replays archived events to their topics, one topic, one consumer's
//! queue or a file, precisely (the query model selects, duplicates collapsed) and safely
//! (dry run and plans with a hash, confirmation, rate limit, resume, a ledger).
//!
//! Flow: validate → open the archive → resolve the target → plan (read the selection
//! once, send nothing) → [dry run: print, stop] → confirm → ledger entry → send (read the
//! selection again, in batches, checkpointed) → ledger entry, summary, report.

#![warn(missing_docs)]

mod config;
mod drill;
mod error;
mod execute;
mod history;
mod ledger;
#[cfg(test)]
mod memory;
mod message;
mod plan;
mod run;
mod selection;
mod target;

pub use config::{ReplayArgs, ReplayConfig};
pub use drill::{DrillArgs, DrillConfig, DrillReport, drill};
pub use error::{ReplayError, Result};
pub use execute::{ReplayOutcome, replay};
pub use history::{print_history, summary};
pub use ledger::LedgerEntry;
pub use plan::Plan;
pub use run::{CheckpointOptions, Outcome, SendOptions, SendOrder};
pub use selection::{Selection, SelectionArgs};
pub use target::TargetSpec;
