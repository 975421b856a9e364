//! Command-line / environment configuration, parsed once into a validated [`IngesterConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use islets_core::store::StoreLocation;

use crate::error::{Error, Result};
use crate::pipeline::{FLUSH_RETRY, FlushRetry};

/// Where messages come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceKind {
    /// Long-poll an SQS queue (the audit queue subscribed to the `<aggregate>-events` topics).
    Sqs,
    /// Accept `POST /v1/ingest` (one message, or NDJSON).
    Http,
    /// Read an NDJSON file of SQS message bodies (backfills, benchmarks, the demo).
    File,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object a line.
    Json,
    /// Human-readable lines.
    Text,
}

/// Raw arguments of `islets-ingester`. Every flag can also be set through the `ISLETS_*`
/// environment variable named in its help; AWS settings come from the SDK's own chain
/// (`AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL`, instance roles, ...).
#[derive(Debug, Clone, Args)]
pub struct IngesterArgs {
    /// Where messages come from.
    #[arg(long, env = "ISLETS_SOURCE", value_enum)]
    pub source: SourceKind,

    /// The archive: s3://bucket/prefix, or a local directory.
    #[arg(long, env = "ISLETS_STORE", value_name = "URI")]
    pub store: String,

    /// SQS queue URL to drain (with --source sqs).
    #[arg(long, env = "ISLETS_QUEUE_URL", value_name = "URL")]
    pub queue_url: Option<String>,

    /// NDJSON file to ingest, one SQS message body per line (with --source file).
    #[arg(long, env = "ISLETS_INPUT", value_name = "FILE")]
    pub input: Option<PathBuf>,

    /// Address of the HTTP server: ingest route (--source http), /healthz, /readyz,
    /// /metrics. Default 127.0.0.1:8080 for the sqs and http sources; the file source
    /// serves nothing unless set.
    #[arg(long, env = "ISLETS_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// YAML file of bearer tokens (SHA-256 hashes, names, scopes; the query API's format):
    /// POST /v1/ingest then needs a token with the audit:ingest scope. Without it, the
    /// HTTP source only listens on loopback addresses.
    #[arg(long, env = "ISLETS_TOKENS_FILE", value_name = "FILE")]
    pub tokens_file: Option<PathBuf>,

    /// Where the events catalog is.
    #[command(flatten)]
    pub catalog: islets_cli::CatalogArgs,

    /// Drain the queue, flush, delete, and exit once it stays empty (drills, tests).
    #[arg(long, env = "ISLETS_EXIT_WHEN_IDLE")]
    pub exit_when_idle: bool,

    /// Concurrent long-polling receivers (each receives up to 10 messages per call).
    #[arg(long, env = "ISLETS_POLLERS", default_value_t = 8)]
    pub pollers: usize,

    /// Long-poll wait of each ReceiveMessage call (0-20 seconds).
    #[arg(long, env = "ISLETS_WAIT_TIME_SECS", default_value_t = 20)]
    pub wait_time_secs: u64,

    /// How long received messages stay hidden from other consumers (at least 3 ×
    /// --max-batch-age-secs). While a message is held (buffered, being stored) its
    /// visibility is extended by this much every third of it (needs
    /// sqs:ChangeMessageVisibility).
    #[arg(long, env = "ISLETS_VISIBILITY_TIMEOUT_SECS", default_value_t = 300)]
    pub visibility_timeout_secs: u64,

    /// Flush the buffer when it holds this many rows.
    #[arg(long, env = "ISLETS_MAX_BATCH_ROWS", default_value_t = FlushLimits::DEFAULT.max_rows)]
    pub max_batch_rows: usize,

    /// Flush the buffer when its messages add up to this many bytes.
    #[arg(long, env = "ISLETS_MAX_BATCH_BYTES", default_value_t = FlushLimits::DEFAULT.max_bytes)]
    pub max_batch_bytes: usize,

    /// Flush the buffer when its oldest message has waited this long. Default 30 s; 1 s
    /// with --source http, whose callers wait for their rows to be stored.
    #[arg(long, env = "ISLETS_MAX_BATCH_AGE_SECS")]
    pub max_batch_age_secs: Option<u64>,

    /// Flushes (encode + upload) running at once; more buffers wait (back-pressure).
    #[arg(long, env = "ISLETS_MAX_CONCURRENT_FLUSHES", default_value_t = FlushLimits::DEFAULT.max_concurrent_flushes)]
    pub max_concurrent_flushes: usize,

    /// Log format on stderr.
    #[arg(long, env = "ISLETS_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
}

/// When the buffer is flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushLimits {
    /// Flush when the buffer holds this many rows.
    pub max_rows: usize,
    /// Flush when the buffer holds this many bytes.
    pub max_bytes: usize,
    /// Flush when the oldest buffered row is this old.
    pub max_age: Duration,
    /// Flushes in flight at once; the receive loop pauses beyond them.
    pub max_concurrent_flushes: usize,
}

impl FlushLimits {
    /// The defaults: at 5,000 events/s the row limit flushes every 2 s and at most
    /// (1 + 2) × 10,000 messages are unacknowledged, far below SQS's 120,000 in-flight cap;
    /// at low rates the age limit bounds both latency and file count (120 files/hour).
    pub const DEFAULT: FlushLimits = FlushLimits {
        max_rows: 10_000,
        max_bytes: 64 * 1024 * 1024,
        max_age: Duration::from_secs(30),
        max_concurrent_flushes: 2,
    };

    /// Default buffer age of the HTTP source: its callers wait until their rows are stored.
    pub const HTTP_MAX_AGE: Duration = Duration::from_secs(1);
}

impl Default for FlushLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// SQS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsSettings {
    /// The audit queue.
    pub queue_url: String,
    /// Concurrent long polls.
    pub pollers: usize,
    /// Long-poll wait.
    pub wait_time: Duration,
    /// Visibility timeout asked for each receive (extended while held).
    pub visibility_timeout: Duration,
    /// Stop once the queue is empty (backfills, tests).
    pub exit_when_idle: bool,
}

/// The validated source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceConfig {
    /// Drain the audit SQS queue.
    Sqs(SqsSettings),
    /// Accept `POST /v1/ingest`.
    Http,
    /// Read an NDJSON file of SQS message bodies.
    File {
        /// The NDJSON file.
        input: PathBuf,
    },
}

/// The validated configuration `run` works from.
#[derive(Debug, Clone)]
pub struct IngesterConfig {
    /// Where events come from.
    pub source: SourceConfig,
    /// The archive.
    pub store: StoreLocation,
    /// The events catalog.
    pub events_dir: PathBuf,
    /// Where the HTTP server (ingest, health, metrics) listens.
    pub listen: Option<SocketAddr>,
    /// Bearer tokens for `POST /v1/ingest`; none means authentication is off.
    pub tokens_file: Option<PathBuf>,
    /// When the buffer is flushed.
    pub limits: FlushLimits,
    /// How a flush that cannot store its files is retried (not a flag: tests shorten it).
    pub flush_retry: FlushRetry,
}

/// Default address of the HTTP server.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// SQS's own bound on the visibility timeout (12 hours).
const MAX_VISIBILITY_TIMEOUT_SECS: u64 = 43_200;

impl IngesterArgs {
    /// The catalog directory: --events-dir (ISLETS_EVENTS_DIR), or the RFC's
    /// ISLETS_EVENTS_CONFIG_PATH when only that is given.
    pub fn catalog_dir(&self) -> PathBuf {
        self.catalog.dir()
    }

    /// Validates the arguments. Reads nothing from the environment or the disk.
    pub fn validate(&self) -> Result<IngesterConfig> {
        let store = StoreLocation::parse(&self.store)
            .map_err(|error| Error::Config(format!("--store: {error}")))?;
        let refuse = |flag: &str, source: &str| {
            Err(Error::Config(format!(
                "{flag} applies to --source {source} only"
            )))
        };
        if self.source != SourceKind::Sqs {
            if self.queue_url.is_some() {
                return refuse("--queue-url", "sqs");
            }
            if self.exit_when_idle {
                return refuse(
                    "--exit-when-idle",
                    "sqs (the file source always exits at the end of its input)",
                );
            }
        }
        if self.source != SourceKind::File && self.input.is_some() {
            return refuse("--input", "file");
        }
        let max_batch_age_secs = self.max_batch_age_secs.unwrap_or(match self.source {
            SourceKind::Http => FlushLimits::HTTP_MAX_AGE.as_secs(),
            SourceKind::Sqs | SourceKind::File => FlushLimits::DEFAULT.max_age.as_secs(),
        });
        if self.max_batch_rows == 0 || self.max_batch_bytes == 0 || max_batch_age_secs == 0 {
            return Err(Error::Config(
                "--max-batch-rows, --max-batch-bytes and --max-batch-age-secs must be greater than 0".to_owned(),
            ));
        }
        if self.max_concurrent_flushes == 0 {
            return Err(Error::Config(
                "--max-concurrent-flushes must be at least 1".to_owned(),
            ));
        }
        let source = match self.source {
            SourceKind::Sqs => {
                let Some(queue_url) = self.queue_url.clone() else {
                    return Err(Error::Config(
                        "--source sqs needs --queue-url (or ISLETS_QUEUE_URL)".to_owned(),
                    ));
                };
                if !(queue_url.starts_with("https://") || queue_url.starts_with("http://")) {
                    return Err(Error::Config(format!(
                        "--queue-url '{queue_url}' is not a queue URL (https://sqs.<region>.amazonaws.com/<account>/<queue>)"
                    )));
                }
                if self.pollers == 0 {
                    return Err(Error::Config("--pollers must be at least 1".to_owned()));
                }
                if self.wait_time_secs > 20 {
                    return Err(Error::Config(format!(
                        "--wait-time-secs {} is over SQS's maximum long-poll wait of 20 seconds",
                        self.wait_time_secs
                    )));
                }
                if self.visibility_timeout_secs > MAX_VISIBILITY_TIMEOUT_SECS {
                    return Err(Error::Config(format!(
                        "--visibility-timeout-secs {} is over SQS's maximum of {MAX_VISIBILITY_TIMEOUT_SECS}",
                        self.visibility_timeout_secs
                    )));
                }
                if self.visibility_timeout_secs < 3 * max_batch_age_secs {
                    return Err(Error::Config(format!(
                        "--visibility-timeout-secs ({}) must be at least 3 × --max-batch-age-secs ({}), so buffered messages are deleted before SQS delivers them again",
                        self.visibility_timeout_secs, max_batch_age_secs
                    )));
                }
                SourceConfig::Sqs(SqsSettings {
                    queue_url,
                    pollers: self.pollers,
                    wait_time: Duration::from_secs(self.wait_time_secs),
                    visibility_timeout: Duration::from_secs(self.visibility_timeout_secs),
                    exit_when_idle: self.exit_when_idle,
                })
            }
            SourceKind::Http => SourceConfig::Http,
            SourceKind::File => {
                let Some(input) = self.input.clone() else {
                    return Err(Error::Config(
                        "--source file needs --input FILE.ndjson (or ISLETS_INPUT)".to_owned(),
                    ));
                };
                SourceConfig::File { input }
            }
        };
        let listen = match (self.listen, self.source) {
            (Some(listen), _) => Some(listen),
            (None, SourceKind::File) => None,
            (None, _) => DEFAULT_LISTEN.parse().ok(),
        };
        if let (SourceKind::Http, Some(listen)) = (self.source, listen) {
            islets_http::check_listener(
                "--listen",
                listen,
                self.tokens_file.is_some(),
                "pass --tokens-file to accept ingest from other hosts",
            )
            .map_err(Error::Config)?;
        }
        Ok(IngesterConfig {
            source,
            store,
            events_dir: self.catalog_dir(),
            listen,
            tokens_file: self.tokens_file.clone(),
            limits: FlushLimits {
                max_rows: self.max_batch_rows,
                max_bytes: self.max_batch_bytes,
                max_age: Duration::from_secs(max_batch_age_secs),
                max_concurrent_flushes: self.max_concurrent_flushes,
            },
            flush_retry: FLUSH_RETRY,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: IngesterArgs,
    }

    fn parse(arguments: &[&str]) -> Result<IngesterConfig> {
        let mut all = vec!["islets-ingester"];
        all.extend_from_slice(arguments);
        Cli::try_parse_from(all)
            .expect("clap accepts the flags")
            .args
            .validate()
    }

    #[test]
    fn the_rfc_variable_name_still_names_the_catalog() {
        let with = |extra: &[&str]| {
            let mut all = vec!["islets-ingester", "--source", "http", "--store", "/tmp/a"];
            all.extend_from_slice(extra);
            Cli::try_parse_from(all).expect("parses").args
        };
        assert_eq!(
            with(&["--events-config-path", "/srv/events"]).catalog_dir(),
            PathBuf::from("/srv/events")
        );
        assert_eq!(
            with(&["--events-dir", "/a", "--events-config-path", "/b"]).catalog_dir(),
            PathBuf::from("/a"),
            "--events-dir wins"
        );
    }

    #[test]
    fn defaults_keep_in_flight_messages_far_below_the_sqs_cap() {
        let config = parse(&[
            "--source",
            "sqs",
            "--queue-url",
            "https://sqs.us-east-1.amazonaws.com/1/q",
            "--store",
            "s3://bucket/p",
        ])
        .expect("valid");
        // At 5k events/s the row limit triggers every 2 s; with the flushes allowed in flight
        // at most (1 + concurrent flushes) × rows messages are unacknowledged.
        let in_flight = (1 + config.limits.max_concurrent_flushes) * config.limits.max_rows;
        assert!(in_flight <= 120_000 / 4, "{in_flight}");
        let SourceConfig::Sqs(sqs) = config.source else {
            panic!("sqs")
        };
        assert!(sqs.visibility_timeout >= config.limits.max_age * 3);
        assert_eq!(config.listen, DEFAULT_LISTEN.parse().ok());
    }

    #[test]
    fn http_callers_wait_at_most_a_second_for_the_default_flush() {
        let http = parse(&["--source", "http", "--store", "d"]).expect("valid");
        assert_eq!(http.limits.max_age, FlushLimits::HTTP_MAX_AGE);
        let file = parse(&["--source", "file", "--input", "x", "--store", "d"]).expect("valid");
        assert_eq!(file.limits.max_age, FlushLimits::DEFAULT.max_age);
        assert_eq!(file.listen, None);
    }

    #[test]
    fn bad_flag_combinations_say_what_to_fix() {
        let cases: &[(&[&str], &str)] = &[
            (&["--source", "sqs", "--store", "d"], "needs --queue-url"),
            (&["--source", "file", "--store", "d"], "needs --input"),
            (
                &["--source", "file", "--input", "x", "--store", "gs://b/p"],
                "unsupported store scheme",
            ),
            (
                &["--source", "http", "--store", "d", "--exit-when-idle"],
                "--exit-when-idle applies to --source sqs",
            ),
            (
                &[
                    "--source",
                    "http",
                    "--store",
                    "d",
                    "--queue-url",
                    "https://q",
                ],
                "--queue-url applies",
            ),
            (
                &["--source", "sqs", "--queue-url", "q", "--store", "d"],
                "is not a queue URL",
            ),
            (
                &[
                    "--source",
                    "sqs",
                    "--queue-url",
                    "https://q",
                    "--store",
                    "d",
                    "--wait-time-secs",
                    "30",
                ],
                "20 seconds",
            ),
            (
                &[
                    "--source",
                    "sqs",
                    "--queue-url",
                    "https://q",
                    "--store",
                    "d",
                    "--visibility-timeout-secs",
                    "30",
                ],
                "at least 3 ×",
            ),
            (
                &[
                    "--source",
                    "file",
                    "--input",
                    "x",
                    "--store",
                    "d",
                    "--max-batch-rows",
                    "0",
                ],
                "greater than 0",
            ),
        ];
        for (arguments, expected) in cases {
            let error = parse(arguments)
                .expect_err(&format!("{arguments:?}"))
                .to_string();
            assert!(error.contains(expected), "{arguments:?}: {error}");
        }
    }
}
