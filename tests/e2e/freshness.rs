//! Freshness: a file stored in an hour long closed (a DLQ redrive, a backfill, a late
//! delivery) is answered by the query API within seconds, on a local directory and on S3.

use std::time::{Duration, Instant};

use islets_core::catalog::Catalog;
use islets_core::demo::{DemoOptions, generate};

use crate::support::{INGESTER, QUERY, Running, events_dir, moto, query_server};

/// The bound the query API promises for a newly stored file in any hour.
const VISIBLE_WITHIN: Duration = Duration::from_secs(5);

/// Warms the query server's listing, ingests events published three days ago, then asks
/// for one of them by id until it is answered; returns how long that took.
async fn first_answer_after_ingest(ingest: &str, query: &str) -> Duration {
    let client = reqwest::Client::new();
    let warm = client
        .get(format!("http://{query}/v1/events?limit=1"))
        .send()
        .await
        .expect("query");
    assert_eq!(warm.status(), 200, "the server answers before the ingest");

    let catalog = Catalog::load_dir(&events_dir()).expect("catalog");
    let data = generate(
        &catalog,
        &DemoOptions {
            flows: 3,
            days: 1,
            end: chrono::Utc::now() - chrono::Duration::hours(72),
            invalid_percent: 0,
            duplicate_percent: 0,
            poison_messages: 0,
            ..DemoOptions::default()
        },
    );
    let body = data.lines.join("\n") + "\n";
    let stored = client
        .post(format!("http://{ingest}/v1/ingest"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("ingest");
    assert_eq!(
        stored.status(),
        200,
        "{}",
        stored.text().await.unwrap_or_default()
    );
    let stored_at = Instant::now();

    let wanted = &data.events[0];
    assert!(
        wanted.published_at < chrono::Utc::now() - chrono::Duration::hours(71),
        "the event lies in an hour closed for days"
    );
    loop {
        let answer: serde_json::Value = client
            .get(format!(
                "http://{query}/v1/events?event_id={}",
                wanted.event_id
            ))
            .send()
            .await
            .expect("query")
            .json()
            .await
            .expect("json");
        let found = answer["events"]
            .as_array()
            .is_some_and(|events| events.len() == 1);
        let waited = stored_at.elapsed();
        if found {
            return waited;
        }
        assert!(
            waited < Duration::from_secs(30),
            "event {} not answered {waited:?} after it was stored: {answer}",
            wanted.event_id
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_stored_in_a_three_day_old_hour_is_answered_within_five_seconds_on_disk() {
    let directory = tempfile::tempdir().expect("tempdir");
    let mut command = tokio::process::Command::new(INGESTER);
    command
        .args(["--source", "http", "--listen", "127.0.0.1:0", "--store"])
        .arg(directory.path())
        .arg("--events-dir")
        .arg(events_dir())
        .args(["--max-batch-age-secs", "1"])
        .kill_on_drop(true);
    let mut ingester = Running::spawn(command);
    let ingest = ingester.address().await;
    let (_server, query) = query_server(directory.path(), &[]).await;
    let waited = first_answer_after_ingest(&ingest, &query).await;
    assert!(waited <= VISIBLE_WITHIN, "answered after {waited:?}");
    let journal = directory.path().join("journal");
    assert!(
        std::fs::read_dir(&journal).is_ok_and(|mut entries| entries.next().is_some()),
        "the flush left a journal entry in {}",
        journal.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_stored_in_a_three_day_old_hour_is_answered_within_five_seconds_on_s3() {
    let moto = moto();
    let bucket = moto.create_bucket().await;
    let store = format!("s3://{bucket}/islets");
    let mut command = moto.command(INGESTER);
    command
        .args([
            "--source",
            "http",
            "--listen",
            "127.0.0.1:0",
            "--store",
            &store,
        ])
        .arg("--events-dir")
        .arg(events_dir())
        .args(["--max-batch-age-secs", "1"]);
    let mut ingester = Running::spawn(command);
    let ingest = ingester.address().await;
    let mut command = moto.command(QUERY);
    command.args(["--store", &store, "--listen", "127.0.0.1:0"]);
    let mut server = Running::spawn(command);
    let query = server.address().await;
    let waited = first_answer_after_ingest(&ingest, &query).await;
    assert!(waited <= VISIBLE_WITHIN, "answered after {waited:?}");
    let journal = moto
        .s3()
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("islets/journal/")
        .send()
        .await
        .expect("list");
    assert!(
        journal.key_count().unwrap_or(0) > 0,
        "a journal entry on S3"
    );
}
