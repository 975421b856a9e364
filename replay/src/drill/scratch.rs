//! The scratch topic and queue a drill creates when none is given, wired like an audit
//! queue (envelope mode, a policy for the topic alone) and removed afterwards.

use aws_sdk_sqs::types::QueueAttributeName;

use crate::error::{ReplayError, Result};

/// A scratch topic and queue, subscribed (envelope mode), removed after the drill.
pub(super) struct Scratch {
    pub(super) topic_arn: String,
    pub(super) queue_url: String,
}

impl Scratch {
    pub(super) async fn create(
        sns: &aws_sdk_sns::Client,
        sqs: &aws_sdk_sqs::Client,
        drill_id: &str,
    ) -> Result<Self> {
        let name = format!("islets-drill-{}", drill_id.to_lowercase());
        let failed = |what: &str, error: String| {
            ReplayError::Target(format!(
                "cannot create the drill's scratch {what} {name}: {error} (the replay role needs sns:CreateTopic and sqs:CreateQueue on islets-drill-*; or pass --topic-arn and --queue-url)"
            ))
        };
        let topic_arn = sns
            .create_topic()
            .name(&name)
            .send()
            .await
            .map_err(|error| failed("topic", crate::target::aws_message(&error)))?
            .topic_arn
            .unwrap_or_default();
        let queue_url = sqs
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .map_err(|error| failed("queue", crate::target::aws_message(&error)))?
            .queue_url
            .unwrap_or_default();
        let scratch = Scratch {
            topic_arn,
            queue_url,
        };
        let wired: Result<()> = async {
            let queue_arn = sqs
                .get_queue_attributes()
                .queue_url(&scratch.queue_url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .map_err(|error| failed("queue", crate::target::aws_message(&error)))?
                .attributes
                .and_then(|attributes| attributes.get(&QueueAttributeName::QueueArn).cloned())
                .unwrap_or_default();
            let policy = serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": scratch.topic_arn}}
                }]
            });
            sqs.set_queue_attributes()
                .queue_url(&scratch.queue_url)
                .attributes(QueueAttributeName::Policy, policy.to_string())
                .send()
                .await
                .map_err(|error| failed("queue policy", crate::target::aws_message(&error)))?;
            sns.subscribe()
                .topic_arn(&scratch.topic_arn)
                .protocol("sqs")
                .endpoint(queue_arn)
                .send()
                .await
                .map_err(|error| failed("subscription", crate::target::aws_message(&error)))?;
            Ok(())
        }
        .await;
        if let Err(error) = wired {
            scratch.remove(sns, sqs).await;
            return Err(error);
        }
        Ok(scratch)
    }

    pub(super) async fn remove(&self, sns: &aws_sdk_sns::Client, sqs: &aws_sdk_sqs::Client) {
        if let Err(error) = sns.delete_topic().topic_arn(&self.topic_arn).send().await {
            tracing::warn!(topic = %self.topic_arn, error = %crate::target::aws_message(&error), "scratch topic not removed");
        }
        if let Err(error) = sqs.delete_queue().queue_url(&self.queue_url).send().await {
            tracing::warn!(queue = %self.queue_url, error = %crate::target::aws_message(&error), "scratch queue not removed");
        }
    }
}
