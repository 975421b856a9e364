//! Reading an hour's objects as sealing and verifying see them: each object's bytes, their
//! SHA-256, its rows as leaves.

use futures::StreamExt;
use islets_core::parquet_file::decode_all;
use islets_core::schema::events_from_batch;
use islets_core::store::Archive;
use object_store::path::Path;
use sha2_merkle::{Digest as _, Sha256};

use crate::error::Result;
use crate::leaf::EventLeaf;
use crate::manifest::ManifestObject;

/// Objects of one hour read at once.
const CONCURRENT_OBJECTS: usize = 4;

/// What one object of an hour turned out to hold.
#[derive(Debug)]
pub(crate) enum ObjectRead {
    /// The object is not in the store.
    Missing,
    /// Its bytes, as a manifest records them, and its rows' leaves, in row order; `leaves`
    /// is `Err` (why) when the bytes are not an events file.
    Read {
        /// Key, size, SHA-256 and rows, as a manifest lists them.
        object: ManifestObject,
        /// Its rows' leaves, or why it cannot be decoded.
        leaves: std::result::Result<Vec<EventLeaf>, String>,
    },
}

/// Reads the object at `key` (relative to the archive's root).
pub(crate) async fn read_object(archive: &Archive, key: &str) -> Result<ObjectRead> {
    let location = islets_core::layout::join(archive.root(), key);
    let Some(bytes) = archive.get_if_exists(&location).await? else {
        return Ok(ObjectRead::Missing);
    };
    let size = bytes.len() as u64;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let leaves = tokio_decode(bytes).await;
    let rows = leaves.as_ref().map_or(0, |leaves| leaves.len() as u64);
    Ok(ObjectRead::Read {
        object: ManifestObject {
            key: key.to_owned(),
            size,
            sha256,
            rows,
        },
        leaves,
    })
}

async fn tokio_decode(bytes: bytes::Bytes) -> std::result::Result<Vec<EventLeaf>, String> {
    let decoded = tokio::task::spawn_blocking(move || {
        let batches = decode_all(bytes).map_err(|error| error.to_string())?;
        let mut leaves = Vec::new();
        for batch in &batches {
            let records = events_from_batch(batch).map_err(|error| error.to_string())?;
            leaves.extend(records.iter().map(EventLeaf::of));
        }
        Ok(leaves)
    })
    .await;
    decoded.unwrap_or_else(|error| Err(format!("decoding failed: {error}")))
}

/// Reads every object of `keys`, a few at a time, in the order given.
pub(crate) async fn read_objects(archive: &Archive, keys: &[String]) -> Result<Vec<ObjectRead>> {
    futures::stream::iter(keys)
        .map(|key| read_object(archive, key))
        .buffered(CONCURRENT_OBJECTS)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// `location`'s key relative to the archive's root.
pub(crate) fn relative(archive: &Archive, location: &Path) -> String {
    location
        .prefix_match(archive.root())
        .map(|parts| {
            parts
                .map(|part| part.as_ref().to_owned())
                .collect::<Vec<_>>()
                .join("/")
        })
        .unwrap_or_else(|| location.to_string())
}
