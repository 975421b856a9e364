//! The visibility heartbeat: while the ingester holds a received SQS message (decoding,
//! buffered, being flushed, being retried through a slow store), it keeps the message
//! hidden from other receives by extending its visibility timeout. Without it, a flush that
//! outlives the timeout lets SQS deliver the messages again while they are still buffered,
//! and after `maxReceiveCount` receives they land in the DLQ although nothing failed.
//!
//! Every `timeout / 3` the heartbeat extends, to a full `timeout` from now, each held
//! message that was received or last extended at least `timeout / 3` ago. A message is held
//! from its receive until its batch is acknowledged (deleted) or given up (released, so SQS
//! delivers it again after the timeout: duplicates, never loss).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::queue::Queue;

/// Extends the visibility of the messages the ingester holds.
pub(crate) struct Heartbeat {
    queue: Arc<dyn Queue>,
    timeout: Duration,
    metrics: Arc<Metrics>,
    /// Receipt handle → when its visibility was last set (receive or extension).
    held: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heartbeat")
            .field("queue", &self.queue.describe())
            .field("timeout", &self.timeout)
            .field("held", &self.held_count())
            .finish()
    }
}

impl Heartbeat {
    /// A heartbeat for messages received with `timeout` as their visibility timeout.
    pub(crate) fn new(queue: Arc<dyn Queue>, timeout: Duration, metrics: Arc<Metrics>) -> Self {
        Heartbeat {
            queue,
            timeout,
            metrics,
            held: Mutex::new(HashMap::new()),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.held
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// How often the heartbeat runs, and how old a visibility must be to be extended.
    pub(crate) fn period(&self) -> Duration {
        (self.timeout / 3).max(Duration::from_millis(100))
    }

    /// Starts holding messages just received.
    pub(crate) fn hold(&self, receipt_handles: &[String]) {
        let now = Instant::now();
        let mut held = self.held();
        for handle in receipt_handles {
            held.insert(handle.clone(), now);
        }
    }

    /// Stops holding messages (deleted, or given up).
    pub(crate) fn release(&self, receipt_handles: &[String]) {
        let mut held = self.held();
        for handle in receipt_handles {
            held.remove(handle);
        }
    }

    /// Messages held now.
    pub(crate) fn held_count(&self) -> usize {
        self.held().len()
    }

    /// One round: extends every message whose visibility was set at least a period ago.
    /// Handles SQS refuses (the message is gone, or its receipt expired) are dropped.
    pub(crate) async fn beat(&self) {
        let due: Vec<String> = {
            let now = Instant::now();
            let period = self.period();
            self.held()
                .iter()
                .filter(|(_, set_at)| now.duration_since(**set_at) >= period)
                .map(|(handle, _)| handle.clone())
                .collect()
        };
        if due.is_empty() {
            return;
        }
        let extended_at = Instant::now();
        match self.queue.extend_visibility(&due, self.timeout).await {
            Ok(failed) => {
                let mut held = self.held();
                for handle in &due {
                    // Released meanwhile (acknowledged): leave it out.
                    if let Some(set_at) = held.get_mut(handle) {
                        *set_at = extended_at;
                    }
                }
                for handle in &failed {
                    held.remove(handle);
                }
                drop(held);
                self.metrics
                    .visibility_extensions
                    .inc_by((due.len() - failed.len()) as u64);
                if !failed.is_empty() {
                    self.metrics
                        .visibility_extension_failures
                        .inc_by(failed.len() as u64);
                }
            }
            Err(error) => {
                // Retried next period; a message whose timeout passes meanwhile is only
                // delivered again (a duplicate), never lost.
                self.metrics
                    .visibility_extension_failures
                    .inc_by(due.len() as u64);
                tracing::warn!(%error, messages = due.len(), "extending the visibility of held messages failed; retrying");
            }
        }
    }

    /// Beats every period until `stop`.
    pub(crate) async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(self.period());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => self.beat().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::InMemoryQueue;

    fn heartbeat(queue: Arc<InMemoryQueue>, timeout: Duration) -> Arc<Heartbeat> {
        Arc::new(Heartbeat::new(queue, timeout, Arc::new(Metrics::new())))
    }

    #[tokio::test]
    async fn held_messages_stay_hidden_past_their_timeout_and_released_ones_come_back() {
        let queue = Arc::new(InMemoryQueue::default());
        queue.send("a", Vec::new());
        queue.send("b", Vec::new());
        let timeout = Duration::from_millis(600);
        let received = queue
            .receive(10, Duration::ZERO, timeout)
            .await
            .expect("receive");
        assert_eq!(received.len(), 2);
        let heartbeat = heartbeat(queue.clone(), timeout);
        let handles: Vec<String> = received.iter().map(|m| m.receipt_handle.clone()).collect();
        heartbeat.hold(&handles);
        let stop = CancellationToken::new();
        let task = tokio::spawn(heartbeat.clone().run(stop.clone()));

        // Three timeouts later, both are still hidden.
        tokio::time::sleep(timeout * 3).await;
        let again = queue
            .receive(10, Duration::ZERO, timeout)
            .await
            .expect("receive");
        assert!(
            again.is_empty(),
            "held messages were delivered again: {again:?}"
        );
        assert!(
            queue.extensions() >= 4,
            "extensions: {}",
            queue.extensions()
        );

        // Released (a flush given up): SQS delivers it again after the timeout.
        heartbeat.release(&handles[..1]);
        tokio::time::sleep(timeout * 2).await;
        let again = queue
            .receive(10, Duration::ZERO, timeout)
            .await
            .expect("receive");
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].body, "a");
        assert_eq!(heartbeat.held_count(), 1);
        stop.cancel();
        task.await.expect("heartbeat task");
    }

    #[tokio::test]
    async fn handles_the_queue_refuses_are_dropped() {
        let queue = Arc::new(InMemoryQueue::default());
        queue.send("a", Vec::new());
        let timeout = Duration::from_millis(300);
        let received = queue
            .receive(10, Duration::ZERO, timeout)
            .await
            .expect("receive");
        let heartbeat = heartbeat(queue.clone(), timeout);
        let handle = received[0].receipt_handle.clone();
        heartbeat.hold(std::slice::from_ref(&handle));
        queue
            .delete(std::slice::from_ref(&handle))
            .await
            .expect("delete");
        tokio::time::sleep(heartbeat.period()).await;
        heartbeat.beat().await;
        assert_eq!(heartbeat.held_count(), 0);
        assert_eq!(queue.extensions(), 0);
    }
}
