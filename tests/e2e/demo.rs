//! The README's first command: `islets-audit demo`.

use crate::support::{count_by_id, python_lines, read_events, read_quarantine, run_demo};

use islets_core::store::{Archive, StoreLocation};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_builds_an_archive_that_duckdb_reads_and_a_second_run_reuses_it() {
    let directory = tempfile::tempdir().expect("tempdir");
    let data_dir = directory.path().join("demo-data");
    let output = run_demo(&data_dir, &[]).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("What to try next"), "{stdout}");
    let generated: usize = stdout
        .split_whitespace()
        .nth(1)
        .and_then(|word| word.parse().ok())
        .unwrap_or_else(|| panic!("no count in: {stdout}"));

    let archive = Archive::open(
        &StoreLocation::Local {
            root: data_dir.clone(),
        },
        None,
    )
    .expect("archive");
    let rows = read_events(&archive).await;
    let distinct = count_by_id(&rows);
    assert_eq!(distinct.len(), generated);
    assert!(
        rows.len() > distinct.len(),
        "the demo includes redelivered duplicates"
    );
    assert!(
        rows.iter().any(|(_, r)| !r.schema_valid),
        "and invalid events"
    );
    assert!(
        !read_quarantine(&archive).await.is_empty(),
        "and undecodable messages"
    );
    let days: std::collections::BTreeSet<_> = rows
        .iter()
        .map(|(key, _)| key.split('/').nth(1).unwrap_or_default().to_owned())
        .collect();
    assert!(days.len() >= 5, "spread over days: {days:?}");

    // DuckDB reads the same local files with Hive partitioning.
    let script = format!(
        "import duckdb; print(duckdb.connect().execute(\"SELECT count(DISTINCT event_id) FROM read_parquet('{}/events/*/*/*.parquet', hive_partitioning=true)\").fetchone()[0])",
        data_dir.display()
    );
    assert_eq!(python_lines(&script).await, vec![generated.to_string()]);

    let again = run_demo(&data_dir, &[]).await;
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("already holds an archive"));
    assert_eq!(
        read_events(&archive).await.len(),
        rows.len(),
        "a second run adds nothing"
    );
}
