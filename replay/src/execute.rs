//! One replay, from a validated configuration to its outcome: open the archive, resolve
//! the target, plan, and (unless a dry run) confirm, record in the ledger, send, record.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use islets_core::store::Archive;
use islets_query::DataFusionEngine;
use tokio_util::sync::CancellationToken;

use crate::config::{ReplayConfig, usage};
use crate::error::{ReplayError, Result};
use crate::history::summary;
use crate::ledger::LedgerEntry;
use crate::message::Markers;
use crate::plan::{Plan, make_plan};
use crate::run::{Checkpoint, CheckpointOptions, send_all};
use crate::target::{FileSender, Sender, SnsSender, SqsSender, TargetSpec};
use crate::{plan, target};

pub(crate) const STORE_TIMEOUT: Duration = Duration::from_secs(20);

/// How a replay ended.
#[derive(Debug)]
pub enum ReplayOutcome {
    /// No target, or `--dry-run`: the plan was printed, nothing sent.
    DryRun,
    /// The replay ran; its ledger entry says how it ended.
    Finished(Box<LedgerEntry>),
}

impl ReplayOutcome {
    /// The exit status: 0 done, 1 failures while sending (or the target refused), 130
    /// interrupted.
    pub fn exit_code(&self) -> u8 {
        match self {
            ReplayOutcome::DryRun => 0,
            ReplayOutcome::Finished(entry) => match entry.status.as_str() {
                "completed" => 0,
                "interrupted"
                    if entry
                        .outcome
                        .as_ref()
                        .is_none_or(|outcome| outcome.refused.is_none()) =>
                {
                    130
                }
                _ => 1,
            },
        }
    }
}

/// Runs the replay `config` describes: open the archive, resolve the target, plan, and
/// (unless a dry run) confirm, record, send, record.
pub async fn replay(config: ReplayConfig, cancel: CancellationToken) -> Result<ReplayOutcome> {
    let ReplayConfig {
        store,
        location,
        selection,
        target,
        plan: loaded_plan,
        plan_out,
        dry_run,
        reason,
        operator,
        yes,
        send: options,
        checkpoint,
        report,
        catalog_dir,
    } = config;
    let rate = options.rate;
    let needs_aws = location.is_s3()
        || matches!(
            target,
            Some(TargetSpec::Original { .. } | TargetSpec::Topic { .. } | TargetSpec::Queue { .. })
        );
    let aws = if needs_aws {
        Some(islets_core::aws::load_sdk_config().await)
    } else {
        None
    };
    let archive = Archive::open(&location, aws.as_ref())
        .map_err(|error| usage(format!("--store {store}: {error}")))?;
    archive.check_reachable(STORE_TIMEOUT).await.map_err(|error| {
        usage(format!(
            "--store {store}: cannot read it: {error} (check the path or bucket, AWS credentials, AWS_REGION and AWS_ENDPOINT_URL)"
        ))
    })?;
    let engine = DataFusionEngine::new(archive.clone()).map_err(ReplayError::Query)?;

    // Resolve names, and check that every destination exists, before anything is sent.
    let sns = aws.as_ref().map(aws_sdk_sns::Client::new);
    let sqs = aws.as_ref().map(aws_sdk_sqs::Client::new);
    let target = match (target, &sns, &sqs) {
        (Some(TargetSpec::Original { .. }), Some(sns), _) => {
            let events_dir = &catalog_dir;
            let catalog = islets_core::catalog::Catalog::load_dir(events_dir).map_err(|error| {
                usage(format!(
                    "--to-original sends to the catalog's topics: cannot read the catalog in {} ({error}); pass --events-dir",
                    events_dir.display()
                ))
            })?;
            Some(TargetSpec::Original {
                topics: target::catalog_topics(sns, &catalog).await?,
            })
        }
        (Some(TargetSpec::Topic { arn }), Some(sns), _) => Some(TargetSpec::Topic {
            arn: target::resolve_topic(sns, &arn).await?,
        }),
        (Some(TargetSpec::Queue { url, envelope }), _, Some(sqs)) => Some(TargetSpec::Queue {
            url: target::resolve_queue(sqs, &url).await?,
            envelope,
        }),
        (Some(TargetSpec::File { path }), _, _) => {
            let parent = path
                .parent()
                .filter(|parent| !parent.as_os_str().is_empty());
            if parent.is_some_and(|parent| !parent.is_dir()) {
                return Err(ReplayError::Target(format!(
                    "--to-file {}: its directory does not exist",
                    path.display()
                )));
            }
            Some(TargetSpec::File { path })
        }
        (other, _, _) => other,
    };

    let plan = make_plan(&engine, &store, &selection, target.as_ref(), rate).await?;
    if let Some(loaded) = &loaded_plan
        && loaded.id_set_sha256 != plan.id_set_sha256
    {
        return Err(ReplayError::PlanMismatch(format!(
            "the archive no longer selects what the plan did: {} events in the plan (sha256:{}), {} now (sha256:{}); nothing was sent — make a new plan",
            loaded.events, loaded.id_set_sha256, plan.events, plan.id_set_sha256
        )));
    }
    if let (Some(planned), Some(resolved)) = (
        loaded_plan.as_ref().and_then(|plan| plan.target.as_ref()),
        target.as_ref(),
    ) && planned != resolved
    {
        return Err(usage(format!(
            "the plan targets {planned}, this run {resolved}; drop the target flag or make a new plan"
        )));
    }
    if let (Some(TargetSpec::Original { .. }), Some(sns)) = (&target, &sns) {
        let missing: Vec<&str> = plan
            .unsendable
            .keys()
            .filter_map(|reason| reason.strip_prefix(plan::NO_TOPIC))
            .collect();
        if !missing.is_empty() {
            return Err(ReplayError::Target(format!(
                "--to-original: the selection needs topics that do not exist: {}; create them (islets-audit provision) or check AWS_REGION and credentials",
                missing.join(", ")
            )));
        }
        target::check_topics(sns, plan.by_target.keys()).await?;
    }
    print!("{}", plan.describe());
    if let Some(path) = &plan_out {
        plan.save(path)?;
        println!("plan written to {}", path.display());
    }
    let Some(target) = target.filter(|_| !dry_run) else {
        println!("dry run: nothing sent");
        return Ok(ReplayOutcome::DryRun);
    };
    let Some(reason) = reason else {
        return Err(usage(
            "--reason: say why this replay runs (recorded in the ledger and in each message)",
        ));
    };
    if target.is_broadcast() && !yes {
        confirm(&plan, &target)?;
    }

    let resumed = checkpoint.as_ref().is_some_and(|options| options.resume);
    let (checkpoint, replay_id, done) = match &checkpoint {
        Some(CheckpointOptions { path, resume: true }) => {
            let (checkpoint, replay_id, done) = Checkpoint::resume(path, &plan.binding())?;
            (Some(checkpoint), replay_id, done)
        }
        Some(CheckpointOptions { path, .. }) => {
            let replay_id = ulid::Ulid::new().to_string();
            let checkpoint = Checkpoint::create(path, &replay_id, &plan.binding())?;
            (Some(checkpoint), replay_id, HashSet::new())
        }
        None => (None, ulid::Ulid::new().to_string(), HashSet::new()),
    };
    let mut entry = LedgerEntry {
        replay_id: replay_id.clone(),
        run_id: ulid::Ulid::new().to_string(),
        status: "running".to_owned(),
        operator,
        reason: reason.clone(),
        started_at: islets_query::rfc3339_ms(chrono::Utc::now().timestamp_millis()),
        finished_at: None,
        store: store.clone(),
        selection: selection.clone(),
        target: target.clone(),
        id_set_sha256: plan.id_set_sha256.clone(),
        events_selected: plan.events,
        outcome: None,
        resumed,
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    entry.save(&archive).await?;

    let sender: Arc<dyn Sender> = match (&target, &sns, &sqs) {
        (TargetSpec::Original { .. } | TargetSpec::Topic { .. }, Some(sns), _) => {
            Arc::new(SnsSender {
                client: sns.clone(),
            })
        }
        (TargetSpec::Queue { envelope, .. }, _, Some(sqs)) => Arc::new(SqsSender {
            client: sqs.clone(),
            envelope: *envelope,
        }),
        (TargetSpec::File { path }, _, _) => Arc::new(FileSender::open(path).await?),
        _ => {
            return Err(ReplayError::Target(
                "no AWS configuration for the target".to_owned(),
            ));
        }
    };
    let markers = Markers {
        replay_id: replay_id.clone(),
        reason,
    };
    tracing::info!(%replay_id, events = plan.events, %target, "replay started");
    let events = selection.events(&engine).await?;
    let result = send_all(
        events,
        plan.events,
        &target,
        sender,
        &markers,
        &options,
        checkpoint,
        &done,
        cancel.clone(),
    )
    .await;
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(error) => {
            entry.status = "failed".to_owned();
            entry.finished_at = Some(islets_query::rfc3339_ms(
                chrono::Utc::now().timestamp_millis(),
            ));
            let _ = entry.save(&archive).await;
            return Err(error);
        }
    };
    entry.status = if outcome.refused.is_some() {
        "failed"
    } else if outcome.interrupted {
        "interrupted"
    } else if outcome.failed > 0 {
        "completed_with_failures"
    } else {
        "completed"
    }
    .to_owned();
    entry.finished_at = Some(islets_query::rfc3339_ms(
        chrono::Utc::now().timestamp_millis(),
    ));
    entry.outcome = Some(outcome.clone());
    entry.save(&archive).await?;
    println!("{}", summary(&entry));
    if let Some(path) = &report {
        let text = serde_json::to_string_pretty(&entry)
            .map_err(|error| usage(format!("cannot encode the report: {error}")))?;
        std::fs::write(path, text + "\n")
            .map_err(ReplayError::io(format!("--report {}", path.display())))?;
    }
    Ok(ReplayOutcome::Finished(Box::new(entry)))
}

/// Asks on the terminal before publishing to topics; refuses without a terminal.
fn confirm(plan: &Plan, target: &TargetSpec) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(usage(format!(
            "{target}: every subscriber receives these {} events; confirm with --yes (stdin is not a terminal)",
            plan.events
        )));
    }
    eprint!(
        "Publish {} events to {target}? Every subscriber receives them. Type yes to go on: ",
        plan.events
    );
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(ReplayError::io("reading the confirmation"))?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(usage("not confirmed: nothing sent"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::config_with_store;
    use crate::run;

    #[test]
    fn the_exit_status_follows_how_the_replay_ended() {
        assert_eq!(ReplayOutcome::DryRun.exit_code(), 0);
        let ended = |status: &str, refused: Option<&str>| {
            let store = tempfile::tempdir().expect("tempdir");
            let mut config = config_with_store(store.path().to_str().expect("utf-8"), &[]);
            let entry = LedgerEntry {
                replay_id: "r".into(),
                run_id: "r".into(),
                status: status.into(),
                operator: "me".into(),
                reason: "test".into(),
                started_at: "2026-12-02T00:00:00.000Z".into(),
                finished_at: None,
                store: config.store.clone(),
                selection: std::mem::take(&mut config.selection),
                target: TargetSpec::File { path: "out".into() },
                id_set_sha256: String::new(),
                events_selected: 0,
                outcome: Some(run::Outcome {
                    refused: refused.map(str::to_owned),
                    ..Default::default()
                }),
                resumed: false,
                version: "0".into(),
            };
            ReplayOutcome::Finished(Box::new(entry)).exit_code()
        };
        assert_eq!(ended("completed", None), 0);
        assert_eq!(ended("completed_with_failures", None), 1);
        assert_eq!(ended("failed", Some("AuthorizationError")), 1);
        assert_eq!(ended("interrupted", None), 130);
        assert_eq!(ended("interrupted", Some("AuthorizationError")), 1);
    }
}
