//! `islets-audit serve`: the embedded default. HTTP ingest and the query API together on a
//! local archive, authentication off, so both listen on loopback only: the ingester and
//! the query server apply the one listener rule themselves, whoever configures them.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use islets_core::store::StoreLocation;
use islets_ingester::FlushLimits;
use islets_ingester::{IngesterConfig, SourceConfig};
use tokio_util::sync::CancellationToken;

use crate::{Error, Result};

/// Raw arguments of `serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Directory of the archive.
    #[arg(
        long,
        env = "ISLETS_STORE",
        value_name = "DIR",
        default_value = "demo-data",
        alias = "data-dir"
    )]
    pub store: PathBuf,
    /// Where the events catalog is.
    #[command(flatten)]
    pub catalog: islets_cli::CatalogArgs,
    /// Address of the ingest API (POST /v1/ingest); loopback only.
    #[arg(long, env = "ISLETS_INGEST_LISTEN", value_name = "ADDR", default_value = islets_ingester::DEFAULT_LISTEN)]
    pub ingest_listen: SocketAddr,
    /// Address of the query API (GET /v1/events, ...); loopback only.
    #[arg(long, env = "ISLETS_LISTEN", value_name = "ADDR", default_value = islets_api::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
}

/// A validated `serve`: the two servers' configurations.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The archive directory.
    pub store: PathBuf,
    /// The ingest server.
    pub ingest: IngesterConfig,
    /// The query server.
    pub query: islets_api::QueryConfig,
}

impl ServeArgs {
    /// Builds both servers' configurations through their own validation.
    pub fn validate(&self) -> Result<ServeConfig> {
        for (flag, address) in [
            ("--ingest-listen", self.ingest_listen),
            ("--listen", self.listen),
        ] {
            islets_http::check_listener(
                flag,
                address,
                false,
                "serve runs with authentication off; run islets-ingester and islets-query with --tokens-file to serve other hosts",
            )
            .map_err(Error::Usage)?;
        }
        let events_dir = self.catalog.dir();
        let query = islets_api::QueryArgs {
            store: self.store.display().to_string(),
            listen: self.listen,
            tokens_file: None,
            engine: islets_api::EngineKind::Datafusion,
            athena_workgroup: String::new(),
            athena_database: String::new(),
            athena_output: None,
            athena_timeout_secs: 1,
        }
        .validate()?;
        let ingest = IngesterConfig {
            source: SourceConfig::Http,
            store: StoreLocation::Local {
                root: self.store.clone(),
            },
            events_dir,
            listen: Some(self.ingest_listen),
            tokens_file: None,
            limits: FlushLimits {
                max_age: FlushLimits::HTTP_MAX_AGE,
                ..FlushLimits::DEFAULT
            },
            flush_retry: islets_ingester::FLUSH_RETRY,
        };
        Ok(ServeConfig {
            store: self.store.clone(),
            ingest,
            query,
        })
    }
}

/// Runs both servers until `shutdown`; either one failing stops the other.
pub async fn run(config: ServeConfig, shutdown: CancellationToken) -> Result<()> {
    let ingest_shutdown = shutdown.child_token();
    let query_shutdown = shutdown.child_token();
    let ingest = async {
        let result = islets_ingester::run(config.ingest, ingest_shutdown.clone()).await;
        query_shutdown.cancel();
        result.map(|_| ()).map_err(Error::from)
    };
    let query = async {
        let result = islets_api::serve(config.query, query_shutdown.clone(), None).await;
        ingest_shutdown.cancel();
        result.map_err(Error::from)
    };
    let (ingest_result, query_result) = tokio::join!(ingest, query);
    ingest_result.and(query_result)
}
