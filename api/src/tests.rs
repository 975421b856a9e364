//! The API over a real archive (files written as the ingester writes them).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use crate::{AppState, router};
use islets_query::engine::DataFusionEngine;
use islets_query::test_support::{Fixture, fixture};

async fn app() -> (axum::Router, Fixture) {
    let fixture = fixture().await;
    let engine = DataFusionEngine::new(fixture.archive.clone()).expect("engine");
    (
        router(AppState {
            engine: Arc::new(engine),
            auth: crate::auth::Auth::Off,
            metrics: Default::default(),
        }),
        fixture,
    )
}

async fn get(router: &axum::Router, uri: &str) -> (StatusCode, Value) {
    let response = router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, serde_json::from_slice(&bytes).expect("JSON body"))
}

#[tokio::test]
async fn events_pages_follow_their_cursor_to_the_end() {
    let (router, fixture) = app().await;
    let mut uri = "/v1/events?limit=8&aggregate=listing".to_owned();
    let mut seen = Vec::new();
    loop {
        let (status, page) = get(&router, &uri).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for event in page["events"].as_array().expect("events") {
            seen.push(event["event_id"].as_str().expect("id").to_owned());
            assert_eq!(event["aggregate"], "listing");
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/v1/events?limit=8&aggregate=listing&cursor={cursor}"),
            None => break,
        }
    }
    let expected: Vec<String> = fixture
        .records
        .iter()
        .filter(|r| r.aggregate.as_deref() == Some("listing"))
        .map(|r| r.event_id.clone())
        .collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn one_event_and_one_flow_or_a_404() {
    let (router, fixture) = app().await;
    let (status, event) = get(&router, "/v1/events/event-016").await;
    assert_eq!(status, StatusCode::OK, "{event}");
    assert_eq!(event["payload"]["note"], "ação", "payload embedded as JSON");
    assert_eq!(
        event["attributes"]["aggregate"]["Value"],
        fixture.records[16].aggregate.clone().expect("aggregate")
    );
    let (status, flow) = get(&router, "/v1/correlations/corr-2").await;
    assert_eq!(status, StatusCode::OK, "{flow}");
    let count = fixture
        .records
        .iter()
        .filter(|r| r.correlation_id.as_deref() == Some("corr-2"))
        .count();
    assert_eq!(flow["events"].as_array().map(Vec::len), Some(count));
    assert_eq!(flow["truncated"], false);
    for uri in [
        "/v1/events/no-such-event",
        "/v1/correlations/no-such-flow",
        "/v1/nothing",
    ] {
        let (status, body) = get(&router, uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(body["error"]["code"], "not_found");
    }
}

#[tokio::test]
async fn bad_parameters_are_400_naming_the_field() {
    let (router, _fixture) = app().await;
    for (uri, field) in [
        ("/v1/events?since=yesterday", "since"),
        ("/v1/events?limit=5000", "limit"),
        ("/v1/events?cursor=garbage", "cursor"),
        ("/v1/events?colour=red", "colour"),
        (
            "/v1/events?event_type=listing.sold%27%20OR%201=1",
            "event_type",
        ),
    ] {
        let (status, body) = get(&router, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(body["error"]["code"], "invalid_parameter");
        assert_eq!(body["error"]["details"]["field"], field, "{uri}");
    }
    // An injection attempt in a free-text value is just a value: nothing matches.
    let (status, body) = get(
        &router,
        "/v1/events?correlation_id=x%27%20OR%20%271%27=%271",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["events"].as_array().map(Vec::len), Some(0));
}

async fn get_text(
    router: &axum::Router,
    uri: &str,
    accept: Option<&str>,
) -> (StatusCode, String, String) {
    let mut request = Request::get(uri);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (
        status,
        content_type,
        String::from_utf8(bytes.to_vec()).expect("utf-8"),
    )
}

#[tokio::test]
async fn exports_stream_every_matching_event_once_as_ndjson_or_csv() {
    let (router, fixture) = app().await;
    let expected: Vec<String> = fixture
        .records
        .iter()
        .filter(|r| r.aggregate.as_deref() == Some("listing"))
        .map(|r| r.event_id.clone())
        .collect();

    for (uri, accept) in [
        ("/v1/events?aggregate=listing&format=ndjson", None),
        ("/v1/events?aggregate=listing", Some("application/x-ndjson")),
    ] {
        let (status, content_type, body) = get_text(&router, uri, accept).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(content_type, "application/x-ndjson");
        let ids: Vec<String> = body
            .lines()
            .map(|line| {
                serde_json::from_str::<Value>(line).expect("one JSON object per line")["event_id"]
                    .as_str()
                    .expect("id")
                    .to_owned()
            })
            .collect();
        assert_eq!(
            ids, expected,
            "{uri}: every event once (the fixture's redelivered copies collapsed), in order"
        );
    }

    let (status, content_type, body) = get_text(
        &router,
        "/v1/events?aggregate=listing&format=csv&order=desc",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(content_type.starts_with("text/csv"));
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let headers = reader.headers().expect("header row").clone();
    assert_eq!(&headers[0], "event_id");
    assert_eq!(&headers[16], "payload");
    let rows: Vec<csv::StringRecord> = reader
        .records()
        .map(|row| row.expect("valid CSV"))
        .collect();
    let ids: Vec<&str> = rows.iter().map(|row| &row[0]).collect();
    let mut reversed = expected.clone();
    reversed.reverse();
    assert_eq!(ids, reversed);
    let first = fixture
        .records
        .iter()
        .find(|r| r.event_id == ids[0])
        .expect("known event");
    assert_eq!(
        &rows[0][16],
        first.payload.as_str(),
        "payload survives CSV quoting exactly"
    );

    for (uri, field) in [
        ("/v1/events?format=ndjson&limit=10", "limit"),
        ("/v1/events?format=csv&cursor=abc", "cursor"),
        ("/v1/events?format=xml", "format"),
    ] {
        let (status, body) = get(&router, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(body["error"]["details"]["field"], field, "{uri}");
    }
}

async fn post_sql(router: &axum::Router, body: &str) -> (StatusCode, Value) {
    let request = Request::post("/v1/sql")
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .expect("request");
    let response = router.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, serde_json::from_slice(&bytes).expect("JSON body"))
}

#[tokio::test]
async fn sql_reads_the_deduplicated_events_and_refuses_everything_else() {
    let (router, fixture) = app().await;
    let sql = |text: &str| serde_json::json!({ "sql": text }).to_string();

    let (status, body) = post_sql(&router, &sql("SELECT count(*) AS n FROM events")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["rows"][0]["n"],
        fixture.records.len(),
        "duplicates collapsed in `events`"
    );
    let (_, body) = post_sql(&router, &sql("SELECT count(*) AS n FROM events_raw")).await;
    assert_eq!(
        body["rows"][0]["n"],
        fixture.records.len() + 3,
        "events_raw keeps the redelivered copies"
    );

    let (status, body) = post_sql(&router, &sql(
        "SELECT aggregate, count(DISTINCT event_id) AS events FROM events GROUP BY aggregate ORDER BY aggregate",
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["columns"], serde_json::json!(["aggregate", "events"]));
    assert_eq!(
        body["rows"][0],
        serde_json::json!({"aggregate": "company", "events": 10})
    );
    assert_eq!(body["truncated"], false);

    let target = std::env::temp_dir().join(format!("islets-copy-{}.csv", std::process::id()));
    for refused in [
        "DROP TABLE events".to_owned(),
        "CREATE TABLE stolen AS SELECT * FROM events".to_owned(),
        "INSERT INTO events_raw SELECT * FROM events_raw".to_owned(),
        format!("COPY (SELECT * FROM events) TO '{}'", target.display()),
        "SET datafusion.execution.batch_size = 1".to_owned(),
        "SELECT 1; SELECT 2".to_owned(),
        "SELEC nonsense".to_owned(),
        "SELECT no_such_column FROM events".to_owned(),
    ] {
        let (status, body) = post_sql(&router, &sql(&refused)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}: {body}");
        assert_eq!(body["error"]["code"], "invalid_sql", "{refused}");
    }
    assert!(!target.exists(), "COPY wrote nothing");
    let (_, body) = post_sql(&router, &sql("SELECT count(*) AS n FROM events")).await;
    assert_eq!(
        body["rows"][0]["n"],
        fixture.records.len(),
        "nothing changed"
    );

    for bad_body in ["not json", "{\"query\": \"SELECT 1\"}"] {
        let (status, body) = post_sql(&router, bad_body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad_body}");
        assert_eq!(body["error"]["code"], "invalid_body");
    }
}

#[tokio::test]
async fn sql_answers_stop_at_the_row_cap() {
    use islets_query::engine::QueryEngine;
    let fixture = fixture().await;
    let engine = DataFusionEngine::new(fixture.archive.clone()).expect("engine");
    let answer = engine
        .sql("SELECT event_id FROM events ORDER BY event_id", 7)
        .await
        .expect("sql");
    assert_eq!(answer.rows.len(), 7);
    assert!(answer.truncated);
    assert_eq!(answer.rows[0]["event_id"], "event-000");
    let all = engine
        .sql("SELECT event_id FROM events", 1_000)
        .await
        .expect("sql");
    assert!(!all.truncated);
    assert_eq!(all.rows.len(), fixture.records.len());
}

#[tokio::test]
async fn stats_count_distinct_events_per_bucket_and_group() {
    use islets_query::test_support::START;
    let (router, fixture) = app().await;
    let since = islets_query::view::rfc3339_ms(START);
    let until = islets_query::view::rfc3339_ms(START + 6 * 3_600_000);
    let (status, body) = get(
        &router,
        &format!("/v1/stats?since={since}&until={until}&interval=hour&group_by=event_type"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut expected: std::collections::BTreeMap<(String, String), u64> =
        std::collections::BTreeMap::new();
    for record in &fixture.records {
        let hour = islets_query::view::rfc3339_ms(
            record.published_at_ms - record.published_at_ms.rem_euclid(3_600_000),
        );
        let key = format!(
            "{}.{}",
            record.aggregate.as_deref().unwrap_or(""),
            record.event_type.as_deref().unwrap_or("")
        );
        *expected.entry((hour, key)).or_default() += 1;
    }
    let got: std::collections::BTreeMap<(String, String), u64> = body["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| {
            (
                (
                    b["start"].as_str().expect("start").to_owned(),
                    b["key"].as_str().expect("key").to_owned(),
                ),
                b["events"].as_u64().expect("n"),
            )
        })
        .collect();
    assert_eq!(
        got, expected,
        "distinct events (duplicates collapsed) per hour and type"
    );

    let (status, body) = get(
        &router,
        &format!("/v1/stats?since={since}&until={until}&aggregate=company"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let total: u64 = body["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| b["events"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        total,
        fixture
            .records
            .iter()
            .filter(|r| r.aggregate.as_deref() == Some("company"))
            .count() as u64
    );
    assert!(
        body["buckets"][0].get("key").is_none(),
        "ungrouped buckets have no key"
    );

    let (status, body) = get(&router, "/v1/stats?interval=minute").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["details"]["field"], "interval");
}

#[tokio::test]
async fn every_route_needs_a_token_with_its_scope_and_health_stays_open() {
    use crate::auth::{Auth, Tokens, token_hash};
    let fixture = fixture().await;
    let directory = tempfile::tempdir().expect("tempdir");
    let tokens_file = directory.path().join("tokens.yaml");
    std::fs::write(
        &tokens_file,
        format!(
            "tokens:\n  - name: reader\n    sha256: {}\n    scopes: [audit:read]\n  - name: analyst\n    sha256: {}\n    scopes: [audit:read, audit:sql]\n",
            token_hash("reader-token"),
            token_hash("analyst-token")
        ),
    )
    .expect("tokens file");
    let tokens = Tokens::load(&tokens_file).expect("tokens");
    let engine = DataFusionEngine::new(fixture.archive.clone()).expect("engine");
    let router = router(AppState {
        engine: Arc::new(engine),
        auth: Auth::Tokens(Arc::new(tokens)),
        metrics: Default::default(),
    });

    let call = |method: &str, uri: &str, token: Option<&str>| {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", token);
        }
        let body = if method == "POST" {
            Body::from(r#"{"sql": "SELECT 1 AS one"}"#)
        } else {
            Body::empty()
        };
        let router = router.clone();
        let request = request.body(body).expect("request");
        async move { router.oneshot(request).await.expect("response").status() }
    };
    // (method, route, a token lacking the scope, a token holding it)
    let routes = [
        ("GET", "/v1/events", None, "Bearer reader-token"),
        ("GET", "/v1/events/event-016", None, "Bearer reader-token"),
        (
            "GET",
            "/v1/correlations/corr-1",
            None,
            "Bearer reader-token",
        ),
        ("GET", "/v1/stats", None, "Bearer reader-token"),
        (
            "POST",
            "/v1/sql",
            Some("Bearer reader-token"),
            "Bearer analyst-token",
        ),
    ];
    for (method, uri, wrong_scope, right) in routes {
        assert_eq!(
            call(method, uri, None).await,
            StatusCode::UNAUTHORIZED,
            "{uri} without a token"
        );
        assert_eq!(
            call(method, uri, Some("Bearer not-a-token")).await,
            StatusCode::UNAUTHORIZED,
            "{uri} unknown token"
        );
        assert_eq!(
            call(method, uri, Some("Basic cmVhZGVyLXRva2Vu")).await,
            StatusCode::UNAUTHORIZED,
            "{uri} not bearer"
        );
        if let Some(wrong_scope) = wrong_scope {
            assert_eq!(
                call(method, uri, Some(wrong_scope)).await,
                StatusCode::FORBIDDEN,
                "{uri} wrong scope"
            );
        }
        assert_eq!(
            call(method, uri, Some(right)).await,
            StatusCode::OK,
            "{uri} right scope"
        );
    }
    for open in ["/healthz", "/readyz"] {
        assert_eq!(
            call("GET", open, None).await,
            StatusCode::OK,
            "{open} is open"
        );
    }
    let (status, body) = get(&router, "/v1/events").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
}

/// The schema the OpenAPI document declares for `template` / `method` / `status`, as a
/// JSON Schema whose `$ref`s resolve inside the document.
fn declared_schema(document: &Value, template: &str, method: &str, status: u16) -> Value {
    let pointer = format!(
        "/paths/{}/{method}/responses/{status}/content/application~1json/schema",
        template.replace('~', "~0").replace('/', "~1")
    );
    assert!(
        document.pointer(&pointer).is_some(),
        "the document declares no JSON body for {method} {template} {status}"
    );
    let mut schema = document.clone();
    if let Some(object) = schema.as_object_mut() {
        let fragment = pointer.replace('{', "%7B").replace('}', "%7D");
        object.insert("$ref".to_owned(), Value::String(format!("#{fragment}")));
        object.insert(
            "$schema".to_owned(),
            Value::String("https://json-schema.org/draft/2020-12/schema".to_owned()),
        );
    }
    schema
}

#[tokio::test]
async fn real_responses_match_the_served_openapi_document() {
    let (router, _fixture) = app().await;
    let (status, document) = get(&router, "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        document["openapi"]
    );
    for route in [
        "/v1/events",
        "/v1/events/{event_id}",
        "/v1/correlations/{correlation_id}",
        "/v1/stats",
        "/v1/sql",
        "/healthz",
        "/readyz",
    ] {
        assert!(
            document["paths"][route].is_object(),
            "{route} is documented"
        );
    }
    let cases: Vec<(&str, &str, String, u16)> = vec![
        ("/v1/events", "get", "/v1/events?limit=3".into(), 200),
        ("/v1/events", "get", "/v1/events?limit=100000".into(), 400),
        (
            "/v1/events/{event_id}",
            "get",
            "/v1/events/event-016".into(),
            200,
        ),
        (
            "/v1/events/{event_id}",
            "get",
            "/v1/events/missing".into(),
            404,
        ),
        (
            "/v1/correlations/{correlation_id}",
            "get",
            "/v1/correlations/corr-2".into(),
            200,
        ),
        (
            "/v1/correlations/{correlation_id}",
            "get",
            "/v1/correlations/none".into(),
            404,
        ),
        (
            "/v1/stats",
            "get",
            "/v1/stats?since=2026-01-01&group_by=aggregate".into(),
            200,
        ),
        ("/v1/stats", "get", "/v1/stats?interval=week".into(), 400),
        ("/healthz", "get", "/healthz".into(), 200),
        ("/readyz", "get", "/readyz".into(), 200),
    ];
    for (template, method, uri, expected) in cases {
        let (status, body) = get(&router, &uri).await;
        assert_eq!(status.as_u16(), expected, "{uri}: {body}");
        let schema = declared_schema(&document, template, method, expected);
        let validator = jsonschema::validator_for(&schema).expect("schema compiles");
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|error| format!("{} at {}", error, error.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{uri}: {errors:?}\n{body}");
    }
    for (body, expected) in [
        (r#"{"sql":"SELECT count(*) AS n FROM events"}"#, 200),
        (r#"{"sql":"DROP TABLE events"}"#, 400),
    ] {
        let (status, answer) = post_sql(&router, body).await;
        assert_eq!(status.as_u16(), expected, "{answer}");
        let schema = declared_schema(&document, "/v1/sql", "post", expected);
        let validator = jsonschema::validator_for(&schema).expect("schema compiles");
        assert!(validator.is_valid(&answer), "{body}: {answer}");
    }
    // The check can fail: a page is not an event.
    let (_, page) = get(&router, "/v1/events?limit=1").await;
    let schema = declared_schema(&document, "/v1/events/{event_id}", "get", 200);
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    assert!(
        !validator.is_valid(&page),
        "a page must not validate as one event"
    );
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_status() {
    let (router, _fixture) = app().await;
    for uri in [
        "/v1/events/event-016",
        "/v1/events/event-002",
        "/v1/events/missing",
    ] {
        get(&router, uri).await;
    }
    let (status, _, text) = get_text(&router, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains(
            r#"islets_query_requests_total{route="/v1/events/{event_id}",status="200"} 2"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"islets_query_requests_total{route="/v1/events/{event_id}",status="404"} 1"#
        ),
        "{text}"
    );
    assert!(!text.contains("event-016"), "raw paths never become labels");
    assert!(
        text.contains("islets_query_request_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn readyz_fails_when_the_archive_cannot_be_read() {
    let directory = tempfile::tempdir().expect("tempdir");
    let root = directory.path().join("archive");
    std::fs::create_dir_all(&root).expect("mkdir");
    let archive = islets_core::store::Archive::open(
        &islets_core::store::StoreLocation::Local { root: root.clone() },
        None,
    )
    .expect("archive");
    let router = router(AppState {
        engine: Arc::new(DataFusionEngine::new(archive).expect("engine")),
        auth: crate::auth::Auth::Off,
        metrics: Default::default(),
    });
    let (status, _) = get(&router, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    // The directory becomes a file: listing it fails.
    std::fs::remove_dir_all(&root).expect("rm");
    std::fs::write(&root, b"not a directory").expect("write");
    tokio::time::sleep(islets_query::engine::LISTING_TTL).await;
    let (status, body) = get(&router, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "not_ready");
    let (status, _) = get(&router, "/healthz").await;
    assert_eq!(status, StatusCode::OK, "alive, though not ready");
}
