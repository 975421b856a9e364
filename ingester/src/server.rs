//! The ingester's HTTP server: `POST /v1/ingest` (with `--source http`), `/healthz`,
//! `/readyz`, `/metrics`. Handlers extract, call, map; errors are
//! `{"error":{"code","message","details"}}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use islets_core::catalog::Catalog;
use islets_core::record::{Delivery, IngestSource};
use islets_core::tokens::{SCOPE_INGEST, Tokens};
use islets_http::ApiError;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::metrics::{Metrics, source_label};
use crate::pipeline::{Ack, BatchOutcome, DecodedBatch};

/// Largest accepted ingest body.
pub const MAX_INGEST_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Most messages (NDJSON lines) one request may hold: bounds the rows one request adds
/// to memory, however small its lines.
pub const MAX_INGEST_LINES: usize = 10_000;
/// Ingest requests handled at once; more are answered 429 at once (nothing read).
pub const MAX_CONCURRENT_INGESTS: usize = 4;
/// Longest the body of an ingest request may take to arrive: a client trickling its body
/// cannot hold one of the few ingest slots for minutes.
pub(crate) const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A request is answered once its rows are durable: at most one buffer age later.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Accepts HTTP ingest into a running pipeline.
#[derive(Clone)]
pub(crate) struct HttpIngest {
    pub catalog: Arc<Catalog>,
    pub batches_tx: mpsc::Sender<DecodedBatch>,
    /// Bearer tokens; `None` means authentication is off (loopback only).
    pub tokens: Option<Arc<Tokens>>,
    /// Admits at most [`MAX_CONCURRENT_INGESTS`] requests at once.
    pub in_flight: Arc<tokio::sync::Semaphore>,
}

impl HttpIngest {
    /// Ingest into `batches_tx`, with the default concurrency limit.
    pub(crate) fn new(
        catalog: Arc<Catalog>,
        batches_tx: mpsc::Sender<DecodedBatch>,
        tokens: Option<Arc<Tokens>>,
    ) -> Self {
        HttpIngest {
            catalog,
            batches_tx,
            tokens,
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_INGESTS)),
        }
    }
}

/// Shared state of the routes.
#[derive(Clone)]
pub(crate) struct ServerState {
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
    pub ingest: Option<HttpIngest>,
    /// When the ingester started (ms), and whether it polls a queue (stall detection).
    pub started_ms: i64,
    pub polls: bool,
}

/// The routes.
pub(crate) fn router(state: ServerState) -> Router {
    Router::new()
        .route("/healthz", get(islets_http::healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/ingest", post(ingest))
        .fallback(islets_http::not_found)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Ready when started, not shutting down, and not stalled: a stalled ingester answers 503
/// `not_ready` with why, so an orchestrator restarts or alerts on it.
async fn readyz(State(state): State<ServerState>) -> Result<Json<Value>, ApiError> {
    let stall = state.metrics.stall(
        chrono::Utc::now().timestamp_millis(),
        state.started_ms,
        state.polls,
    );
    state.metrics.stalled.set(i64::from(stall.is_some()));
    islets_http::readiness(if !state.ready.load(Ordering::Acquire) {
        Err("the ingester is starting or shutting down".to_owned())
    } else if let Some(reason) = stall {
        tracing::warn!(%reason, "stalled");
        Err(format!("stalled: {reason}"))
    } else {
        Ok(())
    })
}

async fn metrics(State(state): State<ServerState>) -> Response {
    let stall = state.metrics.stall(
        chrono::Utc::now().timestamp_millis(),
        state.started_ms,
        state.polls,
    );
    state.metrics.stalled.set(i64::from(stall.is_some()));
    islets_http::metrics_response(state.metrics.encode())
}

/// How the body is split into messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyShape {
    /// `application/json`: the whole body is one message.
    Single,
    /// `application/x-ndjson`: one message per line.
    Lines,
}

fn unsupported_media_type(content_type: &str, why: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("{why}: send application/json (one message) or application/x-ndjson (one message per line)"),
    )
    .with_details(json!({"content_type": content_type}))
}

/// The body's shape from its content type. Only JSON types are accepted: the types a
/// browser may send cross-site without a preflight (`text/plain`, forms) or with no type
/// at all are refused, so a web page cannot write to an ingester it can reach.
fn body_shape(headers: &HeaderMap) -> Result<BodyShape, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(unsupported_media_type(
            "",
            "the request has no content type",
        ));
    };
    let media_type = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match media_type.as_str() {
        "application/json" => Ok(BodyShape::Single),
        "application/x-ndjson" | "application/jsonl" | "application/jsonlines" => {
            Ok(BodyShape::Lines)
        }
        other => Err(unsupported_media_type(
            other,
            &format!("content type '{other}' is not accepted"),
        )),
    }
}

/// After a body went over its limit, at most this much more is read and dropped (never
/// kept), so that the client finishes sending and reads the 413: a server that closes
/// with unread bytes resets the connection, and the client sees no answer at all.
const DRAIN_BYTES: usize = 64 * 1024 * 1024;

/// Reads at most `limit` bytes of `body` within `within`. A larger body is refused (413)
/// and not kept: its rest is drained, up to [`DRAIN_BYTES`] and within the same time.
/// A body still arriving after `within` is answered 408.
async fn read_body(body: Body, limit: usize, within: Duration) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let deadline = tokio::time::Instant::now() + within;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is over {limit} bytes: split it into several requests"),
        )
        .with_details(json!({"limit_bytes": limit}))
    };
    let mut body = body;
    let mut kept = bytes::BytesMut::new();
    let mut over = 0usize;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) if over > 0 => return Err(too_large()),
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    format!(
                        "the body did not arrive within {} s: send it at once, or split it",
                        within.as_secs()
                    ),
                )
                .with_details(json!({"timeout_seconds": within.as_secs()})));
            }
            Ok(None) => break,
            Ok(Some(frame)) => frame,
        };
        let frame = frame.map_err(|error| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("the body could not be read: {error}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if over == 0 && kept.len() + data.len() <= limit {
            kept.extend_from_slice(&data);
        } else {
            if over == 0 {
                // Nothing of a refused body is kept.
                kept = bytes::BytesMut::new();
            }
            over = over.saturating_add(data.len());
            if over > DRAIN_BYTES {
                break;
            }
        }
    }
    if over > 0 {
        return Err(too_large());
    }
    Ok(kept.freeze())
}

/// `POST /v1/ingest`: one message (`application/json`) or NDJSON. Each message is an SNS
/// envelope, an SQS message as `aws sqs receive-message` prints it, or a raw body. Answers
/// once every row is durable in the archive.
///
/// Checked in this order, so a refused request costs no body read: authentication,
/// the concurrency limit (429), the content type (415); then the body is read up to its
/// byte limit (413) and split, up to [`MAX_INGEST_LINES`] messages (413).
async fn ingest(
    State(state): State<ServerState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<BatchOutcome>, ApiError> {
    let Some(ingest) = state.ingest else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this ingester does not accept HTTP ingest (start it with --source http)",
        ));
    };
    if let Some(tokens) = &ingest.tokens {
        let identity = islets_http::authenticate(tokens, &headers, SCOPE_INGEST)
            .map_err(|(error, _)| error)?;
        tracing::debug!(who = %identity.name, "ingest authorized");
    }
    let Ok(_permit) = ingest.in_flight.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            format!(
                "{MAX_CONCURRENT_INGESTS} ingest requests are already being stored: retry after the Retry-After delay"
            ),
        )
        .with_details(json!({"max_concurrent_requests": MAX_CONCURRENT_INGESTS, "retry_after_seconds": 1})));
    };
    let shape = body_shape(&headers)?;
    let body = read_body(body, MAX_INGEST_BODY_BYTES, BODY_READ_TIMEOUT).await?;
    let received_at_ms = chrono::Utc::now().timestamp_millis();
    let delivery = |bytes: Bytes| Delivery {
        body: bytes,
        sqs: None,
        source: IngestSource::Http,
        received_at_ms,
    };
    let deliveries: Vec<Delivery> = match shape {
        BodyShape::Single if !body.iter().all(u8::is_ascii_whitespace) => vec![delivery(body)],
        BodyShape::Single => Vec::new(),
        BodyShape::Lines => {
            let lines = split_lines(&body, MAX_INGEST_LINES).ok_or_else(|| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_many_lines",
                    format!(
                        "the body holds more than {MAX_INGEST_LINES} messages: split it into several requests"
                    ),
                )
                .with_details(json!({"limit_lines": MAX_INGEST_LINES}))
            })?;
            lines.into_iter().map(delivery).collect()
        }
    };
    if deliveries.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_body",
            "the body holds no message: send one JSON message or NDJSON lines",
        ));
    }
    state
        .metrics
        .messages_received
        .get_or_create(&source_label(IngestSource::Http.as_str()))
        .inc_by(deliveries.len() as u64);
    let (reply_tx, reply_rx) = oneshot::channel();
    let catalog = ingest.catalog.clone();
    let batch = tokio::task::spawn_blocking(move || {
        DecodedBatch::decode(
            &deliveries,
            &catalog,
            IngestSource::Http,
            Ack::Respond(reply_tx),
        )
    })
    .await
    .map_err(|error| {
        tracing::error!(%error, "decoding an ingest request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    })?;
    let unavailable = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the ingester is shutting down; retry against another instance",
        )
    };
    ingest
        .batches_tx
        .send(batch)
        .await
        .map_err(|_| unavailable())?;
    match reply_rx.await {
        Ok(Ok(outcome)) => Ok(Json(outcome)),
        Ok(Err(error)) => {
            tracing::error!(error, "an ingest request could not be stored");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the archive could not store the messages; nothing was stored, retry later",
            ))
        }
        Err(_) => Err(unavailable()),
    }
}

/// The non-blank lines of `body` (CR LF or LF), or `None` when there are more than
/// `max_lines` of them (counted before any is kept).
fn split_lines(body: &Bytes, max_lines: usize) -> Option<Vec<Bytes>> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut push = |line: Bytes| {
        let end = line
            .iter()
            .rposition(|byte| *byte != b'\r')
            .map_or(0, |last| last + 1);
        let line = line.slice(..end);
        if line.iter().all(u8::is_ascii_whitespace) {
            return true;
        }
        lines.push(line);
        lines.len() <= max_lines
    };
    for (index, byte) in body.iter().enumerate() {
        if *byte == b'\n' {
            if !push(body.slice(start..index)) {
                return None;
            }
            start = index + 1;
        }
    }
    if !push(body.slice(start..)) {
        return None;
    }
    Some(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FlushLimits;
    use crate::pipeline::{Pipeline, PipelineContext};
    use axum::body::Body;
    use axum::http::Request;
    use islets_core::layout::Table;
    use islets_core::store::Archive;
    use object_store::memory::InMemory;
    use tokio_util::sync::CancellationToken;
    use tower::ServiceExt;

    fn catalog() -> Arc<Catalog> {
        Arc::new(
            Catalog::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events"))
                .expect("catalog"),
        )
    }

    struct Harness {
        router: Router,
        archive: Archive,
        pipeline: Pipeline,
        in_flight: Option<Arc<tokio::sync::Semaphore>>,
    }

    fn harness(with_ingest: bool) -> Harness {
        harness_with_tokens(with_ingest, None)
    }

    fn harness_with_tokens(with_ingest: bool, tokens: Option<Tokens>) -> Harness {
        let archive = Archive::from_store(
            Arc::new(InMemory::new()),
            object_store::path::Path::from("root"),
            "memory",
        );
        let metrics = Arc::new(Metrics::new());
        let context = PipelineContext {
            archive: archive.clone(),
            metrics: metrics.clone(),
            queue: None,
            heartbeat: None,
            catalog: catalog(),
            writer_id: "test".into(),
            retry: crate::pipeline::FLUSH_RETRY,
        };
        let limits = FlushLimits {
            max_rows: 1000,
            max_bytes: 1 << 20,
            max_age: Duration::from_millis(100),
            max_concurrent_flushes: 1,
        };
        let pipeline = Pipeline::start(context, limits, CancellationToken::new());
        let ingest = with_ingest
            .then(|| HttpIngest::new(catalog(), pipeline.batches_tx.clone(), tokens.map(Arc::new)));
        let in_flight = ingest.as_ref().map(|ingest| ingest.in_flight.clone());
        let state = ServerState {
            metrics,
            ready: Arc::new(AtomicBool::new(true)),
            ingest,
            started_ms: chrono::Utc::now().timestamp_millis(),
            polls: false,
        };
        Harness {
            router: router(state),
            archive,
            pipeline,
            in_flight,
        }
    }

    async fn call(router: &Router, request: Request<Body>) -> (StatusCode, Value) {
        let response = router.clone().oneshot(request).await.expect("response");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn post(content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
        let mut builder = Request::post("/v1/ingest");
        if let Some(content_type) = content_type {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        builder.body(body.into()).expect("request")
    }

    fn envelope(event_id: &str) -> String {
        json!({
            "Type": "Notification", "MessageId": format!("m-{event_id}"),
            "TopicArn": "arn:aws:sns:us-east-1:1:listing-events",
            "Message": json!({"event_id": event_id, "listing_id": "L-1", "price": 1, "agent_id": "A-1", "sold_at": "2026-11-20T09:59:00Z"}).to_string(),
            "Timestamp": "2026-11-20T10:00:00.000Z",
            "MessageAttributes": {
                "event_type": {"Type": "String", "Value": "sold"},
                "aggregate": {"Type": "String", "Value": "listing"},
                "schema_version": {"Type": "String", "Value": "1.0.0"},
                "producer_system": {"Type": "String", "Value": "listing-management-api"}
            }
        })
        .to_string()
    }

    #[tokio::test]
    async fn with_tokens_ingest_needs_the_ingest_scope_and_stores_nothing_otherwise() {
        use islets_core::tokens::token_hash;
        let tokens = Tokens::parse(&format!(
            "tokens:\n  - name: reader\n    sha256: {}\n    scopes: [audit:read]\n  - name: producer\n    sha256: {}\n    scopes: [audit:ingest]\n",
            token_hash("reader-token"),
            token_hash("ingest-token")
        ))
        .expect("tokens");
        let harness = harness_with_tokens(true, Some(tokens));
        let request = |token: Option<&str>, id: &str| {
            let mut request = post(Some("application/json"), envelope(id));
            if let Some(token) = token {
                request.headers_mut().insert(
                    header::AUTHORIZATION,
                    format!("Bearer {token}").parse().expect("header"),
                );
            }
            request
        };
        let id = "00000000-0000-4000-8000-000000000001";
        for (token, expected, code) in [
            (None, StatusCode::UNAUTHORIZED, "unauthorized"),
            (
                Some("wrong-token"),
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            ),
            (Some("reader-token"), StatusCode::FORBIDDEN, "forbidden"),
        ] {
            let (status, body) = call(&harness.router, request(token, id)).await;
            assert_eq!(status, expected, "{token:?}: {body}");
            assert_eq!(body["error"]["code"], code, "{body}");
        }
        let stored = harness
            .archive
            .list_files(Table::Events)
            .await
            .expect("list");
        assert!(stored.is_empty(), "refused requests store nothing");
        let (status, body) = call(&harness.router, request(Some("ingest-token"), id)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["events"], 1);
        let (status, _) = call(
            &harness.router,
            Request::get("/healthz")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "health stays open");
    }

    #[tokio::test]
    async fn ndjson_is_answered_after_its_rows_are_stored() {
        let harness = harness(true);
        let body = format!(
            "{}\r\n\n{}\nnot json\n",
            envelope("00000000-0000-4000-8000-000000000001"),
            envelope("00000000-0000-4000-8000-000000000002")
        );
        let (status, outcome) =
            call(&harness.router, post(Some("application/x-ndjson"), body)).await;
        assert_eq!(status, StatusCode::OK, "{outcome}");
        assert_eq!(
            outcome,
            json!({"messages": 3, "events": 2, "schema_invalid": 0, "quarantined": 1})
        );
        // Answered means durable: the files are already in the store.
        let events = harness
            .archive
            .list_files(Table::Events)
            .await
            .expect("list");
        let quarantine = harness
            .archive
            .list_files(Table::Quarantine)
            .await
            .expect("list");
        assert_eq!((events.len(), quarantine.len()), (1, 1));
        drop(harness.router);
        drop(harness.pipeline.batches_tx);
        let summary = harness
            .pipeline
            .task
            .await
            .expect("join")
            .expect("pipeline");
        assert_eq!(summary.events, 2);
    }

    #[tokio::test]
    async fn a_json_body_is_one_message_even_when_pretty_printed() {
        let harness = harness(true);
        let pretty = serde_json::to_string_pretty(
            &serde_json::from_str::<Value>(&envelope("00000000-0000-4000-8000-000000000009"))
                .expect("json"),
        )
        .expect("pretty");
        let (status, outcome) = call(&harness.router, post(Some("application/json"), pretty)).await;
        assert_eq!(status, StatusCode::OK, "{outcome}");
        assert_eq!(outcome["events"], 1);
    }

    #[tokio::test]
    async fn bad_requests_get_clear_errors_and_store_nothing() {
        let harness = harness(true);
        let oversized = vec![b'x'; MAX_INGEST_BODY_BYTES + 1];
        let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
            (
                post(Some("application/x-ndjson"), ""),
                StatusCode::BAD_REQUEST,
                "empty_body",
            ),
            (
                post(Some("application/json"), "  \n "),
                StatusCode::BAD_REQUEST,
                "empty_body",
            ),
            (
                post(Some("application/xml"), "<a/>"),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
            (
                post(Some("application/x-ndjson"), oversized),
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
            ),
            (
                post(
                    Some("application/x-ndjson"),
                    "{}\n".repeat(MAX_INGEST_LINES + 1),
                ),
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_lines",
            ),
            (
                post(Some("application/x-ndjson"), "x\n".repeat(1_000_000)),
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_lines",
            ),
            (
                Request::get("/v1/nothing")
                    .body(Body::empty())
                    .expect("request"),
                StatusCode::NOT_FOUND,
                "not_found",
            ),
        ];
        for (request, status, code) in cases {
            let (got, body) = call(&harness.router, request).await;
            assert_eq!(got, status, "{body}");
            assert_eq!(body["error"]["code"], code, "{body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
            assert!(body["error"]["details"].is_object());
        }
        assert!(
            harness
                .archive
                .list_files(Table::Events)
                .await
                .expect("list")
                .is_empty()
        );
        assert!(
            harness
                .archive
                .list_files(Table::Quarantine)
                .await
                .expect("list")
                .is_empty()
        );
    }

    #[tokio::test]
    async fn ingest_is_refused_when_the_source_is_not_http_and_health_routes_answer() {
        let harness = harness(false);
        let (status, body) = call(
            &harness.router,
            post(
                Some("application/json"),
                envelope("00000000-0000-4000-8000-000000000001"),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("--source http")
        );
        let (status, _) = call(
            &harness.router,
            Request::get("/healthz")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = call(
            &harness.router,
            Request::get("/readyz")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let response = harness
            .router
            .clone()
            .oneshot(
                Request::get("/metrics")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("metrics");
        let text = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        assert!(String::from_utf8_lossy(&text).contains("islets_ingester_flush_seconds"));
    }

    /// A body that sends a first chunk and then never ends: a handler that waited for it
    /// would hang.
    fn endless_body() -> Body {
        use futures::StreamExt as _;
        let first = futures::stream::once(async {
            Ok::<_, std::io::Error>(Bytes::from_static(b"{\"Type\":\"Notification\""))
        });
        Body::from_stream(first.chain(futures::stream::pending()))
    }

    #[tokio::test]
    async fn refusals_come_before_the_body_is_read() {
        let tokens = Tokens::parse(&format!(
            "tokens:\n  - name: producer\n    sha256: {}\n    scopes: [audit:ingest]\n",
            islets_core::tokens::token_hash("ingest-token")
        ))
        .expect("tokens");
        let harness = harness_with_tokens(true, Some(tokens));
        let answer = |request: Request<Body>| {
            let router = harness.router.clone();
            async move {
                tokio::time::timeout(Duration::from_secs(5), call(&router, request))
                    .await
                    .expect("answered without reading the body")
            }
        };
        // No token: 401 while the body is still being sent.
        let (status, body) = answer(post(Some("application/x-ndjson"), endless_body())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        let authorized = |content_type: Option<&str>| {
            let mut request = post(content_type, endless_body());
            request.headers_mut().insert(
                header::AUTHORIZATION,
                "Bearer ingest-token".parse().expect("header"),
            );
            request
        };
        // Types a browser sends cross-site without a preflight, or none: 415, unread.
        for content_type in [
            None,
            Some("text/plain"),
            Some("text/plain; charset=utf-8"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("TEXT/PLAIN"),
        ] {
            let (status, body) = answer(authorized(content_type)).await;
            assert_eq!(
                status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{content_type:?}: {body}"
            );
            assert_eq!(body["error"]["code"], "unsupported_media_type");
        }
        // Every slot taken: 429 at once.
        let in_flight = harness.in_flight.clone().expect("ingest on");
        let held = in_flight
            .clone()
            .acquire_many_owned(MAX_CONCURRENT_INGESTS as u32)
            .await
            .expect("permits");
        let (status, body) = answer(authorized(Some("application/x-ndjson"))).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(body["error"]["code"], "too_many_requests");
        drop(held);
        let mut request = post(
            Some("application/json"),
            envelope("00000000-0000-4000-8000-000000000003"),
        );
        request.headers_mut().insert(
            header::AUTHORIZATION,
            "Bearer ingest-token".parse().expect("header"),
        );
        let (status, body) = answer(request).await;
        assert_eq!(status, StatusCode::OK, "a slot is free again: {body}");
        let stored = harness
            .archive
            .list_files(Table::Events)
            .await
            .expect("list");
        assert_eq!(stored.len(), 1, "only the accepted request stored anything");
    }

    #[tokio::test]
    async fn a_body_that_trickles_in_is_answered_408_and_frees_its_slot() {
        let error = read_body(
            endless_body(),
            MAX_INGEST_BODY_BYTES,
            Duration::from_millis(200),
        )
        .await
        .expect_err("the body never ends");
        assert_eq!(error.status, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(error.code, "request_timeout");
        let body = read_body(
            Body::from("{}\n"),
            MAX_INGEST_BODY_BYTES,
            Duration::from_millis(200),
        )
        .await
        .expect("a body sent at once");
        assert_eq!(body.as_ref(), b"{}\n");
    }

    /// A body over the limit is answered 413 once the client has sent it (drained, never
    /// kept), so the client reads the answer instead of a reset connection; past the drain
    /// bound or the time limit it is cut, still with 413.
    #[tokio::test]
    async fn a_body_over_the_limit_is_drained_then_answered_413() {
        use futures::StreamExt as _;
        use std::sync::atomic::AtomicUsize;
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let counted = |chunks: usize, read: Arc<AtomicUsize>| {
            let chunk = chunk.clone();
            Body::from_stream(futures::stream::iter(0..chunks).map(move |_| {
                read.fetch_add(1, Ordering::Relaxed);
                Ok::<_, std::io::Error>(chunk.clone())
            }))
        };
        let limit = 1024 * 1024;
        for (chunks, all_read) in [(40, true), (DRAIN_BYTES / chunk.len() + 200, false)] {
            let read = Arc::new(AtomicUsize::new(0));
            let error = read_body(
                counted(chunks, read.clone()),
                limit,
                Duration::from_secs(30),
            )
            .await
            .expect_err("over the limit");
            assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE);
            assert_eq!(error.code, "payload_too_large");
            let read = read.load(Ordering::Relaxed);
            assert_eq!(read == chunks, all_read, "{read} of {chunks} chunks read");
            assert!(read * chunk.len() <= limit + DRAIN_BYTES + 2 * chunk.len());
        }
        // Over the limit, then trickling: 413 at the time limit, not 408.
        let over =
            futures::stream::iter(0..20).map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
        let error = read_body(
            Body::from_stream(over.chain(futures::stream::pending())),
            limit,
            Duration::from_millis(300),
        )
        .await
        .expect_err("over the limit");
        assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
