//! Hostile `/v1/sql` statements against the real `islets-query` binary: each is answered
//! with a 4xx, the server stays up, and its peak RSS stays under the documented bound
//! (docs/SECURITY.md: 1 GiB).

use crate::support::{demo_archive, query_server};

/// The documented bound on the query server's peak RSS across these statements.
const PEAK_RSS_BOUND_KIB: u64 = 1024 * 1024;

/// `VmHWM` (peak resident set) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_that_build_huge_values_get_4xx_and_the_server_stays_small() {
    let (_directory, data_dir) = demo_archive(200).await;
    let (mut server, address) = query_server(&data_dir, &[]).await;
    let pid = server.child.id().expect("pid");
    let client = reqwest::Client::new();
    let sql = |statement: &str| {
        client
            .post(format!("http://{address}/v1/sql"))
            .json(&serde_json::json!({ "sql": statement }))
            .send()
    };
    let baseline = sql("SELECT count(*) AS n FROM events").await.expect("sql");
    assert_eq!(baseline.status().as_u16(), 200);
    let events: serde_json::Value = baseline.json().await.expect("json");
    let count = events["rows"][0]["n"].as_u64().expect("count");
    assert!(count > 100);

    let hostile = [
        // Folded at planning time.
        (
            "SELECT repeat('x', 2147483647) AS v",
            400,
            "value_too_large",
        ),
        (
            "SELECT length(lpad('', 1999999999, 'ab')) AS v",
            400,
            "value_too_large",
        ),
        ("SELECT rpad('a', 1073741824) AS v", 400, "value_too_large"),
        (
            "SELECT cardinality(range(0, 5000000000)) AS v",
            400,
            "value_too_large",
        ),
        (
            "SELECT array_repeat(repeat('y', 1000), 100000000) AS v",
            400,
            "value_too_large",
        ),
        (
            "SELECT replace(repeat('a', 2000000), 'a', 'bbbbbbbbbb') AS v",
            400,
            "value_too_large",
        ),
        // Per row, over the archive.
        (
            "SELECT repeat(payload, 50000) AS v FROM events_raw",
            400,
            "value_too_large",
        ),
        (
            "SELECT max(length(concat(p, p, p, p, p, p, p, p))) FROM (SELECT repeat(payload, 10000) AS p FROM events) AS t",
            400,
            "value_too_large",
        ),
        // An operator no function bound sees.
        (
            "SELECT length(a || a || a || a) FROM (SELECT repeat('z', 4000000) AS a) AS t",
            400,
            "invalid_sql",
        ),
        // Big answers: refused whole, never cut.
        (
            "SELECT repeat(payload, 100) AS v FROM events_raw",
            413,
            "result_too_large",
        ),
        (
            "SELECT string_agg(payload, ',') AS v FROM events_raw CROSS JOIN (SELECT 1 FROM events_raw LIMIT 100) AS t",
            413,
            "result_too_large",
        ),
        (
            "SELECT array_agg(payload) AS v FROM events_raw CROSS JOIN (SELECT 1 FROM events_raw LIMIT 100) AS t",
            413,
            "result_too_large",
        ),
    ];
    for (statement, status, code) in hostile {
        let response = sql(statement).await.unwrap_or_else(|error| {
            panic!(
                "{statement}: no answer ({error}); log:\n{}",
                server.log_text()
            )
        });
        let got = response.status().as_u16();
        let body: serde_json::Value = response.json().await.expect("a JSON error body");
        assert_eq!(got, status, "{statement}: {body}");
        assert_eq!(body["error"]["code"], code, "{statement}: {body}");
        assert!(
            server.child.try_wait().expect("try_wait").is_none(),
            "the server died on {statement}"
        );
    }
    let after = sql("SELECT count(*) AS n FROM events").await.expect("sql");
    assert_eq!(after.status().as_u16(), 200, "still answering");
    let after: serde_json::Value = after.json().await.expect("json");
    assert_eq!(
        after["rows"][0]["n"].as_u64(),
        Some(count),
        "nothing changed"
    );
    let peak = peak_rss_kib(pid);
    assert!(
        peak < PEAK_RSS_BOUND_KIB,
        "peak RSS {peak} KiB is over the documented {PEAK_RSS_BOUND_KIB} KiB"
    );
    eprintln!("query server peak RSS across the hostile statements: {peak} KiB");
}
