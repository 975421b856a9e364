//! `islets-replay` against moto: a selection of a demo archive replayed to a queue, to a
//! topic with a subscribed queue and to a file (payload bytes and attributes equal, markers
//! present, nothing outside the selection), dry runs and plans, the rate, a SIGKILL and
//! `--resume`, bad input, and the ledger.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::MessageSystemAttributeName;
use islets_core::record::EventRecord;
use islets_core::store::{Archive, StoreLocation};
use serde_json::Value;

use crate::support::{Moto, moto, read_events, run_demo, unique};

const REPLAY: &str = env!("CARGO_BIN_EXE_islets-replay");

/// A demo archive and its distinct events.
struct Demo {
    _directory: tempfile::TempDir,
    dir: PathBuf,
    events: Vec<EventRecord>,
}

async fn demo(flows: &str) -> Demo {
    let directory = tempfile::tempdir().expect("tempdir");
    let dir = directory.path().join("archive");
    let output = run_demo(&dir, &["--flows", flows, "--days", "2"]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let archive =
        Archive::open(&StoreLocation::Local { root: dir.clone() }, None).expect("archive");
    let mut seen = BTreeSet::new();
    let events = read_events(&archive)
        .await
        .into_iter()
        .map(|(_, record)| record)
        .filter(|record| seen.insert(record.event_id.clone()))
        .collect();
    Demo {
        _directory: directory,
        dir,
        events,
    }
}

fn replay(moto: &Moto, store: &Path) -> tokio::process::Command {
    let mut command = moto.command(REPLAY);
    command
        .current_dir(crate::support::repo_root())
        .arg("--store")
        .arg(store);
    command
}

async fn run(mut command: tokio::process::Command) -> (i32, String, String) {
    let output = command.output().await.expect("run islets-replay");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn create_queue(moto: &Moto) -> String {
    moto.sqs()
        .create_queue()
        .queue_name(unique("consumer"))
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("url")
}

/// Receives until `expected` messages arrived (or nothing more comes for a while).
async fn drain(moto: &Moto, url: &str, expected: usize) -> Vec<aws_sdk_sqs::types::Message> {
    let sqs = moto.sqs();
    let mut messages = Vec::new();
    let mut idle = 0;
    while idle < 3 {
        let answer = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(if messages.len() >= expected { 0 } else { 1 })
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive");
        let batch = answer.messages.unwrap_or_default();
        if batch.is_empty() {
            idle += 1;
            continue;
        }
        idle = 0;
        for message in &batch {
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete");
        }
        messages.extend(batch);
    }
    messages
}

fn selected(demo: &Demo, aggregate: &str, event_type: &str) -> BTreeMap<String, EventRecord> {
    demo.events
        .iter()
        .filter(|e| {
            e.aggregate.as_deref() == Some(aggregate) && e.event_type.as_deref() == Some(event_type)
        })
        .map(|e| (e.event_id.clone(), e.clone()))
        .collect()
}

/// The archived attributes as name → (type, value).
fn original_attributes(record: &EventRecord) -> BTreeMap<String, (String, String)> {
    record
        .attributes
        .iter()
        .map(|(name, value)| (name.clone(), (value.data_type.clone(), value.value.clone())))
        .collect()
}

fn without_markers(
    mut attributes: BTreeMap<String, (String, String)>,
) -> BTreeMap<String, (String, String)> {
    attributes.retain(|name, _| !name.starts_with("replay"));
    attributes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selection_reaches_a_queue_a_topic_and_a_file_exactly() {
    let moto = moto();
    let demo = demo("40").await;
    let expected = selected(&demo, "listing", "sold");
    assert!(expected.len() >= 5, "the demo has listing.sold events");

    // 1. One consumer's queue, raw.
    let queue = create_queue(&moto).await;
    let mut command = replay(&moto, &demo.dir);
    command
        .args([
            "--since",
            "30d",
            "--event-type",
            "listing.sold",
            "--to-queue",
            &queue,
        ])
        .args(["--reason", "test: consumer lost events"]);
    let (code, stdout, stderr) = run(command).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("sent {}", expected.len())),
        "{stdout}"
    );
    let messages = drain(&moto, &queue, expected.len()).await;
    let mut received = BTreeSet::new();
    for message in &messages {
        let body = message.body().unwrap_or_default();
        let payload: Value = serde_json::from_str(body).expect("payload JSON");
        let event_id = payload["event_id"].as_str().expect("event_id").to_owned();
        let original = expected
            .get(&event_id)
            .unwrap_or_else(|| panic!("{event_id} is outside the selection"));
        assert_eq!(body, original.payload, "payload bytes unchanged");
        let attributes: BTreeMap<String, (String, String)> = message
            .message_attributes()
            .map(|attributes| {
                attributes
                    .iter()
                    .map(|(name, value)| {
                        let text = match value.binary_value() {
                            Some(blob) => base64::Engine::encode(
                                &base64::engine::general_purpose::STANDARD,
                                blob.as_ref(),
                            ),
                            None => value.string_value().unwrap_or_default().to_owned(),
                        };
                        (name.clone(), (value.data_type().to_owned(), text))
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            attributes.get("replay_reason").map(|v| v.1.as_str()),
            Some("test: consumer lost events")
        );
        assert!(attributes.contains_key("replay_id"));
        assert!(attributes.contains_key("replay_original_published_at"));
        assert_eq!(
            without_markers(attributes),
            original_attributes(original),
            "{event_id}"
        );
        received.insert(event_id);
    }
    assert_eq!(messages.len(), expected.len(), "each event once");
    assert_eq!(received, expected.keys().cloned().collect());

    // 2. A topic with a subscribed queue (envelope delivery).
    let sns = moto.sns();
    let topic_name = unique("replay-topic");
    let topic_arn = sns
        .create_topic()
        .name(&topic_name)
        .send()
        .await
        .expect("topic")
        .topic_arn
        .expect("arn");
    let subscriber = create_queue(&moto).await;
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(moto.queue_arn(&subscriber).await)
        .send()
        .await
        .expect("subscribe");
    let mut command = replay(&moto, &demo.dir);
    command
        .args([
            "--since",
            "30d",
            "--event-type",
            "listing.sold",
            "--to-topic",
            &topic_name,
        ])
        .args(["--reason", "test: topic", "--yes"]);
    let (code, stdout, stderr) = run(command).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let messages = drain(&moto, &subscriber, expected.len()).await;
    assert_eq!(messages.len(), expected.len());
    for message in &messages {
        let envelope: Value =
            serde_json::from_str(message.body().unwrap_or_default()).expect("envelope");
        let body = envelope["Message"].as_str().expect("Message");
        let payload: Value = serde_json::from_str(body).expect("payload");
        let original = &expected[payload["event_id"].as_str().expect("id")];
        assert_eq!(body, original.payload);
        let attributes: BTreeMap<String, (String, String)> = envelope["MessageAttributes"]
            .as_object()
            .expect("attributes")
            .iter()
            .map(|(name, value)| {
                (
                    name.clone(),
                    (
                        value["Type"].as_str().unwrap_or_default().to_owned(),
                        value["Value"].as_str().unwrap_or_default().to_owned(),
                    ),
                )
            })
            .collect();
        assert_eq!(attributes["replay_reason"].1, "test: topic");
        assert_eq!(without_markers(attributes), original_attributes(original));
    }

    // 3. A file.
    let file = demo.dir.parent().expect("parent").join("replayed.ndjson");
    let mut command = replay(&moto, &demo.dir);
    command
        .args([
            "--since",
            "30d",
            "--event-type",
            "listing.sold",
            "--to-file",
        ])
        .arg(&file)
        .args(["--reason", "test: file"]);
    let (code, stdout, stderr) = run(command).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let text = std::fs::read_to_string(&file).expect("file");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("line"))
        .collect();
    assert_eq!(lines.len(), expected.len());
    for line in &lines {
        let original = &expected[line["event_id"].as_str().expect("id")];
        assert_eq!(line["message"].as_str(), Some(original.payload.as_str()));
    }

    // The ledger records all three.
    let (code, stdout, _) = run({
        let mut command = moto.command(REPLAY);
        command.arg("history").arg("--store").arg(&demo.dir);
        command
    })
    .await;
    assert_eq!(code, 0);
    for reason in ["test: consumer lost events", "test: topic", "test: file"] {
        assert!(stdout.contains(reason), "{stdout}");
    }
    assert_eq!(stdout.matches("completed").count(), 3, "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_send_nothing_and_a_changed_selection_refuses_its_plan() {
    let moto = moto();
    let demo = demo("30").await;
    let queue = create_queue(&moto).await;
    let plan = demo.dir.parent().expect("parent").join("plan.json");
    let mut command = replay(&moto, &demo.dir);
    command
        .args([
            "--since",
            "30d",
            "--aggregate",
            "listing",
            "--dry-run",
            "--to-queue",
            &queue,
        ])
        .arg("--plan-out")
        .arg(&plan);
    let (code, stdout, stderr) = run(command).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("id set hash: sha256:") && stdout.contains("dry run"),
        "{stdout}"
    );
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&plan).expect("plan")).expect("json");
    let listing = demo
        .events
        .iter()
        .filter(|e| e.aggregate.as_deref() == Some("listing"))
        .count();
    assert_eq!(saved["events"], listing);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(moto.queue_total(&queue).await, 0, "a dry run sends nothing");

    // New events land in the selection: the plan no longer matches.
    let generated = demo.dir.parent().expect("parent").join("more.ndjson");
    let output = tokio::process::Command::new(crate::support::AUDIT)
        .current_dir(crate::support::repo_root())
        .args(["generate", "--flows", "3", "--days", "1", "--out"])
        .arg(&generated)
        .output()
        .await
        .expect("generate");
    assert!(output.status.success());
    let output = tokio::process::Command::new(crate::support::INGESTER)
        .current_dir(crate::support::repo_root())
        .args(["--source", "file", "--input"])
        .arg(&generated)
        .arg("--store")
        .arg(&demo.dir)
        .output()
        .await
        .expect("ingest");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut command = replay(&moto, &demo.dir);
    command
        .arg("--plan")
        .arg(&plan)
        .args(["--reason", "test: stale plan"]);
    let (code, stdout, stderr) = run(command).await;
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("no longer selects what the plan did"),
        "{stderr}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        moto.queue_total(&queue).await,
        0,
        "a refused plan sends nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_is_honoured() {
    let moto = moto();
    let demo = demo("40").await;
    let total = demo.events.len();
    assert!(total >= 120, "{total}");
    let work = demo.dir.parent().expect("parent").to_owned();
    let mut command = replay(&moto, &demo.dir);
    command
        .args(["--since", "30d", "--rate", "25/s", "--to-file"])
        .arg(work.join("out.ndjson"))
        .args(["--reason", "test: rate", "--report"])
        .arg(work.join("report.json"));
    let started = Instant::now();
    let (code, stdout, stderr) = run(command).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("report.json")).expect("report"))
            .expect("json");
    let sent = report["outcome"]["sent"].as_f64().expect("sent");
    let seconds = report["outcome"]["seconds"].as_f64().expect("seconds");
    assert_eq!(sent as usize, total);
    assert!(seconds >= 5.0, "measured over at least 5 s: {seconds}");
    let rate = sent / seconds;
    assert!(
        (22.5..=27.5).contains(&rate),
        "25/s requested, {rate:.1}/s measured"
    );
    assert!(started.elapsed().as_secs_f64() >= seconds);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_replay_then_resumed_every_event_arrives() {
    let moto = moto();
    let demo = demo("30").await;
    let total = demo.events.len();
    let queue = create_queue(&moto).await;
    let checkpoint = demo.dir.parent().expect("parent").join("replay.ckpt");
    let base = |command: &mut tokio::process::Command| {
        command
            .args(["--since", "30d", "--to-queue", &queue, "--concurrency", "2"])
            .args(["--reason", "test: resume", "--checkpoint"])
            .arg(&checkpoint);
    };
    let mut command = replay(&moto, &demo.dir);
    base(&mut command);
    command.args(["--rate", "30"]);
    let mut child = command.spawn().expect("spawn");
    // Killed mid-replay: once the checkpoint records delivered events (a loaded machine
    // may take a while to plan and start), and long before the 30/s rate is through.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let delivered = std::fs::read_to_string(&checkpoint)
            .map(|text| {
                text.lines()
                    .skip(1)
                    .filter(|line| line.ends_with('\t'))
                    .count()
            })
            .unwrap_or(0);
        if delivered > 0 || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;
    let mut command = replay(&moto, &demo.dir);
    base(&mut command);
    command.arg("--resume");
    let (code, stdout, stderr) = run(command).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let messages = drain(&moto, &queue, total).await;
    let mut copies: HashMap<String, usize> = HashMap::new();
    for message in &messages {
        let payload: Value =
            serde_json::from_str(message.body().unwrap_or_default()).unwrap_or(Value::Null);
        let id = payload["event_id"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| message.body().unwrap_or_default().to_owned());
        *copies.entry(id).or_default() += 1;
    }
    let expected: BTreeSet<String> = demo
        .events
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(&e.payload)
                .ok()
                .and_then(|p| p["event_id"].as_str().map(str::to_owned))
                .unwrap_or_else(|| e.payload.clone())
        })
        .collect();
    let delivered: BTreeSet<String> = copies.keys().cloned().collect();
    assert_eq!(delivered, expected, "every selected event delivered");
    let extra: usize = copies.values().map(|n| n - 1).sum();
    assert!(
        extra <= 2 * 10,
        "extra copies at most the in-flight batches: {extra}"
    );
    let already: u64 = stdout
        .split("already delivered ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no count in: {stdout}"));
    assert!(
        already > 0,
        "the resume skipped what the first run delivered: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_clear_message_and_nothing_sent() {
    let moto = moto();
    let demo = demo("10").await;
    let queue = create_queue(&moto).await;
    let topic_arn = moto
        .sns()
        .create_topic()
        .name(unique("unconfirmed"))
        .send()
        .await
        .expect("topic")
        .topic_arn
        .expect("arn");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--since".into(),
                "2026-11-02".into(),
                "--until".into(),
                "2026-11-01".into(),
            ],
            "is not before --until",
        ),
        (
            vec![
                "--since".into(),
                "30d".into(),
                "--event-type".into(),
                "listing.sould".into(),
            ],
            "--event-type listing.sould: no such event type",
        ),
        (
            vec![
                "--since".into(),
                "30d".into(),
                "--to-queue".into(),
                "no-such-queue".into(),
            ],
            "--to-queue no-such-queue",
        ),
        (
            vec![
                "--since".into(),
                "30d".into(),
                "--to-topic".into(),
                "no-such-topic".into(),
                "--yes".into(),
            ],
            "--to-topic no-such-topic: no such topic",
        ),
        (
            vec![
                "--since".into(),
                "30d".into(),
                "--to-queue".into(),
                queue.clone(),
            ],
            "--reason",
        ),
        (
            // The catalog's topics do not exist here: the archived topic ARNs are never
            // taken as destinations.
            vec![
                "--since".into(),
                "30d".into(),
                "--to-original".into(),
                "--yes".into(),
            ],
            "--to-original: the selection needs topics that do not exist",
        ),
        (
            vec![
                "--since".into(),
                "30d".into(),
                "--to-topic".into(),
                topic_arn.clone(),
                "--reason".into(),
                "x".into(),
            ],
            "confirm with --yes (stdin is not a terminal)",
        ),
    ];
    for (args, expected) in cases {
        let mut command = replay(&moto, &demo.dir);
        command.args(&args);
        let (code, stdout, stderr) = run(command).await;
        assert_eq!(code, 2, "{args:?}\n{stdout}\n{stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let mut command = moto.command(REPLAY);
    command
        .args([
            "--store",
            "/nonexistent/archive",
            "--since",
            "30d",
            "--to-queue",
            &queue,
        ])
        .args(["--reason", "x"]);
    let (code, _, stderr) = run(command).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--store /nonexistent/archive"), "{stderr}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(moto.queue_total(&queue).await, 0, "nothing sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drill_passes_on_a_healthy_store_and_names_what_went_missing_or_changed() {
    let moto = moto();
    let demo = demo("25").await;
    let work = demo.dir.parent().expect("parent").to_owned();

    // Healthy: scratch topic and queue, everything arrives, the scratch is removed.
    let mut command = moto.command(REPLAY);
    command
        .current_dir(crate::support::repo_root())
        .args(["drill", "--store"])
        .arg(&demo.dir)
        .args(["--since", "30d", "--report"])
        .arg(work.join("drill.md"));
    let (code, stdout, stderr) = run(command).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("drill.json")).expect("json"))
            .expect("report");
    assert_eq!(report["passed"], true);
    assert_eq!(report["selected"], demo.events.len());
    assert_eq!(report["intact"], demo.events.len());
    let markdown = std::fs::read_to_string(work.join("drill.md")).expect("markdown");
    assert!(
        markdown.contains("PASS") && markdown.contains("Time to restore"),
        "{markdown}"
    );
    // The scratch topic and queue are gone (other tests create topics meanwhile: look for
    // this drill's own).
    let scratch_topic = report["topic_arn"].as_str().expect("topic").to_owned();
    assert!(scratch_topic.contains("islets-drill-"), "{scratch_topic}");
    let topics: Vec<String> = moto
        .sns()
        .list_topics()
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .filter_map(|topic| topic.ok().and_then(|topic| topic.topic_arn))
        .collect();
    assert!(
        !topics.contains(&scratch_topic),
        "the scratch topic is removed"
    );
    let scratch_queue = moto
        .sqs()
        .get_queue_attributes()
        .queue_url(report["queue_url"].as_str().expect("queue"))
        .send()
        .await;
    assert!(scratch_queue.is_err(), "the scratch queue is removed");

    // Unhealthy: the given subscription drops every listing.sold (a filter policy), and the
    // queue already holds an altered copy of one event.
    let sns = moto.sns();
    let topic_arn = sns
        .create_topic()
        .name(unique("drill-topic"))
        .send()
        .await
        .expect("topic")
        .topic_arn
        .expect("arn");
    let queue = create_queue(&moto).await;
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(moto.queue_arn(&queue).await)
        .attributes(
            "FilterPolicy",
            r#"{"event_type": [{"anything-but": "sold"}]}"#,
        )
        .send()
        .await
        .expect("subscribe");
    let dropped: BTreeSet<String> = demo
        .events
        .iter()
        .filter(|e| e.event_type.as_deref() == Some("sold"))
        .map(|e| e.event_id.clone())
        .collect();
    assert!(!dropped.is_empty());
    let victim = demo
        .events
        .iter()
        .find(|e| {
            e.aggregate.as_deref() == Some("company")
                && serde_json::from_str::<Value>(&e.payload).is_ok()
        })
        .expect("a company event");
    let mut altered_payload: Value = serde_json::from_str(&victim.payload).expect("json");
    altered_payload["tampered"] = Value::Bool(true);
    // An altered copy carrying the drill's marker (the drill's own message, tampered with
    // on the way), and another consumer's message the drill must leave alone.
    let drill_id = "01DRILLTEST0000000000000000";
    let forged = serde_json::json!({
        "Type": "Notification", "MessageId": "forged", "TopicArn": topic_arn,
        "Message": altered_payload.to_string(), "Timestamp": "2026-11-23T00:00:00.000Z",
        "MessageAttributes": {"replay_id": {"Type": "String", "Value": drill_id}}
    });
    let foreign = serde_json::json!({
        "Type": "Notification", "MessageId": "someone-else", "TopicArn": topic_arn,
        "Message": "{\"not\":\"the drill's\"}", "Timestamp": "2026-11-23T00:00:00.000Z",
        "MessageAttributes": {}
    });
    for body in [&forged, &foreign] {
        moto.sqs()
            .send_message()
            .queue_url(&queue)
            .message_body(body.to_string())
            .send()
            .await
            .expect("seed");
    }
    // A drill through the given topic and queue, with `extra` flags.
    let drill = |extra: &[&str]| {
        let mut command = moto.command(REPLAY);
        command
            .current_dir(crate::support::repo_root())
            .args(["drill", "--store"])
            .arg(&demo.dir)
            .args([
                "--since",
                "30d",
                "--topic-arn",
                &topic_arn,
                "--queue-url",
                &queue,
            ])
            .args(extra);
        command
    };
    // Publishing to an existing topic needs --yes: refused without it, nothing sent.
    let (code, _, stderr) = run(drill(&[])).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("confirm with --yes"), "{stderr}");
    let report_path = work.join("failed.md");
    let mut command = drill(&[
        "--wait-secs",
        "5",
        "--yes",
        "--drill-id",
        drill_id,
        "--report",
    ]);
    command.arg(&report_path);
    let (code, stdout, stderr) = run(command).await;
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert_eq!(
        moto.queue_total(&queue).await,
        1,
        "the other consumer's message is still in the queue"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("failed.json")).expect("json"))
            .expect("report");
    assert_eq!(report["passed"], false);
    let missing: BTreeSet<String> = report["missing"]
        .as_array()
        .expect("missing")
        .iter()
        .map(|id| id.as_str().expect("id").to_owned())
        .collect();
    assert_eq!(missing, dropped, "the report names every dropped event");
    let payload_id = serde_json::from_str::<Value>(&victim.payload).expect("json")["event_id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(
        report["altered"]
            .as_array()
            .expect("altered")
            .iter()
            .any(|id| id == &Value::String(payload_id.clone())),
        "{report}"
    );
    let markdown = std::fs::read_to_string(work.join("failed.md")).expect("markdown");
    assert!(
        markdown.contains("FAIL") && markdown.contains(dropped.iter().next().expect("one")),
        "{markdown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_queue_gets_group_ids_from_correlations_and_events_in_time_order() {
    let moto = moto();
    let demo = demo("15").await;
    let flow = demo
        .events
        .iter()
        .filter_map(|e| e.correlation_id.clone())
        .max_by_key(|id| {
            demo.events
                .iter()
                .filter(|e| e.correlation_id.as_ref() == Some(id))
                .count()
        })
        .expect("a flow");
    let mut expected: Vec<&EventRecord> = demo
        .events
        .iter()
        .filter(|e| e.correlation_id.as_ref() == Some(&flow))
        .collect();
    expected.sort_by_key(|e| (e.published_at_ms, e.event_id.clone()));
    assert!(expected.len() >= 2, "{flow}");
    let queue = moto
        .sqs()
        .create_queue()
        .queue_name(format!("{}.fifo", unique("consumer")))
        .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .expect("fifo queue")
        .queue_url
        .expect("url");
    let mut command = replay(&moto, &demo.dir);
    command
        .args([
            "--correlation-id",
            &flow,
            "--order",
            "per-correlation",
            "--to-queue",
            &queue,
        ])
        .args(["--reason", "test: fifo"]);
    let (code, stdout, stderr) = run(command).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let messages = drain(&moto, &queue, expected.len()).await;
    let bodies: Vec<&str> = messages
        .iter()
        .map(|m| m.body().unwrap_or_default())
        .collect();
    let want: Vec<&str> = expected.iter().map(|e| e.payload.as_str()).collect();
    assert_eq!(bodies, want, "in published order");
    for message in &messages {
        let group = message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
            .cloned();
        assert_eq!(group.as_deref(), Some(flow.as_str()));
    }
}
