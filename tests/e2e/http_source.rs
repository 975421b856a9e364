//! The HTTP source, through the real binary, into a local directory.

use std::time::Duration;

use islets_core::catalog::Catalog;
use islets_core::demo::{DemoOptions, generate};
use islets_core::layout::Table;
use islets_core::store::{Archive, StoreLocation};

use crate::support::{INGESTER, Running, count_by_id, events_dir, read_events, read_quarantine};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_ingest_answers_once_durable_and_rejects_bad_requests_without_storing() {
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
    let address = ingester.address().await;
    let client = reqwest::Client::new();
    let archive = Archive::open(
        &StoreLocation::Local {
            root: directory.path().to_owned(),
        },
        None,
    )
    .expect("archive");

    // Bad requests first: each gets a JSON error and nothing is stored.
    for (content_type, body, status, code) in [
        ("application/x-ndjson", "\n\n".to_owned(), 400, "empty_body"),
        (
            "application/xml",
            "<event/>".to_owned(),
            415,
            "unsupported_media_type",
        ),
        (
            "application/x-ndjson",
            "x".repeat(17 * 1024 * 1024),
            413,
            "payload_too_large",
        ),
        // What a cross-site form or no-cors fetch can send: refused.
        (
            "text/plain",
            "{}\n".to_owned(),
            415,
            "unsupported_media_type",
        ),
        (
            "application/x-www-form-urlencoded",
            "a=b".to_owned(),
            415,
            "unsupported_media_type",
        ),
        // A million tiny lines would be a million rows in memory.
        (
            "application/x-ndjson",
            "{}\n".repeat(1_000_000),
            413,
            "too_many_lines",
        ),
    ] {
        let response = client
            .post(format!("http://{address}/v1/ingest"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), status);
        let error: serde_json::Value = response.json().await.expect("json error");
        assert_eq!(error["error"]["code"], code, "{error}");
    }
    assert!(
        archive
            .list_files(Table::Events)
            .await
            .expect("list")
            .is_empty()
    );

    let catalog = Catalog::load_dir(&events_dir()).expect("catalog");
    let data = generate(
        &catalog,
        &DemoOptions {
            flows: 20,
            ..DemoOptions::default()
        },
    );
    let body = data.lines.join("\n");
    let response = client
        .post(format!("http://{address}/v1/ingest"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("ingest");
    assert_eq!(response.status().as_u16(), 200);
    let outcome: serde_json::Value = response.json().await.expect("outcome");
    assert_eq!(outcome["messages"], data.lines.len());
    assert_eq!(outcome["quarantined"], data.poison_messages);

    // Answered means stored: the rows are readable now, before any shutdown.
    let rows = read_events(&archive).await;
    assert_eq!(rows.len(), data.events.len() + data.duplicate_deliveries);
    assert_eq!(count_by_id(&rows).len(), data.events.len());
    assert_eq!(read_quarantine(&archive).await.len(), data.poison_messages);

    let health = client
        .get(format!("http://{address}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
    ingester.signal(15);
    let status = ingester.wait(Duration::from_secs(30)).await;
    assert!(status.success(), "{}", ingester.log_text());
}
