//! Replay's flags (`ReplayArgs`) and their validated form (`ReplayConfig`): every mistake
//! in the flags is found here, before anything is opened, with a message naming the flag.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use islets_core::store::StoreLocation;

use crate::error::{ReplayError, Result};
use crate::plan::Plan;
use crate::run::{CheckpointOptions, SendOptions, SendOrder};
use crate::selection::Selection;
use crate::selection::SelectionArgs;
use crate::target::TargetSpec;

/// `islets-replay [selection] [target] [options]`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// The archive: s3://bucket/prefix, or a local directory (required).
    #[arg(long, env = "ISLETS_STORE", value_name = "URI")]
    pub store: Option<String>,

    /// What to replay.
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

pub(crate) fn usage(message: impl Into<String>) -> ReplayError {
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
pub(crate) fn parse_rate(text: &str) -> Result<f64> {
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

#[cfg(test)]
pub(crate) mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ReplayArgs,
    }

    pub(crate) fn config(flags: &[&str]) -> Result<ReplayConfig> {
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

    pub(crate) fn config_with_store(store: &str, flags: &[&str]) -> ReplayConfig {
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
}
