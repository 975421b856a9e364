//! `islets-audit`: the umbrella command. It only wires the libraries together.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use islets_app::{demo, generate, serve};
use islets_ingester::LogFormat;

mod common;

/// Islets Audit: the event audit store and replay service of the ISLETS event bus.
#[derive(Debug, Parser)]
#[command(name = "islets-audit", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr: text or json.
    #[arg(
        long,
        global = true,
        env = "ISLETS_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a realistic data set from the events catalog and ingest it, through the
    /// same pipeline as production, into a local directory. Needs no AWS account.
    Demo(demo::DemoArgs),
    /// Run the embedded default: HTTP ingest and the query API together on a local
    /// directory (the demo's, by default). Authentication is off: both APIs listen on
    /// loopback only (run islets-query --tokens-file to serve others).
    Serve(serve::ServeArgs),
    /// Write a generated data set as NDJSON (one SNS envelope per line), for
    /// `islets-ingester --source file`, backfill rehearsals and benchmarks.
    Generate(generate::GenerateArgs),
    /// Create or update the pipeline on AWS, as the CloudFormation template in infra/ does:
    /// archive bucket, audit queue and DLQ, queue policy, SNS subscriptions to every
    /// <aggregate>-events topic of the catalog, Glue table, Athena workgroup. Idempotent:
    /// prints one line per change, or "no changes".
    #[command(after_help = PROVISION_EXAMPLES)]
    Provision(islets_infra::ProvisionArgs),
}

const PROVISION_EXAMPLES: &str = "\
Examples:
  islets-audit provision --bucket acme-islets-audit --dry-run
  islets-audit provision --bucket acme-islets-audit --kms-key-id alias/islets-audit
  islets-audit provision --bucket dev-islets-audit --create-topics
  islets-audit provision --print-ddl > infra/athena/events.sql

Every check (flags, the events catalog, the KMS key, the topics, the bucket) runs before the
first change. AWS settings come from the SDK's own chain (AWS_REGION, AWS_PROFILE,
AWS_ENDPOINT_URL, roles). Exit status: 0 done, 1 failed while applying (run it again to
finish), 2 refused before any change. docs/DEPLOY.md describes what it creates.";

fn main() -> ExitCode {
    let cli = Cli::parse();
    islets_core::telemetry::init(cli.log_format == LogFormat::Json, "warn");
    match cli.command {
        Command::Demo(args) => {
            const PROGRAM: &str = "islets-audit demo";
            let config = match args.validate() {
                Ok(config) => config,
                Err(error) => return common::fail(PROGRAM, &error),
            };
            common::block_on(|shutdown| async move {
                match demo::run(&config, shutdown).await {
                    Ok(outcome) => {
                        print_demo(&config, &outcome);
                        ExitCode::SUCCESS
                    }
                    Err(error) => common::fail(PROGRAM, &error),
                }
            })
        }
        Command::Serve(args) => {
            const PROGRAM: &str = "islets-audit serve";
            let config = match args.validate() {
                Ok(config) => config,
                Err(error) => return common::fail(PROGRAM, &error),
            };
            println!(
                "ingest: POST http://{}/v1/ingest   query: GET http://{}/v1/events   (archive: {}; Ctrl-C to stop)",
                args.ingest_listen,
                args.listen,
                config.store.display()
            );
            println!(
                "WARNING: authentication is OFF for the demo; both APIs listen on loopback only"
            );
            common::block_on(|shutdown| async move {
                match serve::run(config, shutdown).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(error) => common::fail(PROGRAM, &error),
                }
            })
        }
        Command::Generate(args) => {
            const PROGRAM: &str = "islets-audit generate";
            let result = args
                .validate()
                .and_then(|config| generate::run(&config).map(|generated| (config, generated)));
            match result {
                Ok((config, generated)) => {
                    println!(
                        "wrote {} messages ({} distinct events) to {}",
                        generated.messages,
                        generated.events,
                        config.out.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => common::fail(PROGRAM, &error),
            }
        }
        Command::Provision(args) => provision(&args),
    }
}

fn provision(args: &islets_infra::ProvisionArgs) -> ExitCode {
    const PROGRAM: &str = "islets-audit provision";
    if args.print_ddl {
        return match args.events_ddl() {
            Ok(ddl) => {
                print!("{ddl}");
                ExitCode::SUCCESS
            }
            Err(error) => common::report(PROGRAM, &error, 2),
        };
    }
    let config = match args.validate() {
        Ok(config) => config,
        Err(error) => return common::report(PROGRAM, &error, 2),
    };
    common::block_on(|shutdown| async move {
        let sdk = islets_core::aws::load_sdk_config().await;
        // A closed stdout (`| head`) must not stop provisioning half-way.
        let mut print = |change: &islets_infra::Change| {
            let _ = writeln!(std::io::stdout(), "{change}");
        };
        tokio::select! {
            result = islets_infra::provision(&config, &sdk, &mut print) => match result {
                Ok(report) => {
                    for warning in &report.warnings {
                        eprintln!("{PROGRAM}: warning: {warning}");
                    }
                    println!("{}", report.summary());
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    let code = if error.is_configuration() { 2 } else { 1 };
                    common::report(PROGRAM, &error, code)
                }
            },
            () = shutdown.cancelled() => {
                eprintln!("{PROGRAM}: interrupted before the end; provisioning is idempotent, run it again to finish");
                ExitCode::FAILURE
            }
        }
    })
}

fn print_demo(config: &demo::DemoConfig, outcome: &demo::DemoOutcome) {
    match outcome {
        demo::DemoOutcome::Reused { event_files } => {
            println!(
                "{} already holds an archive ({event_files} event files); reusing it. Pass --reset to generate it again.\n",
                config.store.display()
            );
            print_next_steps(&config.store, None);
        }
        demo::DemoOutcome::Ingested(ingested) => {
            println!(
                "generated {} events in {} flows over {} days ({} schema-invalid, {} redelivered duplicates, {} undecodable messages)",
                ingested.events,
                ingested.flows,
                ingested.days,
                ingested.invalid_events,
                ingested.duplicate_deliveries,
                ingested.poison_messages
            );
            let summary = &ingested.summary;
            println!(
                "ingested {} messages into {}: {} events ({} failed their schema), {} quarantined, {} Parquet files in {} hour partitions",
                summary.messages,
                config.store.display(),
                summary.events,
                summary.schema_invalid,
                summary.quarantined,
                summary.files,
                ingested.hours
            );
            println!(
                "the input is kept in {} (islets-ingester --source file can ingest it again)\n",
                ingested.input.display()
            );
            print_next_steps(&config.store, ingested.example_flow.as_deref());
        }
    }
}

fn print_next_steps(data_dir: &Path, example_flow: Option<&str>) {
    let dir = data_dir.display();
    // The binaries built beside this one, so the commands run as printed.
    let sibling = |name: &str| {
        std::env::current_exe()
            .ok()
            .and_then(|path| Some(path.parent()?.join(name)))
            .filter(|path| path.exists())
            .map_or_else(|| name.to_owned(), |path| path.display().to_string())
    };
    let audit = sibling("islets-audit");
    let flow = example_flow.unwrap_or("<correlation_id>");
    println!("What to try next:");
    println!("  # serve it: HTTP ingest on :8080 and the query API on :8081");
    println!("  {audit} serve --store {dir} &");
    println!("  curl -s 'http://127.0.0.1:8081/v1/events?event_type=listing.sold&limit=3'");
    println!("  curl -s 'http://127.0.0.1:8081/v1/correlations/{flow}'");
    println!(
        "  head -n 3 {dir}/demo-input.ndjson | curl -sS -H 'content-type: application/x-ndjson' --data-binary @- http://127.0.0.1:8080/v1/ingest"
    );
    println!(
        "  # the archive is plain Hive-partitioned Parquet; DuckDB reads it (pip install duckdb):"
    );
    println!(
        "  python3 -c \"import duckdb; print(duckdb.sql(\\\"SELECT aggregate, event_type, count(*) n, count(DISTINCT event_id) distinct_ids FROM read_parquet('{dir}/events/*/*/*.parquet', hive_partitioning=true) GROUP BY ALL ORDER BY n DESC\\\"))\""
    );
}
