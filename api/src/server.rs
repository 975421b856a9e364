//! Running the query API: configuration, start-up checks, serving until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use islets_core::store::{Archive, StoreLocation};
use tokio_util::sync::CancellationToken;

use crate::auth::{Auth, Tokens};
use crate::{AppState, router};
use islets_query::{AthenaEngine, AthenaSettings};
use islets_query::{DataFusionEngine, QueryEngine};

/// Default address of the query API.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Raw arguments of `islets-query`; each also an `ISLETS_*` environment variable.
#[derive(Debug, Clone, Args)]
pub struct QueryArgs {
    /// The archive: s3://bucket/prefix, or a local directory.
    #[arg(long, env = "ISLETS_STORE", value_name = "URI")]
    pub store: String,

    /// Address of the API. Without --tokens-file, loopback addresses only.
    #[arg(long, env = "ISLETS_LISTEN", value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// YAML file of bearer tokens (their SHA-256 hashes, names and scopes). Without it the
    /// API runs with authentication off, on loopback only.
    #[arg(long, env = "ISLETS_TOKENS_FILE", value_name = "FILE")]
    pub tokens_file: Option<std::path::PathBuf>,

    /// Which engine answers: datafusion (embedded, reads the Parquet files directly) or
    /// athena (distributed, over the Glue table; needs the table from `infra/`).
    #[arg(long, env = "ISLETS_ENGINE", value_enum, default_value_t = EngineKind::Datafusion)]
    pub engine: EngineKind,

    /// Athena workgroup (with --engine athena).
    #[arg(
        long,
        env = "ISLETS_ATHENA_WORKGROUP",
        value_name = "NAME",
        default_value = "primary"
    )]
    pub athena_workgroup: String,

    /// Glue database holding the `events` table (with --engine athena).
    #[arg(
        long,
        env = "ISLETS_ATHENA_DATABASE",
        value_name = "NAME",
        default_value = "islets_audit"
    )]
    pub athena_database: String,

    /// Where Athena writes results (s3://bucket/prefix/), unless the workgroup enforces
    /// its own location (with --engine athena).
    #[arg(long, env = "ISLETS_ATHENA_OUTPUT", value_name = "URI")]
    pub athena_output: Option<String>,

    /// Longest an Athena query may run before it is stopped, in seconds.
    #[arg(
        long,
        env = "ISLETS_ATHENA_TIMEOUT_SECS",
        value_name = "SECONDS",
        default_value_t = 55
    )]
    pub athena_timeout_secs: u64,
}

/// The query engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    /// The embedded engine over the archive's Parquet files.
    Datafusion,
    /// Athena over the Glue table.
    Athena,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct QueryConfig {
    /// The archive.
    pub store: StoreLocation,
    /// Where the API listens.
    pub listen: SocketAddr,
    /// Bearer tokens; `None`: authentication off (loopback only).
    pub tokens_file: Option<std::path::PathBuf>,
    /// `None`: DataFusion.
    pub athena: Option<AthenaSettings>,
}

/// Why the query server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A flag or setting is not usable; the message names it.
    #[error("{0}")]
    Config(String),
    /// A dependency (store, engine, tokens) is not usable at start-up.
    #[error("{context}: {source}")]
    Startup {
        /// What was being set up.
        context: String,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server failed while running.
    #[error("the query server failed: {0}")]
    Runtime(#[source] std::io::Error),
}

impl islets_core::kind::Classify for ServeError {
    fn kind(&self) -> islets_core::kind::ErrorKind {
        use islets_core::kind::ErrorKind;
        match self {
            ServeError::Config(_) => ErrorKind::Usage,
            ServeError::Startup { .. } => ErrorKind::Precondition,
            ServeError::Runtime(_) => ErrorKind::Internal,
        }
    }
}

impl QueryArgs {
    /// Validates the flags (nothing is opened).
    pub fn validate(&self) -> Result<QueryConfig, ServeError> {
        let store = StoreLocation::parse(&self.store)
            .map_err(|error| ServeError::Config(format!("--store: {error}")))?;
        islets_http::check_listener(
            "--listen",
            self.listen,
            self.tokens_file.is_some(),
            "pass --tokens-file to serve other hosts",
        )
        .map_err(ServeError::Config)?;
        let athena = match self.engine {
            EngineKind::Datafusion => None,
            EngineKind::Athena => {
                if let Some(output) = &self.athena_output
                    && !output.starts_with("s3://")
                {
                    return Err(ServeError::Config(format!(
                        "--athena-output {output}: an s3://bucket/prefix/ location"
                    )));
                }
                if self.athena_timeout_secs == 0 {
                    return Err(ServeError::Config(
                        "--athena-timeout-secs: at least 1".to_owned(),
                    ));
                }
                Some(AthenaSettings {
                    workgroup: self.athena_workgroup.clone(),
                    database: self.athena_database.clone(),
                    output_location: self.athena_output.clone(),
                    timeout: Duration::from_secs(self.athena_timeout_secs),
                })
            }
        };
        Ok(QueryConfig {
            store,
            listen: self.listen,
            tokens_file: self.tokens_file.clone(),
            athena,
        })
    }
}

/// Serves the API until `shutdown`; `bound_tx` receives the bound address.
pub async fn serve(
    config: QueryConfig,
    shutdown: CancellationToken,
    bound_tx: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), ServeError> {
    let auth = match &config.tokens_file {
        Some(path) => Auth::Tokens(Arc::new(Tokens::load(path).map_err(ServeError::Config)?)),
        None => Auth::Off,
    };
    let aws = if config.store.is_s3() || config.athena.is_some() {
        Some(islets_core::aws::load_sdk_config().await)
    } else {
        None
    };
    let startup = |context: String| {
        move |source: islets_core::Error| ServeError::Startup {
            context,
            source: Box::new(source),
        }
    };
    let archive = Archive::open(&config.store, aws.as_ref())
        .map_err(startup(format!("cannot open the store {}", config.store)))?;
    archive.check_reachable(STARTUP_TIMEOUT).await.map_err(startup(format!(
        "cannot reach the store {} (check the bucket, AWS credentials, AWS_REGION and AWS_ENDPOINT_URL)",
        config.store
    )))?;
    let engine: Arc<dyn QueryEngine> = match (&config.athena, &aws) {
        (Some(settings), Some(aws)) => {
            let engine = AthenaEngine::new(aws, settings.clone());
            engine.ready().await.map_err(|error| ServeError::Startup {
                context: format!(
                    "cannot use the Athena workgroup {} (--athena-workgroup; check AWS credentials and AWS_REGION)",
                    settings.workgroup
                ),
                source: Box::new(error),
            })?;
            Arc::new(engine)
        }
        _ => Arc::new(
            DataFusionEngine::new(archive).map_err(|error| ServeError::Startup {
                context: "cannot start the query engine".to_owned(),
                source: Box::new(error),
            })?,
        ),
    };
    // The listener rule holds whoever built the configuration.
    islets_http::check_listener(
        "--listen",
        config.listen,
        matches!(auth, Auth::Tokens(_)),
        "pass --tokens-file to serve other hosts",
    )
    .map_err(ServeError::Config)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Startup {
            context: format!("cannot listen on {} (--listen)", config.listen),
            source: Box::new(source),
        })?;
    let address = listener
        .local_addr()
        .map_err(|source| ServeError::Startup {
            context: "cannot read the listening address".to_owned(),
            source: Box::new(source),
        })?;
    let engine_name = if config.athena.is_some() {
        "athena"
    } else {
        "datafusion"
    };
    tracing::info!(%address, store = %config.store, engine = engine_name, "listening");
    if matches!(auth, Auth::Off) {
        tracing::warn!(
            "authentication is OFF (no --tokens-file): anyone on this host can query the archive"
        );
    }
    if let Some(bound_tx) = bound_tx {
        let _ = bound_tx.send(address);
    }
    let host_check = islets_http::HostCheck::for_auth(matches!(auth, Auth::Tokens(_)));
    let routes = router(AppState {
        engine,
        auth,
        metrics: Default::default(),
    });
    islets_http::serve(
        listener,
        routes,
        islets_http::ServerLimits::DEFAULT,
        host_check,
        shutdown,
    )
    .await
    .map_err(ServeError::Runtime)
}
