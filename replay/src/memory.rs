//! A [`Sender`] that keeps what it is sent: the stand-in of SNS, SQS and the file target,
//! as the ingester's `InMemoryQueue` stands in for SQS. It can be told to fail whole calls
//! (throttling, a refused target) or single messages (a few times, or always), so the
//! sending loop's retries, pacing, refusals and checkpoints are tested without a network.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::message::OutMessage;
use crate::target::{BatchOutcome, Retry, Sender};

/// What the in-memory sender was sent and what it is told to refuse.
#[derive(Debug, Default)]
pub(crate) struct InMemorySender {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    delivered: Vec<(String, OutMessage)>,
    calls: u64,
    /// How the next calls fail as a whole, in order.
    failing_calls: VecDeque<(Retry, String)>,
    /// Event id → how it is refused, and how many more times.
    refusals: HashMap<String, (Retry, String, u32)>,
}

impl InMemorySender {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The next `calls` calls fail as a whole (`Retry::Yes`: throttled; `Retry::No`: the
    /// target refuses the replay).
    pub(crate) fn fail_calls(&self, calls: usize, retry: Retry, reason: &str) {
        let mut state = self.state();
        for _ in 0..calls {
            state.failing_calls.push_back((retry, reason.to_owned()));
        }
    }

    /// The message of `event_id` is refused the next `times` times it is sent.
    pub(crate) fn refuse(&self, event_id: &str, retry: Retry, times: u32, reason: &str) {
        self.state()
            .refusals
            .insert(event_id.to_owned(), (retry, reason.to_owned(), times));
    }

    /// Every message delivered, with its destination, in the order they were delivered.
    pub(crate) fn delivered(&self) -> Vec<(String, OutMessage)> {
        self.state().delivered.clone()
    }

    /// Calls made, failed ones included.
    pub(crate) fn calls(&self) -> u64 {
        self.state().calls
    }
}

#[async_trait]
impl Sender for InMemorySender {
    async fn send(
        &self,
        destination: &str,
        batch: &[OutMessage],
    ) -> std::result::Result<BatchOutcome, (Retry, String)> {
        let mut state = self.state();
        state.calls += 1;
        if let Some(failure) = state.failing_calls.pop_front() {
            return Err(failure);
        }
        let mut outcome = BatchOutcome::default();
        for (index, message) in batch.iter().enumerate() {
            if let Some((retry, reason, times)) = state.refusals.get_mut(&message.event_id)
                && *times > 0
            {
                *times -= 1;
                outcome.failed.push((index, *retry, reason.clone()));
                continue;
            }
            state
                .delivered
                .push((destination.to_owned(), message.clone()));
        }
        Ok(outcome)
    }
}
