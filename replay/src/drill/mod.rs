//! The quarterly recovery drill: replay a selection to a scratch SNS topic with an SQS
//! queue subscribed (or to a topic and queue given), drain the queue while sending, check
//! that every event arrived byte-identical (payload and attributes), measure throughput
//! and time to restore, remove the scratch infrastructure, and write a report an auditor
//! can read (Markdown, and JSON beside it).
//!
//! `DrillArgs` → [`DrillConfig`] (validated, nothing opened) → [`drill`] →
//! [`DrillReport`] (its exit status). [`compare`] matches what arrived with what was
//! selected, [`arrivals`] takes the drill's messages from the queue, [`scratch`] makes and
//! removes the scratch topic and queue, [`report`] renders the report.

mod arrivals;
mod compare;
mod report;
mod scratch;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures::TryStreamExt;
use islets_core::store::{Archive, StoreLocation};
use islets_query::DataFusionEngine;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::config::{parse_rate, parse_store, usage};
use crate::error::{ReplayError, Result};
use crate::message::{Markers, OutMessage};
use crate::plan::make_plan;
use crate::run::{SendOptions, SendOrder, send_all};
use crate::selection::{Selection, SelectionArgs};
use crate::target::{SnsSender, TargetSpec};
use compare::{Expected, Tally, comparable};
pub use report::DrillReport;
use scratch::Scratch;

/// Longest wait for the last events after sending that `--wait-secs` accepts.
const MAX_WAIT_SECS: u64 = 3_600;

/// `islets-replay drill`.
#[derive(Debug, Clone, Args)]
pub struct DrillArgs {
    /// The archive: s3://bucket/prefix, or a local directory.
    #[arg(long, env = "ISLETS_STORE", value_name = "URI")]
    pub store: String,

    /// What to replay.
    #[command(flatten)]
    pub selection: SelectionArgs,

    /// Use this topic instead of creating a scratch one (needs --queue-url).
    #[arg(long, value_name = "ARN", requires = "queue_url")]
    pub topic_arn: Option<String>,

    /// Use this queue, subscribed to --topic-arn in envelope mode. The drill consumes
    /// only the messages it sent (marked with its id); others are left in the queue.
    #[arg(long, value_name = "URL", requires = "topic_arn")]
    pub queue_url: Option<String>,

    /// The drill's id (default: a new ULID). Every message it sends is marked with it,
    /// and it consumes only messages so marked.
    #[arg(long, value_name = "ID")]
    pub drill_id: Option<String>,

    /// Confirm publishing to --topic-arn: every subscriber of an existing topic receives
    /// the drill's events (a scratch topic has none but the drill's queue).
    #[arg(long)]
    pub yes: bool,

    /// Write the Markdown report here (and the JSON report beside it, `.json`).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// At most N events per second (`200` or `200/s`).
    #[arg(long, value_name = "N")]
    pub rate: Option<String>,

    /// Batches in flight at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,

    /// Longest wait for the last events to arrive after sending, in seconds.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub wait_secs: u64,

    /// Who runs the drill, for the report (default: $USER).
    #[arg(long, env = "USER", value_name = "NAME")]
    pub operator: Option<String>,
}

/// A drill as the flags ask for it, validated before anything is opened.
#[derive(Debug)]
pub struct DrillConfig {
    /// The archive, as given (for messages and the report).
    pub store: String,
    /// The archive, parsed; a local one exists.
    pub location: StoreLocation,
    /// What to replay.
    pub selection: Selection,
    /// `--topic-arn` and `--queue-url`; `None`: a scratch topic and queue.
    pub existing: Option<(String, String)>,
    /// The drill's id (given, or a new ULID).
    pub drill_id: String,
    /// `--yes`.
    pub yes: bool,
    /// `--report`.
    pub report: Option<PathBuf>,
    /// How to send.
    pub send: SendOptions,
    /// Longest wait for the last events after sending.
    pub wait: Duration,
    /// Who runs the drill.
    pub operator: String,
}

impl DrillConfig {
    /// Validates `args`; relative times are taken from `now`.
    pub fn from_args(args: &DrillArgs, now: chrono::DateTime<chrono::Utc>) -> Result<Self> {
        let rate = args.rate.as_deref().map(parse_rate).transpose()?;
        if args.concurrency == 0 || args.concurrency > 64 {
            return Err(usage("--concurrency: from 1 to 64"));
        }
        if args.wait_secs > MAX_WAIT_SECS {
            return Err(usage(format!(
                "--wait-secs {}: at most {MAX_WAIT_SECS} (an hour)",
                args.wait_secs
            )));
        }
        if let Some(id) = &args.drill_id
            && (id.is_empty()
                || id.len() > 64
                || !id
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'))
        {
            return Err(usage(format!(
                "--drill-id {id}: 1 to 64 letters, digits, '-' or '_' (it names the scratch topic and queue)"
            )));
        }
        let selection = args.selection.resolve(now)?;
        let location = parse_store(&args.store)?;
        Ok(DrillConfig {
            store: args.store.clone(),
            location,
            selection,
            existing: args.topic_arn.clone().zip(args.queue_url.clone()),
            drill_id: args
                .drill_id
                .clone()
                .unwrap_or_else(|| ulid::Ulid::new().to_string()),
            yes: args.yes,
            report: args.report.clone(),
            send: SendOptions {
                concurrency: args.concurrency,
                rate,
                order: SendOrder::None,
                progress_bar: false,
            },
            wait: Duration::from_secs(args.wait_secs),
            operator: args
                .operator
                .clone()
                .unwrap_or_else(|| "unknown".to_owned()),
        })
    }
}

/// Runs the drill `config` describes, prints its report (and writes it to `--report`).
pub async fn drill(config: DrillConfig, cancel: CancellationToken) -> Result<DrillReport> {
    let started_at = islets_query::rfc3339_ms(chrono::Utc::now().timestamp_millis());
    let aws = islets_core::aws::load_sdk_config().await;
    let archive = Archive::open(&config.location, Some(&aws))
        .map_err(|error| usage(format!("--store {}: {error}", config.store)))?;
    archive
        .check_reachable(Duration::from_secs(20))
        .await
        .map_err(|error| usage(format!("--store {}: cannot read it: {error}", config.store)))?;
    let engine = DataFusionEngine::new(archive.clone()).map_err(ReplayError::Query)?;
    let sns = aws_sdk_sns::Client::new(&aws);
    let sqs = aws_sdk_sqs::Client::new(&aws);

    // What must arrive, by archived event id.
    let markers = Markers {
        replay_id: config.drill_id.clone(),
        reason: "recovery drill".to_owned(),
    };
    let mut expected: HashMap<String, Expected> = HashMap::new();
    let mut events = config.selection.events(&engine).await?;
    while let Some(record) = events.try_next().await.map_err(ReplayError::Query)? {
        let id = record.event_id.clone();
        let message = OutMessage::new(record, &markers);
        expected.insert(
            id,
            Expected {
                payload: message.body.clone(),
                attributes: comparable(message.attributes.iter().map(|(name, value)| {
                    (name.clone(), (value.data_type.clone(), value.value.clone()))
                })),
            },
        );
    }
    let plan = make_plan(
        &engine,
        &config.store,
        &config.selection,
        None,
        config.send.rate,
    )
    .await?;

    let (topic_arn, queue_url, scratch) = match &config.existing {
        Some((topic, queue)) => {
            if !config.yes {
                return Err(usage(format!(
                    "--topic-arn {topic}: every subscriber of this topic receives the drill's {} events; confirm with --yes (or drop --topic-arn/--queue-url for a scratch topic)",
                    plan.events
                )));
            }
            // Publishing to a real topic is a replay: it is recorded in the ledger.
            let entry = crate::ledger::LedgerEntry {
                replay_id: config.drill_id.clone(),
                run_id: ulid::Ulid::new().to_string(),
                status: "drill".to_owned(),
                operator: config.operator.clone(),
                reason: "recovery drill".to_owned(),
                started_at: started_at.clone(),
                finished_at: None,
                store: config.store.clone(),
                selection: config.selection.clone(),
                target: TargetSpec::Topic { arn: topic.clone() },
                id_set_sha256: plan.id_set_sha256.clone(),
                events_selected: plan.events,
                outcome: None,
                resumed: false,
                version: env!("CARGO_PKG_VERSION").to_owned(),
            };
            entry.save(&archive).await?;
            (topic.clone(), queue.clone(), None)
        }
        None => {
            let scratch = Scratch::create(&sns, &sqs, &config.drill_id).await?;
            (
                scratch.topic_arn.clone(),
                scratch.queue_url.clone(),
                Some(scratch),
            )
        }
    };
    let result = run_drill(
        &config, &sqs, &sns, &engine, &markers, &topic_arn, &queue_url, &expected, cancel,
    )
    .await;
    if let Some(scratch) = &scratch {
        scratch.remove(&sns, &sqs).await;
    }
    let observed = result?;

    let tally = &observed.tally;
    let passed = tally.missing.is_empty()
        && tally.altered.is_empty()
        && tally.extra == 0
        && observed.send_failures == 0;
    let intact = tally.intact.len() as u64;
    let report = DrillReport {
        drill_id: config.drill_id.clone(),
        passed,
        operator: config.operator.clone(),
        started_at,
        finished_at: islets_query::rfc3339_ms(chrono::Utc::now().timestamp_millis()),
        store: config.store.clone(),
        selection: config.selection.clone(),
        topic_arn,
        queue_url,
        scratch_infrastructure: scratch.is_some(),
        id_set_sha256: plan.id_set_sha256,
        selected: expected.len() as u64,
        sent: observed.sent,
        send_failures: observed.send_failures,
        received: observed.received,
        intact,
        missing: tally.missing.iter().cloned().collect(),
        altered: tally.altered.iter().cloned().collect(),
        extra: tally.extra,
        duplicates: tally.duplicates,
        send_seconds: observed.send_seconds,
        restore_seconds: observed.restore_seconds,
        events_per_second: if observed.restore_seconds > 0.0 {
            intact as f64 / observed.restore_seconds
        } else {
            0.0
        },
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    print!("{}", report::markdown(&report));
    if let Some(path) = &config.report {
        report.write(path)?;
    }
    Ok(report)
}

/// What came back while and after sending.
struct Observed {
    sent: u64,
    send_failures: u64,
    received: u64,
    tally: Tally,
    send_seconds: f64,
    restore_seconds: f64,
}

/// Sends the selection to `topic_arn` while draining `queue_url`, until everything is
/// back or `config.wait` has passed after the last send.
#[allow(clippy::too_many_arguments)]
async fn run_drill(
    config: &DrillConfig,
    sqs: &aws_sdk_sqs::Client,
    sns: &aws_sdk_sns::Client,
    engine: &DataFusionEngine,
    markers: &Markers,
    topic_arn: &str,
    queue_url: &str,
    expected: &HashMap<String, Expected>,
    cancel: CancellationToken,
) -> Result<Observed> {
    let received: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let last_arrival: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let sending_done = CancellationToken::new();
    let started = Instant::now();
    let drain = {
        let sqs = sqs.clone();
        let queue_url = queue_url.to_owned();
        let received = received.clone();
        let last_arrival = last_arrival.clone();
        let sending_done = sending_done.clone();
        let wait = config.wait;
        let want = expected.len();
        let drill_id = markers.replay_id.clone();
        tokio::spawn(async move {
            let mut deadline: Option<Instant> = None;
            loop {
                if sending_done.is_cancelled() && deadline.is_none() {
                    deadline = Some(Instant::now() + wait);
                }
                let count = received.lock().await.len();
                if sending_done.is_cancelled() && count >= want {
                    // Everything may be here: one more empty poll to catch extras.
                    let extra = arrivals::receive(&sqs, &queue_url, 0, &drill_id).await;
                    received.lock().await.extend(extra);
                    return;
                }
                if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                    return;
                }
                let batch = arrivals::receive(&sqs, &queue_url, 1, &drill_id).await;
                if !batch.is_empty() {
                    *last_arrival.lock().await = Some(Instant::now());
                    received.lock().await.extend(batch);
                }
            }
        })
    };
    let events = config.selection.events(engine).await?;
    let outcome = send_all(
        events,
        expected.len() as u64,
        &TargetSpec::Topic {
            arn: topic_arn.to_owned(),
        },
        Arc::new(SnsSender {
            client: sns.clone(),
        }),
        markers,
        &config.send,
        None,
        &HashSet::new(),
        cancel,
    )
    .await?;
    let send_seconds = started.elapsed().as_secs_f64();
    sending_done.cancel();
    let _ = drain.await;
    let restore_seconds = last_arrival
        .lock()
        .await
        .map_or(0.0, |at| at.duration_since(started).as_secs_f64());
    let bodies = received.lock().await.clone();
    Ok(Observed {
        sent: outcome.sent,
        send_failures: outcome.failed,
        received: bodies.len() as u64,
        tally: compare::tally(expected, &bodies),
        send_seconds,
        restore_seconds,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: DrillArgs,
    }

    fn config(flags: &[&str]) -> Result<DrillConfig> {
        let store = tempfile::tempdir().expect("tempdir");
        let store = store.path().to_str().expect("utf-8").to_owned();
        let all = ["drill", "--store", &store, "--since", "1h"]
            .into_iter()
            .chain(flags.iter().copied());
        let cli = Cli::try_parse_from(all).expect("flags parse");
        DrillConfig::from_args(&cli.args, chrono::Utc::now())
    }

    #[test]
    fn flags_become_a_validated_drill_config() {
        let config = config(&[
            "--rate",
            "50/s",
            "--concurrency",
            "2",
            "--drill-id",
            "Q4-2026",
        ])
        .expect("valid");
        assert_eq!(config.send.rate, Some(50.0));
        assert_eq!(config.send.concurrency, 2);
        assert_eq!(config.drill_id, "Q4-2026");
        assert!(config.existing.is_none(), "no topic given: a scratch one");
        assert_eq!(config.wait, Duration::from_secs(60));
        let fresh = super::tests::config(&[]).expect("valid");
        assert_eq!(fresh.drill_id.len(), 26, "a new ULID: {}", fresh.drill_id);
    }

    #[test]
    fn bad_drill_flags_are_refused_and_name_the_flag() {
        for (flags, flag) in [
            (&["--rate", "0"][..], "--rate"),
            (&["--rate=-3"], "--rate"),
            (&["--rate", "NaN"], "--rate"),
            (&["--concurrency", "0"], "--concurrency"),
            (&["--concurrency", "65"], "--concurrency"),
            (&["--wait-secs", "86400"], "--wait-secs"),
            (&["--drill-id", "a/b"], "--drill-id"),
            (&["--drill-id", ""], "--drill-id"),
            (&["--until", "yesterday at noon"], "--until"),
        ] {
            let error = config(flags).expect_err(&format!("{flags:?} is refused"));
            assert!(
                matches!(error, ReplayError::Usage(_)),
                "{flags:?}: a usage error: {error:?}"
            );
            assert!(error.to_string().contains(flag), "{flags:?}: {error}");
        }
        let missing =
            Cli::try_parse_from(["drill", "--store", "/nonexistent/archive", "--since", "1h"])
                .expect("flags parse");
        let error =
            DrillConfig::from_args(&missing.args, chrono::Utc::now()).expect_err("no such archive");
        assert!(error.to_string().contains("--store"), "{error}");
    }
}
