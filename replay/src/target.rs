//! Where a replay sends: each event's original topic, one topic, one consumer's queue
//! (raw, or shaped as its SNS subscription would deliver it), or an NDJSON file.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use async_trait::async_trait;
use aws_sdk_sns::types::{MessageAttributeValue as SnsAttribute, PublishBatchRequestEntry};
use aws_sdk_sqs::types::{MessageAttributeValue as SqsAttribute, SendMessageBatchRequestEntry};
use islets_core::attributes::AttributeValue;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use crate::error::{ReplayError, Result};
use crate::message::OutMessage;

/// A target as recorded in plans, reports and the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TargetSpec {
    /// Each event to its aggregate's topic in the catalog (`<aggregate>-events`), in the
    /// configured account and region: never to a topic ARN taken from an archived body.
    Original {
        /// Aggregate → topic ARN, resolved before anything is sent.
        #[serde(default)]
        topics: std::collections::BTreeMap<String, String>,
    },
    /// One topic for every event.
    Topic {
        /// The topic's ARN.
        arn: String,
    },
    /// One consumer's queue.
    Queue {
        /// The queue's URL.
        url: String,
        /// Bodies shaped as an SNS subscription in envelope mode delivers them.
        envelope: bool,
    },
    /// An NDJSON file, one sent message a line.
    File {
        /// The file.
        path: PathBuf,
    },
}

impl TargetSpec {
    /// Whether it publishes to topics (every subscriber receives the events).
    pub fn is_broadcast(&self) -> bool {
        matches!(self, TargetSpec::Original { .. } | TargetSpec::Topic { .. })
    }

    /// Where one message goes, for counts; `None` when it cannot be sent there.
    pub fn destination(&self, message: &OutMessage) -> Option<String> {
        match self {
            TargetSpec::Original { topics } => message
                .aggregate
                .as_ref()
                .and_then(|aggregate| topics.get(aggregate))
                .cloned(),
            TargetSpec::Topic { arn } => Some(arn.clone()),
            TargetSpec::Queue { url, .. } => Some(url.clone()),
            TargetSpec::File { path } => Some(path.display().to_string()),
        }
    }
}

impl std::fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetSpec::Original { .. } => f.write_str(
                "each event's catalog topic (<aggregate>-events, this account and region)",
            ),
            TargetSpec::Topic { arn } => write!(f, "topic {arn}"),
            TargetSpec::Queue { url, envelope } => write!(
                f,
                "queue {url} ({})",
                if *envelope { "SNS envelope" } else { "raw" }
            ),
            TargetSpec::File { path } => write!(f, "file {}", path.display()),
        }
    }
}

/// The outcome of one batch: indexes (into the batch) that failed, and whether retrying
/// them can help.
#[derive(Debug, Default)]
pub(crate) struct BatchOutcome {
    pub failed: Vec<(usize, Retry, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Throttling, a server fault, a timeout.
    Yes,
    /// The message itself is refused (too large, bad attributes).
    No,
}

/// Sends batches of up to 10 messages to one destination.
#[async_trait]
pub(crate) trait Sender: Send + Sync {
    /// Sends `batch` to `destination` (a topic ARN, a queue URL, the file). An `Err` is a
    /// failure of the whole call; `Retry::Yes` errors are retried by the caller.
    async fn send(
        &self,
        destination: &str,
        batch: &[OutMessage],
    ) -> std::result::Result<BatchOutcome, (Retry, String)>;
}

fn is_fifo(destination: &str) -> bool {
    destination.ends_with(".fifo")
}

/// An SDK error in a line: `Code: message` for service errors, the whole chain otherwise.
pub(crate) fn aws_message<E>(error: &aws_sdk_sns::error::SdkError<E>) -> String
where
    E: aws_sdk_sns::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_sns::error::SdkError;
    match error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("error");
            let message = service.err().message().unwrap_or_default();
            format!("{code}: {message}")
        }
        other => aws_sdk_sns::error::DisplayErrorContext(other).to_string(),
    }
}

/// Whether an SDK error (SNS or SQS: the same smithy type) is worth retrying (throttling,
/// 5xx, timeouts, connection).
fn retry_of<E: aws_sdk_sns::error::ProvideErrorMetadata>(
    error: &aws_sdk_sns::error::SdkError<E>,
) -> Retry {
    use aws_sdk_sns::error::SdkError;
    match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Retry::Yes
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            let status = service.raw().status().as_u16();
            if status >= 500 || code.contains("Throttl") || code.contains("RequestThrottled") {
                Retry::Yes
            } else {
                Retry::No
            }
        }
        _ => Retry::No,
    }
}

/// One failed entry of a batch answer: its index in the batch, whether a retry can help
/// (the sender's fault cannot be retried away), and why.
fn failed_entry(
    id: &str,
    sender_fault: bool,
    code: &str,
    message: Option<String>,
) -> Option<(usize, Retry, String)> {
    let retry = if sender_fault { Retry::No } else { Retry::Yes };
    Some((
        id.parse().ok()?,
        retry,
        format!("{code}: {}", message.unwrap_or_default()),
    ))
}

/// SNS `PublishBatch`.
pub(crate) struct SnsSender {
    pub client: aws_sdk_sns::Client,
}

fn sns_attribute(value: &AttributeValue) -> Option<SnsAttribute> {
    let builder = SnsAttribute::builder().data_type(&value.data_type);
    let builder = match value.binary_bytes() {
        Some(bytes) => builder.binary_value(aws_sdk_sns::primitives::Blob::new(bytes)),
        None => builder.string_value(&value.value),
    };
    builder.build().ok()
}

#[async_trait]
impl Sender for SnsSender {
    async fn send(
        &self,
        destination: &str,
        batch: &[OutMessage],
    ) -> std::result::Result<BatchOutcome, (Retry, String)> {
        let fifo = is_fifo(destination);
        let entries: Vec<PublishBatchRequestEntry> = batch
            .iter()
            .enumerate()
            .filter_map(|(index, message)| {
                let attributes: HashMap<String, SnsAttribute> = message
                    .attributes
                    .iter()
                    .filter_map(|(name, value)| sns_attribute(value).map(|v| (name.clone(), v)))
                    .collect();
                let mut entry = PublishBatchRequestEntry::builder()
                    .id(index.to_string())
                    .message(&message.body)
                    .set_message_attributes(Some(attributes));
                if fifo {
                    entry = entry
                        .message_group_id(&message.group_id)
                        .message_deduplication_id(&message.deduplication_id);
                }
                entry.build().ok()
            })
            .collect();
        let answer = self
            .client
            .publish_batch()
            .topic_arn(destination)
            .set_publish_batch_request_entries(Some(entries))
            .send()
            .await
            .map_err(|error| (retry_of(&error), aws_message(&error)))?;
        let failed = answer
            .failed
            .unwrap_or_default()
            .into_iter()
            .filter_map(|entry| {
                failed_entry(&entry.id, entry.sender_fault, &entry.code, entry.message)
            })
            .collect();
        Ok(BatchOutcome { failed })
    }
}

/// SQS `SendMessageBatch`: raw (payload as body, attributes as SQS attributes) or shaped
/// as an SNS envelope (attributes inside the body, as SNS delivers them).
pub(crate) struct SqsSender {
    pub client: aws_sdk_sqs::Client,
    pub envelope: bool,
}

fn sqs_attribute(value: &AttributeValue) -> Option<SqsAttribute> {
    // SQS has no String.Array; SNS raw delivery hands it over as a String.
    let data_type = if value.data_type == "String.Array" {
        "String"
    } else {
        &value.data_type
    };
    let builder = SqsAttribute::builder().data_type(data_type);
    let builder = match value.binary_bytes() {
        Some(bytes) => builder.binary_value(aws_sdk_sqs::primitives::Blob::new(bytes)),
        None => builder.string_value(&value.value),
    };
    builder.build().ok()
}

#[async_trait]
impl Sender for SqsSender {
    async fn send(
        &self,
        destination: &str,
        batch: &[OutMessage],
    ) -> std::result::Result<BatchOutcome, (Retry, String)> {
        let fifo = is_fifo(destination);
        let now = islets_query::rfc3339_ms(chrono::Utc::now().timestamp_millis());
        let entries: Vec<SendMessageBatchRequestEntry> = batch
            .iter()
            .enumerate()
            .filter_map(|(index, message)| {
                let mut entry = SendMessageBatchRequestEntry::builder().id(index.to_string());
                if self.envelope {
                    let topic = message.topic_arn.as_deref().unwrap_or_default();
                    let message_id = ulid::Ulid::new().to_string();
                    entry = entry.message_body(message.envelope(topic, &message_id, &now));
                } else {
                    let attributes: HashMap<String, SqsAttribute> = message
                        .attributes
                        .iter()
                        .filter_map(|(name, value)| sqs_attribute(value).map(|v| (name.clone(), v)))
                        .collect();
                    entry = entry
                        .message_body(&message.body)
                        .set_message_attributes(Some(attributes));
                }
                if fifo {
                    entry = entry
                        .message_group_id(&message.group_id)
                        .message_deduplication_id(&message.deduplication_id);
                }
                entry.build().ok()
            })
            .collect();
        let answer = self
            .client
            .send_message_batch()
            .queue_url(destination)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|error| (retry_of(&error), aws_message(&error)))?;
        let failed = answer
            .failed
            .into_iter()
            .filter_map(|entry| {
                failed_entry(&entry.id, entry.sender_fault, &entry.code, entry.message)
            })
            .collect();
        Ok(BatchOutcome { failed })
    }
}

/// One NDJSON line per event: `{"event_id","topic_arn","message","message_attributes"}`.
pub(crate) struct FileSender {
    file: Mutex<tokio::io::BufWriter<tokio::fs::File>>,
}

impl FileSender {
    /// Appends to `path` (a resumed replay continues the same file).
    pub(crate) async fn open(path: &std::path::Path) -> Result<Self> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .map_err(|source| {
                ReplayError::Target(format!(
                    "--to-file {}: cannot open it: {source}",
                    path.display()
                ))
            })?;
        Ok(FileSender {
            file: Mutex::new(tokio::io::BufWriter::new(file)),
        })
    }
}

#[async_trait]
impl Sender for FileSender {
    async fn send(
        &self,
        _destination: &str,
        batch: &[OutMessage],
    ) -> std::result::Result<BatchOutcome, (Retry, String)> {
        let mut text = String::new();
        for message in batch {
            let attributes: BTreeMap<&str, &AttributeValue> = message
                .attributes
                .iter()
                .map(|(name, value)| (name.as_str(), value))
                .collect();
            let line = serde_json::json!({
                "event_id": message.event_id,
                "topic_arn": message.topic_arn,
                "message": message.body,
                "message_attributes": attributes,
            });
            text.push_str(&line.to_string());
            text.push('\n');
        }
        let mut file = self.file.lock().await;
        let written = async {
            file.write_all(text.as_bytes()).await?;
            file.flush().await?;
            file.get_ref().sync_data().await
        };
        written
            .await
            .map_err(|error| (Retry::No, format!("writing the file: {error}")))?;
        Ok(BatchOutcome::default())
    }
}

/// The catalog's topics (`<aggregate>-events`) that exist in the account and region the
/// credentials point to: aggregate → ARN.
pub(crate) async fn catalog_topics(
    client: &aws_sdk_sns::Client,
    catalog: &islets_core::catalog::Catalog,
) -> Result<std::collections::BTreeMap<String, String>> {
    let wanted: std::collections::BTreeMap<String, String> = catalog
        .aggregates()
        .map(|aggregate| (aggregate.topic_name(), aggregate.name.clone()))
        .collect();
    let mut found = std::collections::BTreeMap::new();
    let mut pages = client.list_topics().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|error| {
            ReplayError::Target(format!(
                "--to-original: cannot list SNS topics: {} (check AWS_REGION and credentials)",
                aws_message(&error)
            ))
        })?;
        for topic in page.topics.unwrap_or_default() {
            if let Some(arn) = topic.topic_arn
                && let Some(aggregate) = arn.rsplit(':').next().and_then(|name| wanted.get(name))
            {
                found.insert(aggregate.clone(), arn);
            }
        }
    }
    Ok(found)
}

/// Resolves `--to-topic ARN|NAME` to an ARN that exists.
pub(crate) async fn resolve_topic(client: &aws_sdk_sns::Client, given: &str) -> Result<String> {
    let check = |arn: String| async move {
        client
            .get_topic_attributes()
            .topic_arn(&arn)
            .send()
            .await
            .map(|_| arn.clone())
            .map_err(|error| {
                ReplayError::Target(format!(
                    "topic {arn}: {} (check the name, AWS_REGION and credentials)",
                    aws_message(&error)
                ))
            })
    };
    if given.starts_with("arn:") {
        return check(given.to_owned()).await;
    }
    let mut pages = client.list_topics().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|error| {
            ReplayError::Target(format!(
                "cannot list SNS topics to find '{given}': {}",
                aws_message(&error)
            ))
        })?;
        for topic in page.topics.unwrap_or_default() {
            if let Some(arn) = topic.topic_arn
                && arn.rsplit(':').next() == Some(given)
            {
                return Ok(arn);
            }
        }
    }
    Err(ReplayError::Target(format!(
        "--to-topic {given}: no such topic in this account and region"
    )))
}

/// Resolves `--to-queue URL|NAME` to a URL that exists.
pub(crate) async fn resolve_queue(client: &aws_sdk_sqs::Client, given: &str) -> Result<String> {
    let failed = |error: String| {
        ReplayError::Target(format!(
            "--to-queue {given}: {error} (check the name or URL, AWS_REGION and credentials)"
        ))
    };
    if given.starts_with("http://") || given.starts_with("https://") {
        client
            .get_queue_attributes()
            .queue_url(given)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|error| failed(aws_message(&error)))?;
        return Ok(given.to_owned());
    }
    client
        .get_queue_url()
        .queue_name(given)
        .send()
        .await
        .map_err(|error| failed(aws_message(&error)))?
        .queue_url
        .ok_or_else(|| failed("no URL returned".to_owned()))
}

/// Checks that every original topic exists before anything is sent.
pub(crate) async fn check_topics(
    client: &aws_sdk_sns::Client,
    topics: impl IntoIterator<Item = &String>,
) -> Result<()> {
    for arn in topics {
        resolve_topic(client, arn)
            .await
            .map_err(|error| ReplayError::Target(format!("--to-original: {error}")))?;
    }
    Ok(())
}
