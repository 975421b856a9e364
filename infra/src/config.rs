//! Command-line / environment configuration of `islets-audit provision`, parsed once into a
//! validated [`ProvisionConfig`].

use std::fmt;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::error::{Error, Result};
use crate::table::{self, TableLocation};

/// The RFC's retention floor: the archive keeps events for at least a year.
pub(crate) const MIN_RETENTION_DAYS: u32 = 365;
/// Athena's smallest per-query scan cutoff (10 MB).
pub(crate) const MIN_BYTES_SCANNED_CUTOFF: u64 = 10_000_000;
/// SQS's bound on the visibility timeout (12 hours).
const MAX_VISIBILITY_TIMEOUT_SECS: u32 = 43_200;
/// SQS's bound on a redrive policy's maxReceiveCount.
const MAX_RECEIVE_COUNT: u32 = 1_000;
/// Suffix of the dead-letter queue's name.
pub(crate) const DLQ_SUFFIX: &str = "-dlq";
/// Key prefix of the Athena results in the archive bucket, by default (outside the archive
/// prefix, with its own 30-day lifecycle rule).
pub(crate) const DEFAULT_RESULTS_PREFIX: &str = "athena-results/";

/// S3 Object Lock retention mode of a write-once bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ObjectLockMode {
    /// No one, the root user included, can delete or overwrite an object version before
    /// its retention ends. Irreversible.
    Compliance,
    /// Users with s3:BypassGovernanceRetention can still delete locked versions.
    Governance,
}

impl ObjectLockMode {
    /// The S3 API's name of the mode.
    pub fn as_s3(self) -> &'static str {
        match self {
            ObjectLockMode::Compliance => "COMPLIANCE",
            ObjectLockMode::Governance => "GOVERNANCE",
        }
    }
}

/// Raw arguments of `islets-audit provision`. Every flag can also be set through the
/// `ISLETS_*` environment variable named in its help; the variables shared with
/// `islets-ingester` and `islets-query` mean the same value there. AWS settings come from
/// the SDK's own chain (`AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL`, roles, ...).
#[allow(
    rustdoc::invalid_html_tags,
    reason = "clap shows these doc comments as --help text, where <aggregate> is meant literally"
)]
#[derive(Debug, Clone, Args)]
pub struct ProvisionArgs {
    /// The archive bucket, created when missing (3-63 lowercase letters, digits, '.', '-').
    /// Required, except with --print-ddl.
    #[arg(long, env = "ISLETS_BUCKET", value_name = "NAME")]
    pub bucket: Option<String>,

    /// Key prefix of the archive in the bucket: the ingester's --store is
    /// s3://BUCKET/PREFIX. Not under the Athena results.
    #[arg(long, env = "ISLETS_PREFIX", default_value = "islets")]
    pub prefix: String,

    /// Days after which archived objects under PREFIX/ expire; at least 365 (the RFC's
    /// one year).
    #[arg(
        long,
        env = "ISLETS_RETENTION_DAYS",
        value_name = "DAYS",
        default_value_t = 400
    )]
    pub retention_days: u32,

    /// KMS key (id, ARN or alias/NAME) for SSE-KMS on the archive and the Athena results;
    /// it must exist in the region. Default: SSE-S3.
    #[arg(long, env = "ISLETS_KMS_KEY_ID", value_name = "KEY")]
    pub kms_key_id: Option<String>,

    /// Name of the audit queue; its dead-letter queue is NAME-dlq.
    #[arg(
        long,
        env = "ISLETS_QUEUE_NAME",
        value_name = "NAME",
        default_value = "islets-audit"
    )]
    pub queue_name: String,

    /// The audit queue's visibility timeout: at least 3 × the ingester's
    /// --max-batch-age-secs (the ingester also sends its own with every receive).
    #[arg(
        long,
        env = "ISLETS_VISIBILITY_TIMEOUT_SECS",
        value_name = "SECS",
        default_value_t = 300
    )]
    pub visibility_timeout_secs: u32,

    /// Receives after which a message moves to the dead-letter queue (1-1000).
    #[arg(
        long,
        env = "ISLETS_MAX_RECEIVE_COUNT",
        value_name = "N",
        default_value_t = 5
    )]
    pub max_receive_count: u32,

    /// Where the events catalog is.
    #[command(flatten)]
    pub catalog: islets_cli::CatalogArgs,

    /// Create the <aggregate>-events topics that do not exist (development accounts).
    /// Without it a missing topic is an error: in production the producers own them.
    #[arg(long, env = "ISLETS_CREATE_TOPICS")]
    pub create_topics: bool,

    /// Glue database of the `events` table (the query service's --athena-database; the
    /// old spelling --glue-database is accepted for one release).
    #[arg(
        long = "athena-database",
        alias = "glue-database",
        env = "ISLETS_ATHENA_DATABASE",
        value_name = "NAME",
        default_value = "islets_audit"
    )]
    pub glue_database: String,

    /// Athena workgroup to create (the query service's --athena-workgroup).
    #[arg(
        long,
        env = "ISLETS_ATHENA_WORKGROUP",
        value_name = "NAME",
        default_value = "islets-audit"
    )]
    pub athena_workgroup: String,

    /// Where the workgroup writes query results, enforced for every query.
    /// Default: s3://BUCKET/athena-results/ (expired after 30 days). The query service's
    /// --athena-output; the old spelling --athena-results is accepted for one release.
    #[arg(
        long = "athena-output",
        alias = "athena-results",
        env = "ISLETS_ATHENA_OUTPUT",
        value_name = "URI"
    )]
    pub athena_results: Option<String>,

    /// Bytes one Athena query may scan before it is cancelled (default 100 GiB; at least
    /// 10 MB).
    #[arg(
        long,
        env = "ISLETS_BYTES_SCANNED_CUTOFF",
        value_name = "BYTES",
        default_value_t = 107_374_182_400
    )]
    pub bytes_scanned_cutoff: u64,

    /// Create the bucket with S3 Object Lock (write-once), with a default retention of
    /// --retention-days in this mode. Only when the bucket is created: an existing bucket
    /// without Object Lock is refused.
    #[arg(long, env = "ISLETS_OBJECT_LOCK", value_enum, value_name = "MODE")]
    pub object_lock: Option<ObjectLockMode>,

    /// Print the changes that would be made, and change nothing.
    #[arg(long, env = "ISLETS_DRY_RUN")]
    pub dry_run: bool,

    /// Print the Athena CREATE EXTERNAL TABLE statement of the events table (for
    /// --athena-database and s3://BUCKET/PREFIX; ${BucketName} without --bucket) and exit.
    /// Needs no AWS access.
    #[arg(long, env = "ISLETS_PRINT_DDL")]
    pub print_ddl: bool,
}

/// Where the workgroup's results go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultsLocation {
    /// The bucket.
    pub bucket: String,
    /// Key prefix, ending with `/` unless empty.
    pub key_prefix: String,
}

impl fmt::Display for ResultsLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key_prefix)
    }
}

/// The validated configuration `provision` works from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionConfig {
    /// The archive bucket (`--bucket`).
    pub bucket: String,
    /// Without slashes at either end.
    pub prefix: String,
    /// Days the archive is kept (`--retention-days`).
    pub retention_days: u32,
    /// The KMS key encrypting the archive; `None`: SSE-S3.
    pub kms_key_id: Option<String>,
    /// The audit queue's name.
    pub queue_name: String,
    /// The dead-letter queue's name.
    pub dlq_name: String,
    /// The audit queue's visibility timeout.
    pub visibility_timeout_secs: u32,
    /// Receives before a message moves to the dead-letter queue.
    pub max_receive_count: u32,
    /// The events catalog.
    pub events_dir: PathBuf,
    /// Create the `<aggregate>-events` topics that do not exist (`--create-topics`).
    pub create_topics: bool,
    /// The Glue database (`--athena-database`).
    pub glue_database: String,
    /// The Athena workgroup.
    pub athena_workgroup: String,
    /// Where Athena writes results (`--athena-output`).
    pub athena_results: ResultsLocation,
    /// The workgroup's per-query bytes-scanned cutoff.
    pub bytes_scanned_cutoff: u64,
    /// Object Lock on the archive bucket (only when it is created).
    pub object_lock: Option<ObjectLockMode>,
    /// Report the changes without making them.
    pub dry_run: bool,
}

impl ProvisionConfig {
    /// Where the `events` table's data lives.
    pub fn table_location(&self) -> TableLocation {
        TableLocation {
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
        }
    }

    /// The archive's key prefix with its trailing slash (the lifecycle rule's filter).
    pub fn archive_key_prefix(&self) -> String {
        format!("{}/", self.prefix)
    }
}

impl ProvisionArgs {
    /// The catalog directory: --events-dir (ISLETS_EVENTS_DIR), or the RFC's
    /// ISLETS_EVENTS_CONFIG_PATH when only that is given.
    pub fn catalog_dir(&self) -> PathBuf {
        self.catalog.dir()
    }

    /// Validates the arguments. Reads nothing from the environment, the disk or AWS.
    pub fn validate(&self) -> Result<ProvisionConfig> {
        let Some(bucket) = self.bucket.as_deref() else {
            return Err(Error::Config(
                "--bucket (or ISLETS_BUCKET) is required: the archive bucket to create or update"
                    .to_owned(),
            ));
        };
        validate_bucket("--bucket", bucket)?;
        let prefix = validate_prefix(&self.prefix)?;
        if self.retention_days < MIN_RETENTION_DAYS {
            return Err(Error::Config(format!(
                "--retention-days {} is under {MIN_RETENTION_DAYS}: the archive keeps events for at least a year; pass {MIN_RETENTION_DAYS} or more (default 400)",
                self.retention_days
            )));
        }
        let kms_key_id = match self.kms_key_id.as_deref().map(str::trim) {
            None => None,
            Some("") => {
                return Err(Error::Config(
                    "--kms-key-id is empty: pass a key id, key ARN or alias/NAME, or leave it out for SSE-S3".to_owned(),
                ));
            }
            Some(key) => Some(key.to_owned()),
        };
        validate_queue_name(&self.queue_name)?;
        if self.visibility_timeout_secs > MAX_VISIBILITY_TIMEOUT_SECS {
            return Err(Error::Config(format!(
                "--visibility-timeout-secs {} is over SQS's maximum of {MAX_VISIBILITY_TIMEOUT_SECS}",
                self.visibility_timeout_secs
            )));
        }
        if !(1..=MAX_RECEIVE_COUNT).contains(&self.max_receive_count) {
            return Err(Error::Config(format!(
                "--max-receive-count {} is outside SQS's range 1-{MAX_RECEIVE_COUNT}",
                self.max_receive_count
            )));
        }
        validate_database(&self.glue_database)?;
        validate_workgroup(&self.athena_workgroup)?;
        let athena_results = match self.athena_results.as_deref() {
            None => ResultsLocation {
                bucket: bucket.to_owned(),
                key_prefix: DEFAULT_RESULTS_PREFIX.to_owned(),
            },
            Some(uri) => parse_results(uri)?,
        };
        if athena_results.bucket == bucket {
            let archive = format!("{prefix}/");
            if athena_results.key_prefix.starts_with(&archive)
                || archive.starts_with(&athena_results.key_prefix)
            {
                return Err(Error::Config(format!(
                    "--athena-output {athena_results} and the archive s3://{bucket}/{archive} overlap: keep query results outside the archive (default s3://{bucket}/{DEFAULT_RESULTS_PREFIX})"
                )));
            }
        }
        if self.bytes_scanned_cutoff < MIN_BYTES_SCANNED_CUTOFF {
            return Err(Error::Config(format!(
                "--bytes-scanned-cutoff {} is under Athena's minimum of {MIN_BYTES_SCANNED_CUTOFF} bytes",
                self.bytes_scanned_cutoff
            )));
        }
        Ok(ProvisionConfig {
            bucket: bucket.to_owned(),
            prefix,
            retention_days: self.retention_days,
            kms_key_id,
            dlq_name: format!("{}{DLQ_SUFFIX}", self.queue_name),
            queue_name: self.queue_name.clone(),
            visibility_timeout_secs: self.visibility_timeout_secs,
            max_receive_count: self.max_receive_count,
            events_dir: self.catalog_dir(),
            create_topics: self.create_topics,
            glue_database: self.glue_database.clone(),
            athena_workgroup: self.athena_workgroup.clone(),
            athena_results,
            bytes_scanned_cutoff: self.bytes_scanned_cutoff,
            object_lock: self.object_lock,
            dry_run: self.dry_run,
        })
    }

    /// The Athena DDL of the `events` table for these arguments (`--print-ddl`): the bucket
    /// is `${BucketName}` when `--bucket` is not given.
    pub fn events_ddl(&self) -> Result<String> {
        let bucket = match self.bucket.as_deref() {
            Some(bucket) => {
                validate_bucket("--bucket", bucket)?;
                bucket.to_owned()
            }
            None => table::BUCKET_PLACEHOLDER.to_owned(),
        };
        let location = TableLocation {
            bucket,
            prefix: validate_prefix(&self.prefix)?,
        };
        validate_database(&self.glue_database)?;
        Ok(table::events_ddl(&self.glue_database, &location))
    }
}

fn validate_bucket(flag: &str, bucket: &str) -> Result<()> {
    let bytes = bucket.as_bytes();
    let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'.';
    let alphanumeric =
        |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let valid = (3..=63).contains(&bytes.len())
        && bytes.iter().all(allowed)
        && alphanumeric(bytes.first())
        && alphanumeric(bytes.last())
        && !bucket.contains("..");
    if valid {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "{flag} '{bucket}' is not a valid S3 bucket name (3-63 lowercase letters, digits, '.' or '-', starting and ending with a letter or digit)"
        )))
    }
}

/// The prefix without slashes at either end; segments of letters, digits, `_.=-`.
fn validate_prefix(prefix: &str) -> Result<String> {
    let trimmed = prefix.trim().trim_matches('/');
    let segment_ok = |segment: &str| {
        segment
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'=' | b'-'))
    };
    if trimmed.is_empty() || !trimmed.split('/').all(segment_ok) {
        return Err(Error::Config(format!(
            "--prefix '{prefix}' is not a usable key prefix: segments of letters, digits, '_', '.', '=', '-' separated by '/', each starting with a letter or digit (default islets)"
        )));
    }
    Ok(trimmed.to_owned())
}

fn validate_queue_name(name: &str) -> Result<()> {
    let max = 80 - DLQ_SUFFIX.len();
    let valid = (1..=max).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "--queue-name '{name}' is not a usable SQS queue name: 1-{max} letters, digits, '-' or '_' (the dead-letter queue is NAME{DLQ_SUFFIX}; FIFO queues cannot subscribe to the standard aggregate topics)"
        )))
    }
}

fn validate_database(name: &str) -> Result<()> {
    let valid = (1..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "--athena-database '{name}' is not a usable database name: lowercase letters, digits and '_' (Athena-friendly)"
        )))
    }
}

fn validate_workgroup(name: &str) -> Result<()> {
    let valid = (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "--athena-workgroup '{name}' is not a valid workgroup name: 1-128 letters, digits, '.', '_' or '-'"
        )))
    }
}

fn parse_results(uri: &str) -> Result<ResultsLocation> {
    let refuse = || {
        Error::Config(format!(
            "--athena-output '{uri}' is not an S3 location: pass s3://BUCKET/PATH/ (default s3://<bucket>/{DEFAULT_RESULTS_PREFIX})"
        ))
    };
    let rest = uri.trim().strip_prefix("s3://").ok_or_else(refuse)?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    validate_bucket("--athena-output", bucket)?;
    let key = key.trim_matches('/');
    let key_prefix = if key.is_empty() {
        String::new()
    } else {
        format!("{key}/")
    };
    Ok(ResultsLocation {
        bucket: bucket.to_owned(),
        key_prefix,
    })
}

/// A valid configuration with the defaults, for unit tests.
#[cfg(test)]
pub(crate) fn sample_config() -> ProvisionConfig {
    ProvisionConfig {
        bucket: "audit-archive".into(),
        prefix: "islets".into(),
        retention_days: 400,
        kms_key_id: None,
        queue_name: "islets-audit".into(),
        dlq_name: "islets-audit-dlq".into(),
        visibility_timeout_secs: 300,
        max_receive_count: 5,
        events_dir: PathBuf::from("events"),
        create_topics: false,
        glue_database: "islets_audit".into(),
        athena_workgroup: "islets-audit".into(),
        athena_results: ResultsLocation {
            bucket: "audit-archive".into(),
            key_prefix: DEFAULT_RESULTS_PREFIX.into(),
        },
        bytes_scanned_cutoff: 107_374_182_400,
        object_lock: None,
        dry_run: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ProvisionArgs,
    }

    fn args(arguments: &[&str]) -> ProvisionArgs {
        let mut all = vec!["provision"];
        all.extend_from_slice(arguments);
        Cli::try_parse_from(all)
            .expect("clap accepts the flags")
            .args
    }

    fn parse(arguments: &[&str]) -> Result<ProvisionConfig> {
        args(arguments).validate()
    }

    #[test]
    fn defaults_match_the_template_and_the_ingester() {
        let config = parse(&["--bucket", "audit-archive"]).expect("valid");
        assert_eq!(config, sample_config());
        assert_eq!(config.prefix, "islets");
        assert_eq!(config.retention_days, 400);
        assert_eq!(config.queue_name, "islets-audit");
        assert_eq!(config.dlq_name, "islets-audit-dlq");
        assert_eq!(config.visibility_timeout_secs, 300);
        assert_eq!(config.max_receive_count, 5);
        assert_eq!(config.glue_database, "islets_audit");
        assert_eq!(config.athena_workgroup, "islets-audit");
        assert_eq!(
            config.athena_results.to_string(),
            "s3://audit-archive/athena-results/"
        );
        assert_eq!(config.bytes_scanned_cutoff, 100 * 1024 * 1024 * 1024);
        assert_eq!(config.kms_key_id, None);
        assert_eq!(config.object_lock, None);
        assert!(!config.dry_run && !config.create_topics);
    }

    #[test]
    fn a_prefix_loses_its_slashes_and_results_may_live_elsewhere() {
        let config = parse(&[
            "--bucket",
            "audit-archive",
            "--prefix",
            "/prod/islets/",
            "--athena-results",
            "s3://query-results/audit",
        ])
        .expect("valid");
        assert_eq!(config.prefix, "prod/islets");
        assert_eq!(config.archive_key_prefix(), "prod/islets/");
        assert_eq!(
            config.athena_results,
            ResultsLocation {
                bucket: "query-results".into(),
                key_prefix: "audit/".into()
            }
        );
    }

    #[test]
    fn bad_values_name_the_flag_and_what_to_use() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "--bucket (or ISLETS_BUCKET) is required"),
            (&["--bucket", "Bad_Bucket"], "--bucket 'Bad_Bucket'"),
            (
                &["--bucket", "b-1", "--retention-days", "300"],
                "--retention-days 300 is under 365",
            ),
            (&["--bucket", "b-1", "--prefix", "/"], "--prefix '/'"),
            (&["--bucket", "b-1", "--prefix", "a//b"], "--prefix"),
            (
                &["--bucket", "b-1", "--kms-key-id", " "],
                "--kms-key-id is empty",
            ),
            (
                &["--bucket", "b-1", "--queue-name", "a.fifo"],
                "--queue-name",
            ),
            (
                &["--bucket", "b-1", "--queue-name", &"q".repeat(77)],
                "--queue-name",
            ),
            (
                &["--bucket", "b-1", "--visibility-timeout-secs", "50000"],
                "--visibility-timeout-secs",
            ),
            (
                &["--bucket", "b-1", "--max-receive-count", "0"],
                "--max-receive-count 0",
            ),
            (
                // The old spelling still works (a hidden alias), the message says the new.
                &["--bucket", "b-1", "--glue-database", "Islets-Audit"],
                "--athena-database 'Islets-Audit'",
            ),
            (
                &["--bucket", "b-1", "--athena-workgroup", "a b"],
                "--athena-workgroup",
            ),
            (
                &["--bucket", "b-1", "--athena-results", "https://x/y"],
                "--athena-output 'https://x/y' is not an S3 location",
            ),
            (
                &[
                    "--bucket",
                    "b-1",
                    "--athena-results",
                    "s3://b-1/islets/results/",
                ],
                "overlap",
            ),
            (
                &["--bucket", "b-1", "--prefix", "athena-results/x"],
                "overlap",
            ),
            (
                &["--bucket", "b-1", "--athena-results", "s3://b-1"],
                "overlap",
            ),
            (
                &["--bucket", "b-1", "--bytes-scanned-cutoff", "1000"],
                "--bytes-scanned-cutoff 1000",
            ),
        ];
        for (arguments, expected) in cases {
            let error = parse(arguments).expect_err(expected).to_string();
            assert!(error.contains(expected), "{arguments:?}: {error}");
        }
    }

    #[test]
    fn print_ddl_needs_no_bucket() {
        let ddl = args(&[]).events_ddl().expect("ddl");
        assert!(
            ddl.contains("LOCATION 's3://${BucketName}/islets/events/'"),
            "{ddl}"
        );
        let ddl = args(&["--bucket", "b-1", "--prefix", "p", "--glue-database", "db"])
            .events_ddl()
            .expect("ddl");
        assert!(ddl.contains("`db`.`events`"), "{ddl}");
        assert!(ddl.contains("LOCATION 's3://b-1/p/events/'"), "{ddl}");
    }
}
