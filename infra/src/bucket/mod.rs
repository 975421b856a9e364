//! The archive bucket: default encryption, public access blocked, ACLs disabled, lifecycle
//! (archive expiry, Athena results expiry, abort of incomplete uploads), optional Object Lock.
//!
//! [`lifecycle`] holds the rules this command owns, [`policy`] the encryption and the
//! bucket policy; this module reads the bucket's state, refuses what cannot be fixed
//! safely, and applies the rest.

mod lifecycle;
mod policy;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketLocationConstraint, CreateBucketConfiguration,
    DefaultRetention, LifecycleRule, ObjectLockConfiguration, ObjectLockEnabled,
    ObjectLockRetentionMode, ObjectLockRule, ObjectOwnership, OwnershipControls,
    OwnershipControlsRule, PublicAccessBlockConfiguration, ServerSideEncryptionConfiguration,
    ServerSideEncryptionRule,
};

use crate::config::{ObjectLockMode, ProvisionConfig};
use crate::error::{Error, Result, aws, preflight};
use crate::plan::Plan;

pub(crate) use lifecycle::lifecycle_rules;
use lifecycle::{OWN_RULES, RuleSpec, describe_rules};
pub(crate) use policy::{Encryption, merged_policy, policy_statements};
use policy::{encryption_matches, encryption_rule};

/// S3's region without a location constraint.
const DEFAULT_REGION: &str = "us-east-1";

/// What the bucket looks like now (all empty when it does not exist).
#[derive(Debug, Clone, Default)]
pub(crate) struct BucketState {
    pub(crate) exists: bool,
    encryption: Option<ServerSideEncryptionRule>,
    public_access_blocked: bool,
    ownership: Option<ObjectOwnership>,
    lifecycle: Vec<LifecycleRule>,
    versioning_enabled: bool,
    /// `Some` when Object Lock is enabled: the default retention (mode, days), if any.
    object_lock: Option<Option<(String, i32)>>,
    /// The bucket policy, parsed; `None` when the bucket has none.
    policy: Option<serde_json::Value>,
}

impl BucketState {
    fn own_rules(&self) -> Vec<RuleSpec> {
        self.lifecycle
            .iter()
            .map(RuleSpec::from_sdk)
            .filter(|rule| OWN_RULES.contains(&rule.id.as_str()))
            .collect()
    }

    fn foreign_rules(&self) -> impl Iterator<Item = &LifecycleRule> {
        self.lifecycle
            .iter()
            .filter(|rule| !OWN_RULES.contains(&rule.id().unwrap_or_default()))
    }
}

/// Reads the bucket's current settings (before any change; errors are `Preflight`, or
/// `Config` for a bucket that cannot be ours).
pub(crate) async fn inspect(s3: &Client, bucket: &str, region: &str) -> Result<BucketState> {
    match s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => {}
        Err(error) => {
            let status = error
                .raw_response()
                .map(|response| response.status().as_u16());
            let not_found = error
                .as_service_error()
                .is_some_and(|service| service.is_not_found());
            return match status {
                _ if not_found => Ok(BucketState::default()),
                Some(404) => Ok(BucketState::default()),
                Some(403) => Err(Error::Config(format!(
                    "--bucket {bucket}: the bucket exists but these credentials may not access it (it may belong to another account; bucket names are global): choose another --bucket, or grant s3:ListBucket and the bucket configuration permissions"
                ))),
                Some(301) => Err(Error::Config(format!(
                    "--bucket {bucket}: the bucket exists in another region than {region}: set AWS_REGION to the bucket's region"
                ))),
                _ => Err(preflight(format!("cannot read bucket {bucket}"), &error)),
            };
        }
    }
    let context = |what: &str| format!("cannot read the {what} of bucket {bucket}");
    let encryption = match s3.get_bucket_encryption().bucket(bucket).send().await {
        Ok(output) => output
            .server_side_encryption_configuration()
            .and_then(|configuration| configuration.rules().first().cloned()),
        Err(error) if error.code() == Some("ServerSideEncryptionConfigurationNotFoundError") => {
            None
        }
        Err(error) => return Err(preflight(context("encryption"), &error)),
    };
    let public_access_blocked = match s3.get_public_access_block().bucket(bucket).send().await {
        Ok(output) => output
            .public_access_block_configuration()
            .is_some_and(|block| {
                block.block_public_acls() == Some(true)
                    && block.ignore_public_acls() == Some(true)
                    && block.block_public_policy() == Some(true)
                    && block.restrict_public_buckets() == Some(true)
            }),
        Err(error) if error.code() == Some("NoSuchPublicAccessBlockConfiguration") => false,
        Err(error) => return Err(preflight(context("public access block"), &error)),
    };
    let ownership = match s3
        .get_bucket_ownership_controls()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(output) => output
            .ownership_controls()
            .and_then(|controls| controls.rules().first())
            .map(|rule| rule.object_ownership().clone()),
        Err(error) if error.code() == Some("OwnershipControlsNotFoundError") => None,
        Err(error) => return Err(preflight(context("ownership controls"), &error)),
    };
    let lifecycle = match s3
        .get_bucket_lifecycle_configuration()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(output) => output.rules().to_vec(),
        Err(error) if error.code() == Some("NoSuchLifecycleConfiguration") => Vec::new(),
        Err(error) => return Err(preflight(context("lifecycle configuration"), &error)),
    };
    let versioning_enabled = match s3.get_bucket_versioning().bucket(bucket).send().await {
        Ok(output) => output
            .status()
            .is_some_and(|status| status.as_str() == "Enabled"),
        Err(error) => match moto_versioning_answer(&error) {
            Some(enabled) => enabled,
            None => return Err(preflight(context("versioning"), &error)),
        },
    };
    let object_lock = match s3
        .get_object_lock_configuration()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(output) => output
            .object_lock_configuration()
            .filter(|configuration| {
                configuration.object_lock_enabled() == Some(&ObjectLockEnabled::Enabled)
            })
            .map(|configuration| {
                configuration
                    .rule()
                    .and_then(ObjectLockRule::default_retention)
                    .and_then(|retention| {
                        let mode = retention.mode()?.as_str().to_owned();
                        // A retention in years reads back with days unset (and moto adds
                        // "Years": 0 to one in days).
                        let days = match (retention.days(), retention.years()) {
                            (Some(days), _) if days > 0 => days,
                            (_, Some(years)) if years > 0 => years.saturating_mul(365),
                            _ => 0,
                        };
                        Some((mode, days))
                    })
            }),
        Err(error) if error.code() == Some("ObjectLockConfigurationNotFoundError") => None,
        Err(error) => return Err(preflight(context("Object Lock configuration"), &error)),
    };
    let policy = match s3.get_bucket_policy().bucket(bucket).send().await {
        Ok(output) => output
            .policy()
            .and_then(|text| serde_json::from_str(text).ok()),
        Err(error) if error.code() == Some("NoSuchBucketPolicy") => None,
        Err(error) => return Err(preflight(context("policy"), &error)),
    };
    Ok(BucketState {
        exists: true,
        encryption,
        public_access_blocked,
        ownership,
        lifecycle,
        versioning_enabled,
        object_lock,
        policy,
    })
}

/// Whether versioning is enabled, from an answer the SDK could not decode: moto 5.2 wraps
/// GetBucketVersioning's answer in `<GetBucketVersioningResponse>` where S3 answers
/// `<VersioningConfiguration>`; the `<Status>` inside means the same. `None` for any other
/// failure.
fn moto_versioning_answer<E>(
    error: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Option<bool> {
    let response = error.raw_response()?;
    if response.status().as_u16() != 200 {
        return None;
    }
    let body = String::from_utf8_lossy(response.body().bytes()?);
    body.contains("<GetBucketVersioningResponse")
        .then(|| body.contains("<Status>Enabled</Status>"))
}

/// Refuses what provisioning cannot fix without losing the archive's guarantees (before
/// any change).
pub(crate) fn check(state: &BucketState, config: &ProvisionConfig) -> Result<()> {
    if state.exists && config.object_lock.is_some() && state.object_lock.is_none() {
        return Err(Error::Config(format!(
            "--object-lock: bucket {} exists without Object Lock, which provision enables only when it creates the bucket: enable Object Lock on it in S3 yourself (it needs versioning), or pass a new --bucket",
            config.bucket
        )));
    }
    let archive = config.archive_key_prefix();
    for rule in state.foreign_rules().map(RuleSpec::from_sdk) {
        if rule.expires_sooner_than(&archive, config.retention_days) {
            let when = rule
                .expiration_days
                .map(|days| format!("after {days} days"))
                .unwrap_or_else(|| "on a date".to_owned());
            return Err(Error::Config(format!(
                "bucket {} has lifecycle rule '{}' expiring objects under '{}' {when}, sooner than --retention-days {}: remove or narrow that rule, then run provision again",
                config.bucket, rule.id, rule.prefix, config.retention_days
            )));
        }
    }
    Ok(())
}

/// `--athena-output` in another bucket: that bucket must exist (before any change).
pub(crate) async fn check_results_bucket(s3: &Client, bucket: &str) -> Result<()> {
    match s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(error) => {
            let status = error
                .raw_response()
                .map(|response| response.status().as_u16());
            match status {
                Some(404) => Err(Error::Config(format!(
                    "--athena-output: bucket {bucket} does not exist: create it, or leave --athena-output out to keep results in the archive bucket"
                ))),
                Some(403) => Err(Error::Config(format!(
                    "--athena-output: these credentials may not access bucket {bucket}"
                ))),
                _ => Err(preflight(format!("cannot read bucket {bucket}"), &error)),
            }
        }
    }
}

/// Brings the bucket to its desired state.
pub(crate) async fn apply(
    s3: &Client,
    config: &ProvisionConfig,
    region: &str,
    encryption: &Encryption,
    state: &BucketState,
    plan: &mut Plan<'_>,
) -> Result<()> {
    let bucket = config.bucket.as_str();
    let retention_days = i32::try_from(config.retention_days).unwrap_or(i32::MAX);
    if !state.exists {
        let lock = config
            .object_lock
            .map(|mode| format!(" with Object Lock ({} mode)", mode.as_s3()))
            .unwrap_or_default();
        if plan.change(format!("create bucket {bucket} in {region}{lock}")) {
            let mut create = s3
                .create_bucket()
                .bucket(bucket)
                .object_ownership(ObjectOwnership::BucketOwnerEnforced);
            if region != DEFAULT_REGION {
                create = create.create_bucket_configuration(
                    CreateBucketConfiguration::builder()
                        .location_constraint(BucketLocationConstraint::from(region))
                        .build(),
                );
            }
            if config.object_lock.is_some() {
                create = create.object_lock_enabled_for_bucket(true);
            }
            create
                .send()
                .await
                .map_err(|error| aws(format!("CreateBucket {bucket}"), &error))?;
        }
    }

    if let Some(mode) = config.object_lock {
        let current = state.object_lock.clone().flatten();
        let desired = (mode.as_s3().to_owned(), retention_days);
        if current.as_ref() != Some(&desired)
            && plan.change(format!(
                "set Object Lock default retention of bucket {bucket}: {} mode, {retention_days} days",
                mode.as_s3()
            ))
        {
            put_object_lock(s3, bucket, mode, retention_days).await?;
        }
    }

    if !encryption_matches(state.encryption.as_ref(), encryption)
        && plan.change(format!(
            "set default encryption of bucket {bucket}: {}",
            encryption.describe()
        ))
    {
        let configuration = ServerSideEncryptionConfiguration::builder()
            .rules(encryption_rule(encryption)?)
            .build()
            .map_err(|error| aws("building the bucket encryption", &error))?;
        s3.put_bucket_encryption()
            .bucket(bucket)
            .server_side_encryption_configuration(configuration)
            .send()
            .await
            .map_err(|error| aws(format!("PutBucketEncryption {bucket}"), &error))?;
    }

    if !state.public_access_blocked
        && plan.change(format!(
            "block public access to bucket {bucket} (ACLs and policies)"
        ))
    {
        s3.put_public_access_block()
            .bucket(bucket)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .ignore_public_acls(true)
                    .block_public_policy(true)
                    .restrict_public_buckets(true)
                    .build(),
            )
            .send()
            .await
            .map_err(|error| aws(format!("PutPublicAccessBlock {bucket}"), &error))?;
    }

    if state.ownership != Some(ObjectOwnership::BucketOwnerEnforced)
        && plan.change(format!(
            "set object ownership of bucket {bucket}: BucketOwnerEnforced (ACLs disabled)"
        ))
    {
        let rule = OwnershipControlsRule::builder()
            .object_ownership(ObjectOwnership::BucketOwnerEnforced)
            .build()
            .map_err(|error| aws("building the ownership controls", &error))?;
        let controls = OwnershipControls::builder()
            .rules(rule)
            .build()
            .map_err(|error| aws("building the ownership controls", &error))?;
        s3.put_bucket_ownership_controls()
            .bucket(bucket)
            .ownership_controls(controls)
            .send()
            .await
            .map_err(|error| aws(format!("PutBucketOwnershipControls {bucket}"), &error))?;
    }

    if let Some(policy) = merged_policy(
        state.policy.as_ref(),
        &policy_statements(bucket, encryption),
    ) && plan.change(format!(
        "set the policy of bucket {bucket}: deny requests without TLS and uploads asking for another encryption than {}",
        encryption.describe()
    )) {
        s3.put_bucket_policy()
            .bucket(bucket)
            .policy(policy.to_string())
            .send()
            .await
            .map_err(|error| aws(format!("PutBucketPolicy {bucket}"), &error))?;
    }

    let versioned = state.versioning_enabled || (!state.exists && config.object_lock.is_some());
    let desired = lifecycle_rules(config, versioned);
    let current = state.own_rules();
    let mut current_sorted = current.clone();
    current_sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let mut desired_sorted = desired.clone();
    desired_sorted.sort_by(|a, b| a.id.cmp(&b.id));
    if current_sorted != desired_sorted {
        let was = if current.is_empty() {
            String::new()
        } else {
            format!(" (was: {})", describe_rules(&current))
        };
        if plan.change(format!(
            "set lifecycle of bucket {bucket}: {}{was}",
            describe_rules(&desired)
        )) {
            let mut rules: Vec<LifecycleRule> = state.foreign_rules().cloned().collect();
            for rule in &desired {
                rules.push(rule.to_sdk()?);
            }
            let configuration = BucketLifecycleConfiguration::builder()
                .set_rules(Some(rules))
                .build()
                .map_err(|error| aws("building the lifecycle configuration", &error))?;
            s3.put_bucket_lifecycle_configuration()
                .bucket(bucket)
                .lifecycle_configuration(configuration)
                .send()
                .await
                .map_err(|error| {
                    aws(format!("PutBucketLifecycleConfiguration {bucket}"), &error)
                })?;
        }
    }
    Ok(())
}

async fn put_object_lock(s3: &Client, bucket: &str, mode: ObjectLockMode, days: i32) -> Result<()> {
    let retention = DefaultRetention::builder()
        .mode(ObjectLockRetentionMode::from(mode.as_s3()))
        .days(days)
        .build();
    s3.put_object_lock_configuration()
        .bucket(bucket)
        .object_lock_configuration(
            ObjectLockConfiguration::builder()
                .object_lock_enabled(ObjectLockEnabled::Enabled)
                .rule(
                    ObjectLockRule::builder()
                        .default_retention(retention)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .map_err(|error| aws(format!("PutObjectLockConfiguration {bucket}"), &error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::types::{ExpirationStatus, LifecycleExpiration};

    use super::lifecycle::ARCHIVE_RULE;
    use super::*;

    fn config() -> ProvisionConfig {
        crate::config::sample_config()
    }

    #[allow(
        deprecated,
        reason = "rules with the legacy Prefix element exist in buckets"
    )]
    fn legacy_rule(id: &str, prefix: &str, days: i32) -> LifecycleRule {
        LifecycleRule::builder()
            .id(id)
            .prefix(prefix)
            .status(ExpirationStatus::Enabled)
            .expiration(LifecycleExpiration::builder().days(days).build())
            .build()
            .expect("rule")
    }

    #[test]
    fn a_foreign_rule_expiring_the_archive_early_is_refused() {
        let state = BucketState {
            exists: true,
            lifecycle: vec![legacy_rule("cleanup", "", 90)],
            ..BucketState::default()
        };
        let error = check(&state, &config()).expect_err("refused").to_string();
        assert!(
            error.contains("lifecycle rule 'cleanup' expiring objects under '' after 90 days"),
            "{error}"
        );
        // Elsewhere in the bucket, or later than the retention: kept as they are.
        for rule in [
            legacy_rule("tmp", "tmp/", 1),
            legacy_rule("long", "islets/", 3_650),
        ] {
            let state = BucketState {
                exists: true,
                lifecycle: vec![rule],
                ..BucketState::default()
            };
            check(&state, &config()).expect("accepted");
        }
        // Our own rule, with an old value, is simply updated.
        let state = BucketState {
            exists: true,
            lifecycle: vec![legacy_rule(ARCHIVE_RULE, "islets/", 30)],
            ..BucketState::default()
        };
        check(&state, &config()).expect("accepted");
        assert_eq!(state.own_rules()[0].expiration_days, Some(30));
    }

    #[test]
    fn object_lock_is_only_set_at_creation() {
        let mut config = config();
        config.object_lock = Some(ObjectLockMode::Compliance);
        let existing = BucketState {
            exists: true,
            ..BucketState::default()
        };
        let error = check(&existing, &config).expect_err("refused").to_string();
        assert!(error.contains("--object-lock"), "{error}");
        check(&BucketState::default(), &config).expect("a new bucket may have it");
    }
}
