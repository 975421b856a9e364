//! The file source: an NDJSON file, one SQS message body per line (blank lines skipped).

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use islets_core::catalog::Catalog;
use islets_core::record::{Delivery, IngestSource};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::metrics::{Metrics, source_label};
use crate::pipeline::{Ack, DecodedBatch};

/// Lines decoded and sent per batch.
const LINES_PER_BATCH: usize = 1_000;

/// Reads `input` to the end (or until `shutdown`), sending decoded batches. Returns the
/// number of messages read.
pub(crate) async fn run(
    input: PathBuf,
    catalog: Arc<Catalog>,
    metrics: Arc<Metrics>,
    batches_tx: mpsc::Sender<DecodedBatch>,
    shutdown: CancellationToken,
) -> Result<usize> {
    let file = std::fs::File::open(&input).map_err(|source| Error::Io {
        context: format!("cannot open --input {}", input.display()),
        source,
    })?;
    tokio::task::spawn_blocking(move || {
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        let mut line = Vec::new();
        let mut chunk = Vec::with_capacity(LINES_PER_BATCH);
        let mut total = 0usize;
        let labels = source_label(IngestSource::File.as_str());
        loop {
            line.clear();
            let read = reader
                .read_until(b'\n', &mut line)
                .map_err(|source| Error::Io {
                    context: format!("cannot read {}", input.display()),
                    source,
                })?;
            if read > 0 {
                while line
                    .last()
                    .is_some_and(|byte| *byte == b'\n' || *byte == b'\r')
                {
                    line.pop();
                }
                if !line.iter().all(u8::is_ascii_whitespace) {
                    chunk.push(Delivery {
                        body: Bytes::copy_from_slice(&line),
                        sqs: None,
                        source: IngestSource::File,
                        received_at_ms: chrono::Utc::now().timestamp_millis(),
                    });
                }
            }
            let at_end = read == 0;
            if chunk.len() >= LINES_PER_BATCH || (at_end && !chunk.is_empty()) {
                total += chunk.len();
                metrics
                    .messages_received
                    .get_or_create(&labels)
                    .inc_by(chunk.len() as u64);
                let batch =
                    DecodedBatch::decode(&chunk, &catalog, IngestSource::File, Ack::Nothing);
                chunk.clear();
                if batches_tx.blocking_send(batch).is_err() || shutdown.is_cancelled() {
                    break;
                }
            }
            if at_end {
                break;
            }
        }
        Ok(total)
    })
    .await
    .map_err(|error| Error::Flush(format!("file reader stopped: {error}")))?
}
