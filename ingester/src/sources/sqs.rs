//! The SQS source: concurrent long-polling receivers, and (with `--exit-when-idle`) a
//! monitor that ends the run once the queue is drained.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use islets_core::catalog::Catalog;
use islets_core::record::{Delivery, IngestSource};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::SqsSettings;
use crate::metrics::{Metrics, source_label};
use crate::pipeline::{Ack, DecodedBatch};
use crate::queue::Queue;
use crate::visibility::Heartbeat;

/// SQS's maximum messages per ReceiveMessage.
const MAX_MESSAGES_PER_RECEIVE: i32 = 10;
/// Backoff between failed receives: the workspace's policy, never giving up (the
/// pollers run until shutdown), delays up to 250 ms, 500 ms, ... 30 s.
const RECEIVE_RETRY: islets_core::retry::RetryPolicy =
    islets_core::retry::RetryPolicy::new(Duration::from_millis(250), Duration::from_secs(30), None);
/// How often the queue depth is read for the metrics.
const DEPTH_INTERVAL: Duration = Duration::from_secs(10);

struct PollerShared {
    queue: Arc<dyn Queue>,
    heartbeat: Option<Arc<Heartbeat>>,
    settings: SqsSettings,
    catalog: Arc<Catalog>,
    metrics: Arc<Metrics>,
    batches_tx: mpsc::Sender<DecodedBatch>,
    /// Cancelled on SIGTERM/SIGINT: stop at once (an interrupted receive is only
    /// redelivered later, never lost).
    shutdown: CancellationToken,
    /// Set when the queue is drained: pollers finish the receive under way, then stop.
    idle: AtomicBool,
    last_message_at: Mutex<Instant>,
}

/// Polls until `shutdown`, or until the queue is drained when `exit_when_idle` is set.
pub(crate) async fn run(
    queue: Arc<dyn Queue>,
    heartbeat: Option<Arc<Heartbeat>>,
    settings: SqsSettings,
    catalog: Arc<Catalog>,
    metrics: Arc<Metrics>,
    batches_tx: mpsc::Sender<DecodedBatch>,
    shutdown: CancellationToken,
) {
    let shared = Arc::new(PollerShared {
        queue,
        heartbeat,
        settings,
        catalog,
        metrics,
        batches_tx,
        shutdown,
        idle: AtomicBool::new(false),
        last_message_at: Mutex::new(Instant::now()),
    });
    let mut pollers = JoinSet::new();
    for _ in 0..shared.settings.pollers {
        pollers.spawn(poll(shared.clone()));
    }
    let monitor_stop = CancellationToken::new();
    let monitor = tokio::spawn(monitor(shared.clone(), monitor_stop.clone()));
    while pollers.join_next().await.is_some() {}
    monitor_stop.cancel();
    let _ = monitor.await;
}

async fn poll(shared: Arc<PollerShared>) {
    let labels = source_label(IngestSource::Sqs.as_str());
    let mut failures = 0u32;
    while !shared.idle.load(Ordering::Acquire) {
        let received = tokio::select! {
            biased;
            _ = shared.shutdown.cancelled() => break,
            received = shared.queue.receive(
                MAX_MESSAGES_PER_RECEIVE,
                shared.settings.wait_time,
                shared.settings.visibility_timeout,
            ) => received,
        };
        let messages = match received {
            Ok(messages) => {
                failures = 0;
                shared
                    .metrics
                    .last_receive_completed_ms
                    .set(chrono::Utc::now().timestamp_millis());
                messages
            }
            Err(error) => {
                failures += 1;
                shared.metrics.receive_errors.inc();
                tracing::warn!(%error, failures, "receiving from SQS failed; retrying");
                let backoff = RECEIVE_RETRY.delay(failures);
                tokio::select! {
                    _ = shared.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => continue,
                }
            }
        };
        if messages.is_empty() {
            continue;
        }
        let now = Instant::now();
        *shared.last_message_at.lock().await = now;
        let count = messages.len();
        shared
            .metrics
            .messages_received
            .get_or_create(&labels)
            .inc_by(count as u64);
        shared.metrics.unacknowledged_messages.inc_by(count as i64);
        let now_ms = chrono::Utc::now().timestamp_millis();
        if let Some(oldest_ms) = messages
            .iter()
            .filter_map(|m| m.metadata.sent_timestamp_ms)
            .min()
        {
            shared
                .metrics
                .queue_oldest_received_age_seconds
                .set((now_ms - oldest_ms).max(0) / 1000);
        }
        let mut receipt_handles = Vec::with_capacity(count);
        let deliveries: Vec<Delivery> = messages
            .into_iter()
            .map(|message| {
                receipt_handles.push(message.receipt_handle);
                Delivery {
                    body: Bytes::from(message.body),
                    sqs: Some(message.metadata),
                    source: IngestSource::Sqs,
                    received_at_ms: now_ms,
                }
            })
            .collect();
        if let Some(heartbeat) = &shared.heartbeat {
            heartbeat.hold(&receipt_handles);
        }
        let released = shared.heartbeat.is_some().then(|| receipt_handles.clone());
        let catalog = shared.catalog.clone();
        let decoded = tokio::task::spawn_blocking(move || {
            DecodedBatch::decode(
                &deliveries,
                &catalog,
                IngestSource::Sqs,
                Ack::Sqs(receipt_handles),
            )
        })
        .await;
        let Ok(batch) = decoded else {
            // Not acknowledged: SQS delivers these messages again after the timeout.
            shared.metrics.unacknowledged_messages.dec_by(count as i64);
            if let (Some(heartbeat), Some(handles)) = (&shared.heartbeat, &released) {
                heartbeat.release(handles);
            }
            continue;
        };
        if shared.batches_tx.send(batch).await.is_err() {
            break;
        }
    }
}

/// Reads the queue depth for the metrics and, with `exit_when_idle`, decides when the
/// queue is drained: nothing received for a while, nothing visible or delayed, and nothing
/// in flight but the messages this process holds.
async fn monitor(shared: Arc<PollerShared>, stop: CancellationToken) {
    let settings = &shared.settings;
    let idle_after = (settings.wait_time * 2).max(Duration::from_secs(2));
    let interval = if settings.exit_when_idle {
        (settings.wait_time / 2).clamp(Duration::from_millis(500), DEPTH_INTERVAL)
    } else {
        DEPTH_INTERVAL
    };
    let mut quiet_checks = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = shared.shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let depth = match shared.queue.depth().await {
            Ok(depth) => depth,
            Err(error) => {
                tracing::warn!(%error, "reading the queue depth failed");
                continue;
            }
        };
        shared
            .metrics
            .queue_visible_messages
            .set(i64::try_from(depth.visible).unwrap_or(i64::MAX));
        shared
            .metrics
            .queue_in_flight_messages
            .set(i64::try_from(depth.in_flight).unwrap_or(i64::MAX));
        if !settings.exit_when_idle {
            continue;
        }
        let quiet_for = shared.last_message_at.lock().await.elapsed();
        let ours = u64::try_from(shared.metrics.unacknowledged_messages.get()).unwrap_or(0);
        let drained = depth.visible == 0 && depth.delayed == 0 && depth.in_flight <= ours;
        quiet_checks = if quiet_for >= idle_after && drained {
            quiet_checks + 1
        } else {
            0
        };
        // Two consecutive observations: SQS's counts are approximate.
        if quiet_checks >= 2 {
            tracing::info!(queue = %shared.queue.describe(), "queue drained; finishing");
            shared.idle.store(true, Ordering::Release);
            return;
        }
    }
}
