//! `islets-query`: the HTTP query API over the archive.

use std::process::ExitCode;

use clap::Parser;
use islets_api::{QueryArgs, serve};

mod common;

/// Answers compliance and support queries over the Islets Audit archive: by event_id,
/// correlation_id, time range, event_type, aggregate and producer_system, with duplicates
/// collapsed. Embedded engine: DataFusion.
#[derive(Debug, Parser)]
#[command(name = "islets-query", version, after_help = EXAMPLES)]
struct Cli {
    #[command(flatten)]
    args: QueryArgs,
}

const EXAMPLES: &str = "\
Examples:
  islets-query --store ./demo-data
  curl -s 'http://127.0.0.1:8081/v1/events?event_type=listing.sold&since=7d&limit=5'

Exit status: 0 stopped by a signal, 1 failed while running, 2 bad configuration.";

fn main() -> ExitCode {
    let cli = Cli::parse();
    islets_core::telemetry::init(true, "info");
    let config = match cli.args.validate() {
        Ok(config) => config,
        Err(error) => return common::fail("islets-query", &error),
    };
    common::block_on(|shutdown| async move {
        match serve(config, shutdown, None).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => common::fail("islets-query", &error),
        }
    })
}
