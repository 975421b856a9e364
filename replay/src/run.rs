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
use islets_core::retry::RetryPolicy;
use islets_query::EventStream;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use crate::error::{ReplayError, Result};
use crate::message::{Markers, Marking, OutMessage};
use crate::target::{Retry, Sender, TargetSpec};

/// Messages per SNS PublishBatch / SQS SendMessageBatch call.
pub(crate) const BATCH_SIZE: usize = 10;
/// How a batch's failed messages are sent again: 8 attempts in all, full jitter between
/// 200 ms and 12.8 s (the workspace's one retry policy); then they count as failed.
const SEND_RETRY: RetryPolicy = RetryPolicy::new(
    Duration::from_millis(200),
    Duration::from_millis(12_800),
    Some(8),
);
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
    /// Batches in flight at once.
    pub concurrency: usize,
    /// Events per second, at most.
    pub rate: Option<f64>,
    /// The order events are sent in.
    pub order: SendOrder,
    /// Draw a progress bar (a terminal), else log a line every few seconds.
    pub progress_bar: bool,
}

/// What happened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Events the target accepted.
    pub sent: u64,
    /// Events the target refused after every retry.
    pub failed: u64,
    /// Already delivered according to the checkpoint (`--resume`).
    pub skipped_done: u64,
    /// Cannot go to the target (no original topic).
    pub skipped_unsendable: u64,
    /// Sent with the single combined marker (only one or two attributes were free).
    pub combined_markers: u64,
    /// Sent without any marker (the original used all 10 attributes).
    pub without_markers: u64,
    /// Failed ids and why (the first 1,000).
    pub failed_ids: BTreeMap<String, String>,
    /// Seconds spent sending.
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
pub(crate) struct Checkpoint {
    file: std::fs::File,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct CheckpointHeader {
    replay_id: String,
    id_set_sha256: String,
}

impl Checkpoint {
    /// Starts a new checkpoint; refuses to overwrite one (resume it, or remove it).
    pub(crate) fn create(path: &Path, replay_id: &str, id_set_sha256: &str) -> Result<Self> {
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
    pub(crate) fn resume(
        path: &Path,
        id_set_sha256: &str,
    ) -> Result<(Self, String, HashSet<String>)> {
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
            if !SEND_RETRY.may_retry(attempt) || self.stop.is_cancelled() {
                let left: Vec<&OutMessage> = retry.iter().collect();
                self.fail(
                    &left,
                    &format!("gave up after {attempt} attempts: {reason}"),
                )
                .await;
                return;
            }
            tracing::warn!(
                destination,
                attempt,
                retrying = retry.len(),
                %reason,
                "send failed; retrying"
            );
            tokio::time::sleep(SEND_RETRY.delay(attempt)).await;
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
pub(crate) async fn send_all(
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
    /// The checkpoint file.
    pub path: PathBuf,
    /// Continue the checkpoint's replay (`--resume`) rather than start anew.
    pub resume: bool,
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use islets_core::record::EventRecord;
    use islets_query::test_support::{START, record};

    use super::*;
    use crate::memory::InMemorySender;
    use crate::target::TargetSpec;

    const QUEUE: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/consumer";

    fn records(count: usize) -> Vec<EventRecord> {
        (0..count)
            .map(|index| record(index, START + index as i64 * 1_000))
            .collect()
    }

    fn options(order: SendOrder, rate: Option<f64>) -> SendOptions {
        SendOptions {
            concurrency: 4,
            rate,
            order,
            progress_bar: false,
        }
    }

    async fn replay(
        sender: &Arc<InMemorySender>,
        records: &[EventRecord],
        options: &SendOptions,
        checkpoint: Option<Checkpoint>,
        done: &HashSet<String>,
    ) -> Outcome {
        let owned = records.to_vec();
        let stream: EventStream = futures::stream::iter(owned.into_iter().map(Ok)).boxed();
        let target = TargetSpec::Queue {
            url: QUEUE.to_owned(),
            envelope: false,
        };
        let markers = Markers {
            replay_id: "01TESTREPLAY".to_owned(),
            reason: "unit test".to_owned(),
        };
        send_all(
            stream,
            records.len() as u64,
            &target,
            sender.clone(),
            &markers,
            options,
            checkpoint,
            done,
            CancellationToken::new(),
        )
        .await
        .expect("send_all")
    }

    /// A replay without a checkpoint.
    async fn fresh(
        sender: &Arc<InMemorySender>,
        records: &[EventRecord],
        order: SendOrder,
        rate: Option<f64>,
    ) -> Outcome {
        replay(
            sender,
            records,
            &options(order, rate),
            None,
            &HashSet::new(),
        )
        .await
    }

    fn delivered(sender: &InMemorySender) -> Vec<String> {
        sender
            .delivered()
            .into_iter()
            .map(|(destination, message)| {
                assert_eq!(destination, QUEUE);
                message.event_id
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn throttled_calls_and_messages_are_retried_and_every_event_arrives_once() {
        let sender = Arc::new(InMemorySender::default());
        let records = records(57);
        sender.fail_calls(3, Retry::Yes, "Throttling: slow down");
        sender.refuse(&records[7].event_id, Retry::Yes, 4, "InternalError");
        let outcome = fresh(&sender, &records, SendOrder::Time, None).await;
        assert_eq!((outcome.sent, outcome.failed), (57, 0), "{outcome:?}");
        let mut got = delivered(&sender);
        got.sort();
        let mut expected: Vec<String> = records.iter().map(|r| r.event_id.clone()).collect();
        expected.sort();
        assert_eq!(got, expected, "each event exactly once");
        assert!(sender.calls() > 6, "the failed calls were made again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_message_fails_alone_and_one_retried_past_the_policy_counts_as_failed() {
        let sender = Arc::new(InMemorySender::default());
        let records = records(30);
        sender.refuse(
            &records[3].event_id,
            Retry::No,
            u32::MAX,
            "InvalidParameterValue: too big",
        );
        sender.refuse(&records[11].event_id, Retry::Yes, u32::MAX, "InternalError");
        let outcome = fresh(&sender, &records, SendOrder::None, None).await;
        assert_eq!((outcome.sent, outcome.failed), (28, 2), "{outcome:?}");
        assert!(outcome.failed_ids[&records[3].event_id].contains("too big"));
        assert!(
            outcome.failed_ids[&records[11].event_id].contains("gave up after 8 attempts"),
            "{:?}",
            outcome.failed_ids
        );
        assert!(!outcome.interrupted && outcome.refused.is_none());
        assert_eq!(delivered(&sender).len(), 28);
    }

    #[tokio::test(start_paused = true)]
    async fn a_target_that_refuses_the_call_stops_the_replay() {
        let sender = Arc::new(InMemorySender::default());
        let records = records(200);
        sender.fail_calls(1, Retry::No, "AuthorizationError: not allowed");
        let outcome = fresh(&sender, &records, SendOrder::Time, None).await;
        assert!(outcome.interrupted, "{outcome:?}");
        assert!(
            outcome
                .refused
                .as_deref()
                .is_some_and(|why| why.contains("AuthorizationError")),
            "{outcome:?}"
        );
        assert!(outcome.sent < 200, "it stopped: {}", outcome.sent);
        assert_eq!(delivered(&sender).len() as u64, outcome.sent);
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_limit_holds_over_the_whole_replay() {
        let sender = Arc::new(InMemorySender::default());
        let records = records(300);
        let started = tokio::time::Instant::now();
        let outcome = fresh(&sender, &records, SendOrder::None, Some(100.0)).await;
        let elapsed = started.elapsed();
        assert_eq!(outcome.sent, 300);
        // 300 events at 100/s: the last batch may go once 300/100 s have passed.
        assert!(elapsed >= Duration::from_millis(2_900), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn per_correlation_order_keeps_each_flow_in_time_order() {
        let sender = Arc::new(InMemorySender::default());
        let records = records(80);
        let outcome = fresh(&sender, &records, SendOrder::PerCorrelation, None).await;
        assert_eq!(outcome.sent, 80);
        let mut last: BTreeMap<String, i64> = BTreeMap::new();
        for (_, message) in sender.delivered() {
            let flow = message.correlation_id.clone().expect("flow");
            if let Some(previous) = last.insert(flow.clone(), message.published_at_ms) {
                assert!(previous < message.published_at_ms, "{flow} out of order");
            }
        }
        assert_eq!(last.len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_checkpoint_records_what_was_delivered_and_a_resume_sends_only_the_rest() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("replay.checkpoint");
        let records = records(45);
        let sender = Arc::new(InMemorySender::default());
        // The first run cannot deliver two events.
        for index in [5, 40] {
            sender.refuse(&records[index].event_id, Retry::No, u32::MAX, "refused");
        }
        let checkpoint = Checkpoint::create(&path, "01TESTREPLAY", "set-1").expect("create");
        let first = replay(
            &sender,
            &records,
            &options(SendOrder::Time, None),
            Some(checkpoint),
            &HashSet::new(),
        )
        .await;
        assert_eq!((first.sent, first.failed), (43, 2));
        // Another selection cannot resume it.
        assert!(matches!(
            Checkpoint::resume(&path, "set-2"),
            Err(ReplayError::PlanMismatch(_))
        ));
        let (checkpoint, replay_id, done) = Checkpoint::resume(&path, "set-1").expect("resume");
        assert_eq!(replay_id, "01TESTREPLAY");
        let first_ids: HashSet<String> = delivered(&sender).into_iter().collect();
        assert_eq!(
            done, first_ids,
            "the checkpoint holds exactly what was delivered"
        );
        // Resumed with the target healthy again: only the two are sent.
        let sender = Arc::new(InMemorySender::default());
        let second = replay(
            &sender,
            &records,
            &options(SendOrder::Time, None),
            Some(checkpoint),
            &done,
        )
        .await;
        assert_eq!((second.sent, second.skipped_done), (2, 43), "{second:?}");
        let mut resent = delivered(&sender);
        resent.sort();
        assert_eq!(
            resent,
            vec![records[5].event_id.clone(), records[40].event_id.clone()]
        );
        let (_, _, done) = Checkpoint::resume(&path, "set-1").expect("resume");
        assert_eq!(done.len(), 45);
    }
}
