//! The ingester's HTTP server: `POST /v1/ingest` (with `--source http`), `/healthz`,
//! `/readyz`, `/metrics`. Handlers extract, call, map; errors are
//! `{"error":{"code","message","details"}}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
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
/// A request is answered once its rows are durable: at most one buffer age later.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Accepts HTTP ingest into a running pipeline.
#[derive(Clone)]
pub struct HttpIngest {
    pub catalog: Arc<Catalog>,
    pub batches_tx: mpsc::Sender<DecodedBatch>,
    /// Bearer tokens; `None` means authentication is off (loopback only).
    pub tokens: Option<Arc<Tokens>>,
}

/// Shared state of the routes.
#[derive(Clone)]
pub struct ServerState {
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
    pub ingest: Option<HttpIngest>,
}

/// The routes.
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/healthz", get(islets_http::health::healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/ingest", post(ingest))
        .fallback(islets_http::not_found)
        .layer(DefaultBodyLimit::max(MAX_INGEST_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn readyz(State(state): State<ServerState>) -> Result<Json<Value>, ApiError> {
    islets_http::health::readiness(if state.ready.load(Ordering::Acquire) {
        Ok(())
    } else {
        Err("the ingester is starting or shutting down".to_owned())
    })
}

async fn metrics(State(state): State<ServerState>) -> Response {
    islets_http::health::metrics_response(state.metrics.encode())
}

/// How the body is split into messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyShape {
    /// `application/json`: the whole body is one message.
    Single,
    /// `application/x-ndjson` (and no or `text/plain` content type): one message per line.
    Lines,
}

fn body_shape(headers: &HeaderMap) -> Result<BodyShape, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(BodyShape::Lines);
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
        "application/x-ndjson" | "application/jsonl" | "application/jsonlines" | "text/plain" | "" => Ok(BodyShape::Lines),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("content type '{other}' is not accepted: send application/json (one message) or application/x-ndjson (one message per line)"),
        )
        .with_details(json!({"content_type": other}))),
    }
}

/// `POST /v1/ingest`: one message (`application/json`) or NDJSON. Each message is an SNS
/// envelope, an SQS message as `aws sqs receive-message` prints it, or a raw body. Answers
/// once every row is durable in the archive.
async fn ingest(
    State(state): State<ServerState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
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
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the body is over {MAX_INGEST_BODY_BYTES} bytes: split it into several requests"
                ),
            )
            .with_details(json!({"limit_bytes": MAX_INGEST_BODY_BYTES}))
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_body", rejection.body_text())
        }
    })?;
    let shape = body_shape(&headers)?;
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
        BodyShape::Lines => split_lines(&body).into_iter().map(delivery).collect(),
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

fn split_lines(body: &Bytes) -> Vec<Bytes> {
    let mut lines = Vec::new();
    let mut start = 0;
    for (index, byte) in body.iter().enumerate() {
        if *byte == b'\n' {
            lines.push(body.slice(start..index));
            start = index + 1;
        }
    }
    lines.push(body.slice(start..));
    lines
        .into_iter()
        .map(|line| {
            let end = line
                .iter()
                .rposition(|byte| *byte != b'\r')
                .map_or(0, |last| last + 1);
            line.slice(..end)
        })
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .collect()
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
            writer_id: "test".into(),
            retry: Default::default(),
        };
        let limits = FlushLimits {
            max_rows: 1000,
            max_bytes: 1 << 20,
            max_age: Duration::from_millis(100),
            max_concurrent_flushes: 1,
        };
        let pipeline = Pipeline::start(context, limits, CancellationToken::new());
        let ingest = with_ingest.then(|| HttpIngest {
            catalog: catalog(),
            batches_tx: pipeline.batches_tx.clone(),
            tokens: tokens.map(Arc::new),
        });
        let state = ServerState {
            metrics,
            ready: Arc::new(AtomicBool::new(true)),
            ingest,
        };
        Harness {
            router: router(state),
            archive,
            pipeline,
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
                post(None, oversized),
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
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
            post(None, envelope("00000000-0000-4000-8000-000000000001")),
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
}
