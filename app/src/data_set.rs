//! What to generate; shared by `demo` and `generate`.

use std::path::PathBuf;

use clap::Args;
use islets_core::demo::DemoOptions;

/// The generated data set's shape.
#[derive(Debug, Clone, Args)]
pub struct DataSetArgs {
    /// Where the events catalog is.
    #[command(flatten)]
    pub catalog: islets_cli::CatalogArgs,
    /// Business flows to generate (each 2 to 9 events; about 4.7 on average).
    #[arg(long, default_value_t = 300)]
    pub flows: usize,
    /// Spread the flows over this many days before now.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// Random seed (the same seed gives the same events).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

impl DataSetArgs {
    /// The catalog directory: --events-dir, or the RFC's ISLETS_EVENTS_CONFIG_PATH when
    /// only that is given.
    pub fn catalog_dir(&self) -> PathBuf {
        self.catalog.dir()
    }

    /// The generator's options.
    pub fn options(&self) -> DemoOptions {
        DemoOptions {
            flows: self.flows,
            days: self.days,
            seed: self.seed,
            ..DemoOptions::default()
        }
    }
}
