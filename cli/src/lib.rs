//! `islets-cli`: the command-line flags every Islets Audit binary shares, defined once so
//! that a flag means the same thing, reads the same environment variable and keeps the
//! same aliases wherever it appears.
//!
//! * [`CatalogArgs`]: `--events-dir` (`ISLETS_EVENTS_DIR`), with the RFC's
//!   `ISLETS_EVENTS_CONFIG_PATH` accepted when `--events-dir` is not given.
//!
//! Depends on `clap` only. `islets-core` must not depend on a CLI parser (it is the
//! bottom of the dependency graph), so flags shared by the service crates live here.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};

use clap::Args;

/// The catalog directory's default: `events/` in the working directory.
pub const DEFAULT_EVENTS_DIR: &str = "events";

/// Where the events catalog is: `--events-dir DIR`.
#[allow(
    rustdoc::invalid_html_tags,
    reason = "clap shows these doc comments as --help text, where <aggregate> is meant literally"
)]
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct CatalogArgs {
    /// Directory of the events catalog (one events/<aggregate>.yaml per aggregate).
    #[arg(
        long,
        env = "ISLETS_EVENTS_DIR",
        value_name = "DIR",
        default_value = DEFAULT_EVENTS_DIR
    )]
    pub events_dir: PathBuf,

    /// The RFC's name for --events-dir (an alias, used when --events-dir is not given).
    #[arg(
        long,
        env = "ISLETS_EVENTS_CONFIG_PATH",
        value_name = "DIR",
        hide = true
    )]
    pub events_config_path: Option<PathBuf>,
}

impl CatalogArgs {
    /// The catalog at `dir`, as if `--events-dir dir` were given.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        CatalogArgs {
            events_dir: dir.into(),
            events_config_path: None,
        }
    }

    /// The catalog directory: `--events-dir` (or `ISLETS_EVENTS_DIR`), else the RFC's
    /// `ISLETS_EVENTS_CONFIG_PATH` when only that is given, else `events`.
    pub fn dir(&self) -> PathBuf {
        self.events_config_path
            .clone()
            .filter(|_| self.events_dir.as_path() == Path::new(DEFAULT_EVENTS_DIR))
            .unwrap_or_else(|| self.events_dir.clone())
    }
}

impl Default for CatalogArgs {
    fn default() -> Self {
        CatalogArgs::at(DEFAULT_EVENTS_DIR)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        catalog: CatalogArgs,
    }

    fn parse(flags: &[&str]) -> CatalogArgs {
        Cli::try_parse_from(std::iter::once("bin").chain(flags.iter().copied()))
            .expect("flags parse")
            .catalog
    }

    #[test]
    fn events_dir_wins_and_the_rfc_alias_stands_in_only_for_the_default() {
        assert_eq!(parse(&[]).dir(), PathBuf::from("events"));
        assert_eq!(parse(&["--events-dir", "cat"]).dir(), PathBuf::from("cat"));
        assert_eq!(
            parse(&["--events-config-path", "rfc"]).dir(),
            PathBuf::from("rfc")
        );
        assert_eq!(
            parse(&["--events-dir", "cat", "--events-config-path", "rfc"]).dir(),
            PathBuf::from("cat")
        );
        assert_eq!(CatalogArgs::at("x").dir(), PathBuf::from("x"));
    }
}
