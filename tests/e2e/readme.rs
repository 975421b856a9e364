//! The README's query examples, run as written against `islets-audit serve` over a fresh
//! demo archive: every `curl` line of the "Querying" block must succeed.

use std::time::Duration;

use crate::support::{AUDIT, Running, repo_root, run_demo};

/// The curl commands of the README's first shell block under "## Querying" (continuation
/// lines joined).
fn readme_curls() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let section = readme
        .split("## Querying")
        .nth(1)
        .expect("a Querying section");
    let block = section
        .split("```sh")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a sh block");
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        let line = line.trim();
        if current.is_empty() && !line.starts_with("curl ") {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => current.push_str(start),
            None => {
                current.push_str(line);
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    commands
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_curl_example_of_the_readme_works_against_the_demo() {
    let commands = readme_curls();
    assert!(commands.len() >= 8, "{commands:?}");
    let directory = tempfile::tempdir().expect("tempdir");
    let data_dir = directory.path().join("demo-data");
    let demo = run_demo(&data_dir, &["--flows", "60"]).await;
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );

    let (query_port, ingest_port) = (free_port(), free_port());
    let mut command = tokio::process::Command::new(AUDIT);
    command
        .current_dir(repo_root())
        .arg("serve")
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--listen", &format!("127.0.0.1:{query_port}")])
        .args(["--ingest-listen", &format!("127.0.0.1:{ingest_port}")])
        .kill_on_drop(true);
    let server = Running::spawn(command);
    let base = format!("http://127.0.0.1:{query_port}");
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(response) = client.get(format!("{base}/readyz")).send().await
            && response.status().is_success()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "serve did not become ready: {}", server.log_text());

    // Real ids for the placeholders.
    let page: serde_json::Value = client
        .get(format!("{base}/v1/events?limit=1&event_type=listing.sold"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let event = &page["events"][0];
    let event_id = event["event_id"].as_str().expect("event_id");
    let correlation_id = event["correlation_id"].as_str().expect("correlation_id");

    let work = tempfile::tempdir().expect("tempdir");
    for command in &commands {
        let command = command
            .replace("<event_id>", event_id)
            .replace("<correlation_id>", correlation_id)
            .replace("127.0.0.1:8081", &format!("127.0.0.1:{query_port}"))
            // -f: an HTTP error fails the command.
            .replace("curl -s ", "curl -sSf ");
        let output = tokio::process::Command::new("bash")
            .args(["-c", &command])
            .current_dir(work.path())
            .output()
            .await
            .expect("bash");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{command}\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(&stdout) {
            assert!(json.get("error").is_none(), "{command}: {json}");
        }
        assert!(
            !stdout.trim().is_empty() || command.contains('>'),
            "{command} printed nothing"
        );
    }
    let csv = std::fs::read_to_string(work.path().join("sold.csv")).expect("sold.csv");
    assert!(csv.lines().count() > 1, "the CSV export has rows: {csv}");
}
