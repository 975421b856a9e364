//! The accept loop every server runs, with the limits a hostile or careless client meets:
//!
//! * a header-read timeout: a client that trickles its request head is disconnected;
//! * a connection limit: past it, new connections wait in the kernel's backlog;
//! * when authentication is off, only loopback `Host` values are served, so a web page
//!   cannot reach the server through DNS rebinding;
//! * a panic in a handler becomes a logged 500 with the error body, never a dropped
//!   connection.
//!
//! Request timeouts stay with each router (exports have their own, longer one).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::catch_panic::CatchPanicLayer;

use crate::{ApiError, is_loopback};

/// The limits of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Longest a client may take to send its request head (line and headers).
    pub header_read_timeout: Duration,
    /// Connections served at once; more wait in the backlog.
    pub max_connections: usize,
    /// After shutdown, how long open requests may take to finish.
    pub shutdown_grace: Duration,
}

impl ServerLimits {
    /// The defaults of every server (documented in docs/SECURITY.md).
    pub const DEFAULT: ServerLimits = ServerLimits {
        header_read_timeout: Duration::from_secs(10),
        max_connections: 512,
        shutdown_grace: Duration::from_secs(30),
    };
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits::DEFAULT
    }
}

/// Which `Host` headers a server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostCheck {
    /// Any (authentication is on: a token, not the host name, decides).
    Any,
    /// Only `localhost` and loopback addresses, with any port (authentication is off).
    LoopbackOnly,
}

impl HostCheck {
    /// The check for a server with or without authentication.
    pub fn for_auth(authenticated: bool) -> Self {
        if authenticated {
            HostCheck::Any
        } else {
            HostCheck::LoopbackOnly
        }
    }
}

/// Serves `router` on `listener` until `shutdown`, then lets open requests finish for
/// `limits.shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    host_check: HostCheck,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let router = harden(router, host_check);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let connection_shutdown = shutdown.clone();
        connections.spawn(async move {
            serve_connection(stream, peer, service, limits, connection_shutdown).await;
            drop(permit);
        });
    }
    connections.close();
    if tokio::time::timeout(limits.shutdown_grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "shutdown: connections still open after the grace period are dropped"
        );
    }
    Ok(())
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    service: TowerToHyperService<Router>,
    limits: ServerLimits,
    shutdown: CancellationToken,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.as_mut().await
        }
    };
    if let Err(error) = result {
        // Header-read timeouts, resets and malformed requests: the client's doing.
        tracing::debug!(%peer, %error, "connection closed with an error");
    }
}

/// The layers every router gets: the Host check (when asked) and panics as 500s.
fn harden(router: Router, host_check: HostCheck) -> Router {
    let router = match host_check {
        HostCheck::Any => router,
        HostCheck::LoopbackOnly => router.layer(axum::middleware::from_fn(loopback_host_only)),
    };
    router.layer(CatchPanicLayer::custom(panic_response))
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = detail, "a handler panicked; answered 500");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the request failed; the details are in the server log",
    )
    .into_response()
}

async fn loopback_host_only(request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| {
            request
                .uri()
                .authority()
                .map(|authority| authority.as_str())
        });
    match host {
        Some(host) if is_loopback_host(host) => next.run(request).await,
        _ => ApiError::new(
            StatusCode::FORBIDDEN,
            "host_not_allowed",
            "authentication is off, so this server answers only requests addressed to localhost or a loopback address (the Host header); use a token to serve other names",
        )
        .into_response(),
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, each with an optional port.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6] or [v6]:port
        match rest.split_once(']') {
            Some((inside, after)) if after.is_empty() || valid_port(after) => inside,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if valid_port(&format!(":{port}")) => name,
            Some(_) => return false,
            None => host,
        }
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse().is_ok_and(is_loopback)
}

fn valid_port(after: &str) -> bool {
    after
        .strip_prefix(':')
        .is_some_and(|port| !port.is_empty() && port.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests;
