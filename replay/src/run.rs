//! Sending: events from the selection stream are spread over `--concurrency` lanes, each
//! lane sends batches of up to 10 (PublishBatch / SendMessageBatch) paced by one shared
//! `--rate`, retries throttled or partially failed batches with backoff and jitter, and
//! records what was delivered in the checkpoint, so `--resume` sends only the rest.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use islets_query::engine::EventStream;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use crate::error::{ReplayError, Result};
use crate::message::{Markers, Marking, OutMessage};
use crate::target::{Retry, Sender, TargetSpec};

/// Messages per SNS PublishBatch / SQS SendMessageBatch call.
pub const BATCH_SIZE: usize = 10;
/// Attempts per batch before its remaining messages count as failed.
const MAX_ATTEMPTS: u32 = 8;
/// Failed ids kept in the summary and the report.
const FAILED_IDS_KEPT: usize = 1_000;

/// In which order events are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SendOrder {
    /// Any order, all lanes in parallel (fastest).
    None,
    /// Strictly by published time: one lane.
    Time,
    /// By published time within each correlation id; correlations in parallel.
    PerCorrelation,
}

/// How to send.
#[derive(Debug, Clone)]
pub struct SendOptions {
    pub concurrency: usize,
    /// Events per second, at most.
    pub rate: Option<f64>,
    pub order: SendOrder,
    /// Draw a progress bar (a terminal), else log a line every few seconds.
    pub progress_bar: bool,
}

/// What happened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub sent: u64,
    pub failed: u64,
    /// Already delivered according to the checkpoint (`--resume`).
    pub skipped_done: u64,
    /// Cannot go to the target (no original topic).
    pub skipped_unsendable: u64,
    /// Sent with the combined marker, or with none (the original used all 10 attributes).
    pub combined_markers: u64,
    pub without_markers: u64,
    /// Failed ids and why (the first 1,000).
    pub failed_ids: BTreeMap<String, String>,
    pub seconds: f64,
    /// Stopped by Ctrl-C / SIGTERM, or by the target refusing the calls.
    pub interrupted: bool,
    /// Why the target refused the replay, if it did.
    pub refused: Option<String>,
}

impl Outcome {
    /// Events sent per second.
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.sent as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// One replay's progress on disk: a header line, then one delivered event id per line,
/// appended (and synced) after each batch is acknowledged. After a crash at most the
/// batches in flight were sent but not recorded, so a resume repeats at most those.
pub struct Checkpoint {
    file: std::fs::File,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct CheckpointHeader {
    replay_id: String,
    id_set_sha256: String,
}

impl Checkpoint {
    /// Starts a new checkpoint; refuses to overwrite one (resume it, or remove it).
    pub fn create(path: &Path, replay_id: &str, id_set_sha256: &str) -> Result<Self> {
        let mut file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(path)
            .map_err(|error| {
                ReplayError::Usage(format!(
                    "--checkpoint {}: {error} (an existing checkpoint is continued with --resume, or removed by hand)",
                    path.display()
                ))
            })?;
        let header = CheckpointHeader {
            replay_id: replay_id.to_owned(),
            id_set_sha256: id_set_sha256.to_owned(),
        };
        let line = serde_json::to_string(&header).unwrap_or_default();
        writeln!(file, "{line}")
            .and_then(|()| file.sync_data())
            .map_err(ReplayError::io(format!("--checkpoint {}", path.display())))?;
        Ok(Checkpoint { file })
    }

    /// Reopens a checkpoint: the replay id, and the ids already delivered. Refuses a
    /// checkpoint of another selection.
    pub fn resume(path: &Path, id_set_sha256: &str) -> Result<(Self, String, HashSet<String>)> {
        let context = || format!("--checkpoint {}", path.display());
        let file = std::fs::File::open(path).map_err(|error| {
            ReplayError::Usage(format!("{}: cannot resume from it: {error}", context()))
        })?;
        let mut lines = std::io::BufReader::new(file).lines();
        let header: CheckpointHeader = lines
            .next()
            .transpose()
            .map_err(ReplayError::io(context()))?
            .and_then(|line| serde_json::from_str(&line).ok())
            .ok_or_else(|| ReplayError::Usage(format!("{}: not a replay checkpoint", context())))?;
        if header.id_set_sha256 != id_set_sha256 {
            return Err(ReplayError::PlanMismatch(format!(
                "{}: it belongs to another selection or target (sha256:{} there, sha256:{id_set_sha256} now); resume with the same flags or plan",
                context(),
                header.id_set_sha256
            )));
        }
        let mut done = HashSet::new();
        for line in lines {
            let line = line.map_err(ReplayError::io(context()))?;
            // A line cut by a crash is not a delivered id.
            if let Some(id) = line.strip_suffix('\t') {
                done.insert(id.to_owned());
            }
        }
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(ReplayError::io(context()))?;
        Ok((Checkpoint { file }, header.replay_id, done))
    }

    fn record(&mut self, ids: &[&str]) -> std::io::Result<()> {
        let mut text = String::new();
        for id in ids {
            text.push_str(id);
            // The terminator tells a complete line from one cut short.
            text.push_str("\t\n");
        }
        self.file.write_all(text.as_bytes())?;
        self.file.sync_data()
    }
}

/// Paces sends to `rate` events per second over the whole replay: the n-th event may go
/// once n / rate seconds have passed since the start.
struct Pacer {
    rate: f64,
    start: tokio::time::Instant,
    granted: Mutex<u64>,
}

impl Pacer {
    async fn acquire(&self, events: usize) {
        let at = {
            let mut granted = self.granted.lock().await;
            *granted += events as u64;
            self.start + Duration::from_secs_f64(*granted as f64 / self.rate)
        };
        tokio::time::sleep_until(at).await;
    }
}

struct Shared {
    sender: Arc<dyn Sender>,
    pacer: Option<Pacer>,
    checkpoint: Option<Mutex<Checkpoint>>,
    sent: AtomicU64,
    failed: AtomicU64,
    failed_ids: Mutex<BTreeMap<String, String>>,
    fatal: Mutex<Option<String>>,
    stop: CancellationToken,
    progress: indicatif::ProgressBar,
    checkpoint_failed: AtomicBool,
}

impl Shared {
    async fn fail(&self, messages: &[&OutMessage], reason: &str) {
        self.failed
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        let mut failed = self.failed_ids.lock().await;
        for message in messages {
            if failed.len() < FAILED_IDS_KEPT {
                failed.insert(message.event_id.clone(), reason.to_owned());
            }
        }
    }

    /// Sends one batch, retrying what can be retried.
    async fn send_batch(&self, destination: &str, batch: Vec<OutMessage>) {
        if let Some(pacer) = &self.pacer {
            pacer.acquire(batch.len()).await;
        }
        let mut pending: Vec<OutMessage> = batch;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (delivered, retry, reason): (Vec<&OutMessage>, Vec<OutMessage>, String) =
                match self.sender.send(destination, &pending).await {
                    Ok(outcome) => {
                        let mut failed_indexes = HashSet::new();
                        let mut retry = Vec::new();
                        let mut refused = Vec::new();
                        let mut reason = String::new();
                        for (index, kind, why) in outcome.failed {
                            failed_indexes.insert(index);
                            if let Some(message) = pending.get(index) {
                                match kind {
                                    Retry::Yes => retry.push(message.clone()),
                                    Retry::No => refused.push((message, why.clone())),
                                }
                            }
                            reason = why;
                        }
                        for (message, why) in refused {
                            self.fail(&[message], &why).await;
                        }
                        let delivered = pending
                            .iter()
                            .enumerate()
                            .filter(|(index, _)| !failed_indexes.contains(index))
                            .map(|(_, message)| message)
                            .collect();
                        (delivered, retry, reason)
                    }
                    Err((Retry::Yes, reason)) => (Vec::new(), pending.clone(), reason),
                    Err((Retry::No, reason)) => {
                        // The target refuses the call itself: nothing later will pass.
                        let all: Vec<&OutMessage> = pending.iter().collect();
                        self.fail(&all, &reason).await;
                        self.fatal.lock().await.get_or_insert(reason);
                        self.stop.cancel();
                        return;
                    }
                };
            if !delivered.is_empty() {
                self.sent
                    .fetch_add(delivered.len() as u64, Ordering::Relaxed);
                self.progress.inc(delivered.len() as u64);
                if let Some(checkpoint) = &self.checkpoint {
                    let ids: Vec<&str> = delivered.iter().map(|m| m.event_id.as_str()).collect();
                    if let Err(error) = checkpoint.lock().await.record(&ids) {
                        tracing::error!(%error, "cannot write the checkpoint; stopping");
                        self.checkpoint_failed.store(true, Ordering::Relaxed);
                        self.stop.cancel();
                    }
                }
            }
            if retry.is_empty() {
                return;
            }
            if attempt >= MAX_ATTEMPTS || self.stop.is_cancelled() {
                let left: Vec<&OutMessage> = retry.iter().collect();
                self.fail(
                    &left,
                    &format!("gave up after {attempt} attempts: {reason}"),
                )
                .await;
                return;
            }
            let backoff = Duration::from_millis(200 * (1 << (attempt - 1).min(6)));
            let jitter = rand::rng().random_range(0.5..1.0);
            tracing::warn!(
                destination,
                attempt,
                retrying = retry.len(),
                %reason,
                "send failed; retrying"
            );
            tokio::time::sleep(backoff.mul_f64(jitter)).await;
            pending = retry;
        }
    }
}

/// One lane: batches per destination, sent one after the other.
async fn lane(shared: Arc<Shared>, mut messages: mpsc::Receiver<(String, OutMessage)>) {
    let mut batches: BTreeMap<String, Vec<OutMessage>> = BTreeMap::new();
    while let Some((destination, message)) = messages.recv().await {
        if shared.stop.is_cancelled() {
            return;
        }
        let batch = batches.entry(destination.clone()).or_default();
        batch.push(message);
        if batch.len() == BATCH_SIZE {
            let full = std::mem::take(batch);
            shared.send_batch(&destination, full).await;
        }
    }
    if shared.stop.is_cancelled() {
        return;
    }
    for (destination, batch) in batches {
        if !batch.is_empty() {
            shared.send_batch(&destination, batch).await;
        }
    }
}

/// Sends every event of `events` (minus those in `done`) to `target`.
#[allow(clippy::too_many_arguments)]
pub async fn send_all(
    mut events: EventStream,
    total: u64,
    target: &TargetSpec,
    sender: Arc<dyn Sender>,
    markers: &Markers,
    options: &SendOptions,
    checkpoint: Option<Checkpoint>,
    done: &HashSet<String>,
    cancel: CancellationToken,
) -> Result<Outcome> {
    let started = Instant::now();
    let lanes = match options.order {
        SendOrder::Time => 1,
        _ => options.concurrency.max(1),
    };
    let progress = if options.progress_bar {
        let bar = indicatif::ProgressBar::new(total.saturating_sub(done.len() as u64));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{wide_bar}] {pos}/{len} {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let stop = cancel.child_token();
    let shared = Arc::new(Shared {
        sender,
        pacer: options.rate.map(|rate| Pacer {
            rate,
            start: tokio::time::Instant::now(),
            granted: Mutex::new(0),
        }),
        checkpoint: checkpoint.map(Mutex::new),
        sent: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        failed_ids: Mutex::new(BTreeMap::new()),
        fatal: Mutex::new(None),
        stop: stop.clone(),
        progress: progress.clone(),
        checkpoint_failed: AtomicBool::new(false),
    });
    let logger = (!options.progress_bar).then(|| {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(5));
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let sent = shared.sent.load(Ordering::Relaxed);
                let seconds = started.elapsed().as_secs_f64();
                tracing::info!(
                    sent,
                    of = total,
                    failed = shared.failed.load(Ordering::Relaxed),
                    rate = format!("{:.0}/s", sent as f64 / seconds.max(0.001)),
                    "replaying"
                );
            }
        })
    });
    let mut senders = Vec::with_capacity(lanes);
    let mut tasks = Vec::with_capacity(lanes);
    for _ in 0..lanes {
        let (tx, rx) = mpsc::channel(4 * BATCH_SIZE);
        senders.push(tx);
        tasks.push(tokio::spawn(lane(shared.clone(), rx)));
    }
    let mut outcome = Outcome::default();
    let mut next_lane = 0usize;
    let read: Result<()> = async {
        loop {
            let event = tokio::select! {
                () = stop.cancelled() => break,
                event = events.try_next() => event.map_err(ReplayError::Query)?,
            };
            let Some(event) = event else { break };
            if done.contains(&event.event_id) {
                outcome.skipped_done += 1;
                continue;
            }
            let message = OutMessage::new(event, markers);
            let Some(destination) = target.destination(&message) else {
                outcome.skipped_unsendable += 1;
                continue;
            };
            match message.marking {
                Marking::Full => {}
                Marking::Combined => outcome.combined_markers += 1,
                Marking::None => outcome.without_markers += 1,
            }
            let lane = match options.order {
                SendOrder::Time => 0,
                SendOrder::PerCorrelation => {
                    let mut hasher = std::collections::hash_map::DefaultHasher::new();
                    message
                        .correlation_id
                        .as_deref()
                        .unwrap_or(&message.event_id)
                        .hash(&mut hasher);
                    (hasher.finish() % lanes as u64) as usize
                }
                SendOrder::None => {
                    next_lane = (next_lane + 1) % lanes;
                    next_lane
                }
            };
            if senders[lane].send((destination, message)).await.is_err() {
                break;
            }
        }
        Ok(())
    }
    .await;
    drop(senders);
    for task in tasks {
        let _ = task.await;
    }
    if let Some(logger) = logger {
        logger.abort();
    }
    progress.finish_and_clear();
    read?;
    outcome.sent = shared.sent.load(Ordering::Relaxed);
    outcome.failed = shared.failed.load(Ordering::Relaxed);
    outcome.failed_ids = shared.failed_ids.lock().await.clone();
    outcome.seconds = started.elapsed().as_secs_f64();
    outcome.interrupted = cancel.is_cancelled();
    if shared.checkpoint_failed.load(Ordering::Relaxed) {
        return Err(ReplayError::Send(
            "the checkpoint could not be written; stopped (the events sent so far are in the report)".to_owned(),
        ));
    }
    if let Some(fatal) = shared.fatal.lock().await.take() {
        tracing::error!(%fatal, "the target refused the replay");
        outcome.interrupted = true;
        outcome.refused = Some(fatal);
    }
    Ok(outcome)
}

/// Where a checkpoint lives, and whether to continue it.
#[derive(Debug, Clone)]
pub struct CheckpointOptions {
    pub path: PathBuf,
    pub resume: bool,
}
