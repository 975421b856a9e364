//! `islets-audit`: the umbrella command. It only wires the libraries together.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use islets_core::catalog::Catalog;
use islets_core::demo::{DemoOptions, generate};
use islets_core::layout::Table;
use islets_core::store::{Archive, StoreLocation};
use islets_ingester::config::FlushLimits;
use islets_ingester::{IngesterConfig, SourceConfig};

mod common;

/// Islets Audit: the event audit store and replay service of the ISLETS event bus.
#[derive(Debug, Parser)]
#[command(name = "islets-audit", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a realistic data set from the events catalog and ingest it, through the
    /// same pipeline as production, into a local directory. Needs no AWS account.
    Demo(DemoArgs),
    /// Run the embedded default: HTTP ingest and the query API together on a local
    /// directory (the demo's, by default). Authentication is off: both APIs listen on
    /// loopback only (run islets-query --tokens-file to serve others).
    Serve(ServeArgs),
    /// Write a generated data set as NDJSON (one SNS envelope per line), for
    /// `islets-ingester --source file`, backfill rehearsals and benchmarks.
    Generate(GenerateArgs),
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

#[derive(Debug, Args)]
struct ServeArgs {
    /// Directory of the archive.
    #[arg(long, env = "ISLETS_DATA_DIR", default_value = "demo-data")]
    data_dir: PathBuf,
    /// Directory of the events catalog.
    #[arg(long, env = "ISLETS_EVENTS_CONFIG_PATH", default_value = "events")]
    events_dir: PathBuf,
    /// Address of the ingest API (POST /v1/ingest).
    #[arg(long, env = "ISLETS_LISTEN", default_value = islets_ingester::config::DEFAULT_LISTEN)]
    ingest_listen: std::net::SocketAddr,
    /// Address of the query API (GET /v1/events, ...).
    #[arg(long, env = "ISLETS_QUERY_LISTEN", default_value = islets_query::server::DEFAULT_LISTEN)]
    listen: std::net::SocketAddr,
}

/// What to generate; shared by `demo` and `generate`.
#[derive(Debug, Args)]
struct DataSetArgs {
    /// Directory of the events catalog.
    #[arg(long, env = "ISLETS_EVENTS_CONFIG_PATH", default_value = "events")]
    events_dir: PathBuf,
    /// Business flows to generate (each 2 to 9 events; about 4.7 on average).
    #[arg(long, default_value_t = 300)]
    flows: usize,
    /// Spread the flows over this many days before now.
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// Random seed (the same seed gives the same events).
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

impl DataSetArgs {
    fn options(&self) -> DemoOptions {
        DemoOptions {
            flows: self.flows,
            days: self.days,
            seed: self.seed,
            ..DemoOptions::default()
        }
    }
}

#[derive(Debug, Args)]
struct GenerateArgs {
    /// Output file.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    data_set: DataSetArgs,
    /// Percentage of events made schema-invalid.
    #[arg(long, default_value_t = DemoOptions::default().invalid_percent)]
    invalid_percent: u32,
    /// Percentage of deliveries repeated, as SQS redelivery does.
    #[arg(long, default_value_t = DemoOptions::default().duplicate_percent)]
    duplicate_percent: u32,
    /// Undecodable messages appended.
    #[arg(long, default_value_t = DemoOptions::default().poison_messages)]
    poison: usize,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Directory of the archive.
    #[arg(long, env = "ISLETS_DATA_DIR", default_value = "demo-data")]
    data_dir: PathBuf,
    #[command(flatten)]
    data_set: DataSetArgs,
    /// Delete the demo archive in --data-dir first (only its events/ and quarantine/).
    #[arg(long)]
    reset: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    islets_core::telemetry::init(false, "warn");
    match cli.command {
        Command::Demo(args) => common::block_on(|shutdown| async move {
            match demo(args, shutdown).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => common::report("islets-audit demo", error.as_ref(), 1),
            }
        }),
        Command::Serve(args) => common::block_on(|shutdown| async move {
            match serve(args, shutdown).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => common::report("islets-audit serve", error.as_ref(), 1),
            }
        }),
        Command::Generate(args) => match generate_file(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => common::report("islets-audit generate", error.as_ref(), 1),
        },
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

async fn serve(args: ServeArgs, shutdown: tokio_util::sync::CancellationToken) -> DemoResult<()> {
    let query_config = islets_query::server::QueryArgs {
        store: args.data_dir.display().to_string(),
        listen: args.listen,
        tokens_file: None,
        engine: islets_query::server::EngineKind::Datafusion,
        athena_workgroup: String::new(),
        athena_database: String::new(),
        athena_output: None,
        athena_timeout_secs: 1,
    }
    .validate()?;
    let ingest_config = IngesterConfig {
        source: SourceConfig::Http,
        store: StoreLocation::Local {
            root: args.data_dir.clone(),
        },
        events_dir: args.events_dir.clone(),
        listen: Some(args.ingest_listen),
        tokens_file: None,
        limits: FlushLimits {
            max_age: FlushLimits::HTTP_MAX_AGE,
            ..FlushLimits::DEFAULT
        },
        flush_retry: Default::default(),
    };
    println!(
        "ingest: POST http://{}/v1/ingest   query: GET http://{}/v1/events   (archive: {}; Ctrl-C to stop)",
        args.ingest_listen,
        args.listen,
        args.data_dir.display()
    );
    println!("WARNING: authentication is OFF for the demo; both APIs listen on loopback only");
    // Either part failing stops the other.
    let ingest_shutdown = shutdown.child_token();
    let query_shutdown = shutdown.child_token();
    let ingest = async {
        let result = islets_ingester::run(ingest_config, ingest_shutdown.clone()).await;
        query_shutdown.cancel();
        result
            .map(|_| ())
            .map_err(|error| -> Box<dyn std::error::Error + Send + Sync> { Box::new(error) })
    };
    let query = async {
        let result = islets_query::server::serve(query_config, query_shutdown.clone(), None).await;
        ingest_shutdown.cancel();
        result.map_err(|error| -> Box<dyn std::error::Error + Send + Sync> { Box::new(error) })
    };
    let (ingest_result, query_result) = tokio::join!(ingest, query);
    ingest_result.and(query_result)
}

fn generate_file(args: &GenerateArgs) -> DemoResult<()> {
    let catalog = Catalog::load_dir(&args.data_set.events_dir)?;
    let options = DemoOptions {
        invalid_percent: args.invalid_percent,
        duplicate_percent: args.duplicate_percent,
        poison_messages: args.poison,
        ..args.data_set.options()
    };
    let data = generate(&catalog, &options);
    let mut text = data.lines.join("\n");
    text.push('\n');
    std::fs::write(&args.out, text)
        .map_err(|error| format!("cannot write {}: {error}", args.out.display()))?;
    println!(
        "wrote {} messages ({} distinct events) to {}",
        data.lines.len(),
        data.events.len(),
        args.out.display()
    );
    Ok(())
}

type DemoResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn demo(args: DemoArgs, shutdown: tokio_util::sync::CancellationToken) -> DemoResult<()> {
    let catalog = Catalog::load_dir(&args.data_set.events_dir)?;
    let location = StoreLocation::Local {
        root: args.data_dir.clone(),
    };
    let archive = Archive::open(&location, None)?;
    if args.reset {
        for table in [Table::Events, Table::Quarantine] {
            let directory = args.data_dir.join(table.prefix());
            if directory.exists() {
                std::fs::remove_dir_all(&directory)?;
            }
        }
    }
    let existing = archive.list_files(Table::Events).await?;
    if !existing.is_empty() {
        println!(
            "{} already holds an archive ({} event files); reusing it. Pass --reset to generate it again.\n",
            args.data_dir.display(),
            existing.len()
        );
        print_next_steps(&args.data_dir, None);
        return Ok(());
    }

    let data = generate(&catalog, &args.data_set.options());
    let input = args.data_dir.join("demo-input.ndjson");
    std::fs::write(&input, data.lines.join("\n") + "\n")?;
    println!(
        "generated {} events in {} flows over {} days ({} schema-invalid, {} redelivered duplicates, {} undecodable messages)",
        data.events.len(),
        args.data_set.flows,
        args.data_set.days,
        data.invalid_events,
        data.duplicate_deliveries,
        data.poison_messages
    );

    let config = IngesterConfig {
        source: SourceConfig::File {
            input: input.clone(),
        },
        store: location,
        events_dir: args.data_set.events_dir.clone(),
        listen: None,
        tokens_file: None,
        limits: FlushLimits::DEFAULT,
        flush_retry: Default::default(),
    };
    let summary = islets_ingester::run(config, shutdown).await?;
    let event_files = archive.list_files(Table::Events).await?;
    let hours: std::collections::BTreeSet<_> =
        event_files.iter().map(|(file, _)| file.partition).collect();
    println!(
        "ingested {} messages into {}: {} events ({} failed their schema), {} quarantined, {} Parquet files in {} hour partitions",
        summary.messages,
        args.data_dir.display(),
        summary.events,
        summary.schema_invalid,
        summary.quarantined,
        summary.files,
        hours.len()
    );
    println!(
        "the input is kept in {} (islets-ingester --source file can ingest it again)\n",
        input.display()
    );
    let example_flow = data
        .events
        .iter()
        .find(|event| event.aggregate == "listing")
        .map(|event| event.correlation_id.as_str());
    print_next_steps(&args.data_dir, example_flow);
    Ok(())
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
    println!("  {audit} serve --data-dir {dir} &");
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
