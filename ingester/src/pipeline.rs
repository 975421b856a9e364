//! Buffer → Parquet → store → acknowledge.
//!
//! Sources decode their messages and send [`DecodedBatch`]es. The batcher appends them to
//! one buffer and flushes it when it holds `max_rows` rows, `max_bytes` bytes, or its oldest
//! message is `max_age` old. A flush encodes one Parquet file per table and hour partition
//! (CPU work, on the blocking pool), stores every file, and only when **all** of them are
//! stored acknowledges the batch's messages: SQS messages are deleted, HTTP callers are
//! answered. A flush that cannot store its files acknowledges nothing, so SQS delivers the
//! messages again (duplicates, never loss). See `ingester/DESIGN.md`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use islets_core::catalog::Catalog;
use islets_core::decode::{PAYLOAD_NOT_JSON, decode};
use islets_core::layout::{DataFile, Partition, Table};
use islets_core::parquet_file::{self, FileMetadata};
use islets_core::record::{Decoded, Delivery, EventRecord, IngestSource, QuarantineRecord};
use islets_core::schema::{events_batch, quarantine_batch};
use islets_core::store::Archive;
use object_store::path::Path;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::FlushLimits;
use crate::error::{Error, Result};
use crate::metrics::{EventLabels, Metrics, TableLabels, source_label};
use crate::queue::Queue;
use crate::visibility::Heartbeat;

/// How a batch's messages are acknowledged once their rows are durable.
#[derive(Debug)]
pub(crate) enum Ack {
    /// Delete these SQS receipt handles.
    Sqs(Vec<String>),
    /// Answer a waiting HTTP request.
    Respond(oneshot::Sender<std::result::Result<BatchOutcome, String>>),
    /// Nothing to acknowledge (file input).
    Nothing,
}

/// What one batch of messages became.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct BatchOutcome {
    /// Messages received.
    pub messages: usize,
    /// Rows written to the events table.
    pub events: usize,
    /// Of those, rows that failed their JSON Schema.
    pub schema_invalid: usize,
    /// Rows written to the quarantine table.
    pub quarantined: usize,
}

/// Decoded messages of one source batch, with how to acknowledge them.
#[derive(Debug)]
pub(crate) struct DecodedBatch {
    pub source: IngestSource,
    pub events: Vec<EventRecord>,
    pub quarantined: Vec<QuarantineRecord>,
    pub ack: Ack,
}

impl DecodedBatch {
    /// Decodes deliveries (CPU work: call from a blocking thread for large batches).
    pub(crate) fn decode(
        deliveries: &[Delivery],
        catalog: &Catalog,
        source: IngestSource,
        ack: Ack,
    ) -> Self {
        let mut events = Vec::with_capacity(deliveries.len());
        let mut quarantined = Vec::new();
        for delivery in deliveries {
            match decode(delivery, catalog) {
                Decoded::Event(event) => events.push(*event),
                Decoded::Quarantine(record) => quarantined.push(*record),
            }
        }
        DecodedBatch {
            source,
            events,
            quarantined,
            ack,
        }
    }

    fn outcome(&self) -> BatchOutcome {
        BatchOutcome {
            messages: self.events.len() + self.quarantined.len(),
            events: self.events.len(),
            schema_invalid: self
                .events
                .iter()
                .filter(|event| !event.schema_valid)
                .count(),
            quarantined: self.quarantined.len(),
        }
    }
}

/// Totals of a pipeline run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PipelineSummary {
    /// Messages received.
    pub messages: usize,
    /// Events archived.
    pub events: usize,
    /// Events archived that fail their schema.
    pub schema_invalid: usize,
    /// Messages quarantined (undecodable).
    pub quarantined: usize,
    /// Files written.
    pub files: usize,
    /// Messages whose rows could not be stored (not acknowledged: SQS redelivers them).
    pub failed_messages: usize,
}

/// What the pipeline needs from the outside.
#[derive(Clone)]
pub(crate) struct PipelineContext {
    pub archive: Archive,
    pub metrics: Arc<Metrics>,
    /// The queue SQS acknowledgements go to.
    pub queue: Option<Arc<dyn Queue>>,
    /// Keeps held SQS messages hidden until they are acknowledged or given up.
    pub heartbeat: Option<Arc<Heartbeat>>,
    /// The events catalog: metric labels name only its aggregates and event types.
    pub catalog: Arc<Catalog>,
    /// Identifies this process in every file's metadata.
    pub writer_id: String,
    /// How storing a buffer is retried before it is given up.
    pub retry: FlushRetry,
}

/// Retries of a flush whose files could not be stored: the workspace's one policy
/// (exponential backoff with full jitter), bounded in attempts. With object_store's own
/// retries inside each attempt: minutes, not hours, before a buffer is given up and SQS
/// redelivers its messages.
pub(crate) type FlushRetry = islets_core::retry::RetryPolicy;

/// The default retry policy of a flush: 6 attempts, delays up to 2 s, 4 s, ... 64 s.
pub const FLUSH_RETRY: FlushRetry =
    FlushRetry::new(Duration::from_secs(2), Duration::from_secs(64), Some(6));

/// A running pipeline: send batches, then drop the sender and await the summary.
pub(crate) struct Pipeline {
    pub batches_tx: mpsc::Sender<DecodedBatch>,
    pub task: tokio::task::JoinHandle<Result<PipelineSummary>>,
}

/// Batches waiting for the batcher; sources block beyond this (back-pressure).
const CHANNEL_CAPACITY: usize = 64;

impl Pipeline {
    /// Starts the batcher. Once `drain` is cancelled every batch is flushed as soon as it
    /// arrives, so shutdown does not wait for `max_age`.
    pub(crate) fn start(
        context: PipelineContext,
        limits: FlushLimits,
        drain: CancellationToken,
    ) -> Self {
        let (batches_tx, batches_rx) = mpsc::channel(CHANNEL_CAPACITY);
        let task = tokio::spawn(run_batcher(batches_rx, Arc::new(context), limits, drain));
        Pipeline { batches_tx, task }
    }
}

#[derive(Default)]
struct Buffer {
    events: Vec<EventRecord>,
    quarantined: Vec<QuarantineRecord>,
    acks: Vec<(Ack, BatchOutcome)>,
    source: Option<IngestSource>,
    bytes: usize,
    oldest: Option<Instant>,
}

impl Buffer {
    fn push(&mut self, batch: DecodedBatch) {
        let outcome = batch.outcome();
        self.bytes += batch
            .events
            .iter()
            .map(EventRecord::approximate_size)
            .sum::<usize>()
            + batch
                .quarantined
                .iter()
                .map(QuarantineRecord::approximate_size)
                .sum::<usize>();
        self.source.get_or_insert(batch.source);
        self.oldest.get_or_insert_with(Instant::now);
        self.events.extend(batch.events);
        self.quarantined.extend(batch.quarantined);
        self.acks.push((batch.ack, outcome));
    }

    fn rows(&self) -> usize {
        self.events.len() + self.quarantined.len()
    }

    fn is_empty(&self) -> bool {
        self.acks.is_empty()
    }

    fn is_full(&self, limits: &FlushLimits) -> bool {
        self.rows() >= limits.max_rows || self.bytes >= limits.max_bytes
    }

    fn is_due(&self, limits: &FlushLimits) -> bool {
        self.oldest
            .is_some_and(|oldest| oldest.elapsed() >= limits.max_age)
    }
}

async fn run_batcher(
    mut batches_rx: mpsc::Receiver<DecodedBatch>,
    context: Arc<PipelineContext>,
    limits: FlushLimits,
    drain: CancellationToken,
) -> Result<PipelineSummary> {
    let permits = Arc::new(Semaphore::new(limits.max_concurrent_flushes));
    let mut flushes: JoinSet<FlushReport> = JoinSet::new();
    let mut buffer = Buffer::default();
    let mut summary = PipelineSummary::default();
    let mut draining = false;
    let tick = (limits.max_age / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            batch = batches_rx.recv() => {
                let Some(batch) = batch else { break };
                buffer.push(batch);
                context.metrics.buffered_rows.set(i64::try_from(buffer.rows()).unwrap_or(i64::MAX));
                if draining || buffer.is_full(&limits) {
                    start_flush(&mut buffer, &context, &permits, &mut flushes).await;
                }
            }
            _ = ticker.tick() => {
                if buffer.is_due(&limits) {
                    start_flush(&mut buffer, &context, &permits, &mut flushes).await;
                }
            }
            _ = drain.cancelled(), if !draining => {
                draining = true;
                start_flush(&mut buffer, &context, &permits, &mut flushes).await;
            }
            Some(report) = flushes.join_next(), if !flushes.is_empty() => {
                summary.absorb(report);
            }
        }
    }
    start_flush(&mut buffer, &context, &permits, &mut flushes).await;
    while let Some(report) = flushes.join_next().await {
        summary.absorb(report);
    }
    if summary.failed_messages > 0 {
        return Err(Error::Flush(format!(
            "{} messages could not be stored; they were not acknowledged (SQS delivers them again)",
            summary.failed_messages
        )));
    }
    Ok(summary)
}

async fn start_flush(
    buffer: &mut Buffer,
    context: &Arc<PipelineContext>,
    permits: &Arc<Semaphore>,
    flushes: &mut JoinSet<FlushReport>,
) {
    if buffer.is_empty() {
        return;
    }
    // Waiting for a permit stops the batcher reading batches: back-pressure on sources.
    let Ok(permit) = permits.clone().acquire_owned().await else {
        return;
    };
    let taken = std::mem::take(buffer);
    context.metrics.buffered_rows.set(0);
    flushes.spawn(flush(context.clone(), taken, permit));
}

type FlushReport = std::result::Result<PipelineSummary, PipelineSummary>;

impl PipelineSummary {
    fn absorb(&mut self, report: std::result::Result<FlushReport, tokio::task::JoinError>) {
        let part = match report {
            Ok(Ok(part)) | Ok(Err(part)) => part,
            Err(error) => {
                tracing::error!(%error, "flush task failed");
                return;
            }
        };
        self.messages += part.messages;
        self.events += part.events;
        self.schema_invalid += part.schema_invalid;
        self.quarantined += part.quarantined;
        self.files += part.files;
        self.failed_messages += part.failed_messages;
    }
}

struct EncodedFile {
    file: DataFile,
    key: Path,
    table: Table,
    bytes: Bytes,
}

/// Groups rows by table and hour partition, sorts each group by time, encodes one file each.
fn encode_files(
    root: &Path,
    events: Vec<EventRecord>,
    quarantined: Vec<QuarantineRecord>,
    source: IngestSource,
    writer_id: &str,
) -> Result<Vec<EncodedFile>> {
    let mut files = Vec::new();
    let mut event_groups: BTreeMap<Partition, Vec<EventRecord>> = BTreeMap::new();
    for event in events {
        let partition = Partition::for_timestamp_ms(Table::Events, event.published_at_ms);
        event_groups.entry(partition).or_default().push(event);
    }
    for (partition, mut group) in event_groups {
        group.sort_by(|a, b| {
            (a.published_at_ms, &a.event_id).cmp(&(b.published_at_ms, &b.event_id))
        });
        let batch = events_batch(&group)?;
        files.push(encode_one(root, partition, &batch, source, writer_id)?);
    }
    let mut quarantine_groups: BTreeMap<Partition, Vec<QuarantineRecord>> = BTreeMap::new();
    for record in quarantined {
        let partition = Partition::for_timestamp_ms(Table::Quarantine, record.ingested_at_ms);
        quarantine_groups.entry(partition).or_default().push(record);
    }
    for (partition, group) in quarantine_groups {
        let batch = quarantine_batch(&group)?;
        files.push(encode_one(root, partition, &batch, source, writer_id)?);
    }
    Ok(files)
}

fn encode_one(
    root: &Path,
    partition: Partition,
    batch: &arrow_array::RecordBatch,
    source: IngestSource,
    writer_id: &str,
) -> Result<EncodedFile> {
    let metadata = FileMetadata {
        table: partition.table,
        source: source.as_str().to_owned(),
        writer_id: writer_id.to_owned(),
    };
    let bytes = parquet_file::encode(batch, &metadata)?;
    let file = DataFile::new(partition);
    Ok(EncodedFile {
        file,
        key: file.key(root),
        table: partition.table,
        bytes,
    })
}

async fn flush(
    context: Arc<PipelineContext>,
    buffer: Buffer,
    _permit: OwnedSemaphorePermit,
) -> FlushReport {
    let started = Instant::now();
    let Buffer {
        events,
        quarantined,
        acks,
        source,
        ..
    } = buffer;
    let source = source.unwrap_or(IngestSource::File);
    let mut report = PipelineSummary::default();
    for (_, outcome) in &acks {
        report.messages += outcome.messages;
        report.events += outcome.events;
        report.schema_invalid += outcome.schema_invalid;
        report.quarantined += outcome.quarantined;
    }
    let mut per_event_type: HashMap<EventLabels, (u64, u64, u64)> = HashMap::new();
    for event in &events {
        let labels = EventLabels::bounded(
            &context.catalog,
            event.aggregate.as_deref(),
            event.event_type.as_deref(),
        );
        let entry = per_event_type.entry(labels).or_default();
        entry.0 += 1;
        entry.1 += event.payload.len() as u64;
        entry.2 += u64::from(!event.schema_valid);
    }
    let decode_failures = quarantined.len() as u64
        + events
            .iter()
            .filter(|event| event.schema_error.as_deref() == Some(PAYLOAD_NOT_JSON))
            .count() as u64;

    let root = context.archive.root().clone();
    let writer_id = context.writer_id.clone();
    let encoded = tokio::task::spawn_blocking(move || {
        encode_files(&root, events, quarantined, source, &writer_id)
    })
    .await;
    let files = match encoded {
        Ok(Ok(files)) => files,
        Ok(Err(error)) => return Err(fail(&context, acks, report, &error.to_string()).await),
        Err(error) => return Err(fail(&context, acks, report, &error.to_string()).await),
    };

    let mut stored = vec![false; files.len()];
    let mut attempt = 0;
    loop {
        let pending: Vec<_> = files
            .iter()
            .enumerate()
            .filter(|(index, _)| !stored[*index])
            .map(|(index, file)| {
                let archive = context.archive.clone();
                async move { (index, archive.put(&file.key, file.bytes.clone()).await) }
            })
            .collect();
        let mut last_error = None;
        for (index, result) in futures::future::join_all(pending).await {
            match result {
                Ok(()) => stored[index] = true,
                Err(error) => last_error = Some(error),
            }
        }
        let Some(error) = last_error else { break };
        attempt += 1;
        context.metrics.flush_failures.inc();
        tracing::warn!(%error, attempt, "storing a flush failed; retrying");
        if !context.retry.may_retry(attempt) {
            return Err(fail(&context, acks, report, &error.to_string()).await);
        }
        tokio::time::sleep(context.retry.delay(attempt)).await;
    }

    // Every file is durable: name them in the journal so that readers find them within
    // seconds whatever their hour (a hint only: a failure delays visibility, loses nothing).
    let stored_files: Vec<DataFile> = files.iter().map(|file| file.file).collect();
    if let Err(error) = context.archive.append_journal(&stored_files).await {
        context.metrics.journal_failures.inc();
        tracing::warn!(%error, "the journal entry of a flush was not written; its files are stored");
    }

    // Every file is durable: now, and only now, acknowledge.
    let metrics = &context.metrics;
    metrics
        .last_flush_completed_ms
        .set(chrono::Utc::now().timestamp_millis());
    for file in &files {
        let labels = TableLabels {
            table: file.table.prefix().to_owned(),
        };
        metrics.files_written.get_or_create(&labels).inc();
        metrics
            .file_bytes_written
            .get_or_create(&labels)
            .inc_by(file.bytes.len() as u64);
    }
    report.files = files.len();
    metrics
        .flush_seconds
        .observe(started.elapsed().as_secs_f64());
    for (labels, (count, bytes, invalid)) in per_event_type {
        metrics.events_archived.get_or_create(&labels).inc_by(count);
        metrics
            .event_bytes_archived
            .get_or_create(&labels)
            .inc_by(bytes);
        if invalid > 0 {
            metrics
                .schema_invalid
                .get_or_create(&labels)
                .inc_by(invalid);
        }
    }
    let source_labels = source_label(source.as_str());
    metrics
        .quarantined
        .get_or_create(&source_labels)
        .inc_by(report.quarantined as u64);
    metrics
        .decode_failures
        .get_or_create(&source_labels)
        .inc_by(decode_failures);
    acknowledge(&context, acks, source).await;
    tracing::info!(
        files = report.files,
        events = report.events,
        quarantined = report.quarantined,
        seconds = started.elapsed().as_secs_f64(),
        "flushed"
    );
    Ok(report)
}

async fn acknowledge(
    context: &PipelineContext,
    acks: Vec<(Ack, BatchOutcome)>,
    source: IngestSource,
) {
    let mut receipt_handles = Vec::new();
    let mut acknowledged = 0u64;
    for (ack, outcome) in acks {
        match ack {
            Ack::Sqs(handles) => receipt_handles.extend(handles),
            Ack::Respond(reply_tx) => {
                acknowledged += outcome.messages as u64;
                // The caller may have gone away; its rows are stored all the same.
                let _ = reply_tx.send(Ok(outcome));
            }
            Ack::Nothing => acknowledged += outcome.messages as u64,
        }
    }
    if !receipt_handles.is_empty() {
        let count = receipt_handles.len() as u64;
        if let Some(queue) = &context.queue {
            // Stored: no longer extended, whether or not the delete succeeds.
            if let Some(heartbeat) = &context.heartbeat {
                heartbeat.release(&receipt_handles);
            }
            let mut failed = queue
                .delete(&receipt_handles)
                .await
                .unwrap_or(receipt_handles);
            if !failed.is_empty() {
                failed = queue.delete(&failed).await.unwrap_or(failed);
            }
            if !failed.is_empty() {
                tracing::warn!(
                    count = failed.len(),
                    "messages not deleted; SQS will deliver them again (duplicates are collapsed by event_id)"
                );
            }
        }
        context
            .metrics
            .unacknowledged_messages
            .dec_by(i64::try_from(count).unwrap_or(i64::MAX));
        acknowledged += count;
    }
    context
        .metrics
        .messages_acknowledged
        .get_or_create(&source_label(source.as_str()))
        .inc_by(acknowledged);
}

/// Gives a buffer up: nothing is acknowledged (SQS redelivers, HTTP callers get an error).
async fn fail(
    context: &PipelineContext,
    acks: Vec<(Ack, BatchOutcome)>,
    mut report: PipelineSummary,
    error: &str,
) -> PipelineSummary {
    tracing::error!(
        error,
        messages = report.messages,
        "could not store a buffer; its messages are not acknowledged"
    );
    for (ack, _) in acks {
        match ack {
            Ack::Sqs(handles) => {
                // No longer extended: SQS delivers them again after the timeout.
                if let Some(heartbeat) = &context.heartbeat {
                    heartbeat.release(&handles);
                }
                context
                    .metrics
                    .unacknowledged_messages
                    .dec_by(i64::try_from(handles.len()).unwrap_or(i64::MAX));
            }
            Ack::Respond(reply_tx) => {
                let _ = reply_tx.send(Err(error.to_owned()));
            }
            Ack::Nothing => {}
        }
    }
    report.failed_messages = report.messages;
    report.events = 0;
    report.quarantined = 0;
    report.schema_invalid = 0;
    report
}
