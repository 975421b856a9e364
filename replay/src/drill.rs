//! The quarterly recovery drill: replay a selection to a scratch SNS topic with an SQS
//! queue subscribed (or to a topic and queue given), drain the queue while sending, check
//! that every event arrived byte-identical (payload and attributes), measure throughput
//! and time to restore, remove the scratch infrastructure, and write a report an auditor
//! can read (Markdown, and JSON beside it).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use clap::Args;
use futures::TryStreamExt;
use islets_core::store::Archive;
use islets_query::engine::DataFusionEngine;
use serde::Serialize;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::error::{ReplayError, Result};
use crate::message::{Markers, OutMessage};
use crate::plan::make_plan;
use crate::run::{SendOptions, SendOrder, send_all};
use crate::selection::SelectionArgs;
use crate::target::{SnsSender, TargetSpec};

/// Ids listed per problem kind in the report.
const IDS_LISTED: usize = 100;

/// `islets-replay drill`.
#[derive(Debug, Clone, Args)]
pub struct DrillArgs {
    /// The archive: s3://bucket/prefix, or a local directory.
    #[arg(long, env = "ISLETS_STORE", value_name = "URI")]
    pub store: String,

    #[command(flatten)]
    pub selection: SelectionArgs,

    /// Use this topic instead of creating a scratch one (needs --queue-url).
    #[arg(long, value_name = "ARN", requires = "queue_url")]
    pub topic_arn: Option<String>,

    /// Use this queue, subscribed to --topic-arn in envelope mode. The drill consumes
    /// only the messages it sent (marked with its id); others are left in the queue.
    #[arg(long, value_name = "URL", requires = "topic_arn")]
    pub queue_url: Option<String>,

    /// The drill's id (default: a new ULID). Every message it sends is marked with it,
    /// and it consumes only messages so marked.
    #[arg(long, value_name = "ID")]
    pub drill_id: Option<String>,

    /// Confirm publishing to --topic-arn: every subscriber of an existing topic receives
    /// the drill's events (a scratch topic has none but the drill's queue).
    #[arg(long)]
    pub yes: bool,

    /// Write the Markdown report here (and the JSON report beside it, `.json`).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// At most N events per second.
    #[arg(long, value_name = "N")]
    pub rate: Option<f64>,

    /// Batches in flight at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,

    /// Longest wait for the last events to arrive after sending, in seconds.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub wait_secs: u64,

    /// Who runs the drill, for the report (default: $USER).
    #[arg(long, env = "USER", value_name = "NAME")]
    pub operator: Option<String>,
}

/// What the drill found.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub drill_id: String,
    pub passed: bool,
    pub operator: String,
    pub started_at: String,
    pub finished_at: String,
    pub store: String,
    pub selection: crate::selection::Selection,
    pub topic_arn: String,
    pub queue_url: String,
    pub scratch_infrastructure: bool,
    pub id_set_sha256: String,
    pub selected: u64,
    pub sent: u64,
    pub send_failures: u64,
    pub received: u64,
    pub intact: u64,
    pub missing: Vec<String>,
    pub altered: Vec<String>,
    pub extra: u64,
    pub send_seconds: f64,
    /// From the first send to the last event received.
    pub restore_seconds: f64,
    pub events_per_second: f64,
    pub version: String,
}

struct Expected {
    payload: String,
    attributes: BTreeMap<String, (String, String)>,
}

/// Runs the drill; returns the exit code (0 pass, 1 fail).
pub async fn drill(args: DrillArgs, cancel: CancellationToken) -> Result<u8> {
    let started_at = islets_query::view::rfc3339_ms(chrono::Utc::now().timestamp_millis());
    let selection = args.selection.resolve(chrono::Utc::now())?;
    let location = crate::parse_store(&args.store)?;
    let aws = islets_core::aws::load_sdk_config().await;
    let archive = Archive::open(&location, Some(&aws))
        .map_err(|error| ReplayError::Usage(format!("--store {}: {error}", args.store)))?;
    archive
        .check_reachable(Duration::from_secs(20))
        .await
        .map_err(|error| {
            ReplayError::Usage(format!("--store {}: cannot read it: {error}", args.store))
        })?;
    let engine = DataFusionEngine::new(archive.clone()).map_err(ReplayError::Query)?;
    let sns = aws_sdk_sns::Client::new(&aws);
    let sqs = aws_sdk_sqs::Client::new(&aws);

    // What must arrive, by archived event id.
    let drill_id = args
        .drill_id
        .clone()
        .unwrap_or_else(|| ulid::Ulid::new().to_string());
    let markers = Markers {
        replay_id: drill_id.clone(),
        reason: "recovery drill".to_owned(),
    };
    let mut expected: HashMap<String, Expected> = HashMap::new();
    let mut events = selection.events(&engine).await?;
    while let Some(record) = events.try_next().await.map_err(ReplayError::Query)? {
        let id = record.event_id.clone();
        let message = OutMessage::new(record, &markers);
        expected.insert(
            id,
            Expected {
                payload: message.body.clone(),
                attributes: comparable(message.attributes.iter().map(|(name, value)| {
                    (name.clone(), (value.data_type.clone(), value.value.clone()))
                })),
            },
        );
    }
    let plan = make_plan(&engine, &args.store, &selection, None, args.rate).await?;

    let (topic_arn, queue_url, scratch) = match (&args.topic_arn, &args.queue_url) {
        (Some(topic), Some(queue)) => {
            if !args.yes {
                return Err(ReplayError::Usage(format!(
                    "--topic-arn {topic}: every subscriber of this topic receives the drill's {} events; confirm with --yes (or drop --topic-arn/--queue-url for a scratch topic)",
                    plan.events
                )));
            }
            // Publishing to a real topic is a replay: it is recorded in the ledger.
            let entry = crate::ledger::LedgerEntry {
                replay_id: drill_id.clone(),
                run_id: ulid::Ulid::new().to_string(),
                status: "drill".to_owned(),
                operator: args
                    .operator
                    .clone()
                    .unwrap_or_else(|| "unknown".to_owned()),
                reason: "recovery drill".to_owned(),
                started_at: started_at.clone(),
                finished_at: None,
                store: args.store.clone(),
                selection: selection.clone(),
                target: crate::target::TargetSpec::Topic { arn: topic.clone() },
                id_set_sha256: plan.id_set_sha256.clone(),
                events_selected: plan.events,
                outcome: None,
                resumed: false,
                version: env!("CARGO_PKG_VERSION").to_owned(),
            };
            entry.save(&archive).await?;
            (topic.clone(), queue.clone(), None)
        }
        _ => {
            let scratch = Scratch::create(&sns, &sqs, &drill_id).await?;
            (
                scratch.topic_arn.clone(),
                scratch.queue_url.clone(),
                Some(scratch),
            )
        }
    };
    let result = run_drill(
        &args, &sqs, &sns, &engine, &selection, &markers, &topic_arn, &queue_url, &expected, cancel,
    )
    .await;
    if let Some(scratch) = &scratch {
        scratch.remove(&sns, &sqs).await;
    }
    let observed = result?;

    let intact: BTreeSet<&String> = observed.intact.iter().collect();
    let missing: Vec<String> = expected
        .keys()
        .filter(|id| !intact.contains(id) && !observed.altered.contains(*id))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let altered: Vec<String> = observed
        .altered
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let passed = missing.is_empty()
        && altered.is_empty()
        && observed.extra == 0
        && observed.send_failures == 0;
    let report = DrillReport {
        drill_id,
        passed,
        operator: args
            .operator
            .clone()
            .unwrap_or_else(|| "unknown".to_owned()),
        started_at,
        finished_at: islets_query::view::rfc3339_ms(chrono::Utc::now().timestamp_millis()),
        store: args.store.clone(),
        selection,
        topic_arn,
        queue_url,
        scratch_infrastructure: scratch.is_some(),
        id_set_sha256: plan.id_set_sha256,
        selected: expected.len() as u64,
        sent: observed.sent,
        send_failures: observed.send_failures,
        received: observed.received,
        intact: intact.len() as u64,
        missing,
        altered,
        extra: observed.extra,
        send_seconds: observed.send_seconds,
        restore_seconds: observed.restore_seconds,
        events_per_second: if observed.restore_seconds > 0.0 {
            intact.len() as f64 / observed.restore_seconds
        } else {
            0.0
        },
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let markdown = markdown(&report);
    print!("{markdown}");
    if let Some(path) = &args.report {
        std::fs::write(path, &markdown)
            .map_err(ReplayError::io(format!("--report {}", path.display())))?;
        let json_path = path.with_extension("json");
        let json = serde_json::to_string_pretty(&report).unwrap_or_default();
        std::fs::write(&json_path, json + "\n")
            .map_err(ReplayError::io(format!("--report {}", json_path.display())))?;
    }
    Ok(if report.passed { 0 } else { 1 })
}

/// Attributes without the replay markers, for comparison.
fn comparable(
    attributes: impl Iterator<Item = (String, (String, String))>,
) -> BTreeMap<String, (String, String)> {
    attributes
        .filter(|(name, _)| !name.starts_with("replay"))
        .collect()
}

struct Observed {
    sent: u64,
    send_failures: u64,
    received: u64,
    intact: Vec<String>,
    altered: HashSet<String>,
    extra: u64,
    send_seconds: f64,
    restore_seconds: f64,
}

#[allow(clippy::too_many_arguments)]
async fn run_drill(
    args: &DrillArgs,
    sqs: &aws_sdk_sqs::Client,
    sns: &aws_sdk_sns::Client,
    engine: &DataFusionEngine,
    selection: &crate::selection::Selection,
    markers: &Markers,
    topic_arn: &str,
    queue_url: &str,
    expected: &HashMap<String, Expected>,
    cancel: CancellationToken,
) -> Result<Observed> {
    // Payload → archived ids with that payload, to recognise what arrives.
    let mut by_payload: HashMap<&str, Vec<&String>> = HashMap::new();
    for (id, event) in expected {
        by_payload
            .entry(event.payload.as_str())
            .or_default()
            .push(id);
    }
    let received: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let last_arrival: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let sending_done = CancellationToken::new();
    let started = Instant::now();
    let drain = {
        let sqs = sqs.clone();
        let queue_url = queue_url.to_owned();
        let received = received.clone();
        let last_arrival = last_arrival.clone();
        let sending_done = sending_done.clone();
        let wait = Duration::from_secs(args.wait_secs);
        let want = expected.len();
        let drill_id = markers.replay_id.clone();
        tokio::spawn(async move {
            let mut deadline: Option<Instant> = None;
            loop {
                if sending_done.is_cancelled() && deadline.is_none() {
                    deadline = Some(Instant::now() + wait);
                }
                let count = received.lock().await.len();
                if sending_done.is_cancelled() && count >= want {
                    // Everything may be here: one more empty poll to catch extras.
                    let extra = receive(&sqs, &queue_url, 0, &drill_id).await;
                    let mut bodies = received.lock().await;
                    bodies.extend(extra);
                    return;
                }
                if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                    return;
                }
                let batch = receive(&sqs, &queue_url, 1, &drill_id).await;
                if !batch.is_empty() {
                    *last_arrival.lock().await = Some(Instant::now());
                    received.lock().await.extend(batch);
                }
            }
        })
    };
    let options = SendOptions {
        concurrency: args.concurrency,
        rate: args.rate,
        order: SendOrder::None,
        progress_bar: false,
    };
    let events = selection.events(engine).await?;
    let outcome = send_all(
        events,
        expected.len() as u64,
        &TargetSpec::Topic {
            arn: topic_arn.to_owned(),
        },
        Arc::new(SnsSender {
            client: sns.clone(),
        }),
        markers,
        &options,
        None,
        &HashSet::new(),
        cancel,
    )
    .await?;
    let send_seconds = started.elapsed().as_secs_f64();
    sending_done.cancel();
    let _ = drain.await;
    let restore_seconds = last_arrival
        .lock()
        .await
        .map_or(0.0, |at| at.duration_since(started).as_secs_f64());

    let bodies = received.lock().await.clone();
    let mut intact = Vec::new();
    let mut altered = HashSet::new();
    let mut extra = 0;
    let mut seen = HashSet::new();
    for body in &bodies {
        let envelope: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let payload = envelope["Message"].as_str().unwrap_or_default();
        let attributes = comparable(
            envelope["MessageAttributes"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, value)| {
                    (
                        name.clone(),
                        (
                            value["Type"].as_str().unwrap_or_default().to_owned(),
                            value["Value"].as_str().unwrap_or_default().to_owned(),
                        ),
                    )
                }),
        );
        let candidates = by_payload.get(payload).cloned().unwrap_or_default();
        let matched = candidates
            .iter()
            .find(|id| !seen.contains(**id) && expected[**id].attributes == attributes);
        match matched {
            Some(id) => {
                seen.insert((*id).clone());
                intact.push((*id).clone());
            }
            None => {
                // Same event (by payload event_id) but different bytes: altered.
                let claimed = serde_json::from_str::<serde_json::Value>(payload)
                    .ok()
                    .and_then(|value| value["event_id"].as_str().map(str::to_owned));
                match claimed.filter(|id| expected.contains_key(id)) {
                    Some(id) => {
                        altered.insert(id);
                    }
                    None if candidates.is_empty() => extra += 1,
                    None => {
                        // The payload matches but the attributes differ.
                        if let Some(id) = candidates.first() {
                            altered.insert((*id).clone());
                        }
                    }
                }
            }
        }
    }
    // An event that also arrived intact is not missing, but its altered copy is reported.
    Ok(Observed {
        sent: outcome.sent,
        send_failures: outcome.failed,
        received: bodies.len() as u64,
        intact,
        altered,
        extra,
        send_seconds,
        restore_seconds,
    })
}

/// Whether an envelope body carries this drill's marker.
fn sent_by_drill(body: &str, drill_id: &str) -> bool {
    let Ok(envelope) = serde_json::from_str::<serde_json::Value>(body) else {
        return false;
    };
    let attributes = &envelope["MessageAttributes"];
    if attributes[crate::message::MARKER_ID]["Value"].as_str() == Some(drill_id) {
        return true;
    }
    attributes[crate::message::MARKER_COMBINED]["Value"]
        .as_str()
        .and_then(|combined| serde_json::from_str::<serde_json::Value>(combined).ok())
        .is_some_and(|combined| combined["id"].as_str() == Some(drill_id))
}

/// Receives up to 10 messages; deletes and returns those this drill sent, and makes the
/// others visible again at once (another consumer's messages are not the drill's to take).
async fn receive(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    wait: i32,
    drill_id: &str,
) -> Vec<String> {
    let Ok(answer) = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait)
        .send()
        .await
    else {
        tokio::time::sleep(Duration::from_millis(200)).await;
        return Vec::new();
    };
    let messages = answer.messages.unwrap_or_default();
    let mut bodies = Vec::with_capacity(messages.len());
    for message in messages {
        let body = message.body.clone().unwrap_or_default();
        let ours = sent_by_drill(&body, drill_id);
        if let Some(handle) = message.receipt_handle() {
            if ours {
                let _ = sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await;
            } else {
                let _ = sqs
                    .change_message_visibility()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .send()
                    .await;
            }
        }
        if ours {
            bodies.push(body);
        }
    }
    bodies
}

/// A scratch topic and queue, subscribed (envelope mode), removed after the drill.
struct Scratch {
    topic_arn: String,
    queue_url: String,
}

impl Scratch {
    async fn create(
        sns: &aws_sdk_sns::Client,
        sqs: &aws_sdk_sqs::Client,
        drill_id: &str,
    ) -> Result<Self> {
        let name = format!("islets-drill-{}", drill_id.to_lowercase());
        let failed = |what: &str, error: String| {
            ReplayError::Target(format!(
                "cannot create the drill's scratch {what} {name}: {error} (the replay role needs sns:CreateTopic and sqs:CreateQueue on islets-drill-*; or pass --topic-arn and --queue-url)"
            ))
        };
        let topic_arn = sns
            .create_topic()
            .name(&name)
            .send()
            .await
            .map_err(|error| failed("topic", crate::target::aws_message(&error)))?
            .topic_arn
            .unwrap_or_default();
        let queue_url = sqs
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .map_err(|error| failed("queue", crate::target::aws_message(&error)))?
            .queue_url
            .unwrap_or_default();
        let scratch = Scratch {
            topic_arn,
            queue_url,
        };
        let wired: Result<()> = async {
            let queue_arn = sqs
                .get_queue_attributes()
                .queue_url(&scratch.queue_url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .map_err(|error| failed("queue", crate::target::aws_message(&error)))?
                .attributes
                .and_then(|attributes| attributes.get(&QueueAttributeName::QueueArn).cloned())
                .unwrap_or_default();
            let policy = serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": scratch.topic_arn}}
                }]
            });
            sqs.set_queue_attributes()
                .queue_url(&scratch.queue_url)
                .attributes(QueueAttributeName::Policy, policy.to_string())
                .send()
                .await
                .map_err(|error| failed("queue policy", crate::target::aws_message(&error)))?;
            sns.subscribe()
                .topic_arn(&scratch.topic_arn)
                .protocol("sqs")
                .endpoint(queue_arn)
                .send()
                .await
                .map_err(|error| failed("subscription", crate::target::aws_message(&error)))?;
            Ok(())
        }
        .await;
        if let Err(error) = wired {
            scratch.remove(sns, sqs).await;
            return Err(error);
        }
        Ok(scratch)
    }

    async fn remove(&self, sns: &aws_sdk_sns::Client, sqs: &aws_sdk_sqs::Client) {
        if let Err(error) = sns.delete_topic().topic_arn(&self.topic_arn).send().await {
            tracing::warn!(topic = %self.topic_arn, error = %crate::target::aws_message(&error), "scratch topic not removed");
        }
        if let Err(error) = sqs.delete_queue().queue_url(&self.queue_url).send().await {
            tracing::warn!(queue = %self.queue_url, error = %crate::target::aws_message(&error), "scratch queue not removed");
        }
    }
}

fn markdown(report: &DrillReport) -> String {
    let verdict = if report.passed { "PASS" } else { "FAIL" };
    let mut text = format!("# Recovery drill {} — {verdict}\n\n", report.drill_id);
    text.push_str("| | |\n|---|---|\n");
    for (key, value) in [
        ("Run by", report.operator.clone()),
        ("Started", report.started_at.clone()),
        ("Finished", report.finished_at.clone()),
        ("Archive", report.store.clone()),
        (
            "Selection",
            serde_json::to_string(&report.selection).unwrap_or_default(),
        ),
        (
            "Selected id set",
            format!("sha256:{}", report.id_set_sha256),
        ),
        (
            "Replayed to",
            format!(
                "{} → {}{}",
                report.topic_arn,
                report.queue_url,
                if report.scratch_infrastructure {
                    " (scratch, removed)"
                } else {
                    ""
                }
            ),
        ),
        ("Events selected", report.selected.to_string()),
        ("Sent", report.sent.to_string()),
        ("Send failures", report.send_failures.to_string()),
        ("Received", report.received.to_string()),
        (
            "Arrived intact (payload and attributes byte-identical)",
            report.intact.to_string(),
        ),
        ("Missing", report.missing.len().to_string()),
        ("Altered", report.altered.len().to_string()),
        ("Extra (not in the selection)", report.extra.to_string()),
        ("Time to send", format!("{:.1} s", report.send_seconds)),
        (
            "Time to restore (first send → last arrival)",
            format!("{:.1} s", report.restore_seconds),
        ),
        (
            "Throughput",
            format!("{:.0} events/s", report.events_per_second),
        ),
        ("islets-replay", report.version.clone()),
    ] {
        text.push_str(&format!("| {key} | {} |\n", value.replace('|', "\\|")));
    }
    for (title, ids) in [("Missing", &report.missing), ("Altered", &report.altered)] {
        if ids.is_empty() {
            continue;
        }
        text.push_str(&format!("\n## {title} event ids\n\n"));
        for id in ids.iter().take(IDS_LISTED) {
            text.push_str(&format!("- `{id}`\n"));
        }
        if ids.len() > IDS_LISTED {
            text.push_str(&format!(
                "- … and {} more (see the JSON report)\n",
                ids.len() - IDS_LISTED
            ));
        }
    }
    text
}

#[cfg(test)]
mod drill_tests {
    use super::*;

    #[test]
    fn only_messages_carrying_the_drill_id_are_the_drills() {
        let envelope = |attributes: serde_json::Value| {
            serde_json::json!({"Type": "Notification", "Message": "{}", "MessageAttributes": attributes})
                .to_string()
        };
        let ours = envelope(serde_json::json!({"replay_id": {"Type": "String", "Value": "D1"}}));
        let combined = envelope(serde_json::json!({
            "replay": {"Type": "String", "Value": serde_json::json!({"id": "D1"}).to_string()}
        }));
        let other_drill =
            envelope(serde_json::json!({"replay_id": {"Type": "String", "Value": "D2"}}));
        let consumer =
            envelope(serde_json::json!({"event_type": {"Type": "String", "Value": "sold"}}));
        assert!(sent_by_drill(&ours, "D1"));
        assert!(sent_by_drill(&combined, "D1"));
        assert!(!sent_by_drill(&other_drill, "D1"));
        assert!(!sent_by_drill(&consumer, "D1"));
        assert!(!sent_by_drill("not json", "D1"));
    }
}
