//! An OpenAPI fuzzer (schemathesis) against the real `islets-query` binary: thousands of
//! generated requests, valid and invalid, with and without tokens. No answer may be a 5xx
//! or a dropped connection, and every answer must match the document it was generated from.

use std::time::Duration;

use crate::support::{demo_archive, python, query_server};

/// schemathesis, installed by `scripts/test` next to the venv's python.
fn schemathesis() -> std::path::PathBuf {
    std::path::Path::new(&python())
        .parent()
        .expect("the venv's bin directory")
        .join("schemathesis")
}

async fn fuzz(address: &str, headers: &[&str], report: &std::path::Path) {
    let mut command = tokio::process::Command::new(schemathesis());
    command
        .arg("run")
        .arg(format!("http://{address}/openapi.json"))
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples",
            "120",
            // The coverage phase trips an internal error of schemathesis 4.32 on Python
            // 3.11 (hypothesis' lambda reflection), not a finding about the server.
            "--phases",
            "fuzzing,stateful",
            "--seed",
            "20261202",
            "--generation-deterministic",
            "--workers",
            "2",
            "--request-timeout",
            "60",
            "--no-color",
            "--report",
            "junit",
            "--report-junit-path",
        ])
        .arg(report)
        .current_dir(report.parent().expect("the report's directory"))
        .kill_on_drop(true);
    for header in headers {
        command.args(["--header", header]);
    }
    let output = tokio::time::timeout(Duration::from_secs(600), command.output())
        .await
        .expect("schemathesis finished within 10 minutes")
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found failures ({headers:?}):\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // It really ran: the report counts the generated test cases.
    let junit = std::fs::read_to_string(report).expect("junit report");
    assert!(junit.contains("<testcase"), "{junit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_never_get_a_5xx_or_a_dropped_connection() {
    let (directory, data_dir) = demo_archive(30).await;
    let still_up = |address: String| async move {
        let health = reqwest::get(format!("http://{address}/healthz"))
            .await
            .expect("healthz");
        assert_eq!(health.status().as_u16(), 200, "the server is still up");
    };

    // Authentication off (loopback), as the demo runs.
    let (open, address) = query_server(&data_dir, &[]).await;
    fuzz(&address, &[], &directory.path().join("open.xml")).await;
    still_up(address).await;
    drop(open);

    // Authentication on: with a token holding every scope, and with none (401s).
    let tokens = directory.path().join("tokens.yaml");
    std::fs::write(
        &tokens,
        format!(
            "tokens:\n  - name: fuzzer\n    sha256: {}\n    scopes: [audit:read, audit:sql]\n",
            islets_core::tokens::token_hash("fuzz-token")
        ),
    )
    .expect("tokens");
    let (_guarded, address) =
        query_server(&data_dir, &["--tokens-file".as_ref(), tokens.as_os_str()]).await;
    fuzz(
        &address,
        &["Authorization: Bearer fuzz-token"],
        &directory.path().join("token.xml"),
    )
    .await;
    fuzz(&address, &[], &directory.path().join("anonymous.xml")).await;
    still_up(address).await;
}
