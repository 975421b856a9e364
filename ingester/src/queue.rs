//! The queue boundary: a trait with the SQS implementation and an in-memory stand-in that
//! has the same visibility-timeout semantics (for unit tests of the delivery guarantees).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry,
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use islets_core::attributes::{AttributeValue, Attributes};
use islets_core::record::SqsMetadata;

use crate::error::{Error, Result};

/// One received message.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    /// The handle to delete it or change its visibility with.
    pub receipt_handle: String,
    /// The body exactly as received.
    pub body: String,
    /// What SQS attached (message id, sent time, attributes).
    pub metadata: SqsMetadata,
}

/// Approximate queue depth, as SQS reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Messages available to receive.
    pub visible: u64,
    /// Messages received and not yet deleted.
    pub in_flight: u64,
    /// Messages not yet visible (delay).
    pub delayed: u64,
}

/// A message queue the ingester drains.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Receives up to `max_messages`, waiting up to `wait` for the first one; received
    /// messages stay hidden for `visibility_timeout`.
    async fn receive(
        &self,
        max_messages: i32,
        wait: Duration,
        visibility_timeout: Duration,
    ) -> Result<Vec<ReceivedMessage>>;

    /// Deletes messages by receipt handle. Returns the handles that could not be deleted.
    async fn delete(&self, receipt_handles: &[String]) -> Result<Vec<String>>;

    /// Hides received messages for another `timeout` from now (the visibility heartbeat).
    /// Returns the handles that could not be extended (deleted, or their receipt expired).
    async fn extend_visibility(
        &self,
        receipt_handles: &[String],
        timeout: Duration,
    ) -> Result<Vec<String>>;

    /// The queue's depth.
    async fn depth(&self) -> Result<QueueDepth>;

    /// A description for logs.
    fn describe(&self) -> String;
}

/// The SQS implementation.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsQueue {
    /// The queue at `queue_url`, through `client`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        SqsQueue {
            client,
            queue_url: queue_url.into(),
        }
    }
}

fn sdk_error(operation: &'static str, error: impl std::error::Error) -> Error {
    // The SDK's Display is terse ("service error"); the source chain has the reason.
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    Error::Queue { operation, message }
}

/// The handles of `chunk` a batch call refused: its entries' ids are their indexes.
fn refused(chunk: &[String], failures: Vec<BatchResultErrorEntry>, what: &str) -> Vec<String> {
    failures
        .into_iter()
        .filter_map(|failure| {
            let handle = failure.id.parse::<usize>().ok().and_then(|i| chunk.get(i))?;
            tracing::warn!(code = %failure.code, message = ?failure.message, "sqs refused to {what}");
            Some(handle.clone())
        })
        .collect()
}

/// SQS's maximum number of entries in one batch call.
const SQS_BATCH: usize = 10;

#[async_trait]
impl Queue for SqsQueue {
    async fn receive(
        &self,
        max_messages: i32,
        wait: Duration,
        visibility_timeout: Duration,
    ) -> Result<Vec<ReceivedMessage>> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max_messages)
            .wait_time_seconds(i32::try_from(wait.as_secs()).unwrap_or(20))
            .visibility_timeout(i32::try_from(visibility_timeout.as_secs()).unwrap_or(i32::MAX))
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|error| sdk_error("ReceiveMessage", error))?;
        let messages = output.messages.unwrap_or_default();
        Ok(messages
            .into_iter()
            .filter_map(|message| {
                let receipt_handle = message.receipt_handle?;
                let sent_timestamp_ms = message
                    .attributes
                    .as_ref()
                    .and_then(|attributes| {
                        attributes.get(&MessageSystemAttributeName::SentTimestamp)
                    })
                    .and_then(|value| value.parse().ok());
                let mut attributes: Attributes = message
                    .message_attributes
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(name, value)| {
                        let attribute = match (value.string_value, value.binary_value) {
                            (Some(text), _) => AttributeValue {
                                data_type: value.data_type,
                                value: text,
                            },
                            (None, Some(blob)) => {
                                AttributeValue::binary(value.data_type, blob.as_ref())
                            }
                            (None, None) => AttributeValue {
                                data_type: value.data_type,
                                value: String::new(),
                            },
                        };
                        (name, attribute)
                    })
                    .collect();
                attributes.sort_by(|a, b| a.0.cmp(&b.0));
                Some(ReceivedMessage {
                    receipt_handle,
                    body: message.body.unwrap_or_default(),
                    metadata: SqsMetadata {
                        message_id: message.message_id,
                        sent_timestamp_ms,
                        attributes,
                    },
                })
            })
            .collect())
    }

    async fn delete(&self, receipt_handles: &[String]) -> Result<Vec<String>> {
        let mut failed = Vec::new();
        for chunk in receipt_handles.chunks(SQS_BATCH) {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .filter_map(|(index, handle)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .receipt_handle(handle)
                        .build()
                        .ok()
                })
                .collect();
            let output = self
                .client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await;
            match output {
                Ok(output) => failed.extend(refused(
                    chunk,
                    output.failed,
                    "delete a message; it will be delivered again",
                )),
                Err(error) => {
                    tracing::warn!(error = %sdk_error("DeleteMessageBatch", error), "could not delete messages; they will be delivered again");
                    failed.extend(chunk.iter().cloned());
                }
            }
        }
        Ok(failed)
    }

    async fn extend_visibility(
        &self,
        receipt_handles: &[String],
        timeout: Duration,
    ) -> Result<Vec<String>> {
        let seconds = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
        let mut failed = Vec::new();
        for chunk in receipt_handles.chunks(SQS_BATCH) {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .filter_map(|(index, handle)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(index.to_string())
                        .receipt_handle(handle)
                        .visibility_timeout(seconds)
                        .build()
                        .ok()
                })
                .collect();
            let output = self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|error| sdk_error("ChangeMessageVisibilityBatch", error))?;
            failed.extend(refused(
                chunk,
                output.failed,
                "extend a message's visibility",
            ));
        }
        Ok(failed)
    }

    async fn depth(&self) -> Result<QueueDepth> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|error| sdk_error("GetQueueAttributes", error))?;
        let attributes = output.attributes.unwrap_or_default();
        let read = |name: QueueAttributeName| {
            attributes
                .get(&name)
                .and_then(|value| value.parse().ok())
                .unwrap_or(0)
        };
        Ok(QueueDepth {
            visible: read(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: read(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: read(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        })
    }

    fn describe(&self) -> String {
        self.queue_url.clone()
    }
}

/// In-memory queue with SQS's visibility semantics, for unit tests.
#[derive(Debug, Default)]
pub struct InMemoryQueue {
    state: Mutex<InMemoryState>,
}

#[derive(Debug, Default)]
struct InMemoryState {
    next_id: u64,
    messages: VecDeque<StoredMessage>,
    receives: u64,
    extensions: u64,
    deliveries: u64,
}

#[derive(Debug)]
struct StoredMessage {
    body: String,
    metadata: SqsMetadata,
    invisible_until: Option<Instant>,
    /// Receipt handle of the latest receive; only it can delete the message.
    receipt_handle: Option<String>,
    receive_count: u32,
}

impl InMemoryQueue {
    fn state(&self) -> std::sync::MutexGuard<'_, InMemoryState> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Enqueues a message.
    pub fn send(&self, body: impl Into<String>, attributes: Attributes) {
        let mut state = self.state();
        state.next_id += 1;
        let id = state.next_id;
        state.messages.push_back(StoredMessage {
            body: body.into(),
            metadata: SqsMetadata {
                message_id: Some(format!("mem-{id}")),
                sent_timestamp_ms: Some(1_700_000_000_000),
                attributes,
            },
            invisible_until: None,
            receipt_handle: None,
            receive_count: 0,
        });
    }

    /// Messages not yet deleted (visible or not).
    pub fn len(&self) -> usize {
        self.state().messages.len()
    }

    /// Whether every message was deleted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages handed out by every receive so far (a redelivery counts again).
    pub fn deliveries(&self) -> u64 {
        self.state().deliveries
    }

    /// How many visibility extensions succeeded.
    pub fn extensions(&self) -> u64 {
        self.state().extensions
    }

    /// The highest receive count of any message still queued.
    pub fn max_receive_count(&self) -> u32 {
        self.state()
            .messages
            .iter()
            .map(|m| m.receive_count)
            .max()
            .unwrap_or(0)
    }
}

#[async_trait]
impl Queue for InMemoryQueue {
    async fn receive(
        &self,
        max_messages: i32,
        wait: Duration,
        visibility_timeout: Duration,
    ) -> Result<Vec<ReceivedMessage>> {
        let received = {
            let mut state = self.state();
            state.receives += 1;
            let receive_number = state.receives;
            let now = Instant::now();
            let limit = usize::try_from(max_messages).unwrap_or(10);
            let mut received = Vec::new();
            for message in state.messages.iter_mut() {
                if received.len() >= limit {
                    break;
                }
                if message.invisible_until.is_some_and(|until| until > now) {
                    continue;
                }
                let receipt_handle = format!(
                    "{}/{receive_number}",
                    message.metadata.message_id.as_deref().unwrap_or_default()
                );
                message.invisible_until = Some(now + visibility_timeout);
                message.receipt_handle = Some(receipt_handle.clone());
                message.receive_count += 1;
                received.push(ReceivedMessage {
                    receipt_handle,
                    body: message.body.clone(),
                    metadata: message.metadata.clone(),
                });
            }
            state.deliveries += received.len() as u64;
            received
        };
        if received.is_empty() {
            tokio::time::sleep(wait.min(Duration::from_millis(20))).await;
        }
        Ok(received)
    }

    async fn delete(&self, receipt_handles: &[String]) -> Result<Vec<String>> {
        let mut state = self.state();
        let mut failed = Vec::new();
        for handle in receipt_handles {
            let before = state.messages.len();
            state
                .messages
                .retain(|message| message.receipt_handle.as_deref() != Some(handle.as_str()));
            if state.messages.len() == before {
                failed.push(handle.clone());
            }
        }
        Ok(failed)
    }

    async fn extend_visibility(
        &self,
        receipt_handles: &[String],
        timeout: Duration,
    ) -> Result<Vec<String>> {
        let mut state = self.state();
        let now = Instant::now();
        let mut failed = Vec::new();
        for handle in receipt_handles {
            let message = state.messages.iter_mut().find(|message| {
                message.receipt_handle.as_deref() == Some(handle.as_str())
                    && message.invisible_until.is_some_and(|until| until > now)
            });
            match message {
                Some(message) => message.invisible_until = Some(now + timeout),
                None => failed.push(handle.clone()),
            }
        }
        state.extensions += receipt_handles.len() as u64 - failed.len() as u64;
        Ok(failed)
    }

    async fn depth(&self) -> Result<QueueDepth> {
        let state = self.state();
        let now = Instant::now();
        let in_flight = state
            .messages
            .iter()
            .filter(|message| message.invisible_until.is_some_and(|until| until > now))
            .count() as u64;
        Ok(QueueDepth {
            visible: state.messages.len() as u64 - in_flight,
            in_flight,
            delayed: 0,
        })
    }

    fn describe(&self) -> String {
        "in-memory queue".to_owned()
    }
}
