//! `islets-audit demo`: generate a realistic data set from the events catalog and ingest
//! it, through the same pipeline as production, into a local directory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::Args;
use islets_core::catalog::Catalog;
use islets_core::demo::{DemoOptions, generate};
use islets_core::layout::Table;
use islets_core::store::{Archive, StoreLocation};
use islets_ingester::FlushLimits;
use islets_ingester::{IngesterConfig, SourceConfig};
use tokio_util::sync::CancellationToken;

use crate::{DataSetArgs, Error, Result};

/// Raw arguments of `demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Directory of the archive (a local directory: the demo needs no AWS).
    #[arg(
        long,
        env = "ISLETS_STORE",
        value_name = "DIR",
        default_value = "demo-data",
        alias = "data-dir"
    )]
    pub store: PathBuf,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub data_set: DataSetArgs,
    /// Delete the demo archive in --store first (only its events/ and quarantine/).
    #[arg(long)]
    pub reset: bool,
}

/// A validated `demo`.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// The archive directory.
    pub store: PathBuf,
    /// The catalog directory.
    pub events_dir: PathBuf,
    /// What to generate.
    pub options: DemoOptions,
    /// Start from an empty archive.
    pub reset: bool,
}

impl DemoArgs {
    /// Checks the arguments.
    pub fn validate(&self) -> Result<DemoConfig> {
        if self
            .store
            .as_os_str()
            .to_string_lossy()
            .starts_with("s3://")
        {
            return Err(Error::Usage(format!(
                "--store {}: the demo writes a local directory; ingest into S3 with islets-ingester",
                self.store.display()
            )));
        }
        Ok(DemoConfig {
            store: self.store.clone(),
            events_dir: self.data_set.catalog_dir(),
            options: self.data_set.options(),
            reset: self.reset,
        })
    }
}

/// What the demo did.
#[derive(Debug, Clone)]
pub enum DemoOutcome {
    /// The directory already held an archive: kept as it is.
    Reused {
        /// Event files found.
        event_files: usize,
    },
    /// A data set was generated and ingested.
    Ingested(Box<Ingested>),
}

/// What a fresh demo generated and ingested.
#[derive(Debug, Clone)]
pub struct Ingested {
    /// Distinct events generated.
    pub events: usize,
    /// Flows generated.
    pub flows: usize,
    /// Days they span.
    pub days: u32,
    /// Events made schema-invalid.
    pub invalid_events: usize,
    /// Deliveries repeated.
    pub duplicate_deliveries: usize,
    /// Undecodable messages.
    pub poison_messages: usize,
    /// The ingester's summary.
    pub summary: islets_ingester::PipelineSummary,
    /// Hour partitions holding events.
    pub hours: usize,
    /// The generated input, kept for `--source file`.
    pub input: PathBuf,
    /// A correlation id of a listing flow, for the printed examples.
    pub example_flow: Option<String>,
}

/// Generates and ingests the demo data set (or keeps the one already there).
pub async fn run(config: &DemoConfig, shutdown: CancellationToken) -> Result<DemoOutcome> {
    let catalog = Catalog::load_dir(&config.events_dir)?;
    let location = StoreLocation::Local {
        root: config.store.clone(),
    };
    let archive = Archive::open(&location, None)?;
    if config.reset {
        reset(&config.store)?;
    }
    let existing = archive.list_files(Table::Events).await?;
    if !existing.is_empty() {
        return Ok(DemoOutcome::Reused {
            event_files: existing.len(),
        });
    }

    let data = generate(&catalog, &config.options);
    std::fs::create_dir_all(&config.store).map_err(Error::io(format!(
        "cannot create {}",
        config.store.display()
    )))?;
    let input = config.store.join("demo-input.ndjson");
    std::fs::write(&input, data.lines.join("\n") + "\n")
        .map_err(Error::io(format!("cannot write {}", input.display())))?;

    let ingester = IngesterConfig {
        source: SourceConfig::File {
            input: input.clone(),
        },
        store: location,
        events_dir: config.events_dir.clone(),
        listen: None,
        tokens_file: None,
        limits: FlushLimits::DEFAULT,
        flush_retry: islets_ingester::FLUSH_RETRY,
    };
    let summary = islets_ingester::run(ingester, shutdown).await?;
    let event_files = archive.list_files(Table::Events).await?;
    let hours: BTreeSet<_> = event_files.iter().map(|(file, _)| file.partition).collect();
    let example_flow = data
        .events
        .iter()
        .find(|event| event.aggregate == "listing")
        .map(|event| event.correlation_id.clone());
    Ok(DemoOutcome::Ingested(Box::new(Ingested {
        events: data.events.len(),
        flows: config.options.flows,
        days: config.options.days,
        invalid_events: data.invalid_events,
        duplicate_deliveries: data.duplicate_deliveries,
        poison_messages: data.poison_messages,
        summary,
        hours: hours.len(),
        input,
        example_flow,
    })))
}

/// Deletes the archive's tables (only `events/` and `quarantine/`).
fn reset(store: &Path) -> Result<()> {
    for table in [Table::Events, Table::Quarantine] {
        let directory = store.join(table.prefix());
        if directory.exists() {
            std::fs::remove_dir_all(&directory)
                .map_err(Error::io(format!("cannot delete {}", directory.display())))?;
        }
    }
    Ok(())
}
