//! The `<aggregate>-events` topics of the catalog and the audit queue's subscriptions to
//! them, in envelope mode (raw message delivery off: the SNS envelope carries TopicArn,
//! MessageId and Timestamp, which the archive keeps).

use std::collections::BTreeMap;

use aws_sdk_sns::Client;

use crate::error::{Error, Result, aws, preflight};
use crate::plan::Plan;
use crate::queues::QueueRef;

const RAW_DELIVERY: &str = "RawMessageDelivery";

/// A topic the queue subscribes to: its name, and its ARN (`None` when a dry run would
/// create it).
pub(crate) type Topic = (String, Option<String>);

/// Every topic of the account and region, by name (before any change).
pub(crate) async fn list(sns: &Client) -> Result<BTreeMap<String, String>> {
    let mut topics = BTreeMap::new();
    let mut pages = sns.list_topics().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|error| preflight("cannot list the SNS topics", &error))?;
        for topic in page.topics() {
            if let Some(arn) = topic.topic_arn()
                && let Some((_, name)) = arn.rsplit_once(':')
            {
                topics.insert(name.to_owned(), arn.to_owned());
            }
        }
    }
    Ok(topics)
}

/// Without `--create-topics`, every wanted topic must exist (before any change).
pub(crate) fn check_missing(
    existing: &BTreeMap<String, String>,
    wanted: &[String],
    create_topics: bool,
    region: &str,
) -> Result<()> {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|name| !existing.contains_key(*name))
        .map(String::as_str)
        .collect();
    if create_topics || missing.is_empty() {
        return Ok(());
    }
    let (noun, verb) = if missing.len() == 1 {
        ("topic", "does")
    } else {
        ("topics", "do")
    };
    Err(Error::Config(format!(
        "SNS {noun} {} {verb} not exist in {region}: the aggregates' producers own their topics; create them, check AWS_REGION, or pass --create-topics (development accounts)",
        missing.join(", ")
    )))
}

/// The key topics this command creates are encrypted with (the RFC: "SNS topics MUST be
/// encrypted at rest"): the account's AWS-managed SNS key.
pub(crate) const TOPIC_KMS_KEY: &str = "alias/aws/sns";

/// Of the existing `wanted` topics, those not encrypted at rest (no `KmsMasterKeyId`).
pub(crate) async fn unencrypted(
    sns: &Client,
    wanted: &[String],
    existing: &BTreeMap<String, String>,
) -> Result<Vec<String>> {
    let mut plain = Vec::new();
    for name in wanted {
        let Some(arn) = existing.get(name) else {
            continue;
        };
        let attributes = sns
            .get_topic_attributes()
            .topic_arn(arn)
            .send()
            .await
            .map_err(|error| aws(format!("GetTopicAttributes {name}"), &error))?;
        let encrypted = attributes
            .attributes()
            .and_then(|attributes| attributes.get("KmsMasterKeyId"))
            .is_some_and(|key| !key.is_empty());
        if !encrypted {
            plain.push(name.clone());
        }
    }
    Ok(plain)
}

/// Creates the missing topics (with `--create-topics`; `check_missing` refused otherwise),
/// encrypted at rest with [`TOPIC_KMS_KEY`].
pub(crate) async fn ensure(
    sns: &Client,
    wanted: &[String],
    existing: &BTreeMap<String, String>,
    plan: &mut Plan<'_>,
) -> Result<Vec<Topic>> {
    let mut topics = Vec::new();
    for name in wanted {
        if let Some(arn) = existing.get(name) {
            topics.push((name.clone(), Some(arn.clone())));
            continue;
        }
        if !plan.change(format!(
            "create topic {name} (encrypted with {TOPIC_KMS_KEY})"
        )) {
            topics.push((name.clone(), None));
            continue;
        }
        let output = sns
            .create_topic()
            .name(name)
            .attributes("KmsMasterKeyId", TOPIC_KMS_KEY)
            .send()
            .await
            .map_err(|error| aws(format!("CreateTopic {name}"), &error))?;
        topics.push((name.clone(), output.topic_arn().map(str::to_owned)));
    }
    Ok(topics)
}

/// Subscribes the queue to every topic, in envelope mode.
pub(crate) async fn subscribe(
    sns: &Client,
    queue_name: &str,
    queue: Option<&QueueRef>,
    topics: &[Topic],
    plan: &mut Plan<'_>,
) -> Result<()> {
    for (name, arn) in topics {
        let description = format!("subscribe queue {queue_name} to {name} (envelope delivery)");
        let (Some(queue), Some(topic_arn)) = (queue, arn) else {
            plan.change(description);
            continue;
        };
        match find_subscription(sns, topic_arn, &queue.arn).await? {
            None => {
                if plan.change(description) {
                    sns.subscribe()
                        .topic_arn(topic_arn)
                        .protocol("sqs")
                        .endpoint(&queue.arn)
                        .attributes(RAW_DELIVERY, "false")
                        .return_subscription_arn(true)
                        .send()
                        .await
                        .map_err(|error| {
                            aws(format!("Subscribe {queue_name} to {name}"), &error)
                        })?;
                }
            }
            Some(subscription_arn) => {
                let raw = raw_delivery(sns, &subscription_arn).await?;
                if raw
                    && plan.change(format!(
                        "set envelope delivery (raw message delivery off) on the subscription of queue {queue_name} to {name}"
                    ))
                {
                    sns.set_subscription_attributes()
                        .subscription_arn(&subscription_arn)
                        .attribute_name(RAW_DELIVERY)
                        .attribute_value("false")
                        .send()
                        .await
                        .map_err(|error| {
                            aws(
                                format!("SetSubscriptionAttributes {subscription_arn}"),
                                &error,
                            )
                        })?;
                }
            }
        }
    }
    Ok(())
}

/// The ARN of the queue's subscription to the topic, if any.
async fn find_subscription(
    sns: &Client,
    topic_arn: &str,
    queue_arn: &str,
) -> Result<Option<String>> {
    let mut pages = sns
        .list_subscriptions_by_topic()
        .topic_arn(topic_arn)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|error| aws(format!("ListSubscriptionsByTopic {topic_arn}"), &error))?;
        for subscription in page.subscriptions() {
            if subscription.protocol() == Some("sqs")
                && subscription.endpoint() == Some(queue_arn)
                && let Some(arn) = subscription.subscription_arn()
            {
                return Ok(Some(arn.to_owned()));
            }
        }
    }
    Ok(None)
}

async fn raw_delivery(sns: &Client, subscription_arn: &str) -> Result<bool> {
    // A subscription waiting for confirmation has no attributes to read yet.
    if !subscription_arn.starts_with("arn:") {
        return Ok(false);
    }
    let output = sns
        .get_subscription_attributes()
        .subscription_arn(subscription_arn)
        .send()
        .await
        .map_err(|error| {
            aws(
                format!("GetSubscriptionAttributes {subscription_arn}"),
                &error,
            )
        })?;
    Ok(output
        .attributes()
        .and_then(|attributes| attributes.get(RAW_DELIVERY))
        .is_some_and(|value| value.eq_ignore_ascii_case("true")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_topic_is_named_unless_topics_are_created() {
        let existing = BTreeMap::from([(
            "listing-events".to_owned(),
            "arn:aws:sns:eu-west-1:1:listing-events".to_owned(),
        )]);
        let wanted = vec!["listing-events".to_owned(), "agent-events".to_owned()];
        let error = check_missing(&existing, &wanted, false, "eu-west-1")
            .expect_err("missing")
            .to_string();
        assert!(
            error.contains("SNS topic agent-events does not exist in eu-west-1"),
            "{error}"
        );
        assert!(error.contains("--create-topics"), "{error}");
        check_missing(&existing, &wanted, true, "eu-west-1").expect("created on demand");
    }
}
