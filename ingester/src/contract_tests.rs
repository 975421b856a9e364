//! The delivery contract, against the in-memory queue: a message is deleted only after the
//! object holding its row is stored; a failed store means redelivery, never loss.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use islets_core::attributes::AttributeValue;
use islets_core::catalog::Catalog;
use islets_core::layout::Table;
use islets_core::parquet_file::decode_all;
use islets_core::schema::events_from_batch;
use islets_core::store::{Archive, StoreLocation};
use tokio_util::sync::CancellationToken;

use crate::config::{FlushLimits, IngesterConfig, SourceConfig, SqsSettings};
use crate::pipeline::FlushRetry;
use crate::queue::{InMemoryQueue, Queue};
use crate::{Components, Error, run_with};

fn events_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../events")
}

fn fill(queue: &InMemoryQueue, count: usize) -> Vec<String> {
    (0..count)
        .map(|index| {
            let event_id = format!("00000000-0000-4000-8000-{index:012}");
            let payload = serde_json::json!({
                "event_id": event_id, "listing_id": "L-1", "price": 10, "agent_id": "A-1",
                "sold_at": "2026-11-20T09:59:00Z", "timestamp": "2026-11-20T09:59:00Z"
            });
            let attributes = vec![
                ("aggregate".to_owned(), AttributeValue::string("listing")),
                ("event_type".to_owned(), AttributeValue::string("sold")),
                (
                    "producer_system".to_owned(),
                    AttributeValue::string("listing-management-api"),
                ),
                ("schema_version".to_owned(), AttributeValue::string("1.0.0")),
            ];
            queue.send(payload.to_string(), attributes);
            event_id
        })
        .collect()
}

fn config(store: &Path, exit_when_idle: bool) -> IngesterConfig {
    IngesterConfig {
        source: SourceConfig::Sqs(SqsSettings {
            queue_url: "memory://queue".to_owned(),
            pollers: 2,
            wait_time: Duration::from_millis(10),
            visibility_timeout: Duration::from_millis(300),
            exit_when_idle,
        }),
        store: StoreLocation::Local {
            root: store.to_owned(),
        },
        events_dir: events_dir(),
        listen: None,
        tokens_file: None,
        limits: FlushLimits {
            max_rows: 10,
            max_bytes: 1 << 20,
            max_age: Duration::from_millis(50),
            max_concurrent_flushes: 1,
        },
        flush_retry: FlushRetry::new(
            Duration::from_millis(10),
            Duration::from_millis(20),
            Some(2),
        ),
    }
}

fn components(store: &Path, queue: &Arc<InMemoryQueue>) -> Components {
    let queue: Arc<dyn Queue> = queue.clone();
    Components {
        catalog: Arc::new(Catalog::load_dir(&events_dir()).expect("catalog")),
        archive: Archive::open(
            &StoreLocation::Local {
                root: store.to_owned(),
            },
            None,
        )
        .expect("archive"),
        queue: Some(queue),
    }
}

async fn archived_ids(store: &Path) -> HashSet<String> {
    archived_rows(store).await.into_iter().collect()
}

/// Every archived event_id, duplicates included.
async fn archived_rows(store: &Path) -> Vec<String> {
    let archive = Archive::open(
        &StoreLocation::Local {
            root: store.to_owned(),
        },
        None,
    )
    .expect("archive");
    let mut ids = Vec::new();
    for (_, meta) in archive.list_files(Table::Events).await.expect("list") {
        for batch in decode_all(archive.get(&meta.location).await.expect("get")).expect("parquet") {
            ids.extend(
                events_from_batch(&batch)
                    .expect("rows")
                    .into_iter()
                    .map(|r| r.event_id),
            );
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_deleted_while_the_store_fails_and_nothing_is_lost_once_it_recovers() {
    let store = tempfile::tempdir().expect("tempdir");
    // A file where the events/ directory must go: every put of an events file fails.
    let blocker = store.path().join("events");
    std::fs::write(&blocker, "not a directory").expect("blocker");
    let queue = Arc::new(InMemoryQueue::default());
    let expected: HashSet<String> = fill(&queue, 25).into_iter().collect();

    let shutdown = CancellationToken::new();
    let run = tokio::spawn(run_with(
        config(store.path(), false),
        components(store.path(), &queue),
        shutdown.clone(),
        None,
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    shutdown.cancel();
    let result = run.await.expect("join");
    assert!(matches!(result, Err(Error::Flush(_))), "{result:?}");
    assert_eq!(
        queue.len(),
        25,
        "no message deleted while its rows were not stored"
    );
    assert!(
        queue.max_receive_count() >= 2,
        "messages were delivered again after the visibility timeout"
    );

    std::fs::remove_file(&blocker).expect("repair the store");
    let summary = run_with(
        config(store.path(), true),
        components(store.path(), &queue),
        CancellationToken::new(),
        None,
    )
    .await
    .expect("drains once the store works");
    assert!(
        queue.is_empty(),
        "every message deleted after its rows were stored"
    );
    assert_eq!(summary.events, 25);
    assert_eq!(archived_ids(store.path()).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_the_buffer_before_acknowledging_and_exiting() {
    let store = tempfile::tempdir().expect("tempdir");
    let queue = Arc::new(InMemoryQueue::default());
    let expected: HashSet<String> = fill(&queue, 7).into_iter().collect();
    let mut configuration = config(store.path(), false);
    // Neither rows nor age would flush within the test: only the shutdown does.
    configuration.limits.max_rows = 1_000;
    configuration.limits.max_age = Duration::from_secs(3600);
    if let SourceConfig::Sqs(settings) = &mut configuration.source {
        settings.visibility_timeout = Duration::from_secs(3600);
    }
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(run_with(
        configuration,
        components(store.path(), &queue),
        shutdown.clone(),
        None,
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while queue.depth().await.expect("depth").in_flight < 7 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "messages never received"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(archived_ids(store.path()).await.is_empty());
    assert_eq!(queue.len(), 7);
    shutdown.cancel();
    let summary = run.await.expect("join").expect("clean shutdown");
    assert_eq!(summary.events, 7);
    assert!(queue.is_empty());
    assert_eq!(archived_ids(store.path()).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_slower_than_the_visibility_timeout_is_not_delivered_again() {
    let store = tempfile::tempdir().expect("tempdir");
    let blocker = store.path().join("events");
    std::fs::write(&blocker, "not a directory").expect("blocker");
    let queue = Arc::new(InMemoryQueue::default());
    let expected: HashSet<String> = fill(&queue, 15).into_iter().collect();
    let mut configuration = config(store.path(), true);
    configuration.limits.max_rows = 1_000;
    // Retries through a failing store for several visibility timeouts (300 ms) before
    // the store recovers.
    configuration.flush_retry = FlushRetry::new(
        Duration::from_millis(100),
        Duration::from_millis(400),
        Some(30),
    );
    let run = tokio::spawn(run_with(
        configuration,
        components(store.path(), &queue),
        CancellationToken::new(),
        None,
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while queue.deliveries() < 15 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "messages never received"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    std::fs::remove_file(&blocker).expect("repair the store");
    let summary = run
        .await
        .expect("join")
        .expect("drains once the store works");
    assert!(queue.is_empty(), "every message deleted");
    assert!(
        queue.extensions() > 0,
        "the heartbeat extended the held messages"
    );
    assert_eq!(
        queue.deliveries(),
        15,
        "no message delivered again while its flush was retried"
    );
    assert_eq!(summary.events, 15);
    let rows = archived_rows(store.path()).await;
    assert_eq!(rows.len(), 15, "one row per message, no duplicates");
    assert_eq!(rows.into_iter().collect::<HashSet<_>>(), expected);
}
