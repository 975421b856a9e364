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
/// The entries of one batch call: one per message whose entry could be built, and the
/// messages whose entry could not (they fail alone: never sent, never counted delivered).
fn build_entries<E>(
    batch: &[OutMessage],
    build: impl Fn(usize, &OutMessage) -> std::result::Result<E, String>,
) -> (Vec<E>, Vec<(usize, Retry, String)>) {
    let mut entries = Vec::with_capacity(batch.len());
    let mut refused = Vec::new();
    for (index, message) in batch.iter().enumerate() {
        match build(index, message) {
            Ok(entry) => entries.push(entry),
            Err(error) => {
                refused.push((index, Retry::No, format!("cannot build the entry: {error}")))
            }
        }
    }
    (entries, refused)
}

/// The failed entries of a batch answer (`id` is the index sent), after those refused
/// before sending. An id that names no message sent fails the whole call (retried: at most
/// duplicates), so a failure is never taken for a delivery.
fn failed_entries(
    mut failed: Vec<(usize, Retry, String)>,
    answer: impl Iterator<Item = (String, bool, String, Option<String>)>,
    batch_len: usize,
) -> std::result::Result<BatchOutcome, (Retry, String)> {
    let refused: Vec<usize> = failed.iter().map(|(index, _, _)| *index).collect();
    for (id, sender_fault, code, message) in answer {
        let index = id
            .parse::<usize>()
            .ok()
            .filter(|index| *index < batch_len && !refused.contains(index));
        let Some(index) = index else {
            return Err((
                Retry::Yes,
                format!("the answer names entry '{id}', which was not sent ({code})"),
            ));
        };
        let retry = if sender_fault { Retry::No } else { Retry::Yes };
        failed.push((
            index,
            retry,
            format!("{code}: {}", message.unwrap_or_default()),
        ));
    }
    Ok(BatchOutcome { failed })
}

/// SNS `PublishBatch`.
pub(crate) struct SnsSender {
    pub client: aws_sdk_sns::Client,
}

fn sns_attribute(value: &AttributeValue) -> std::result::Result<SnsAttribute, String> {
    let builder = SnsAttribute::builder().data_type(&value.data_type);
    let builder = match value.binary_bytes() {
        Some(bytes) => builder.binary_value(aws_sdk_sns::primitives::Blob::new(bytes)),
        None => builder.string_value(&value.value),
    };
    builder.build().map_err(|error| error.to_string())
}

#[async_trait]
impl Sender for SnsSender {
    async fn send(
        &self,
        destination: &str,
        batch: &[OutMessage],
    ) -> std::result::Result<BatchOutcome, (Retry, String)> {
        let fifo = is_fifo(destination);
        let (entries, refused) = build_entries(batch, |index, message| {
            let attributes = message
                .attributes
                .iter()
                .map(|(name, value)| sns_attribute(value).map(|value| (name.clone(), value)))
                .collect::<std::result::Result<HashMap<String, SnsAttribute>, String>>()?;
            let mut entry = PublishBatchRequestEntry::builder()
                .id(index.to_string())
                .message(&message.body)
                .set_message_attributes(Some(attributes));
            if fifo {
                entry = entry
                    .message_group_id(&message.group_id)
                    .message_deduplication_id(&message.deduplication_id);
            }
            entry.build().map_err(|error| error.to_string())
        });
        if entries.is_empty() {
            return Ok(BatchOutcome { failed: refused });
        }
        let answer = self
            .client
            .publish_batch()
            .topic_arn(destination)
            .set_publish_batch_request_entries(Some(entries))
            .send()
            .await
            .map_err(|error| (retry_of(&error), aws_message(&error)))?;
        failed_entries(
            refused,
            answer
                .failed
                .unwrap_or_default()
                .into_iter()
                .map(|entry| (entry.id, entry.sender_fault, entry.code, entry.message)),
            batch.len(),
        )
    }
}

/// SQS `SendMessageBatch`: raw (payload as body, attributes as SQS attributes) or shaped
/// as an SNS envelope (attributes inside the body, as SNS delivers them).
pub(crate) struct SqsSender {
    pub client: aws_sdk_sqs::Client,
    pub envelope: bool,
}

fn sqs_attribute(value: &AttributeValue) -> std::result::Result<SqsAttribute, String> {
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
    builder.build().map_err(|error| error.to_string())
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
        let (entries, refused) = build_entries(batch, |index, message| {
            let mut entry = SendMessageBatchRequestEntry::builder().id(index.to_string());
            if self.envelope {
                let topic = message.topic_arn.as_deref().unwrap_or_default();
                let message_id = ulid::Ulid::new().to_string();
                entry = entry.message_body(message.envelope(topic, &message_id, &now));
            } else {
                let attributes = message
                    .attributes
                    .iter()
                    .map(|(name, value)| sqs_attribute(value).map(|value| (name.clone(), value)))
                    .collect::<std::result::Result<HashMap<String, SqsAttribute>, String>>()?;
                entry = entry
                    .message_body(&message.body)
                    .set_message_attributes(Some(attributes));
            }
            if fifo {
                entry = entry
                    .message_group_id(&message.group_id)
                    .message_deduplication_id(&message.deduplication_id);
            }
            entry.build().map_err(|error| error.to_string())
        });
        if entries.is_empty() {
            return Ok(BatchOutcome { failed: refused });
        }
        let answer = self
            .client
            .send_message_batch()
            .queue_url(destination)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|error| (retry_of(&error), aws_message(&error)))?;
        failed_entries(
            refused,
            answer
                .failed
                .into_iter()
                .map(|entry| (entry.id, entry.sender_fault, entry.code, entry.message)),
            batch.len(),
        )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Markers, tests::record};

    fn batch(n: usize) -> Vec<OutMessage> {
        let markers = Markers {
            replay_id: "R1".to_owned(),
            reason: "test".to_owned(),
        };
        (0..n)
            .map(|_| OutMessage::new(record(2), &markers))
            .collect()
    }

    #[test]
    fn a_message_whose_entry_cannot_be_built_fails_alone_and_is_never_sent() {
        let messages = batch(3);
        let (entries, refused) = build_entries(&messages, |index, _| {
            if index == 1 {
                Err("no body".to_owned())
            } else {
                Ok(index)
            }
        });
        assert_eq!(entries, [0, 2]);
        assert_eq!(refused.len(), 1);
        assert_eq!((refused[0].0, refused[0].1), (1, Retry::No));
        assert!(refused[0].2.contains("no body"), "{}", refused[0].2);
    }

    #[test]
    fn failed_entries_keep_their_index_and_an_unknown_id_fails_the_call() {
        let refused = vec![(1, Retry::No, "cannot build the entry".to_owned())];
        let outcome = failed_entries(
            refused.clone(),
            [
                ("0".to_owned(), false, "Throttled".to_owned(), None),
                (
                    "2".to_owned(),
                    true,
                    "TooLarge".to_owned(),
                    Some("256 KiB".to_owned()),
                ),
            ]
            .into_iter(),
            3,
        )
        .expect("every id is known");
        assert_eq!(outcome.failed.len(), 3);
        assert_eq!(outcome.failed[1].0, 0);
        assert_eq!(
            outcome.failed[1].1,
            Retry::Yes,
            "not the sender's fault: retried"
        );
        assert_eq!(
            outcome.failed[2],
            (2, Retry::No, "TooLarge: 256 KiB".to_owned())
        );
        for id in ["7", "x", "-1", "1"] {
            let answer = [(id.to_owned(), false, "Odd".to_owned(), None)];
            let error = failed_entries(refused.clone(), answer.into_iter(), 3)
                .expect_err("an id that names no sent message");
            assert_eq!(error.0, Retry::Yes, "{id}: the batch is retried");
        }
    }

    #[test]
    fn string_arrays_go_to_sqs_as_strings_and_binary_stays_binary() {
        let array = AttributeValue {
            data_type: "String.Array".to_owned(),
            value: r#"["a","b"]"#.to_owned(),
        };
        let sqs = sqs_attribute(&array).expect("attribute");
        assert_eq!(sqs.data_type(), "String");
        assert_eq!(sqs.string_value(), Some(r#"["a","b"]"#));
        let sns = sns_attribute(&array).expect("attribute");
        assert_eq!(sns.data_type(), "String.Array");
    }
}
