//! The query API through the real `islets-query` binary, over an archive written by the real
//! ingester (the demo), with answers cross-checked against DuckDB on the same files.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::{QUERY, Running, demo_archive, python_lines, query_server};

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
    let (_directory, data_dir) = demo_archive(80).await;
    let (mut server, address) = query_server(&data_dir, &[]).await;
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

/// Starts `islets-query` on `store` (through `command`), returns it and its address.
async fn start_query(mut command: tokio::process::Command, store: &str) -> (Running, String) {
    command
        .arg("--store")
        .arg(store)
        .args(["--listen", "127.0.0.1:0"])
        .kill_on_drop(true);
    let mut server = Running::spawn(command);
    let address = server.address().await;
    (server, address)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_moto_s3_the_api_answers_as_on_local_disk() {
    let moto = crate::support::moto();
    let bucket = moto.create_bucket().await;
    let directory = tempfile::tempdir().expect("tempdir");
    let input = directory.path().join("messages.ndjson");
    let generated = tokio::process::Command::new(crate::support::AUDIT)
        .current_dir(crate::support::repo_root())
        .arg("generate")
        .arg("--out")
        .arg(&input)
        .args(["--flows", "60"])
        .output()
        .await
        .expect("generate");
    assert!(generated.status.success(), "{generated:?}");
    // The same messages, through the real ingester, into S3 and into a local directory.
    let s3_store = format!("s3://{bucket}/islets");
    let local_store = directory.path().join("archive").display().to_string();
    for store in [&s3_store, &local_store] {
        let output = moto
            .command(crate::support::INGESTER)
            .current_dir(crate::support::repo_root())
            .args(["--source", "file", "--input"])
            .arg(&input)
            .args(["--store", store])
            .output()
            .await
            .expect("ingest");
        assert!(
            output.status.success(),
            "{store}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let (_s3_server, s3) = start_query(moto.command(QUERY), &s3_store).await;
    let (_local_server, local) =
        start_query(tokio::process::Command::new(QUERY), &local_store).await;
    let client = reqwest::Client::new();

    let sample: serde_json::Value = client
        .get(format!(
            "http://{s3}/v1/events?event_type=listing.sold&limit=1"
        ))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let sold = &sample["events"][0];
    let event_id = sold["event_id"].as_str().expect("id").to_owned();
    let correlation_id = sold["correlation_id"].as_str().expect("corr").to_owned();
    for query in [
        String::new(),
        "event_type=listing.sold".to_owned(),
        "aggregate=company&schema_valid=false".to_owned(),
        format!("correlation_id={correlation_id}"),
        format!("event_id={event_id}&event_id=missing"),
        "order=desc&producer_system=agents-api".to_owned(),
    ] {
        let on_s3 = api_ids(&client, &s3, &query).await;
        let unique: BTreeSet<&String> = on_s3.iter().collect();
        assert_eq!(unique.len(), on_s3.len(), "{query}: duplicates collapsed");
        assert!(!on_s3.is_empty(), "{query} matches something");
        assert_eq!(on_s3, api_ids(&client, &local, &query).await, "{query}");
    }
    // An export streams every event once; one event; an unknown id.
    let export = client
        .get(format!(
            "http://{s3}/v1/events?format=ndjson&aggregate=listing"
        ))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("text");
    let exported: Vec<String> = export
        .lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).expect("ndjson line");
            event["event_id"].as_str().expect("id").to_owned()
        })
        .collect();
    assert_eq!(exported, api_ids(&client, &s3, "aggregate=listing").await);
    let one = client
        .get(format!("http://{s3}/v1/events/{event_id}"))
        .send()
        .await
        .expect("request");
    assert_eq!(one.status().as_u16(), 200);
    let missing = client
        .get(format!("http://{s3}/v1/events/no-such-event"))
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status().as_u16(), 404);
}
