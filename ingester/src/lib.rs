//! `islets-ingester`: drains the audit SQS queue (or HTTP, or an NDJSON file) into the
//! Parquet archive.
//!
//! Delivery contract (see `ingester/DESIGN.md`): an SQS message is deleted only after the
//! Parquet object holding its row is stored; a crash at any point means redelivery and
//! duplicate rows, never a missing row.
//!
//! Depends on `islets-core` and `islets-http`; never on the query, replay or infra crates.
//! The `Queue` boundary ([`Queue`], with [`SqsQueue`] and [`InMemoryQueue`]) is held to
//! one contract by [`queue_contract`], run against both.

#![warn(missing_docs)]

mod config;
mod error;
mod metrics;
mod pipeline;
mod queue;
pub mod queue_contract;
mod server;
mod sources;
mod visibility;

#[cfg(test)]
mod contract_tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use islets_core::catalog::Catalog;
use islets_core::store::Archive;
use islets_core::tokens::Tokens;
use tokio_util::sync::CancellationToken;

pub use config::{
    DEFAULT_LISTEN, FlushLimits, IngesterArgs, IngesterConfig, LogFormat, SourceConfig, SourceKind,
    SqsSettings,
};
pub use error::{Error, Result};
pub use pipeline::{FLUSH_RETRY, PipelineSummary};
pub use queue::{InMemoryQueue, Queue, QueueDepth, ReceivedMessage, SqsQueue};
pub use server::{MAX_CONCURRENT_INGESTS, MAX_INGEST_BODY_BYTES, MAX_INGEST_LINES};

use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, PipelineContext};

use crate::server::{HttpIngest, ServerState};

/// How long start-up waits for the store and the queue to answer.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// The dependencies `run` builds from the configuration; tests may supply their own.
pub struct Components {
    /// The events catalog.
    pub catalog: Arc<Catalog>,
    /// The archive.
    pub archive: Archive,
    /// The queue of the SQS source; `None` for the HTTP and file sources.
    pub queue: Option<Arc<dyn Queue>>,
}

/// Checks the configuration against the outside world and builds the components:
/// catalog, store (reachable), queue (reachable). Nothing is written yet.
pub async fn connect(config: &IngesterConfig) -> Result<Components> {
    let catalog = Arc::new(Catalog::load_dir(&config.events_dir)?);
    if let SourceConfig::File { input } = &config.source {
        std::fs::metadata(input).map_err(|source| Error::Startup {
            context: format!("cannot read --input {}", input.display()),
            source: Box::new(source),
        })?;
    }
    let needs_aws = config.store.is_s3() || matches!(config.source, SourceConfig::Sqs(_));
    let aws = if needs_aws {
        Some(islets_core::aws::load_sdk_config().await)
    } else {
        None
    };
    let archive = Archive::open(&config.store, aws.as_ref())?;
    archive
        .check_reachable(STARTUP_TIMEOUT)
        .await
        .map_err(|error| Error::Startup {
            context: format!(
                "cannot reach the store {} (check the bucket, AWS credentials, AWS_REGION and AWS_ENDPOINT_URL)",
                config.store
            ),
            source: Box::new(error),
        })?;
    let queue: Option<Arc<dyn Queue>> = match (&config.source, aws.as_ref()) {
        (SourceConfig::Sqs(settings), Some(aws)) => {
            let queue = SqsQueue::new(aws_sdk_sqs::Client::new(aws), settings.queue_url.clone());
            let startup_error = |source: Box<dyn std::error::Error + Send + Sync>| Error::Startup {
                context: format!(
                    "cannot reach the queue {} (check the URL, AWS credentials, AWS_REGION and AWS_ENDPOINT_URL)",
                    settings.queue_url
                ),
                source,
            };
            match tokio::time::timeout(STARTUP_TIMEOUT, queue.depth()).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Err(startup_error(Box::new(error))),
                Err(elapsed) => return Err(startup_error(Box::new(elapsed))),
            }
            Some(Arc::new(queue))
        }
        _ => None,
    };
    Ok(Components {
        catalog,
        archive,
        queue,
    })
}

/// Runs the ingester until its source ends (file), the queue is drained
/// (`--exit-when-idle`), or `shutdown` is cancelled; then flushes and acknowledges
/// everything buffered and returns the totals.
pub async fn run(config: IngesterConfig, shutdown: CancellationToken) -> Result<PipelineSummary> {
    let components = connect(&config).await?;
    run_with(config, components, shutdown, None).await
}

/// Like [`run`], with the components given; `bound_tx` receives the server's address.
pub async fn run_with(
    config: IngesterConfig,
    components: Components,
    shutdown: CancellationToken,
    bound_tx: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<PipelineSummary> {
    let Components {
        catalog,
        archive,
        queue,
    } = components;
    let tokens = match &config.tokens_file {
        Some(path) => Some(Arc::new(Tokens::load(path).map_err(Error::Config)?)),
        None => None,
    };
    let metrics = Arc::new(Metrics::new());
    let writer_id = format!("ingester-{}-{}", std::process::id(), ulid::Ulid::new());
    // Held SQS messages stay hidden while they are decoded, buffered and flushed.
    let heartbeat = match (&config.source, &queue) {
        (SourceConfig::Sqs(settings), Some(queue)) => Some(Arc::new(visibility::Heartbeat::new(
            queue.clone(),
            settings.visibility_timeout,
            metrics.clone(),
        ))),
        _ => None,
    };
    let heartbeat_stop = CancellationToken::new();
    let heartbeat_task = heartbeat
        .clone()
        .map(|heartbeat| tokio::spawn(heartbeat.run(heartbeat_stop.clone())));
    let prune_task = tokio::spawn(prune_journal(archive.clone(), heartbeat_stop.clone()));
    let context = PipelineContext {
        archive: archive.clone(),
        metrics: metrics.clone(),
        queue: queue.clone(),
        heartbeat: heartbeat.clone(),
        catalog: catalog.clone(),
        writer_id,
        retry: config.flush_retry,
    };
    let drain = CancellationToken::new();
    let pipeline = Pipeline::start(context, config.limits, drain.clone());

    let ready = Arc::new(AtomicBool::new(false));
    let server_stop = CancellationToken::new();
    let server = match config.listen {
        Some(listen) => {
            // The listener rule holds whoever built the configuration (islets-audit serve
            // builds it directly): unauthenticated ingest stays on loopback.
            let authenticated = !matches!(config.source, SourceConfig::Http) || tokens.is_some();
            islets_http::check_listener(
                "--listen",
                listen,
                authenticated,
                "pass --tokens-file to accept ingest from other hosts",
            )
            .map_err(Error::Config)?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|source| Error::Io {
                    context: format!("cannot listen on {listen} (--listen)"),
                    source,
                })?;
            let address = listener.local_addr().map_err(|source| Error::Io {
                context: "cannot read the listening address".to_owned(),
                source,
            })?;
            tracing::info!(%address, "listening");
            if matches!(config.source, SourceConfig::Http) && tokens.is_none() {
                tracing::warn!(
                    "authentication is OFF (no --tokens-file): anyone on this host can ingest"
                );
            }
            if let Some(bound_tx) = bound_tx {
                let _ = bound_tx.send(address);
            }
            let ingest = matches!(config.source, SourceConfig::Http).then(|| {
                HttpIngest::new(catalog.clone(), pipeline.batches_tx.clone(), tokens.clone())
            });
            let router = server::router(ServerState {
                metrics: metrics.clone(),
                ready: ready.clone(),
                ingest,
                started_ms: chrono::Utc::now().timestamp_millis(),
                polls: matches!(config.source, SourceConfig::Sqs(_)),
            });
            let stop = server_stop.clone();
            Some(tokio::spawn(islets_http::serve(
                listener,
                router,
                islets_http::ServerLimits::DEFAULT,
                islets_http::HostCheck::for_auth(authenticated),
                stop,
            )))
        }
        None => None,
    };
    ready.store(true, Ordering::Release);
    tracing::info!(store = %archive, source = ?config.source, "ingester started");

    let source_result = match &config.source {
        SourceConfig::Sqs(settings) => {
            let Some(queue) = queue else {
                return Err(Error::Config("--source sqs needs a queue".to_owned()));
            };
            sources::sqs::run(
                queue,
                heartbeat.clone(),
                settings.clone(),
                catalog.clone(),
                metrics.clone(),
                pipeline.batches_tx.clone(),
                shutdown.clone(),
            )
            .await;
            Ok(())
        }
        SourceConfig::File { input } => {
            let read = sources::file::run(
                input.clone(),
                catalog.clone(),
                metrics.clone(),
                pipeline.batches_tx.clone(),
                shutdown.clone(),
            )
            .await;
            read.map(|lines| tracing::info!(lines, "input read"))
        }
        SourceConfig::Http => {
            shutdown.cancelled().await;
            Ok(())
        }
    };

    // Stop accepting, flush what is buffered, acknowledge, finish.
    ready.store(false, Ordering::Release);
    drain.cancel();
    server_stop.cancel();
    if let Some(server) = server {
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "http server stopped with an error"),
            Err(error) => tracing::warn!(%error, "http server task failed"),
        }
    }
    let Pipeline { batches_tx, task } = pipeline;
    drop(batches_tx);
    let summary = task
        .await
        .map_err(|error| Error::Flush(format!("pipeline task failed: {error}")));
    heartbeat_stop.cancel();
    if let Some(task) = heartbeat_task {
        let _ = task.await;
    }
    let _ = prune_task.await;
    let summary = summary??;
    source_result?;
    tracing::info!(
        messages = summary.messages,
        events = summary.events,
        quarantined = summary.quarantined,
        files = summary.files,
        "ingester finished"
    );
    Ok(summary)
}

/// How often the journal's old entries are removed.
const JOURNAL_PRUNE_EVERY: Duration = Duration::from_secs(3_600);

/// Removes journal entries past their retention, at start-up and then hourly, until
/// `stop`. A failure is logged and tried again next time: the journal only speeds readers.
async fn prune_journal(archive: Archive, stop: CancellationToken) {
    loop {
        match archive
            .prune_journal(chrono::Utc::now().timestamp_millis())
            .await
        {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "old journal entries removed"),
            Err(error) => tracing::warn!(%error, "removing old journal entries failed"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(JOURNAL_PRUNE_EVERY) => {}
        }
    }
}
