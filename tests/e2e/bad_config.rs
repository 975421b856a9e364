//! Bad configuration: a message that says what to fix, exit status 2, nothing written.

use std::path::Path;
use std::process::Output;

use crate::support::{AUDIT, INGESTER, QUERY, events_dir, moto};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_refused(output: &Output, expected: &str) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains(expected), "expected '{expected}' in: {text}");
}

fn is_empty_or_missing(directory: &Path) -> bool {
    std::fs::read_dir(directory)
        .map(|mut entries| entries.next().is_none())
        .unwrap_or(true)
}

#[tokio::test]
async fn an_unknown_store_scheme_is_refused() {
    let output = tokio::process::Command::new(INGESTER)
        .args(["--source", "http", "--store", "gs://bucket/prefix"])
        .output()
        .await
        .expect("run");
    assert_refused(&output, "unsupported store scheme 'gs://'");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_refused_at_start_up() {
    let input = tempfile::NamedTempFile::new().expect("input");
    let output = tokio::process::Command::new(INGESTER)
        .args([
            "--source",
            "file",
            "--store",
            "s3://audit-bucket/x",
            "--input",
        ])
        .arg(input.path())
        .arg("--events-dir")
        .arg(events_dir())
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .output()
        .await
        .expect("run");
    assert_refused(&output, "cannot reach the store s3://audit-bucket/x");
    assert!(stderr(&output).contains("AWS_ENDPOINT_URL"));
}

#[tokio::test]
async fn a_malformed_catalog_names_the_file_and_the_path_and_nothing_is_written() {
    let catalog = tempfile::tempdir().expect("catalog dir");
    std::fs::write(
        catalog.path().join("listing.yaml"),
        "# Owner: Team (@team)\naggregate: listing\nevents:\n  sold:\n    description: x\n    version: one\n    schema: {type: object}\n",
    )
    .expect("write");
    let store = tempfile::tempdir().expect("store dir");
    let store_path = store.path().join("archive");
    let input = tempfile::NamedTempFile::new().expect("input");
    std::fs::write(input.path(), "{}\n").expect("input");
    let output = tokio::process::Command::new(INGESTER)
        .args(["--source", "file", "--input"])
        .arg(input.path())
        .arg("--store")
        .arg(&store_path)
        .arg("--events-dir")
        .arg(catalog.path())
        .output()
        .await
        .expect("run");
    assert_refused(&output, "listing.yaml: events.sold.version");
    assert!(is_empty_or_missing(&store_path), "nothing may be written");
}

#[tokio::test]
async fn a_missing_queue_or_input_is_refused_and_the_bucket_stays_empty() {
    let moto = moto();
    let bucket = moto.create_bucket().await;
    let missing_queue = format!("{}/123456789012/no-such-queue", moto.endpoint);
    let output = moto
        .command(INGESTER)
        .args([
            "--source",
            "sqs",
            "--queue-url",
            &missing_queue,
            "--store",
            &format!("s3://{bucket}/a"),
        ])
        .arg("--events-dir")
        .arg(events_dir())
        .output()
        .await
        .expect("run");
    assert_refused(&output, "cannot reach the queue");

    let output = moto
        .command(INGESTER)
        .args([
            "--source",
            "file",
            "--input",
            "/nonexistent/input.ndjson",
            "--store",
            &format!("s3://{bucket}/a"),
        ])
        .arg("--events-dir")
        .arg(events_dir())
        .output()
        .await
        .expect("run");
    assert_refused(&output, "cannot read --input /nonexistent/input.ndjson");

    let objects = moto
        .s3()
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .expect("list");
    assert_eq!(objects.key_count, Some(0), "nothing written");
}

#[tokio::test]
async fn conflicting_flags_say_what_to_fix() {
    let output = tokio::process::Command::new(INGESTER)
        .args(["--source", "sqs", "--store", "/tmp/x"])
        .output()
        .await
        .expect("run");
    assert_refused(&output, "--source sqs needs --queue-url");
}

#[tokio::test]
async fn the_other_commands_refuse_bad_input_with_a_message() {
    let output = tokio::process::Command::new(QUERY)
        .args(["--store", "gs://bucket/prefix"])
        .output()
        .await
        .expect("run");
    assert_refused(&output, "unsupported store scheme 'gs://'");

    let store = tempfile::tempdir().expect("store");
    let tokens = store.path().join("tokens.yaml");
    std::fs::write(
        &tokens,
        "tokens:\n  - name: a\n    sha256: plaintext-token\n    scopes: [audit:read]\n",
    )
    .expect("tokens");
    let output = tokio::process::Command::new(QUERY)
        .arg("--store")
        .arg(store.path())
        .arg("--tokens-file")
        .arg(&tokens)
        .output()
        .await
        .expect("run");
    assert_refused(&output, "tokens[0].sha256: not a hex SHA-256");

    let output = tokio::process::Command::new(AUDIT)
        .args(["generate", "--out", "/nonexistent/dir/out.ndjson"])
        .arg("--events-dir")
        .arg(events_dir())
        .output()
        .await
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("cannot write /nonexistent/dir/out.ndjson"),
        "{}",
        stderr(&output)
    );

    let data_dir = tempfile::tempdir().expect("data dir");
    let output = tokio::process::Command::new(AUDIT)
        .arg("demo")
        .arg("--data-dir")
        .arg(data_dir.path())
        .args(["--events-dir", "/nonexistent/events"])
        .output()
        .await
        .expect("run");
    // Refused before anything was done: 2, as every command (ErrorKind::Usage).
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("ISLETS_EVENTS_DIR"),
        "{}",
        stderr(&output)
    );
    assert!(
        is_empty_or_missing(&data_dir.path().join("events")),
        "nothing written"
    );
}

/// #12 item 2: `serve` runs with authentication off, so neither of its listeners may leave
/// loopback, whichever way the address arrives (flag, environment, IPv6, IPv4-mapped).
#[tokio::test]
async fn serve_refuses_every_listener_beyond_loopback() {
    let data_dir = tempfile::tempdir().expect("data dir");
    /// Flags, and one environment variable (name, value).
    type Case<'a> = (&'a [&'a str], Option<(&'a str, &'a str)>);
    let cases: [Case<'_>; 5] = [
        (&["--ingest-listen", "0.0.0.0:0"], None),
        (&["--ingest-listen", "[::]:0"], None),
        (&["--listen", "[::ffff:10.1.2.3]:0"], None),
        (&[], Some(("ISLETS_INGEST_LISTEN", "0.0.0.0:0"))),
        (&[], Some(("ISLETS_LISTEN", "[::]:0"))),
    ];
    for (args, env) in cases {
        let mut command = tokio::process::Command::new(AUDIT);
        command
            .arg("serve")
            .arg("--store")
            .arg(data_dir.path())
            .args(args)
            .kill_on_drop(true);
        if let Some((name, value)) = env {
            command.env(name, value);
        }
        let output = tokio::time::timeout(std::time::Duration::from_secs(60), command.output())
            .await
            .expect("refused at once, not served")
            .expect("run");
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?} {env:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains("only listens on loopback"),
            "{args:?} {env:?}: {}",
            stderr(&output)
        );
    }
    assert!(
        is_empty_or_missing(&data_dir.path().join("events")),
        "nothing written"
    );
}
