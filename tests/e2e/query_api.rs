//! The query API through the real `islets-query` binary, over an archive written by the real
//! ingester (the demo), with answers cross-checked against DuckDB on the same files.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::{QUERY, Running, python_lines, run_demo};

/// event_ids the API returns for `query`, following every cursor.
async fn api_ids(client: &reqwest::Client, address: &str, query: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut url = format!("http://{address}/v1/events?limit=50&{query}");
    loop {
        let page: serde_json::Value = client
            .get(&url)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        let events = page["events"]
            .as_array()
            .unwrap_or_else(|| panic!("{query}: {page}"));
        ids.extend(
            events
                .iter()
                .map(|event| event["event_id"].as_str().expect("id").to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                url = format!("http://{address}/v1/events?limit=50&{query}&cursor={cursor}")
            }
            None => return ids,
        }
    }
}

/// Distinct event_ids DuckDB finds with `condition`.
async fn duckdb_ids(data_dir: &std::path::Path, condition: &str) -> BTreeSet<String> {
    let script = format!(
        "import duckdb\nfor (event_id,) in duckdb.connect().execute(\"SELECT DISTINCT event_id FROM read_parquet('{}/events/*/*/*.parquet', hive_partitioning=true) WHERE {condition}\").fetchall(): print(event_id)",
        data_dir.display()
    );
    python_lines(&script).await.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_equal_duckdb_on_the_same_files() {
    let directory = tempfile::tempdir().expect("tempdir");
    let data_dir = directory.path().join("archive");
    let demo = run_demo(&data_dir, &["--flows", "80"]).await;
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );

    let mut command = tokio::process::Command::new(QUERY);
    command
        .arg("--store")
        .arg(&data_dir)
        .args(["--listen", "127.0.0.1:0"])
        .kill_on_drop(true);
    let mut server = Running::spawn(command);
    let address = server.address().await;
    let client = reqwest::Client::new();

    // A correlation id and a time window taken from the data itself.
    let sample: serde_json::Value = client
        .get(format!(
            "http://{address}/v1/events?event_type=listing.sold&limit=1"
        ))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let sold = &sample["events"][0];
    let correlation_id = sold["correlation_id"]
        .as_str()
        .expect("correlation")
        .to_owned();
    let published_at = sold["published_at"].as_str().expect("time").to_owned();
    let day = &published_at[..10];

    let cases = [
        (
            "event_type=listing.sold",
            "aggregate = 'listing' AND event_type = 'sold'".to_owned(),
        ),
        (
            "aggregate=company&schema_valid=false",
            "aggregate = 'company' AND NOT schema_valid".to_owned(),
        ),
        (
            "producer_system=agents-api",
            "producer_system = 'agents-api'".to_owned(),
        ),
        (
            &*format!("correlation_id={correlation_id}"),
            format!("correlation_id = '{correlation_id}'"),
        ),
        (
            &*format!("since={day}T00:00:00Z&until={day}T12:00:00Z"),
            format!(
                "published_at >= TIMESTAMPTZ '{day} 00:00:00+00' AND published_at < TIMESTAMPTZ '{day} 12:00:00+00'"
            ),
        ),
    ];
    for (query, condition) in cases {
        let ids = api_ids(&client, &address, query).await;
        let unique: BTreeSet<String> = ids.iter().cloned().collect();
        assert_eq!(unique.len(), ids.len(), "{query}: an event appeared twice");
        assert_eq!(unique, duckdb_ids(&data_dir, &condition).await, "{query}");
        assert!(
            !unique.is_empty(),
            "{query} should match something in the demo data"
        );
    }

    let flow: serde_json::Value = client
        .get(format!("http://{address}/v1/correlations/{correlation_id}"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let times: Vec<&str> = flow["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["occurred_at"].as_str().unwrap_or(""))
        .collect();
    assert!(
        times.windows(2).all(|pair| pair[0] <= pair[1]),
        "flow in occurrence order: {times:?}"
    );

    server.signal(15);
    let status = server.wait(Duration::from_secs(20)).await;
    assert!(status.success(), "{}", server.log_text());
}

#[tokio::test]
async fn the_api_refuses_to_listen_beyond_loopback_without_authentication() {
    let output = tokio::process::Command::new(QUERY)
        .args(["--store", "/tmp/nowhere", "--listen", "0.0.0.0:0"])
        .output()
        .await
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("only listens on loopback"));
}
