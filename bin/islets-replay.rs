//! `islets-replay`: replays archived events to their topics, one topic, one consumer's
//! queue or a file; lists the replay ledger.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use islets_replay::{DrillArgs, DrillConfig, drill};
use islets_replay::{ReplayArgs, ReplayConfig, print_history, replay};

mod common;

/// Replays archived events precisely and safely. Select events (--since/--until,
/// --event-type, --aggregate, --producer-system, --correlation-id, --event-id,
/// --events-from), pick a target (--to-original, --to-topic, --to-queue, --to-file) — with
/// no target it is a dry run that prints the plan and sends nothing.
#[derive(Debug, Parser)]
#[command(
    name = "islets-replay",
    version,
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    replay: ReplayArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List every executed replay recorded in the store's ledger (replays/).
    History {
        /// The archive: s3://bucket/prefix, or a local directory.
        #[arg(long, env = "ISLETS_STORE", value_name = "URI")]
        store: String,
    },
    /// The recovery drill: replay a selection to a scratch topic + queue, verify every
    /// event arrived byte-identical, measure, clean up, and write a report.
    Drill(Box<DrillArgs>),
}

const EXAMPLES: &str = "\
Examples:
  # what would go out (dry run), and a plan to execute later
  islets-replay --store s3://audit/islets --since 2026-11-20T09:00:00Z --until 2026-11-20T10:00:00Z \\
      --event-type listing.sold --plan-out plan.json
  # consumer X lost an hour of listing.sold: give it back to its queue only
  islets-replay --store s3://audit/islets --plan plan.json --to-queue consumer-x-queue \\
      --reason 'INC-123: consumer X dropped an hour' --rate 200 --checkpoint replay.ckpt
  # after a crash or Ctrl-C: send only what is left
  islets-replay --store s3://audit/islets --plan plan.json --to-queue consumer-x-queue \\
      --reason 'INC-123: consumer X dropped an hour' --checkpoint replay.ckpt --resume
  islets-replay history --store s3://audit/islets
  # the quarterly recovery drill, with a report for the auditors
  islets-replay drill --store s3://audit/islets --since 2026-10-01 --until 2026-10-02 --report drill.md

Exit status: 0 done (drill: passed), 1 failures while sending (drill: failed), 2 bad input (nothing sent), 130 interrupted.";

fn main() -> ExitCode {
    let cli = Cli::parse();
    islets_core::telemetry::init(true, "info");
    common::block_on(|shutdown| async move {
        let result = match (cli.command, cli.replay) {
            (Some(Command::History { store }), _) => print_history(&store).await.map(|()| 0),
            (Some(Command::Drill(args)), _) => {
                match DrillConfig::from_args(&args, chrono::Utc::now()) {
                    Ok(config) => drill(config, shutdown)
                        .await
                        .map(|report| report.exit_code()),
                    Err(error) => Err(error),
                }
            }
            (None, args) => match ReplayConfig::from_args(&args, chrono::Utc::now()) {
                Ok(config) => replay(config, shutdown)
                    .await
                    .map(|outcome| outcome.exit_code()),
                Err(error) => Err(error),
            },
        };
        match result {
            Ok(code) => ExitCode::from(code),
            Err(error) => {
                let code = error.exit_code();
                common::report("islets-replay", &error, code)
            }
        }
    })
}
