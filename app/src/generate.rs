//! `islets-audit generate`: a data set as NDJSON (one SNS envelope per line), for
//! `islets-ingester --source file`, backfill rehearsals and benchmarks.

use std::path::PathBuf;

use clap::Args;
use islets_core::catalog::Catalog;
use islets_core::demo::{DemoOptions, generate};

use crate::{DataSetArgs, Error, Result};

/// Raw arguments of `generate`.
#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// Output file.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub data_set: DataSetArgs,
    /// Percentage of events made schema-invalid.
    #[arg(long, default_value_t = DemoOptions::default().invalid_percent)]
    pub invalid_percent: u32,
    /// Percentage of deliveries repeated, as SQS redelivery does.
    #[arg(long, default_value_t = DemoOptions::default().duplicate_percent)]
    pub duplicate_percent: u32,
    /// Undecodable messages appended.
    #[arg(long, default_value_t = DemoOptions::default().poison_messages)]
    pub poison: usize,
}

/// A validated `generate`.
#[derive(Debug, Clone)]
pub struct GenerateConfig {
    /// Where to write.
    pub out: PathBuf,
    /// The catalog directory.
    pub events_dir: PathBuf,
    /// What to generate.
    pub options: DemoOptions,
}

/// What `generate` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// Lines (deliveries) written.
    pub messages: usize,
    /// Distinct events among them.
    pub events: usize,
}

impl GenerateArgs {
    /// Checks the arguments.
    pub fn validate(&self) -> Result<GenerateConfig> {
        for (flag, value) in [
            ("--invalid-percent", self.invalid_percent),
            ("--duplicate-percent", self.duplicate_percent),
        ] {
            if value > 100 {
                return Err(Error::Usage(format!(
                    "{flag} {value}: a percentage, 0 to 100"
                )));
            }
        }
        Ok(GenerateConfig {
            out: self.out.clone(),
            events_dir: self.data_set.catalog_dir(),
            options: DemoOptions {
                invalid_percent: self.invalid_percent,
                duplicate_percent: self.duplicate_percent,
                poison_messages: self.poison,
                ..self.data_set.options()
            },
        })
    }
}

/// Writes the data set.
pub fn run(config: &GenerateConfig) -> Result<Generated> {
    let catalog = Catalog::load_dir(&config.events_dir)?;
    let data = generate(&catalog, &config.options);
    let mut text = data.lines.join("\n");
    text.push('\n');
    std::fs::write(&config.out, text)
        .map_err(Error::io(format!("cannot write {}", config.out.display())))?;
    Ok(Generated {
        messages: data.lines.len(),
        events: data.events.len(),
    })
}
