//! The Athena engine's protocol against moto: StartQueryExecution with the values as
//! execution parameters, polling GetQueryExecution, GetQueryResults mapped back to events.
//! moto returns canned rows (set through its API), so this checks the plumbing; what the
//! SQL means is checked by running the same text on DataFusion (`query/src/athena.rs`).

use serde_json::{Value, json};

use crate::support::{QUERY, Running, moto};

/// The columns Athena returns for the engine's select list, in order.
const COLUMNS: [&str; 22] = [
    "event_id",
    "event_type",
    "aggregate",
    "schema_version",
    "producer_system",
    "correlation_id",
    "trace_id",
    "traceparent",
    "occurred_at",
    "published_at",
    "ingested_at",
    "topic_arn",
    "sns_message_id",
    "sqs_message_id",
    "delivery",
    "ingest_source",
    "attributes",
    "payload",
    "schema_valid",
    "schema_error",
    "payload_ciphertext",
    "encryption_key_id",
];

/// One row of text as Athena renders it (`None`: SQL NULL).
fn row(values: &[Option<&str>]) -> Value {
    let data: Vec<Value> = values
        .iter()
        .map(|value| match value {
            Some(text) => json!({"VarCharValue": text}),
            None => json!({}),
        })
        .collect();
    json!({"Data": data})
}

fn event_row(index: u32) -> Value {
    let id = format!("athena-{index}");
    let attributes = r#"{"aggregate":{"data_type":"String","value":"listing"},"event_type":{"data_type":"String","value":"sold"}}"#;
    let payload = format!(r#"{{"event_id":"{id}","price":{index}}}"#);
    row(&[
        Some(&id),
        Some("sold"),
        Some("listing"),
        Some("1.0.0"),
        Some("listing-management-api"),
        Some("corr-athena"),
        None,
        None,
        Some("2026-11-20 09:59:59.000"),
        Some(&format!("2026-11-20 10:00:0{index}.123")),
        Some("2026-11-20 10:00:30.000"),
        Some("arn:aws:sns:us-east-1:123456789012:listing-events"),
        Some(&format!("m-{index}")),
        Some(&format!("q-{index}")),
        Some("sns-envelope"),
        Some("sqs"),
        Some(attributes),
        Some(&payload),
        Some("true"),
        None,
        None,
        None,
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_athena_engine_binds_values_as_execution_parameters_and_maps_results() {
    let moto = moto();
    let bucket = moto.create_bucket().await;
    let athena = aws_sdk_athena::Client::new(&moto.sdk);
    let workgroup = crate::support::unique("islets");
    athena
        .create_work_group()
        .name(&workgroup)
        .send()
        .await
        .expect("workgroup");
    // What the next query returns: the header row, then two events.
    let header: Vec<Option<&str>> = COLUMNS.iter().map(|name| Some(*name)).collect();
    let column_info: Vec<Value> = COLUMNS
        .iter()
        .map(|name| json!({"Name": name, "Type": "varchar", "CatalogName": "hive", "SchemaName": "", "TableName": "", "Label": name, "Nullable": "UNKNOWN", "CaseSensitive": true}))
        .collect();
    let canned = json!({"results": [{
        "rows": [row(&header), event_row(1), event_row(2)],
        "column_info": column_info,
    }]});
    let client = reqwest::Client::new();
    let response = client
        .post(format!(
            "{}/moto-api/static/athena/query-results",
            moto.endpoint
        ))
        .json(&canned)
        .send()
        .await
        .expect("moto api");
    assert!(response.status().is_success(), "{response:?}");

    let mut command = moto.command(QUERY);
    command
        .arg("--store")
        .arg(format!("s3://{bucket}/islets"))
        .args(["--listen", "127.0.0.1:0", "--engine", "athena"])
        .args([
            "--athena-workgroup",
            &workgroup,
            "--athena-database",
            "audit_db",
        ])
        .arg("--athena-output")
        .arg(format!("s3://{bucket}/athena-results/"));
    let mut server = Running::spawn(command);
    let address = server.address().await;

    let page: Value = client
        .get(format!(
            "http://{address}/v1/events?correlation_id=corr-athena&since=2026-11-20T00:00:00Z&until=2026-11-21T00:00:00Z&limit=10"
        ))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let events = page["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{page}"));
    assert_eq!(events.len(), 2, "{page}");
    assert_eq!(events[0]["event_id"], "athena-1");
    assert_eq!(events[1]["published_at"], "2026-11-20T10:00:02.123Z");
    assert_eq!(
        events[0]["payload"],
        json!({"event_id": "athena-1", "price": 1})
    );
    assert_eq!(events[0]["attributes"]["event_type"]["Value"], "sold");
    assert_eq!(events[0]["trace_id"], Value::Null);
    assert_eq!(page["next_cursor"], Value::Null);

    // The query Athena received: placeholders in the text, values as parameters.
    let ids = athena
        .list_query_executions()
        .work_group(&workgroup)
        .send()
        .await
        .expect("list")
        .query_execution_ids
        .unwrap_or_default();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let execution = athena
        .get_query_execution()
        .query_execution_id(&ids[0])
        .send()
        .await
        .expect("execution")
        .query_execution
        .expect("execution");
    let sql = execution.query.clone().unwrap_or_default();
    assert!(sql.contains("correlation_id = ?"), "{sql}");
    assert!(
        sql.contains("\"date\" >= ?") && sql.contains("\"date\" <= ?"),
        "{sql}"
    );
    assert!(
        !sql.contains("corr-athena") && !sql.contains("2026"),
        "{sql}"
    );
    assert_eq!(
        execution.execution_parameters.unwrap_or_default(),
        vec![
            // The days whose copies compete (Athena's partitions) ...
            "'2026-11-20'",
            "'2026-11-20'",
            // ... the events the filter names ...
            "'2026-11-20'",
            "'2026-11-20'",
            "'corr-athena'",
            "TIMESTAMP '2026-11-20 00:00:00.000'",
            "TIMESTAMP '2026-11-21 00:00:00.000'",
            // ... and the filter again, on the copy that won.
            "'corr-athena'",
            "TIMESTAMP '2026-11-20 00:00:00.000'",
            "TIMESTAMP '2026-11-21 00:00:00.000'",
        ]
    );
    assert_eq!(
        execution
            .query_execution_context
            .and_then(|context| context.database),
        Some("audit_db".to_owned())
    );
    assert!(
        execution
            .result_configuration
            .and_then(|config| config.output_location)
            .is_some_and(|location| location.starts_with(&format!("s3://{bucket}/athena-results/"))),
    );

    // SQL is a DataFusion feature: a clear 501, not a failure.
    let response = client
        .post(format!("http://{address}/v1/sql"))
        .json(&json!({"sql": "SELECT 1"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 501);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "not_supported");
    let ready = client
        .get(format!("http://{address}/readyz"))
        .send()
        .await
        .expect("request");
    assert_eq!(ready.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_athena_workgroup_stops_the_server_at_start() {
    let moto = moto();
    let bucket = moto.create_bucket().await;
    let mut command = moto.command(QUERY);
    command
        .arg("--store")
        .arg(format!("s3://{bucket}/islets"))
        .args(["--listen", "127.0.0.1:0", "--engine", "athena"])
        .args(["--athena-workgroup", "no-such-workgroup"]);
    let output = command.output().await.expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--athena-workgroup") && stderr.contains("no-such-workgroup"),
        "{stderr}"
    );
}
