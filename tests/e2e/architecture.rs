//! docs/ARCHITECTURE.md's crate table is the crate graph: each crate depends on exactly the
//! islets crates its row names, and nothing its row forbids is reachable.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use crate::support::repo_root;

/// The table's rows: crate → (depends on, must not depend on).
fn documented() -> BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
    let text = std::fs::read_to_string(repo_root().join("docs/ARCHITECTURE.md"))
        .expect("docs/ARCHITECTURE.md");
    let section = text
        .split("## Crates")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a Crates section");
    let names = |cell: &str| -> BTreeSet<String> {
        cell.split(',')
            .map(|name| name.trim().trim_matches('`').to_owned())
            .filter(|name| !name.is_empty() && name != "—")
            .collect()
    };
    section
        .lines()
        .filter(|line| line.starts_with("| `islets-"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
            assert_eq!(cells.len(), 5, "a row of 5 cells: {line}");
            (
                cells[0].trim().trim_matches('`').to_owned(),
                (names(cells[3]), names(cells[4])),
            )
        })
        .collect()
}

fn cargo(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

#[test]
fn the_crate_graph_is_the_one_docs_architecture_describes() {
    let table = documented();
    let metadata: serde_json::Value = serde_json::from_str(&cargo(&[
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
        "--offline",
    ]))
    .expect("metadata json");
    let packages = metadata["packages"].as_array().expect("packages");
    let members: BTreeSet<String> = packages
        .iter()
        .map(|package| package["name"].as_str().expect("name").to_owned())
        .collect();
    let rows: BTreeSet<String> = table.keys().cloned().collect();
    assert_eq!(rows, members, "one row per workspace crate");

    for package in packages {
        let name = package["name"].as_str().expect("name");
        let (depends_on, forbidden) = &table[name];
        let direct: BTreeSet<String> = package["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .filter(|dependency| dependency["kind"].is_null())
            .filter_map(|dependency| dependency["name"].as_str())
            .filter(|dependency| dependency.starts_with("islets-"))
            .map(str::to_owned)
            .collect();
        assert_eq!(&direct, depends_on, "{name}: its islets dependencies");

        // Features as they resolve for this crate alone (what a user of it compiles).
        let tree = cargo(&[
            "tree",
            "--offline",
            "-p",
            name,
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ]);
        let reachable: BTreeSet<&str> = tree
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .collect();
        for crate_name in forbidden {
            assert!(
                !reachable.contains(crate_name.as_str()),
                "{name} must not depend on {crate_name}, but `cargo tree -p {name} -e normal` reaches it"
            );
        }
    }
}
