//! The drill's side of its queue: it takes only the messages it sent (marked with its
//! id) and leaves every other message for its consumer.

use std::time::Duration;

/// Whether an envelope body carries this drill's marker.
pub(super) fn sent_by_drill(body: &str, drill_id: &str) -> bool {
    let Ok(envelope) = serde_json::from_str::<serde_json::Value>(body) else {
        return false;
    };
    let attributes = &envelope["MessageAttributes"];
    if attributes[crate::message::MARKER_ID]["Value"].as_str() == Some(drill_id) {
        return true;
    }
    attributes[crate::message::MARKER_COMBINED]["Value"]
        .as_str()
        .and_then(|combined| serde_json::from_str::<serde_json::Value>(combined).ok())
        .is_some_and(|combined| combined["id"].as_str() == Some(drill_id))
}

/// Receives up to 10 messages; deletes and returns those this drill sent, and makes the
/// others visible again at once (another consumer's messages are not the drill's to take).
pub(super) async fn receive(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    wait: i32,
    drill_id: &str,
) -> Vec<String> {
    let Ok(answer) = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait)
        .send()
        .await
    else {
        tokio::time::sleep(Duration::from_millis(200)).await;
        return Vec::new();
    };
    let messages = answer.messages.unwrap_or_default();
    let mut bodies = Vec::with_capacity(messages.len());
    for message in messages {
        let body = message.body.clone().unwrap_or_default();
        let ours = sent_by_drill(&body, drill_id);
        if let Some(handle) = message.receipt_handle() {
            if ours {
                let _ = sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await;
            } else {
                let _ = sqs
                    .change_message_visibility()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .send()
                    .await;
            }
        }
        if ours {
            bodies.push(body);
        }
    }
    bodies
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_messages_carrying_the_drill_id_are_the_drills() {
        let envelope = |attributes: serde_json::Value| {
            serde_json::json!({"Type": "Notification", "Message": "{}", "MessageAttributes": attributes})
                .to_string()
        };
        let ours = envelope(serde_json::json!({"replay_id": {"Type": "String", "Value": "D1"}}));
        let combined = envelope(serde_json::json!({
            "replay": {"Type": "String", "Value": serde_json::json!({"id": "D1"}).to_string()}
        }));
        let other_drill =
            envelope(serde_json::json!({"replay_id": {"Type": "String", "Value": "D2"}}));
        let consumer =
            envelope(serde_json::json!({"event_type": {"Type": "String", "Value": "sold"}}));
        assert!(sent_by_drill(&ours, "D1"));
        assert!(sent_by_drill(&combined, "D1"));
        assert!(!sent_by_drill(&other_drill, "D1"));
        assert!(!sent_by_drill(&consumer, "D1"));
        assert!(!sent_by_drill("not json", "D1"));
    }
}
