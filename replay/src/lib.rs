//! `islets-replay`: replays archived events to their topics, one topic, one consumer's
//! queue or a file, precisely (the query model selects, duplicates collapsed) and safely
//! (dry run and plans with a hash, confirmation, rate limit, resume, a ledger).
//!
//! Flow: validate → open the archive → resolve the target → plan (read the selection
//! once, send nothing) → [dry run: print, stop] → confirm → ledger entry → send (read the
//! selection again, in batches, checkpointed) → ledger entry, summary, report.

pub mod drill;
pub mod error;
pub mod ledger;
pub mod memory;
pub mod message;
pub mod plan;
pub mod run;
pub mod selection;
pub mod target;

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use islets_core::store::{Archive, StoreLocation};
use islets_query::engine::DataFusionEngine;
use tokio_util::sync::CancellationToken;

pub use error::{ReplayError, Result};

use crate::ledger::LedgerEntry;
use crate::message::Markers;
use crate::plan::{Plan, make_plan};
use crate::run::{Checkpoint, CheckpointOptions, SendOptions, SendOrder, send_all};
use crate::selection::Selection;
use crate::selection::SelectionArgs;
use crate::target::{FileSender, Sender, SnsSender, SqsSender, TargetSpec};

const STORE_TIMEOUT: Duration = Duration::from_secs(20);

/// `islets-replay [selection] [target] [options]`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// The archive: s3://bucket/prefix, or a local directory (required).
    #[arg(long, env = "ISLETS_STORE", value_name = "URI")]
    pub store: Option<String>,

    #[command(flatten)]
    pub selection: SelectionArgs,

    /// Target: publish each event to the topic it was first published to (every
    /// subscriber receives it again).
    #[arg(long, help_heading = "Target (none: dry run)")]
    pub to_original: bool,

    /// Target: publish every event to this topic (ARN, or name in this account/region).
    #[arg(long, value_name = "ARN|NAME", help_heading = "Target (none: dry run)")]
    pub to_topic: Option<String>,

    /// Target: send every event to this queue only (URL or name): one consumer.
    #[arg(long, value_name = "URL|NAME", help_heading = "Target (none: dry run)")]
    pub to_queue: Option<String>,

    /// With --to-queue: shape each body as the consumer's SNS subscription delivers it in
    /// envelope mode (the default is raw: the payload as body, attributes as SQS attributes).
    #[arg(long, help_heading = "Target (none: dry run)")]
    pub as_envelope: bool,

    /// Target: append the events to this NDJSON file.
    #[arg(long, value_name = "PATH", help_heading = "Target (none: dry run)")]
    pub to_file: Option<PathBuf>,

    /// Print the plan for the target and send nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Write the plan (JSON) to this file.
    #[arg(long, value_name = "FILE")]
    pub plan_out: Option<PathBuf>,

    /// Execute exactly this plan (its selection and target); refused if the archive no
    /// longer selects the same events.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,

    /// Why: recorded in the ledger and in each message (replay_reason). Required to send.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,

    /// Who runs the replay, for the ledger (default: $USER).
    #[arg(long, env = "USER", value_name = "NAME")]
    pub operator: Option<String>,

    /// Do not ask for confirmation before publishing to topics.
    #[arg(long)]
    pub yes: bool,

    /// Batches in flight at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,

    /// At most N events per second (`200` or `200/s`).
    #[arg(long, value_name = "N/s")]
    pub rate: Option<String>,

    /// Order of sending: none (parallel), time (strict, one lane), per-correlation.
    #[arg(long, value_enum, default_value_t = SendOrder::None)]
    pub order: SendOrder,

    /// Record delivered events in this file, so an interrupted replay can --resume.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,

    /// Continue the replay recorded in --checkpoint: send only what it has not delivered.
    #[arg(long)]
    pub resume: bool,

    /// Write the final report (JSON) to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

fn usage(message: impl Into<String>) -> ReplayError {
    ReplayError::Usage(message.into())
}

/// `--store`: an archive that exists (a local directory is not created by reading it).
pub(crate) fn parse_store(store: &str) -> Result<StoreLocation> {
    let location =
        StoreLocation::parse(store).map_err(|error| usage(format!("--store: {error}")))?;
    if let StoreLocation::Local { root } = &location
        && !root.is_dir()
    {
        return Err(usage(format!(
            "--store {store}: no such directory (an archive written by islets-ingester or islets-audit demo)"
        )));
    }
    Ok(location)
}

/// `--rate 200` or `--rate 200/s`.
fn parse_rate(text: &str) -> Result<f64> {
    text.trim_end_matches("/s")
        .parse::<f64>()
        .ok()
        .filter(|rate| rate.is_finite() && *rate > 0.0)
        .ok_or_else(|| {
            usage(format!(
                "--rate {text}: a positive number of events per second, e.g. 200 or 200/s"
            ))
        })
}

impl ReplayArgs {
    /// The target the flags name, unresolved.
    fn target_flags(&self) -> Result<Option<TargetSpec>> {
        let given = [
            self.to_original,
            self.to_topic.is_some(),
            self.to_queue.is_some(),
            self.to_file.is_some(),
        ]
        .iter()
        .filter(|given| **given)
        .count();
        if given > 1 {
            return Err(usage(
                "give one target: --to-original, --to-topic, --to-queue or --to-file",
            ));
        }
        if self.as_envelope && self.to_queue.is_none() {
            return Err(usage("--as-envelope shapes bodies for --to-queue only"));
        }
        Ok(if self.to_original {
            Some(TargetSpec::Original {
                topics: Default::default(),
            })
        } else if let Some(topic) = &self.to_topic {
            Some(TargetSpec::Topic { arn: topic.clone() })
        } else if let Some(queue) = &self.to_queue {
            Some(TargetSpec::Queue {
                url: queue.clone(),
                envelope: self.as_envelope,
            })
        } else {
            self.to_file
                .as_ref()
                .map(|path| TargetSpec::File { path: path.clone() })
        })
    }
}

/// A replay as the flags ask for it, validated before the archive is opened: every
/// mistake in the flags is found here, with a message that names the flag.
#[derive(Debug)]
pub struct ReplayConfig {
    /// The archive, as given (for messages and the ledger).
    pub store: String,
    /// The archive, parsed; a local one exists.
    pub location: StoreLocation,
    /// What to send: from the flags, or the plan's.
    pub selection: Selection,
    /// Where to send it, unresolved (names, not yet ARNs); `None`: a dry run.
    pub target: Option<TargetSpec>,
    /// `--plan`: the plan to execute exactly.
    pub plan: Option<Plan>,
    /// `--plan-out`.
    pub plan_out: Option<PathBuf>,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--reason`, if it says something (required to send).
    pub reason: Option<String>,
    /// `--operator`.
    pub operator: String,
    /// `--yes`.
    pub yes: bool,
    /// How to send.
    pub send: SendOptions,
    /// `--checkpoint` and `--resume`.
    pub checkpoint: Option<CheckpointOptions>,
    /// `--report`.
    pub report: Option<PathBuf>,
    /// The event catalog (`--to-original` sends to its topics).
    pub catalog_dir: PathBuf,
}

impl ReplayConfig {
    /// Validates `args`; relative times are taken from `now`.
    pub fn from_args(args: &ReplayArgs, now: chrono::DateTime<chrono::Utc>) -> Result<Self> {
        let Some(store) = args.store.clone() else {
            return Err(usage(
                "--store URI: the archive to replay from (s3://bucket/prefix or a directory)",
            ));
        };
        let rate = args.rate.as_deref().map(parse_rate).transpose()?;
        if args.concurrency == 0 || args.concurrency > 64 {
            return Err(usage("--concurrency: from 1 to 64"));
        }
        if args.resume && args.checkpoint.is_none() {
            return Err(usage(
                "--resume needs --checkpoint FILE (the one the interrupted replay wrote)",
            ));
        }
        let flagged_target = args.target_flags()?;
        let plan = args.plan.as_deref().map(Plan::load).transpose()?;
        let (selection, target) = match &plan {
            Some(plan) => {
                if !args.selection.is_empty() {
                    return Err(usage(
                        "--plan carries its own selection: drop --since, --until, --event-type and the other selection flags",
                    ));
                }
                // A target flag is compared with the plan's once both are resolved (a
                // topic given by name is the ARN the plan holds).
                let target = flagged_target.clone().or_else(|| plan.target.clone());
                (plan.selection.clone(), target)
            }
            None => (args.selection.resolve(now)?, flagged_target),
        };
        let location = parse_store(&store)?;
        Ok(ReplayConfig {
            store,
            location,
            selection,
            target,
            plan,
            plan_out: args.plan_out.clone(),
            dry_run: args.dry_run,
            reason: args
                .reason
                .clone()
                .filter(|reason| !reason.trim().is_empty()),
            operator: args
                .operator
                .clone()
                .unwrap_or_else(|| "unknown".to_owned()),
            yes: args.yes,
            send: SendOptions {
                concurrency: args.concurrency,
                rate,
                order: args.order,
                progress_bar: std::io::stderr().is_terminal(),
            },
            checkpoint: args.checkpoint.clone().map(|path| CheckpointOptions {
                path,
                resume: args.resume,
            }),
            report: args.report.clone(),
            catalog_dir: args.selection.catalog_dir(),
        })
    }
}

/// How a replay ended.
#[derive(Debug)]
pub enum ReplayOutcome {
    /// No target, or `--dry-run`: the plan was printed, nothing sent.
    DryRun,
    /// The replay ran; its ledger entry says how it ended.
    Finished(Box<LedgerEntry>),
}

impl ReplayOutcome {
    /// The exit status: 0 done, 1 failures while sending (or the target refused), 130
    /// interrupted.
    pub fn exit_code(&self) -> u8 {
        match self {
            ReplayOutcome::DryRun => 0,
            ReplayOutcome::Finished(entry) => match entry.status.as_str() {
                "completed" => 0,
                "interrupted"
                    if entry
                        .outcome
                        .as_ref()
                        .is_none_or(|outcome| outcome.refused.is_none()) =>
                {
                    130
                }
                _ => 1,
            },
        }
    }
}

/// Runs the replay `config` describes: open the archive, resolve the target, plan, and
/// (unless a dry run) confirm, record, send, record.
pub async fn replay(config: ReplayConfig, cancel: CancellationToken) -> Result<ReplayOutcome> {
    let ReplayConfig {
        store,
        location,
        selection,
        target,
        plan: loaded_plan,
        plan_out,
        dry_run,
        reason,
        operator,
        yes,
        send: options,
        checkpoint,
        report,
        catalog_dir,
    } = config;
    let rate = options.rate;
    let needs_aws = location.is_s3()
        || matches!(
            target,
            Some(TargetSpec::Original { .. } | TargetSpec::Topic { .. } | TargetSpec::Queue { .. })
        );
    let aws = if needs_aws {
        Some(islets_core::aws::load_sdk_config().await)
    } else {
        None
    };
    let archive = Archive::open(&location, aws.as_ref())
        .map_err(|error| usage(format!("--store {store}: {error}")))?;
    archive.check_reachable(STORE_TIMEOUT).await.map_err(|error| {
        usage(format!(
            "--store {store}: cannot read it: {error} (check the path or bucket, AWS credentials, AWS_REGION and AWS_ENDPOINT_URL)"
        ))
    })?;
    let engine = DataFusionEngine::new(archive.clone()).map_err(ReplayError::Query)?;

    // Resolve names, and check that every destination exists, before anything is sent.
    let sns = aws.as_ref().map(aws_sdk_sns::Client::new);
    let sqs = aws.as_ref().map(aws_sdk_sqs::Client::new);
    let target = match (target, &sns, &sqs) {
        (Some(TargetSpec::Original { .. }), Some(sns), _) => {
            let events_dir = &catalog_dir;
            let catalog = islets_core::catalog::Catalog::load_dir(events_dir).map_err(|error| {
                usage(format!(
                    "--to-original sends to the catalog's topics: cannot read the catalog in {} ({error}); pass --events-dir",
                    events_dir.display()
                ))
            })?;
            Some(TargetSpec::Original {
                topics: target::catalog_topics(sns, &catalog).await?,
            })
        }
        (Some(TargetSpec::Topic { arn }), Some(sns), _) => Some(TargetSpec::Topic {
            arn: target::resolve_topic(sns, &arn).await?,
        }),
        (Some(TargetSpec::Queue { url, envelope }), _, Some(sqs)) => Some(TargetSpec::Queue {
            url: target::resolve_queue(sqs, &url).await?,
            envelope,
        }),
        (Some(TargetSpec::File { path }), _, _) => {
            let parent = path
                .parent()
                .filter(|parent| !parent.as_os_str().is_empty());
            if parent.is_some_and(|parent| !parent.is_dir()) {
                return Err(ReplayError::Target(format!(
                    "--to-file {}: its directory does not exist",
                    path.display()
                )));
            }
            Some(TargetSpec::File { path })
        }
        (other, _, _) => other,
    };

    let plan = make_plan(&engine, &store, &selection, target.as_ref(), rate).await?;
    if let Some(loaded) = &loaded_plan
        && loaded.id_set_sha256 != plan.id_set_sha256
    {
        return Err(ReplayError::PlanMismatch(format!(
            "the archive no longer selects what the plan did: {} events in the plan (sha256:{}), {} now (sha256:{}); nothing was sent — make a new plan",
            loaded.events, loaded.id_set_sha256, plan.events, plan.id_set_sha256
        )));
    }
    if let (Some(planned), Some(resolved)) = (
        loaded_plan.as_ref().and_then(|plan| plan.target.as_ref()),
        target.as_ref(),
    ) && planned != resolved
    {
        return Err(usage(format!(
            "the plan targets {planned}, this run {resolved}; drop the target flag or make a new plan"
        )));
    }
    if let (Some(TargetSpec::Original { .. }), Some(sns)) = (&target, &sns) {
        let missing: Vec<&str> = plan
            .unsendable
            .keys()
            .filter_map(|reason| reason.strip_prefix(plan::NO_TOPIC))
            .collect();
        if !missing.is_empty() {
            return Err(ReplayError::Target(format!(
                "--to-original: the selection needs topics that do not exist: {}; create them (islets-audit provision) or check AWS_REGION and credentials",
                missing.join(", ")
            )));
        }
        target::check_topics(sns, plan.by_target.keys()).await?;
    }
    print!("{}", plan.describe());
    if let Some(path) = &plan_out {
        plan.save(path)?;
        println!("plan written to {}", path.display());
    }
    let Some(target) = target.filter(|_| !dry_run) else {
        println!("dry run: nothing sent");
        return Ok(ReplayOutcome::DryRun);
    };
    let Some(reason) = reason else {
        return Err(usage(
            "--reason: say why this replay runs (recorded in the ledger and in each message)",
        ));
    };
    if target.is_broadcast() && !yes {
        confirm(&plan, &target)?;
    }

    let resumed = checkpoint.as_ref().is_some_and(|options| options.resume);
    let (checkpoint, replay_id, done) = match &checkpoint {
        Some(CheckpointOptions { path, resume: true }) => {
            let (checkpoint, replay_id, done) = Checkpoint::resume(path, &plan.binding())?;
            (Some(checkpoint), replay_id, done)
        }
        Some(CheckpointOptions { path, .. }) => {
            let replay_id = ulid::Ulid::new().to_string();
            let checkpoint = Checkpoint::create(path, &replay_id, &plan.binding())?;
            (Some(checkpoint), replay_id, HashSet::new())
        }
        None => (None, ulid::Ulid::new().to_string(), HashSet::new()),
    };
    let mut entry = LedgerEntry {
        replay_id: replay_id.clone(),
        run_id: ulid::Ulid::new().to_string(),
        status: "running".to_owned(),
        operator,
        reason: reason.clone(),
        started_at: islets_query::view::rfc3339_ms(chrono::Utc::now().timestamp_millis()),
        finished_at: None,
        store: store.clone(),
        selection: selection.clone(),
        target: target.clone(),
        id_set_sha256: plan.id_set_sha256.clone(),
        events_selected: plan.events,
        outcome: None,
        resumed,
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    entry.save(&archive).await?;

    let sender: Arc<dyn Sender> = match (&target, &sns, &sqs) {
        (TargetSpec::Original { .. } | TargetSpec::Topic { .. }, Some(sns), _) => {
            Arc::new(SnsSender {
                client: sns.clone(),
            })
        }
        (TargetSpec::Queue { envelope, .. }, _, Some(sqs)) => Arc::new(SqsSender {
            client: sqs.clone(),
            envelope: *envelope,
        }),
        (TargetSpec::File { path }, _, _) => Arc::new(FileSender::open(path).await?),
        _ => {
            return Err(ReplayError::Target(
                "no AWS configuration for the target".to_owned(),
            ));
        }
    };
    let markers = Markers {
        replay_id: replay_id.clone(),
        reason,
    };
    tracing::info!(%replay_id, events = plan.events, %target, "replay started");
    let events = selection.events(&engine).await?;
    let result = send_all(
        events,
        plan.events,
        &target,
        sender,
        &markers,
        &options,
        checkpoint,
        &done,
        cancel.clone(),
    )
    .await;
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(error) => {
            entry.status = "failed".to_owned();
            entry.finished_at = Some(islets_query::view::rfc3339_ms(
                chrono::Utc::now().timestamp_millis(),
            ));
            let _ = entry.save(&archive).await;
            return Err(error);
        }
    };
    entry.status = if outcome.refused.is_some() {
        "failed"
    } else if outcome.interrupted {
        "interrupted"
    } else if outcome.failed > 0 {
        "completed_with_failures"
    } else {
        "completed"
    }
    .to_owned();
    entry.finished_at = Some(islets_query::view::rfc3339_ms(
        chrono::Utc::now().timestamp_millis(),
    ));
    entry.outcome = Some(outcome.clone());
    entry.save(&archive).await?;
    println!("{}", summary(&entry));
    if let Some(path) = &report {
        let text = serde_json::to_string_pretty(&entry)
            .map_err(|error| usage(format!("cannot encode the report: {error}")))?;
        std::fs::write(path, text + "\n")
            .map_err(ReplayError::io(format!("--report {}", path.display())))?;
    }
    Ok(ReplayOutcome::Finished(Box::new(entry)))
}

/// Asks on the terminal before publishing to topics; refuses without a terminal.
fn confirm(plan: &Plan, target: &TargetSpec) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(usage(format!(
            "{target}: every subscriber receives these {} events; confirm with --yes (stdin is not a terminal)",
            plan.events
        )));
    }
    eprint!(
        "Publish {} events to {target}? Every subscriber receives them. Type yes to go on: ",
        plan.events
    );
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(ReplayError::io("reading the confirmation"))?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(usage("not confirmed: nothing sent"))
    }
}

/// The final summary as text.
pub fn summary(entry: &LedgerEntry) -> String {
    let Some(outcome) = &entry.outcome else {
        return format!("replay {}: {}", entry.replay_id, entry.status);
    };
    let mut text = format!(
        "replay {} {}: sent {}, failed {}, skipped {} (already delivered {}, no target {}), {:.1} s, {:.0} events/s",
        entry.replay_id,
        entry.status,
        outcome.sent,
        outcome.failed,
        outcome.skipped_done + outcome.skipped_unsendable,
        outcome.skipped_done,
        outcome.skipped_unsendable,
        outcome.seconds,
        outcome.rate()
    );
    if outcome.combined_markers + outcome.without_markers > 0 {
        text.push_str(&format!(
            "\n  markers: {} with the combined `replay` attribute, {} without markers (their originals use all 10 attributes)",
            outcome.combined_markers, outcome.without_markers
        ));
    }
    for (id, why) in outcome.failed_ids.iter().take(10) {
        text.push_str(&format!("\n  failed {id}: {why}"));
    }
    if let Some(refused) = &outcome.refused {
        text.push_str(&format!("\n  the target refused the replay: {refused}"));
    }
    text
}

/// `islets-replay history`: the ledger as a table.
pub async fn print_history(store: &str) -> Result<()> {
    let location = parse_store(store)?;
    let aws = if location.is_s3() {
        Some(islets_core::aws::load_sdk_config().await)
    } else {
        None
    };
    let archive = Archive::open(&location, aws.as_ref())
        .map_err(|error| usage(format!("--store {store}: {error}")))?;
    archive
        .check_reachable(STORE_TIMEOUT)
        .await
        .map_err(|error| usage(format!("--store {store}: cannot read it: {error}")))?;
    let entries = ledger::history(&archive).await?;
    if entries.is_empty() {
        println!("no replays recorded in {store}");
        return Ok(());
    }
    println!(
        "{:<24} {:<26} {:<12} {:<24} {:>8} {:>7}  target / reason",
        "started", "replay id", "operator", "status", "sent", "failed"
    );
    for entry in entries {
        let (sent, failed) = entry
            .outcome
            .as_ref()
            .map_or((0, 0), |outcome| (outcome.sent, outcome.failed));
        println!(
            "{:<24} {:<26} {:<12} {:<24} {:>8} {:>7}  {} / {}",
            entry.started_at,
            entry.replay_id,
            entry.operator,
            if entry.resumed {
                format!("{} (resumed)", entry.status)
            } else {
                entry.status.clone()
            },
            sent,
            failed,
            entry.target,
            entry.reason
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ReplayArgs,
    }

    fn config(flags: &[&str]) -> Result<ReplayConfig> {
        let cli =
            Cli::try_parse_from(std::iter::once("islets-replay").chain(flags.iter().copied()))
                .expect("flags parse");
        ReplayConfig::from_args(&cli.args, chrono::Utc::now())
    }

    #[test]
    fn flags_become_a_validated_config() {
        let store = tempfile::tempdir().expect("tempdir");
        let store = store.path().to_str().expect("utf-8");
        let config = config(&[
            "--store",
            store,
            "--since",
            "2h",
            "--to-queue",
            "consumer",
            "--as-envelope",
            "--rate",
            "200/s",
            "--checkpoint",
            "c.ckpt",
            "--resume",
            "--reason",
            "INC-1",
            "--order",
            "per-correlation",
        ])
        .expect("valid");
        assert_eq!(config.store, store);
        assert_eq!(
            config.target,
            Some(TargetSpec::Queue {
                url: "consumer".to_owned(),
                envelope: true
            })
        );
        assert_eq!(config.send.rate, Some(200.0));
        assert_eq!(config.send.order, SendOrder::PerCorrelation);
        assert!(config.checkpoint.as_ref().is_some_and(|c| c.resume));
        assert_eq!(config.reason.as_deref(), Some("INC-1"));
        // A blank reason is no reason.
        let blank = config_with_store(store, &["--reason", "  "]);
        assert_eq!(blank.reason, None);
    }

    fn config_with_store(store: &str, flags: &[&str]) -> ReplayConfig {
        let mut all = vec!["--store", store, "--since", "1h"];
        all.extend_from_slice(flags);
        config(&all).expect("valid")
    }

    #[test]
    fn bad_flags_are_refused_before_anything_is_opened_and_name_the_flag() {
        let store = tempfile::tempdir().expect("tempdir");
        let store = store.path().to_str().expect("utf-8");
        let cases: &[(&[&str], &str)] = &[
            (&["--since", "1h"], "--store URI"),
            (&["--store", store], "select what to replay"),
            (
                &["--store", "/no/such/archive", "--since", "1h"],
                "--store /no/such/archive: no such directory",
            ),
            (&["--store", store, "--rate", "0"], "--rate 0"),
            (&["--store", store, "--rate", "fast"], "--rate fast"),
            (&["--store", store, "--concurrency", "0"], "--concurrency"),
            (&["--store", store, "--concurrency", "65"], "--concurrency"),
            (
                &["--store", store, "--resume"],
                "--resume needs --checkpoint",
            ),
            (
                &["--store", store, "--to-file", "a", "--to-queue", "q"],
                "give one target",
            ),
            (&["--store", store, "--as-envelope"], "--as-envelope"),
            (
                &["--store", store, "--plan", "/no/such/plan.json"],
                "/no/such/plan.json",
            ),
        ];
        for (flags, expected) in cases {
            match config(flags) {
                Err(error) => assert!(error.to_string().contains(expected), "{flags:?}: {error}"),
                Ok(config) => panic!("{flags:?} was accepted: {config:?}"),
            }
        }
    }

    #[test]
    fn the_exit_status_follows_how_the_replay_ended() {
        assert_eq!(ReplayOutcome::DryRun.exit_code(), 0);
        let ended = |status: &str, refused: Option<&str>| {
            let store = tempfile::tempdir().expect("tempdir");
            let mut config = config_with_store(store.path().to_str().expect("utf-8"), &[]);
            let entry = LedgerEntry {
                replay_id: "r".into(),
                run_id: "r".into(),
                status: status.into(),
                operator: "me".into(),
                reason: "test".into(),
                started_at: "2026-12-02T00:00:00.000Z".into(),
                finished_at: None,
                store: config.store.clone(),
                selection: std::mem::take(&mut config.selection),
                target: TargetSpec::File { path: "out".into() },
                id_set_sha256: String::new(),
                events_selected: 0,
                outcome: Some(run::Outcome {
                    refused: refused.map(str::to_owned),
                    ..Default::default()
                }),
                resumed: false,
                version: "0".into(),
            };
            ReplayOutcome::Finished(Box::new(entry)).exit_code()
        };
        assert_eq!(ended("completed", None), 0);
        assert_eq!(ended("completed_with_failures", None), 1);
        assert_eq!(ended("failed", Some("AuthorizationError")), 1);
        assert_eq!(ended("interrupted", None), 130);
        assert_eq!(ended("interrupted", Some("AuthorizationError")), 1);
    }
}
