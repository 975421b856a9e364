//! The behaviour every [`Queue`] must have, as one suite that runs against each
//! implementation: [`InMemoryQueue`](crate::queue::InMemoryQueue) in the unit tests,
//! [`SqsQueue`](crate::queue::SqsQueue) on a real SQS endpoint (moto) in the end-to-end
//! tests, the way object_store holds every store to one integration suite. The delivery
//! contract tests run on the in-memory queue; this suite is what makes their verdict hold
//! for SQS.
//!
//! [`check`] panics, naming the broken rule, when the queue does not keep it. The queue
//! must be empty and used by nobody else; the suite takes about ten seconds (visibility
//! timeouts are whole seconds on SQS).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use islets_core::attributes::{AttributeValue, Attributes};

use crate::queue::{Queue, ReceivedMessage};

/// How long a receive may wait for the first message.
const WAIT: Duration = Duration::from_secs(1);
/// The visibility timeout of the suite's receives.
const HIDDEN: Duration = Duration::from_secs(3);

/// The messages the suite sends: text with multi-byte characters and every attribute type.
fn messages() -> Vec<(String, Attributes)> {
    (0..3)
        .map(|index| {
            let body = format!(
                r#"{{"n":{index},"note":"ação ✓ {}"}}"#,
                "x".repeat(index * 100)
            );
            let mut attributes: Attributes = vec![
                ("aggregate".to_owned(), AttributeValue::string("listing")),
                (
                    "count".to_owned(),
                    AttributeValue {
                        data_type: "Number".to_owned(),
                        value: index.to_string(),
                    },
                ),
                (
                    "blob".to_owned(),
                    AttributeValue::binary("Binary", &[0, 159, 146, 150, index as u8]),
                ),
            ];
            attributes.sort_by(|a, b| a.0.cmp(&b.0));
            (body, attributes)
        })
        .collect()
}

/// Receives until every body of `wanted` came once (or `attempts` receives returned
/// nothing new).
async fn receive_all<Q: Queue>(
    queue: &Q,
    wanted: usize,
    max_messages: i32,
) -> BTreeMap<String, ReceivedMessage> {
    let mut received = BTreeMap::new();
    let mut idle = 0;
    while received.len() < wanted && idle < 5 {
        let batch = queue
            .receive(max_messages, WAIT, HIDDEN)
            .await
            .expect("receive");
        assert!(
            batch.len() <= usize::try_from(max_messages).unwrap_or(10),
            "a receive returned {} messages, more than the {max_messages} asked for",
            batch.len()
        );
        if batch.is_empty() {
            idle += 1;
        }
        for message in batch {
            let body = message.body.clone();
            assert!(
                received.insert(body.clone(), message).is_none(),
                "a message was delivered twice while hidden: {body}"
            );
        }
    }
    received
}

/// Runs the suite against `queue`; `send` enqueues one message with its attributes.
pub async fn check<Q, S, Fut>(queue: &Q, send: S)
where
    Q: Queue,
    S: Fn(String, Attributes) -> Fut,
    Fut: Future<Output = ()>,
{
    // An empty queue answers a receive with nothing, after at most the wait.
    let nothing = queue.receive(10, WAIT, HIDDEN).await.expect("receive");
    assert!(nothing.is_empty(), "the queue is not empty: {nothing:?}");

    let sent = messages();
    for (body, attributes) in &sent {
        send(body.clone(), attributes.clone()).await;
    }
    let depth = queue.depth().await.expect("depth");
    assert_eq!(
        depth.visible + depth.in_flight,
        sent.len() as u64,
        "depth after sending: {depth:?}"
    );

    // Every message arrives once, byte for byte, with its attributes and its SQS
    // identity; no more per receive than asked for.
    let received = receive_all(queue, sent.len(), 2).await;
    assert_eq!(received.len(), sent.len(), "not every message was received");
    for (body, attributes) in &sent {
        let message = &received[body];
        let mut got = message.metadata.attributes.clone();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(&got, attributes, "attributes of {body}");
        assert!(message.metadata.message_id.is_some(), "no message id");
        assert!(
            message.metadata.sent_timestamp_ms.is_some(),
            "no sent timestamp"
        );
    }
    let ids: std::collections::HashSet<_> = received
        .values()
        .map(|message| message.metadata.message_id.clone())
        .collect();
    assert_eq!(ids.len(), sent.len(), "message ids are not distinct");

    // Received messages stay hidden for the visibility timeout.
    let again = queue
        .receive(10, Duration::ZERO, HIDDEN)
        .await
        .expect("receive");
    assert!(
        again.is_empty(),
        "hidden messages were delivered: {again:?}"
    );
    let depth = queue.depth().await.expect("depth");
    assert_eq!(
        (depth.visible, depth.in_flight),
        (0, sent.len() as u64),
        "depth while hidden: {depth:?}"
    );

    // The first is deleted, the second hidden for longer, the third left to time out.
    let [deleted, extended, expired] = [&sent[0].0, &sent[1].0, &sent[2].0];
    let failed = queue
        .delete(std::slice::from_ref(&received[deleted].receipt_handle))
        .await
        .expect("delete");
    assert!(failed.is_empty(), "a fresh receipt handle could not delete");
    let failed = queue
        .extend_visibility(
            std::slice::from_ref(&received[extended].receipt_handle),
            Duration::from_secs(30),
        )
        .await
        .expect("extend");
    assert!(failed.is_empty(), "a fresh receipt handle could not extend");

    tokio::time::sleep(HIDDEN + Duration::from_secs(1)).await;
    let redelivered = receive_all(queue, 1, 10).await;
    assert_eq!(
        redelivered.keys().collect::<Vec<_>>(),
        vec![expired],
        "after the timeout only the message neither deleted nor extended comes back"
    );
    let redelivery = &redelivered[expired];
    assert_eq!(redelivery.metadata.attributes.len(), sent[2].1.len());
    assert_ne!(
        redelivery.receipt_handle, received[expired].receipt_handle,
        "a redelivery has a receipt handle of its own"
    );

    // The latest handles delete what is left; the queue is empty again.
    let failed = queue
        .delete(&[
            received[extended].receipt_handle.clone(),
            redelivery.receipt_handle.clone(),
        ])
        .await
        .expect("delete");
    assert!(failed.is_empty(), "could not delete: {failed:?}");
    let depth = queue.depth().await.expect("depth");
    assert_eq!(
        depth.visible + depth.in_flight,
        0,
        "depth at the end: {depth:?}"
    );

    // A handle the queue never issued is refused, not an error of the whole call.
    let bogus = "not-a-receipt-handle".to_owned();
    let failed = queue
        .delete(std::slice::from_ref(&bogus))
        .await
        .expect("delete");
    assert_eq!(failed, vec![bogus], "a bogus receipt handle was accepted");
}

#[cfg(test)]
mod tests {
    use crate::queue::InMemoryQueue;

    #[tokio::test]
    async fn the_in_memory_queue_keeps_the_queue_contract() {
        let queue = InMemoryQueue::default();
        super::check(&queue, |body, attributes| {
            queue.send(body, attributes);
            async {}
        })
        .await;
    }
}
