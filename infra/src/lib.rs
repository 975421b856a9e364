//! `islets-infra`: provisioning of the audit pipeline on AWS (see `docs/DEPLOY.md`), the
//! same resources as the CloudFormation template in `infra/cloudformation/`:
//!
//! * the archive bucket (module `bucket`): default encryption, public access blocked, ACLs
//!   disabled, lifecycle (expiry after the retention, Athena results, incomplete uploads),
//!   optional Object Lock;
//! * the audit queue and its dead-letter queue, and the queue policy admitting only the
//!   aggregate topics (module `queues`);
//! * the audit queue's subscriptions to every `<aggregate>-events` topic of the events
//!   catalog, in envelope mode (module `topics`);
//! * the Glue database and `events` table generated from the Arrow schema (modules
//!   `table`, `glue`), and the Athena workgroup (module `athena`).
//!
//! [`provision`] is idempotent and diff-based: it checks everything that can refuse the run
//! first (flags, catalog, KMS key, topics, the bucket), then for each resource reads its
//! state, reports each change, and applies it unless dry-running.
//!
//! This crate depends on `islets-core` only (the catalog, the schema, the layout), never
//! on the ingester, query or replay crates.

#![warn(missing_docs)]

mod athena;
mod bucket;
mod config;
mod error;
mod glue;
mod kms;
mod plan;
mod queues;
mod table;
mod topics;

#[cfg(test)]
mod template_tests;

use aws_config::SdkConfig;
use islets_core::catalog::{AggregateSpec, Catalog};

pub use config::{ObjectLockMode, ProvisionArgs, ProvisionConfig, ResultsLocation};
pub use error::{Error, Result};
pub use plan::{Change, Report};
pub use table::{Column, columns};

use crate::bucket::Encryption;
use crate::plan::Plan;

/// The AWS clients of one run.
struct Clients {
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
    sns: aws_sdk_sns::Client,
    glue: aws_sdk_glue::Client,
    athena: aws_sdk_athena::Client,
    kms: aws_sdk_kms::Client,
}

impl Clients {
    fn new(sdk: &SdkConfig) -> Self {
        // An S3-compatible endpoint (moto, MinIO, LocalStack) takes path-style requests,
        // as the archive's object store does (islets_core::store).
        let s3 = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(sdk.endpoint_url().is_some())
            .build();
        Clients {
            s3: aws_sdk_s3::Client::from_conf(s3),
            sqs: aws_sdk_sqs::Client::new(sdk),
            sns: aws_sdk_sns::Client::new(sdk),
            glue: aws_sdk_glue::Client::new(sdk),
            athena: aws_sdk_athena::Client::new(sdk),
            kms: aws_sdk_kms::Client::new(sdk),
        }
    }
}

/// Provisions (or, with `dry_run`, plans) the whole pipeline. `observer` sees every change
/// as it is decided, before it is applied. Errors before the first write are
/// [`Error::is_configuration`]: nothing was changed.
pub async fn provision(
    config: &ProvisionConfig,
    sdk: &SdkConfig,
    observer: &mut (dyn FnMut(&Change) + Send),
) -> Result<Report> {
    let Some(region) = sdk.region().map(|region| region.as_ref().to_owned()) else {
        return Err(Error::Config(
            "no AWS region: set AWS_REGION, or a region in the AWS profile".to_owned(),
        ));
    };
    let catalog = Catalog::load_dir(&config.events_dir).map_err(Error::Catalog)?;
    let topic_names: Vec<String> = catalog
        .aggregates()
        .map(AggregateSpec::topic_name)
        .collect();
    let clients = Clients::new(sdk);

    // Everything that can refuse the run, before the first write.
    let encryption = match &config.kms_key_id {
        Some(key) => Encryption::Kms(kms::resolve(&clients.kms, key, &region).await?),
        None => Encryption::S3Managed,
    };
    let existing_topics = topics::list(&clients.sns).await?;
    topics::check_missing(
        &existing_topics,
        &topic_names,
        config.create_topics,
        &region,
    )?;
    let bucket_state = bucket::inspect(&clients.s3, &config.bucket, &region).await?;
    bucket::check(&bucket_state, config)?;
    if config.athena_results.bucket != config.bucket {
        bucket::check_results_bucket(&clients.s3, &config.athena_results.bucket).await?;
    }
    tracing::info!(
        bucket = %config.bucket,
        queue = %config.queue_name,
        topics = topic_names.len(),
        region = %region,
        dry_run = config.dry_run,
        "checked; comparing resources"
    );

    // Each resource in dependency order: read, compare, apply.
    let mut plan = Plan::new(config.dry_run, observer);
    bucket::apply(
        &clients.s3,
        config,
        &region,
        &encryption,
        &bucket_state,
        &mut plan,
    )
    .await?;
    let queue = queues::apply(&clients.sqs, config, &mut plan).await?;
    for name in topics::unencrypted(&clients.sns, &topic_names, &existing_topics).await? {
        plan.warn(format!(
            "topic {name} is not encrypted at rest (the ISLETS RFC requires it): its owner should set KmsMasterKeyId (e.g. {})",
            topics::TOPIC_KMS_KEY
        ));
    }
    let topics = topics::ensure(&clients.sns, &topic_names, &existing_topics, &mut plan).await?;
    queues::apply_policy(&clients.sqs, config, queue.as_ref(), &topics, &mut plan).await?;
    topics::subscribe(
        &clients.sns,
        &config.queue_name,
        queue.as_ref(),
        &topics,
        &mut plan,
    )
    .await?;
    glue::apply(&clients.glue, config, &mut plan).await?;
    athena::apply(&clients.athena, config, &encryption, &mut plan).await?;
    if plan.dry_run() {
        tracing::info!("dry run: nothing was changed");
    }
    Ok(plan.into_report())
}
