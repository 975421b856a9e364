//! Hour manifests: what one seal of one hour found (docs/ARCHIVE.md, "Sealing").
//!
//! `seal/manifests/date=YYYY-MM-DD/hour=HH/manifest-<ULID>.json` lists every live object of
//! the hour (key, size, SHA-256, rows) and every leaf of its tree, in the tree's order, with
//! the root over them. A manifest is written once and never changed; a re-seal of the hour
//! (late events, compaction) writes a new one and appends it to the log.

use islets_core::layout::Partition;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::error::{Error, Result};
use crate::leaf::EventLeaf;
use crate::tree::{Digest, HourTree};

/// The manifests' prefix under the archive's root.
pub const MANIFEST_PREFIX: &str = "seal/manifests";

/// The format name written into every manifest.
pub const MANIFEST_FORMAT: &str = "islets-hour-manifest-1";

/// One object of a sealed hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestObject {
    /// Its key, relative to the archive's root.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
    /// The rows it holds.
    pub rows: u64,
}

/// One leaf of an hour's tree, as a manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestLeaf {
    /// The event's id.
    pub event_id: String,
    /// SHA-256 of the payload bytes as archived, hex.
    pub payload_sha256: String,
    /// SHA-256 of the attributes' encoding, hex.
    pub attributes_sha256: String,
}

impl From<&EventLeaf> for ManifestLeaf {
    fn from(leaf: &EventLeaf) -> Self {
        ManifestLeaf {
            event_id: leaf.event_id.clone(),
            payload_sha256: hex::encode(leaf.payload_sha256),
            attributes_sha256: hex::encode(leaf.attributes_sha256),
        }
    }
}

pub(crate) fn parse_digest(text: &str, what: &str) -> Result<Digest> {
    hex::decode(text)
        .ok()
        .and_then(|bytes| Digest::try_from(bytes.as_slice()).ok())
        .ok_or_else(|| Error::Invalid(format!("{what} '{text}' is not a hex SHA-256 digest")))
}

impl ManifestLeaf {
    /// The leaf it describes.
    pub fn leaf(&self) -> Result<EventLeaf> {
        Ok(EventLeaf {
            event_id: self.event_id.clone(),
            payload_sha256: parse_digest(&self.payload_sha256, "payload_sha256")?,
            attributes_sha256: parse_digest(&self.attributes_sha256, "attributes_sha256")?,
        })
    }
}

/// An hour's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourManifest {
    /// [`MANIFEST_FORMAT`].
    pub format: String,
    /// The hour: `events/date=2026-11-23/hour=16`.
    pub partition: String,
    /// When it was sealed (ms since the epoch).
    pub sealed_at_ms: i64,
    /// Every live object of the hour, by key.
    pub objects: Vec<ManifestObject>,
    /// How many leaves the hour's tree has.
    pub events: u64,
    /// The root of the hour's tree, hex.
    pub root: String,
    /// The tree's leaves, in its order.
    pub leaves: Vec<ManifestLeaf>,
}

impl HourManifest {
    /// The manifest of `partition` holding `objects` whose rows gave `tree`.
    pub fn new(
        partition: &Partition,
        sealed_at_ms: i64,
        mut objects: Vec<ManifestObject>,
        tree: &HourTree,
    ) -> Self {
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        HourManifest {
            format: MANIFEST_FORMAT.to_owned(),
            partition: partition.relative_dir(),
            sealed_at_ms,
            objects,
            events: tree.leaves().len() as u64,
            root: hex::encode(tree.root()),
            leaves: tree.leaves().iter().map(ManifestLeaf::from).collect(),
        }
    }

    /// A new manifest's key for `partition`, relative to the archive's root.
    pub fn new_key(partition: &Partition) -> String {
        let relative = partition.relative_dir();
        let hour = relative
            .strip_prefix(partition.table.prefix())
            .unwrap_or(&relative)
            .trim_start_matches('/');
        format!("{MANIFEST_PREFIX}/{hour}/manifest-{}.json", Ulid::new())
    }

    /// Parses a stored manifest, checking its format.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let manifest: HourManifest = serde_json::from_slice(bytes)
            .map_err(|error| Error::Invalid(format!("not an hour manifest: {error}")))?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(Error::Invalid(format!(
                "manifest format '{}' is not {MANIFEST_FORMAT}",
                manifest.format
            )));
        }
        Ok(manifest)
    }

    /// The hour's tree rebuilt from the listed leaves; fails when a leaf is malformed.
    pub fn tree(&self) -> Result<HourTree> {
        let leaves = self
            .leaves
            .iter()
            .map(ManifestLeaf::leaf)
            .collect::<Result<Vec<_>>>()?;
        Ok(HourTree::new(leaves))
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use islets_core::layout::Table;

    use super::*;
    use crate::leaf::tests::record;

    #[test]
    fn a_manifest_round_trips_and_rebuilds_its_tree() {
        let partition = Partition {
            table: Table::Events,
            date: NaiveDate::from_ymd_opt(2026, 11, 23).expect("date"),
            hour: 16,
        };
        let tree = HourTree::new([
            EventLeaf::of(&record("b", "2", &[])),
            EventLeaf::of(&record("a", "1", &[])),
        ]);
        let manifest = HourManifest::new(&partition, 5, Vec::new(), &tree);
        assert_eq!(manifest.partition, "events/date=2026-11-23/hour=16");
        assert_eq!(manifest.leaves[0].event_id, "a");
        let bytes = serde_json::to_vec(&manifest).expect("json");
        let back = HourManifest::parse(&bytes).expect("parses");
        assert_eq!(back.tree().expect("tree").root(), tree.root());
        assert!(
            HourManifest::new_key(&partition)
                .starts_with("seal/manifests/date=2026-11-23/hour=16/manifest-")
        );
        assert!(HourManifest::parse(b"{}").is_err());
        let mut other = manifest.clone();
        other.format = "v0".to_owned();
        let error =
            HourManifest::parse(&serde_json::to_vec(&other).expect("json")).expect_err("format");
        assert!(error.to_string().contains("format"), "{error}");
    }
}
