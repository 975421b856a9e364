//! The replay ledger: every executed replay is recorded in the store under
//! `replays/<date>/<replay_id>-<run_id>.json` (one file per run: a resumed replay adds one) (who, when, why, selection, target, counts, plan hash,
//! status), written when it starts and again when it ends, so the replay itself is
//! auditable. `islets-replay history` lists it.

use bytes::Bytes;
use futures::TryStreamExt;
use islets_core::layout::join;
use islets_core::store::Archive;
use serde::{Deserialize, Serialize};

use crate::error::{ReplayError, Result};
use crate::run::Outcome;
use crate::selection::Selection;
use crate::target::TargetSpec;

/// The store prefix of the ledger.
pub(crate) const LEDGER_PREFIX: &str = "replays";

/// One executed replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The replay's id (ULID); every message it sends is marked with it.
    pub replay_id: String,
    /// This invocation: a resumed replay keeps its replay id and adds a run.
    pub run_id: String,
    /// `running`, `completed`, `completed_with_failures`, `interrupted`, `failed`.
    pub status: String,
    /// Who ran it (`--operator`).
    pub operator: String,
    /// Why (`--reason`).
    pub reason: String,
    /// When this run started (RFC 3339, UTC).
    pub started_at: String,
    /// When this run ended; `None` while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The archive, as given.
    pub store: String,
    /// What was replayed.
    pub selection: Selection,
    /// Where it went.
    pub target: TargetSpec,
    /// SHA-256 of the selected id set (the plan's hash).
    pub id_set_sha256: String,
    /// Distinct events selected.
    pub events_selected: u64,
    /// What happened; `None` while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Set when this run continued an earlier one (`--resume`).
    #[serde(default)]
    pub resumed: bool,
    /// The islets-replay version that ran it.
    pub version: String,
}

impl LedgerEntry {
    fn key(&self) -> String {
        let date = self.started_at.get(..10).unwrap_or("unknown");
        format!(
            "{LEDGER_PREFIX}/{date}/{}-{}.json",
            self.replay_id, self.run_id
        )
    }

    /// Writes (or rewrites) the entry.
    pub async fn save(&self, archive: &Archive) -> Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(|error| {
            ReplayError::Send(format!("cannot encode the ledger entry: {error}"))
        })?;
        let key = join(archive.root(), &self.key());
        archive
            .put(&key, Bytes::from(text))
            .await
            .map_err(ReplayError::Store)
    }
}

/// Every ledger entry, oldest first.
pub(crate) async fn history(archive: &Archive) -> Result<Vec<LedgerEntry>> {
    let prefix = join(archive.root(), LEDGER_PREFIX);
    let mut objects: Vec<object_store::ObjectMeta> = archive
        .object_store()
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|source| {
            ReplayError::Store(islets_core::Error::Store {
                operation: "list",
                location: prefix.to_string(),
                source,
            })
        })?;
    objects.sort_by(|a, b| a.location.cmp(&b.location));
    let mut entries = Vec::with_capacity(objects.len());
    for object in objects {
        let bytes = archive
            .get(&object.location)
            .await
            .map_err(ReplayError::Store)?;
        match serde_json::from_slice::<LedgerEntry>(&bytes) {
            Ok(entry) => entries.push(entry),
            Err(error) => {
                tracing::warn!(key = %object.location, %error, "not a ledger entry; skipped");
            }
        }
    }
    entries.sort_by(|a, b| a.started_at.cmp(&b.started_at));
    Ok(entries)
}
