//! What the binaries share: the runtime, signal handling, error reporting.

use std::future::Future;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

/// mimalloc: decoding allocates and frees many small strings per event; with glibc's
/// allocator ingest spends a third of its time in malloc/free (BENCHMARKS.md). Setting
/// `MIMALLOC_PURGE_DELAY=1000` in the environment also stops it handing the Parquet writer's
/// per-page zstd buffers back to the kernel only to fault them in again.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Prints an error with its causes and ends with the exit status its kind decides (2: refused
/// before anything was done, 1: failed while running). The one place that maps errors
/// to exit statuses.
#[allow(
    dead_code,
    reason = "binaries whose errors do not implement Classify yet use report"
)]
pub(crate) fn fail<E: islets_core::kind::Classify>(program: &str, error: &E) -> ExitCode {
    report(program, error, error.kind().exit_code())
}

/// Prints an error with its causes and returns the exit code.
pub(crate) fn report(program: &str, error: &dyn std::error::Error, code: u8) -> ExitCode {
    let message = error.to_string();
    eprintln!("{program}: error: {message}");
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Messages that already end with their cause are not repeated.
        if !message.contains(&cause_text) {
            eprintln!("  caused by: {cause_text}");
        }
        source = cause.source();
    }
    ExitCode::from(code)
}

/// Runs `main` on a multi-threaded runtime; SIGINT/SIGTERM cancel its token (a second
/// signal exits at once).
pub(crate) fn block_on<F, Fut>(main: F) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = ExitCode>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let signal_token = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested: finishing what is buffered");
            signal_token.cancel();
            wait_for_signal().await;
            eprintln!("second signal: exiting without flushing (unacknowledged messages will be delivered again)");
            std::process::exit(130);
        });
        main(shutdown).await
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut terminate) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
