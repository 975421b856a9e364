//! The API over a real archive (files written as the ingester writes them).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use crate::{AppState, router};
use islets_query::DataFusionEngine;
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
async fn sql_that_would_build_huge_values_is_refused_and_the_server_keeps_answering() {
    let (router, fixture) = app().await;
    let sql = |text: &str| serde_json::json!({ "sql": text }).to_string();
    // Value generators, folded at planning time or run per row, and chains of functions
    // that each grow their input: refused before (or right after) a bounded allocation.
    let value_too_large = [
        "SELECT repeat('x', 2147483647) AS v",
        "SELECT length(repeat('ab', 1000000000)) AS v",
        "SELECT repeat(payload, 1000000) AS v FROM events",
        "SELECT lpad('a', 2000000000) AS v",
        "SELECT rpad('a', 1500000000, 'xyz') AS v",
        "SELECT lpad(event_id, 900000000) AS v FROM events_raw",
        "SELECT replace(repeat('a', 1000000), 'a', repeat('b', 1000)) AS v",
        "SELECT regexp_replace(repeat('a', 100000), 'a', repeat('b', 1000), 'g') AS v",
        "SELECT array_repeat('x', 1000000000) AS v",
        "SELECT array_resize(make_array(1), 1000000000) AS v",
        "SELECT range(1, 10000000000) AS v",
        "SELECT generate_series(0, 9000000000, 1) AS v",
        "WITH a AS (SELECT repeat('a', 4000000) AS x), b AS (SELECT concat(x, x, x) AS x FROM a) SELECT length(x) FROM b",
        "SELECT length(concat(x, x)) FROM (SELECT concat(y, y, y) AS x FROM (SELECT repeat('z', 3000000) AS y) AS t) AS u",
    ];
    for statement in value_too_large {
        let (status, body) = post_sql(&router, &sql(statement)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{statement}: {body}");
        assert_eq!(
            body["error"]["code"], "value_too_large",
            "{statement}: {body}"
        );
    }
    // The || operator cannot be bounded: refused, with what to use instead.
    for statement in [
        "SELECT 'a' || 'b' AS v",
        "SELECT x || x FROM (SELECT repeat('a', 4000000) AS x) AS t",
        "SELECT count(*) FROM events WHERE event_id IN (SELECT event_id || '' FROM events_raw)",
    ] {
        let (status, body) = post_sql(&router, &sql(statement)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{statement}: {body}");
        assert_eq!(body["error"]["code"], "invalid_sql", "{statement}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("concat"),
            "{body}"
        );
    }
    // Within the bounds, but an answer over the byte cap: an error, never a cut document.
    let (status, body) = post_sql(
        &router,
        &sql("SELECT repeat('x', 1000000) AS v FROM events_raw"),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "result_too_large");
    assert_eq!(
        body["error"]["details"]["limit_bytes"],
        islets_query::MAX_SQL_RESULT_BYTES
    );
    // Generators within the bounds still work.
    let (status, body) = post_sql(
        &router,
        &sql("SELECT length(repeat('ab', 1000)) AS n, lpad('7', 3, '0') AS p, cardinality(range(1, 11)) AS r, concat('a', 'b') AS c"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["rows"][0],
        serde_json::json!({"n": 2000, "p": "007", "r": 10, "c": "ab"})
    );
    let (status, body) = post_sql(&router, &sql("SELECT count(*) AS n FROM events")).await;
    assert_eq!(status, StatusCode::OK, "the server still answers: {body}");
    assert_eq!(body["rows"][0]["n"], fixture.records.len());
}

#[tokio::test]
async fn sql_answers_stop_at_the_row_cap() {
    use islets_query::QueryEngine;
    let fixture = fixture().await;
    let engine = DataFusionEngine::new(fixture.archive.clone()).expect("engine");
    let answer = engine
        .sql("SELECT event_id FROM events ORDER BY event_id", 7)
        .await
        .expect("sql");
    assert_eq!(answer.row_count, 7);
    let rows = answer.parsed_rows();
    assert_eq!(rows.len(), 7);
    assert!(answer.truncated);
    assert_eq!(rows[0]["event_id"], "event-000");
    let all = engine
        .sql("SELECT event_id FROM events", 1_000)
        .await
        .expect("sql");
    assert!(!all.truncated);
    assert_eq!(all.parsed_rows().len(), fixture.records.len());
    assert_eq!(all.row_count, fixture.records.len());
}

#[tokio::test]
async fn stats_count_distinct_events_per_bucket_and_group() {
    use islets_query::test_support::START;
    let (router, fixture) = app().await;
    let since = islets_query::rfc3339_ms(START);
    let until = islets_query::rfc3339_ms(START + 6 * 3_600_000);
    let (status, body) = get(
        &router,
        &format!("/v1/stats?since={since}&until={until}&interval=hour&group_by=event_type"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut expected: std::collections::BTreeMap<(String, String), u64> =
        std::collections::BTreeMap::new();
    for record in &fixture.records {
        let hour = islets_query::rfc3339_ms(
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
    tokio::time::sleep(islets_query::LISTING_TTL).await;
    let (status, body) = get(&router, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "not_ready");
    let (status, _) = get(&router, "/healthz").await;
    assert_eq!(status, StatusCode::OK, "alive, though not ready");
}

#[tokio::test]
async fn a_forged_copy_cannot_replace_an_archived_event_and_is_flagged_as_a_conflict() {
    use islets_query::test_support::{HOUR, write};
    let fixture = fixture().await;
    let original = fixture.records[3].clone();
    let others: Vec<String> = fixture.records.iter().map(|r| r.event_id.clone()).collect();
    // Written later, claiming to have been published earlier, with another payload, topic
    // and producer: under the old "earliest published_at wins" rule it would be shown.
    let mut forged = original.clone();
    forged.payload = r#"{"n":3,"note":"forged"}"#.to_owned();
    forged.topic_arn = Some("arn:aws:sns:eu-west-1:999999999999:attacker-events".to_owned());
    forged.producer_system = Some("attacker".to_owned());
    forged.published_at_ms = original.published_at_ms - 3 * HOUR;
    forged.ingested_at_ms = original.ingested_at_ms + 10 * 24 * HOUR;
    forged.sqs_message_id = Some("forged".to_owned());
    let forged_hour = forged.published_at_ms - forged.published_at_ms.rem_euclid(HOUR);
    write(&fixture.archive, &[forged]).await;
    // An identical redelivery (the fixture's duplicates) is not a conflict.
    let engine = DataFusionEngine::new(fixture.archive.clone()).expect("engine");
    let router = router(AppState {
        engine: Arc::new(engine),
        auth: crate::auth::Auth::Off,
        metrics: Default::default(),
    });

    let (status, event) = get(&router, &format!("/v1/events/{}", original.event_id)).await;
    assert_eq!(status, StatusCode::OK, "{event}");
    assert_eq!(
        event["payload"]["note"], "ação",
        "the copy ingested first is shown"
    );
    assert_eq!(
        event["topic_arn"],
        original.topic_arn.clone().expect("topic")
    );
    assert_eq!(event["conflict"], true, "{event}");

    let (status, page) = get(&router, "/v1/events?limit=1000").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let events = page["events"].as_array().expect("events");
    let ids: Vec<&str> = events
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    assert_eq!(ids.len(), others.len(), "still one row per event: {ids:?}");
    for event in events {
        let flagged = event["event_id"] == original.event_id.as_str();
        assert_eq!(event["conflict"], flagged, "{event}");
        if flagged {
            assert_eq!(
                event["producer_system"],
                original.producer_system.clone().expect("p")
            );
        }
    }
    // Listed over the hour only the later copy claims, the event is not there: the copy
    // ingested first decides where (and whether) an event is answered.
    let rfc3339 = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .expect("time")
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    for path in [
        format!(
            "/v1/events?since={}&until={}",
            rfc3339(forged_hour),
            rfc3339(forged_hour + HOUR)
        ),
        "/v1/events?producer_system=attacker".to_owned(),
    ] {
        let (status, page) = get(&router, &path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(
            page["events"]
                .as_array()
                .expect("events")
                .iter()
                .all(|e| e["event_id"] != original.event_id.as_str()),
            "{path}: {page}"
        );
    }
    let (status, flow) = get(
        &router,
        &format!(
            "/v1/correlations/{}",
            original.correlation_id.clone().expect("c")
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{flow}");
    let in_flow: Vec<&Value> = flow["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["event_id"] == original.event_id.as_str())
        .collect();
    assert_eq!(in_flow.len(), 1);
    assert_eq!(in_flow[0]["payload"]["note"], "ação");

    let sql = |text: &str| serde_json::json!({ "sql": text }).to_string();
    let (status, body) = post_sql(
        &router,
        &sql("SELECT event_id, payload FROM events WHERE conflict"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"].as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(body["rows"][0]["event_id"], original.event_id.as_str());
    assert_eq!(body["rows"][0]["payload"], original.payload.as_str());

    let (_, _, text) = get_text(&router, "/metrics", None).await;
    let served = text
        .lines()
        .find(|line| line.starts_with("islets_query_conflicting_events_served_total"))
        .and_then(|line| line.split_whitespace().last())
        .and_then(|value| value.parse::<u64>().ok());
    assert!(served.is_some_and(|n| n >= 3), "{text}");
}

#[tokio::test]
async fn a_truncated_file_is_left_out_and_every_answer_says_it_is_incomplete() {
    use islets_core::layout::Table;
    let fixture = fixture().await;
    let files = fixture
        .archive
        .list_files(Table::Events)
        .await
        .expect("list");
    let (_, broken) = files.first().expect("a file").clone();
    let original = fixture.archive.get(&broken.location).await.expect("get");
    let lost: Vec<String> = islets_core::parquet_file::decode_all(original.clone())
        .expect("parquet")
        .iter()
        .flat_map(|batch| islets_core::schema::events_from_batch(batch).expect("rows"))
        .map(|record| record.event_id)
        .collect();
    assert!(!lost.is_empty());
    // What a power loss before the fsync could leave: the first half of the file.
    let truncated = original.slice(..original.len() / 2);
    fixture
        .archive
        .put(&broken.location, truncated.clone())
        .await
        .expect("truncate");
    let engine = DataFusionEngine::new(fixture.archive.clone()).expect("engine");
    let router = router(AppState {
        engine: Arc::new(engine),
        auth: crate::auth::Auth::Off,
        metrics: Default::default(),
    });
    let key = broken.location.to_string();
    let named =
        |body: &Value| body["incomplete"]["unreadable_files"] == serde_json::json!([key.clone()]);
    // What the other files hold (a redelivered copy elsewhere keeps its event readable).
    let mut readable = std::collections::HashSet::new();
    for (_, meta) in files
        .iter()
        .filter(|(_, meta)| meta.location != broken.location)
    {
        let bytes = fixture.archive.get(&meta.location).await.expect("get");
        for batch in islets_core::parquet_file::decode_all(bytes).expect("parquet") {
            for record in islets_core::schema::events_from_batch(&batch).expect("rows") {
                readable.insert(record.event_id);
            }
        }
    }
    let expected: std::collections::HashSet<&str> = readable.iter().map(String::as_str).collect();
    let lost: Vec<String> = lost
        .into_iter()
        .filter(|id| !readable.contains(id))
        .collect();
    assert!(!lost.is_empty(), "some events are only in the broken file");

    let response = router
        .clone()
        .oneshot(
            Request::get("/v1/events?limit=1000")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get(crate::INCOMPLETE_HEADER)
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let page: Value = serde_json::from_slice(
        &axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body"),
    )
    .expect("json");
    assert!(named(&page), "{page}");
    let served: std::collections::HashSet<&str> = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    assert_eq!(
        served, expected,
        "every readable event, none of the broken file's"
    );

    let (status, stats) = get(&router, "/v1/stats?since=2026-10-01&until=2026-12-01").await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert!(named(&stats), "{stats}");
    let (status, flow) = get(&router, "/v1/correlations/corr-1").await;
    assert_eq!(status, StatusCode::OK, "{flow}");
    assert!(named(&flow), "{flow}");
    let (status, sql) = post_sql(
        &router,
        &serde_json::json!({"sql": "SELECT count(*) AS n FROM events"}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{sql}");
    assert!(named(&sql), "{sql}");
    assert_eq!(sql["rows"][0]["n"], expected.len());
    let (status, missing) = get(&router, &format!("/v1/events/{}", lost[0])).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    assert!(
        missing["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot be read"),
        "{missing}"
    );
    let (status, _, export) = get_text(&router, "/v1/events?format=ndjson", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(export.lines().count(), expected.len());
    let (status, ready) = get(&router, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["status"], "degraded");
    assert_eq!(ready["unreadable_files"], serde_json::json!([key.clone()]));
    let (_, _, metrics) = get_text(&router, "/metrics", None).await;
    assert!(
        metrics.contains("islets_query_unreadable_files 1"),
        "{metrics}"
    );
    // Nothing archived was changed or removed by the reader.
    let after = fixture
        .archive
        .list_files(Table::Events)
        .await
        .expect("list");
    assert_eq!(after.len(), files.len());
    assert_eq!(
        fixture.archive.get(&broken.location).await.expect("get"),
        truncated
    );
}
