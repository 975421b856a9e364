//! Shared helpers: the moto endpoint, uniquely named AWS resources, running the binaries,
//! reading the archive back.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use islets_core::layout::Table;
use islets_core::parquet_file::decode_all;
use islets_core::record::{EventRecord, QuarantineRecord};
use islets_core::schema::{events_from_batch, quarantine_from_batch};
use islets_core::store::{Archive, StoreLocation};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The repository root (for `events/`).
pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn events_dir() -> PathBuf {
    repo_root().join("events")
}

/// The emulator every AWS test talks to.
#[derive(Clone)]
pub(crate) struct Moto {
    pub(crate) endpoint: String,
    pub(crate) sdk: SdkConfig,
}

/// The moto_server started by `scripts/test`. Fails (never skips) when it is missing.
#[allow(
    clippy::disallowed_methods,
    reason = "the test harness hands the emulator over in the environment"
)]
pub(crate) fn moto() -> Moto {
    let Ok(endpoint) = std::env::var("ISLETS_TEST_AWS_ENDPOINT") else {
        panic!(
            "ISLETS_TEST_AWS_ENDPOINT is not set: run the suite with `scripts/test`, which starts \
             moto_server, or start `moto_server -H 127.0.0.1 -p 5000` and set \
             ISLETS_TEST_AWS_ENDPOINT=http://127.0.0.1:5000"
        );
    };
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "islets-tests",
            )),
        )
        .build();
    Moto { endpoint, sdk }
}

/// The Python of the test venv (moto, boto3, duckdb, pyarrow).
#[allow(
    clippy::disallowed_methods,
    reason = "the test harness hands the venv over in the environment"
)]
pub(crate) fn python() -> String {
    std::env::var("ISLETS_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("ISLETS_TEST_PYTHON is not set: run the suite with `scripts/test`")
    })
}

/// Runs a Python snippet in the test venv; returns its stdout lines (panics with stderr).
pub(crate) async fn python_lines(script: &str) -> Vec<String> {
    let output = Command::new(python())
        .args(["-c", script])
        .output()
        .await
        .expect("python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `islets-audit demo --data-dir DATA_DIR EXTRA...`, from the repository root.
pub(crate) async fn run_demo(data_dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(AUDIT)
        .arg("demo")
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .current_dir(repo_root())
        .output()
        .await
        .expect("run demo")
}

/// A demo archive of `flows` business flows, written by the real ingester, in a temporary
/// directory (kept alive by the returned guard).
pub(crate) async fn demo_archive(flows: usize) -> (tempfile::TempDir, PathBuf) {
    let directory = tempfile::tempdir().expect("tempdir");
    let data_dir = directory.path().join("archive");
    let demo = run_demo(&data_dir, &["--flows", &flows.to_string()]).await;
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    (directory, data_dir)
}

/// `islets-query` over `store` on a free loopback port, with `extra` flags; the server and
/// its address.
pub(crate) async fn query_server(
    store: &std::path::Path,
    extra: &[&std::ffi::OsStr],
) -> (Running, String) {
    let mut command = Command::new(QUERY);
    command
        .arg("--store")
        .arg(store)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .kill_on_drop(true);
    let mut server = Running::spawn(command);
    let address = server.address().await;
    (server, address)
}

/// A lowercase name unique to this test run.
pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", ulid::Ulid::new().to_string().to_lowercase())
}

impl Moto {
    /// A command running one of the binaries against moto (AWS settings through the SDK's
    /// standard environment variables of the child process only).
    pub(crate) fn command(&self, binary: &str) -> Command {
        let mut command = Command::new(binary);
        command
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_PROFILE")
            .env("RUST_LOG", "info")
            .kill_on_drop(true)
            .stdin(Stdio::null());
        command
    }

    pub(crate) fn s3(&self) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&self.sdk)
                .force_path_style(true)
                .build(),
        )
    }

    pub(crate) fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk)
    }

    pub(crate) fn sns(&self) -> aws_sdk_sns::Client {
        aws_sdk_sns::Client::new(&self.sdk)
    }

    pub(crate) async fn create_bucket(&self) -> String {
        let bucket = unique("audit");
        self.s3()
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("create bucket");
        bucket
    }

    /// An audit queue with a DLQ (redrive after 3 receives). Returns (queue url, dlq url).
    pub(crate) async fn create_queue_with_dlq(
        &self,
        visibility_timeout_secs: u32,
    ) -> (String, String) {
        let sqs = self.sqs();
        let name = unique("audit-queue");
        let dlq_url = sqs
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .send()
            .await
            .expect("create dlq")
            .queue_url
            .expect("dlq url");
        let dlq_arn = self.queue_arn(&dlq_url).await;
        let queue_url = sqs
            .create_queue()
            .queue_name(&name)
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
                serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})
                    .to_string(),
            )
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
                visibility_timeout_secs.to_string(),
            )
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("queue url");
        (queue_url, dlq_url)
    }

    pub(crate) async fn queue_arn(&self, queue_url: &str) -> String {
        self.sqs()
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .and_then(|attributes| {
                attributes
                    .get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                    .cloned()
            })
            .expect("queue arn")
    }

    /// Visible + in-flight + delayed messages.
    pub(crate) async fn queue_total(&self, queue_url: &str) -> u64 {
        use aws_sdk_sqs::types::QueueAttributeName as Name;
        let attributes = self
            .sqs()
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(Name::All)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .unwrap_or_default();
        [
            Name::ApproximateNumberOfMessages,
            Name::ApproximateNumberOfMessagesNotVisible,
            Name::ApproximateNumberOfMessagesDelayed,
        ]
        .iter()
        .map(|name| {
            attributes
                .get(name)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
    }

    /// Opens the archive in `bucket/prefix` with the test credentials.
    pub(crate) fn archive(&self, bucket: &str, prefix: &str) -> Archive {
        let location = StoreLocation::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        };
        Archive::open(&location, Some(&self.sdk)).expect("open archive")
    }
}

/// Every row of the `events` table, with the key of the file it was read from.
pub(crate) async fn read_events(archive: &Archive) -> Vec<(String, EventRecord)> {
    let mut rows = Vec::new();
    for (_, meta) in archive
        .list_files(Table::Events)
        .await
        .expect("list events")
    {
        let bytes = archive.get(&meta.location).await.expect("get");
        for batch in decode_all(bytes).expect("valid parquet") {
            for record in events_from_batch(&batch).expect("events schema") {
                rows.push((meta.location.to_string(), record));
            }
        }
    }
    rows
}

/// Every row of the `quarantine` table.
pub(crate) async fn read_quarantine(archive: &Archive) -> Vec<QuarantineRecord> {
    let mut rows = Vec::new();
    for (_, meta) in archive
        .list_files(Table::Quarantine)
        .await
        .expect("list quarantine")
    {
        let bytes = archive.get(&meta.location).await.expect("get");
        for batch in decode_all(bytes).expect("valid parquet") {
            rows.extend(quarantine_from_batch(&batch).expect("quarantine schema"));
        }
    }
    rows
}

/// A running binary whose stderr is collected; `address()` waits for its "listening" log.
pub(crate) struct Running {
    pub(crate) child: Child,
    lines_rx: tokio::sync::mpsc::UnboundedReceiver<String>,
    pub(crate) log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Running {
    pub(crate) fn spawn(mut command: Command) -> Running {
        command.stderr(Stdio::piped()).stdout(Stdio::piped());
        let mut child = command.spawn().expect("spawn binary");
        let stderr = child.stderr.take().expect("stderr");
        let (lines_tx, lines_rx) = tokio::sync::mpsc::unbounded_channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log_copy = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                log_copy.lock().expect("log").push(line.clone());
                let _ = lines_tx.send(line);
            }
        });
        Running {
            child,
            lines_rx,
            log,
        }
    }

    /// The address from the `listening` log line.
    pub(crate) async fn address(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines_rx.recv())
                .await
                .unwrap_or_else(|_| panic!("no listening line; log: {:?}", self.log_text()))
                .unwrap_or_else(|| panic!("exited before listening; log: {}", self.log_text()));
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
                && value["message"] == "listening"
            {
                return value["address"].as_str().expect("address").to_owned();
            }
        }
    }

    pub(crate) fn log_text(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    /// Waits for exit; panics with the log after `timeout`.
    pub(crate) async fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.expect("wait"),
            Err(_) => {
                let _ = self.child.start_kill();
                panic!(
                    "binary did not exit within {timeout:?}; log:\n{}",
                    self.log_text()
                )
            }
        }
    }

    /// Sends a signal (SIGTERM = 15, SIGKILL = 9).
    pub(crate) fn signal(&self, signal: i32) {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

/// Counts rows by event_id.
pub(crate) fn count_by_id(rows: &[(String, EventRecord)]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for (_, record) in rows {
        *counts.entry(record.event_id.clone()).or_insert(0) += 1;
    }
    counts
}

/// The ingester binary.
pub(crate) const INGESTER: &str = env!("CARGO_BIN_EXE_islets-ingester");
/// The query API binary.
pub(crate) const QUERY: &str = env!("CARGO_BIN_EXE_islets-query");
/// The umbrella binary.
pub(crate) const AUDIT: &str = env!("CARGO_BIN_EXE_islets-audit");
