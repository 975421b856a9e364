//! The audit queue and its dead-letter queue: 14-day retention, visibility timeout matched
//! to the ingester's flush, long polling, encryption at rest, redrive, and the queue policy
//! that admits only the aggregate topics.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};

use crate::config::ProvisionConfig;
use crate::error::{Result, aws};
use crate::plan::Plan;

/// 14 days, SQS's maximum: the time to notice and fix an outage without losing a message.
pub(crate) const RETENTION_SECS: u32 = 1_209_600;
/// Long polling on the queue itself (the ingester also asks for it on every receive).
pub(crate) const WAIT_TIME_SECS: u32 = 20;
const RETENTION: &str = "MessageRetentionPeriod";
const VISIBILITY: &str = "VisibilityTimeout";
const WAIT_TIME: &str = "ReceiveMessageWaitTimeSeconds";
const MANAGED_SSE: &str = "SqsManagedSseEnabled";
const KMS_KEY: &str = "KmsMasterKeyId";
const REDRIVE: &str = "RedrivePolicy";
const POLICY: &str = "Policy";
const QUEUE_ARN: &str = "QueueArn";
/// The queue policy's one statement.
const POLICY_SID: &str = "AggregateTopicsOnly";

/// An existing queue.
#[derive(Debug, Clone)]
pub(crate) struct QueueRef {
    pub(crate) url: String,
    pub(crate) arn: String,
    attributes: HashMap<String, String>,
}

/// The dead-letter queue's attributes.
pub(crate) fn dlq_attributes() -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        (RETENTION, RETENTION_SECS.to_string()),
        (MANAGED_SSE, "true".to_owned()),
    ])
}

/// The audit queue's attributes (its policy is set separately, once the topics are known).
pub(crate) fn queue_attributes(
    config: &ProvisionConfig,
    dlq_arn: &str,
) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        (RETENTION, RETENTION_SECS.to_string()),
        (VISIBILITY, config.visibility_timeout_secs.to_string()),
        (WAIT_TIME, WAIT_TIME_SECS.to_string()),
        (MANAGED_SSE, "true".to_owned()),
        (REDRIVE, redrive_policy(dlq_arn, config.max_receive_count)),
    ])
}

fn redrive_policy(dlq_arn: &str, max_receive_count: u32) -> String {
    json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}).to_string()
}

/// The queue policy: SendMessage from SNS, only for the aggregate topics.
pub(crate) fn queue_policy(queue_arn: &str, topic_arns: &[String]) -> Value {
    let mut sources = topic_arns.to_vec();
    sources.sort();
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": POLICY_SID,
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": sources}}
        }]
    })
}

/// Policy documents compared as IAM reads them: a one-element list is its element, and
/// lists of strings are sets.
fn normalize_policy(value: &Value) -> Value {
    match value {
        Value::Array(items) if items.len() == 1 => normalize_policy(&items[0]),
        Value::Array(items) => {
            let mut normalized: Vec<Value> = items.iter().map(normalize_policy).collect();
            if normalized.iter().all(Value::is_string) {
                normalized.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            }
            Value::Array(normalized)
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| (key.clone(), normalize_policy(value)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn policy_matches(current: Option<&str>, desired: &Value) -> bool {
    current
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .is_some_and(|current| normalize_policy(&current) == normalize_policy(desired))
}

/// Whether the current value of an attribute already is the desired one, compared as SQS
/// means them (numbers as numbers, the redrive policy as JSON, encryption by either
/// SQS-managed SSE or a KMS key).
fn attribute_matches(name: &str, desired: &str, current: &HashMap<String, String>) -> bool {
    let value = current.get(name).map(String::as_str);
    match name {
        MANAGED_SSE => {
            value == Some("true") || current.get(KMS_KEY).is_some_and(|key| !key.is_empty())
        }
        REDRIVE => {
            let parse = |text: &str| -> Option<(String, u64)> {
                let policy: Value = serde_json::from_str(text).ok()?;
                let target = policy.get("deadLetterTargetArn")?.as_str()?.to_owned();
                let count = match policy.get("maxReceiveCount")? {
                    Value::Number(number) => number.as_u64()?,
                    Value::String(text) => text.parse().ok()?,
                    _ => return None,
                };
                Some((target, count))
            };
            value.and_then(parse).is_some() && value.and_then(parse) == parse(desired)
        }
        _ => value
            .and_then(|text| text.trim().parse::<u64>().ok())
            .is_some_and(|number| desired.parse::<u64>().ok() == Some(number)),
    }
}

/// What an attribute is, for the plan.
fn attribute_label(name: &str) -> &str {
    match name {
        RETENTION => "retention",
        VISIBILITY => "visibility timeout",
        WAIT_TIME => "long polling",
        MANAGED_SSE => "encryption",
        REDRIVE => "redrive",
        other => other,
    }
}

/// A human reading of an attribute's value.
fn describe_value(name: &str, value: &str, dlq_name: &str) -> String {
    match name {
        RETENTION => match value.parse::<u64>() {
            Ok(secs) if secs % 86_400 == 0 => format!("{} days", secs / 86_400),
            _ => format!("{value} s"),
        },
        VISIBILITY | WAIT_TIME => format!("{value} s"),
        MANAGED_SSE if value == "true" => "SQS-managed".to_owned(),
        MANAGED_SSE => "none".to_owned(),
        REDRIVE => {
            let count = serde_json::from_str::<Value>(value)
                .ok()
                .and_then(|policy| policy.get("maxReceiveCount").map(Value::to_string))
                .unwrap_or_else(|| "?".to_owned());
            format!("to {dlq_name} after {} receives", count.trim_matches('"'))
        }
        _ => value.to_owned(),
    }
}

/// "retention 14 days", "redrive to q-dlq after 5 receives".
fn describe_attribute(name: &str, value: &str, dlq_name: &str) -> String {
    format!(
        "{} {}",
        attribute_label(name),
        describe_value(name, value, dlq_name)
    )
}

async fn find(sqs: &Client, name: &str) -> Result<Option<QueueRef>> {
    let url = match sqs.get_queue_url().queue_name(name).send().await {
        Ok(output) => output.queue_url().unwrap_or_default().to_owned(),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|service| service.is_queue_does_not_exist())
                || error
                    .code()
                    .is_some_and(|code| code.contains("NonExistentQueue")) =>
        {
            return Ok(None);
        }
        Err(error) => return Err(aws(format!("GetQueueUrl {name}"), &error)),
    };
    read(sqs, name, url).await.map(Some)
}

async fn read(sqs: &Client, name: &str, url: String) -> Result<QueueRef> {
    let output = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .map_err(|error| aws(format!("GetQueueAttributes {name}"), &error))?;
    let attributes: HashMap<String, String> = output
        .attributes()
        .map(|attributes| {
            attributes
                .iter()
                .map(|(key, value)| (key.as_str().to_owned(), value.clone()))
                .collect()
        })
        .unwrap_or_default();
    let arn = attributes.get(QUEUE_ARN).cloned().unwrap_or_default();
    Ok(QueueRef {
        url,
        arn,
        attributes,
    })
}

/// Creates the queue or updates the attributes that differ. Returns the queue, or `None`
/// when dry-running a queue that does not exist yet.
async fn ensure(
    sqs: &Client,
    name: &str,
    desired: &BTreeMap<&'static str, String>,
    dlq_name: &str,
    plan: &mut Plan<'_>,
) -> Result<Option<QueueRef>> {
    let Some(current) = find(sqs, name).await? else {
        let settings: Vec<String> = desired
            .iter()
            .map(|(attribute, value)| describe_attribute(attribute, value, dlq_name))
            .collect();
        if !plan.change(format!("create queue {name}: {}", settings.join(", "))) {
            return Ok(None);
        }
        let mut create = sqs.create_queue().queue_name(name);
        for (attribute, value) in desired {
            create = create.attributes(QueueAttributeName::from(*attribute), value);
        }
        let output = create
            .send()
            .await
            .map_err(|error| aws(format!("CreateQueue {name}"), &error))?;
        let url = output.queue_url().unwrap_or_default().to_owned();
        return read(sqs, name, url).await.map(Some);
    };
    let differing: Vec<(&str, &String)> = desired
        .iter()
        .filter(|(attribute, value)| !attribute_matches(attribute, value, &current.attributes))
        .map(|(attribute, value)| (*attribute, value))
        .collect();
    if differing.is_empty() {
        return Ok(Some(current));
    }
    let mut apply = false;
    for (attribute, value) in &differing {
        let was = current
            .attributes
            .get(*attribute)
            .map(|old| format!(" (was {})", describe_value(attribute, old, dlq_name)))
            .unwrap_or_default();
        apply |= plan.change(format!(
            "set {} of queue {name}: {}{was}",
            attribute_label(attribute),
            describe_value(attribute, value, dlq_name)
        ));
    }
    if apply {
        let mut set = sqs.set_queue_attributes().queue_url(&current.url);
        for (attribute, value) in &differing {
            set = set.attributes(QueueAttributeName::from(*attribute), value.as_str());
        }
        set.send()
            .await
            .map_err(|error| aws(format!("SetQueueAttributes {name}"), &error))?;
        return read(sqs, name, current.url.clone()).await.map(Some);
    }
    Ok(Some(current))
}

/// The dead-letter queue, then the audit queue redriving to it. Returns the audit queue
/// (`None` when dry-running and it does not exist yet).
pub(crate) async fn apply(
    sqs: &Client,
    config: &ProvisionConfig,
    plan: &mut Plan<'_>,
) -> Result<Option<QueueRef>> {
    let dlq = ensure(
        sqs,
        &config.dlq_name,
        &dlq_attributes(),
        &config.dlq_name,
        plan,
    )
    .await?;
    // Dry-running a new dead-letter queue: its ARN will be the audit queue's with the
    // DLQ's name (same account and region), if the audit queue exists.
    let dlq_arn = match &dlq {
        Some(dlq) => dlq.arn.clone(),
        None => match find(sqs, &config.queue_name).await? {
            Some(queue) => sibling_arn(&queue.arn, &config.dlq_name),
            None => config.dlq_name.clone(),
        },
    };
    ensure(
        sqs,
        &config.queue_name,
        &queue_attributes(config, &dlq_arn),
        &config.dlq_name,
        plan,
    )
    .await
}

fn sibling_arn(arn: &str, name: &str) -> String {
    match arn.rsplit_once(':') {
        Some((base, _)) => format!("{base}:{name}"),
        None => name.to_owned(),
    }
}

/// Sets the queue policy admitting the aggregate topics. `topic_arns` holds `None` for a
/// topic a dry run would create.
pub(crate) async fn apply_policy(
    sqs: &Client,
    config: &ProvisionConfig,
    queue: Option<&QueueRef>,
    topics: &[(String, Option<String>)],
    plan: &mut Plan<'_>,
) -> Result<()> {
    let names: Vec<&str> = topics.iter().map(|(name, _)| name.as_str()).collect();
    let description = format!(
        "set policy of queue {}: SendMessage from sns.amazonaws.com for {} only",
        config.queue_name,
        names.join(", ")
    );
    let arns: Option<Vec<String>> = topics.iter().map(|(_, arn)| arn.clone()).collect();
    let (Some(queue), Some(arns)) = (queue, arns) else {
        plan.change(description);
        return Ok(());
    };
    let desired = queue_policy(&queue.arn, &arns);
    if policy_matches(queue.attributes.get(POLICY).map(String::as_str), &desired) {
        return Ok(());
    }
    if plan.change(description) {
        sqs.set_queue_attributes()
            .queue_url(&queue.url)
            .attributes(QueueAttributeName::Policy, desired.to_string())
            .send()
            .await
            .map_err(|error| {
                aws(
                    format!("SetQueueAttributes Policy {}", config.queue_name),
                    &error,
                )
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn attributes_compare_as_sqs_means_them() {
        let dlq = "arn:aws:sqs:eu-west-1:123456789012:q-dlq";
        let desired = redrive_policy(dlq, 5);
        // moto and SQS write maxReceiveCount as a number or a string.
        for stored in [
            format!(r#"{{"deadLetterTargetArn": "{dlq}", "maxReceiveCount": 5}}"#),
            format!(r#"{{"maxReceiveCount":"5","deadLetterTargetArn":"{dlq}"}}"#),
        ] {
            assert!(attribute_matches(
                REDRIVE,
                &desired,
                &current(&[(REDRIVE, &stored)])
            ));
        }
        assert!(!attribute_matches(
            REDRIVE,
            &desired,
            &current(&[(REDRIVE, &redrive_policy(dlq, 3))])
        ));
        assert!(!attribute_matches(REDRIVE, &desired, &current(&[])));
        assert!(attribute_matches(
            VISIBILITY,
            "300",
            &current(&[(VISIBILITY, "300")])
        ));
        assert!(!attribute_matches(
            VISIBILITY,
            "300",
            &current(&[(VISIBILITY, "30")])
        ));
        assert!(attribute_matches(
            MANAGED_SSE,
            "true",
            &current(&[(MANAGED_SSE, "false"), (KMS_KEY, "alias/aws/sqs")])
        ));
        assert!(!attribute_matches(MANAGED_SSE, "true", &current(&[])));
    }

    #[test]
    fn policies_compare_as_iam_reads_them() {
        let queue = "arn:aws:sqs:eu-west-1:1:q";
        let topics = vec![
            "arn:aws:sns:eu-west-1:1:listing-events".to_owned(),
            "arn:aws:sns:eu-west-1:1:agent-events".to_owned(),
        ];
        let desired = queue_policy(queue, &topics);
        let reordered = json!({
            "Statement": [{
                "Condition": {"ArnEquals": {"aws:SourceArn": [topics[0], topics[1]]}},
                "Resource": queue,
                "Action": ["sqs:SendMessage"],
                "Principal": {"Service": "sns.amazonaws.com"},
                "Effect": "Allow",
                "Sid": POLICY_SID
            }],
            "Version": "2012-10-17"
        });
        assert!(policy_matches(Some(&reordered.to_string()), &desired));
        let fewer = queue_policy(queue, &topics[..1]);
        assert!(!policy_matches(Some(&fewer.to_string()), &desired));
        assert!(!policy_matches(None, &desired));
        assert!(!policy_matches(Some("not json"), &desired));
    }

    #[test]
    fn attributes_read_like_the_plan() {
        assert_eq!(
            describe_attribute(RETENTION, "1209600", "q-dlq"),
            "retention 14 days"
        );
        assert_eq!(
            describe_attribute(REDRIVE, &redrive_policy("arn", 5), "q-dlq"),
            "redrive to q-dlq after 5 receives"
        );
        assert_eq!(
            describe_attribute(MANAGED_SSE, "true", "q-dlq"),
            "encryption SQS-managed"
        );
        assert_eq!(
            sibling_arn("arn:aws:sqs:eu-west-1:1:q", "q-dlq"),
            "arn:aws:sqs:eu-west-1:1:q-dlq"
        );
    }
}
