//! `islets-ingester`: drains SQS, HTTP or an NDJSON file into the Parquet archive.

use std::process::ExitCode;

use clap::Parser;
use islets_ingester::{IngesterArgs, LogFormat};

mod common;

const INGESTER_EXAMPLES: &str = "\
Examples:
  islets-ingester --source sqs --queue-url https://sqs.us-east-1.amazonaws.com/123456789012/audit-queue --store s3://audit-bucket/islets
  islets-ingester --source http --listen 127.0.0.1:8080 --store ./demo-data
  islets-ingester --source file --input backfill.ndjson --store ./demo-data

AWS settings come from the SDK's own chain (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL, roles).
Exit status: 0 done, 1 failed while running (unstored messages are not acknowledged), 2 bad configuration.";

/// Drains the ISLETS audit queue (or HTTP, or an NDJSON file) into Hive-partitioned Parquet
/// on S3 or a local directory. An SQS message is deleted only after the object holding it
/// is stored.
#[derive(Debug, Parser)]
#[command(name = "islets-ingester", version, after_help = INGESTER_EXAMPLES)]
struct Cli {
    #[command(flatten)]
    args: IngesterArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    islets_core::telemetry::init(cli.args.log_format == LogFormat::Json, "info");
    let config = match cli.args.validate() {
        Ok(config) => config,
        Err(error) => return common::report("islets-ingester", &error, 2),
    };
    common::block_on(|shutdown| async move {
        match islets_ingester::run(config, shutdown).await {
            Ok(_) => ExitCode::SUCCESS,
            Err(error) => {
                let code = if error.is_configuration() { 2 } else { 1 };
                common::report("islets-ingester", &error, code)
            }
        }
    })
}
