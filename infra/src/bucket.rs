//! The archive bucket: default encryption, public access blocked, ACLs disabled, lifecycle
//! (archive expiry, Athena results expiry, abort of incomplete uploads), optional Object Lock.

use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint,
    CreateBucketConfiguration, DefaultRetention, ExpirationStatus, LifecycleExpiration,
    LifecycleRule, LifecycleRuleFilter, NoncurrentVersionExpiration, ObjectLockConfiguration,
    ObjectLockEnabled, ObjectLockRetentionMode, ObjectLockRule, ObjectOwnership, OwnershipControls,
    OwnershipControlsRule, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
};

use crate::config::{ObjectLockMode, ProvisionConfig};
use crate::error::{Error, Result, aws, preflight};
use crate::kms::KmsKey;
use crate::plan::Plan;

/// Lifecycle rule expiring the archive after the retention.
pub(crate) const ARCHIVE_RULE: &str = "expire-archive";
/// Lifecycle rule expiring Athena results (when they are in the archive bucket).
pub(crate) const RESULTS_RULE: &str = "expire-athena-results";
/// Lifecycle rule removing expired delete markers (versioned, i.e. Object Lock, buckets).
pub(crate) const DELETE_MARKERS_RULE: &str = "expire-delete-markers";
/// Every rule this command owns; other rules of the bucket are kept as they are.
const OWN_RULES: [&str; 3] = [ARCHIVE_RULE, RESULTS_RULE, DELETE_MARKERS_RULE];
const RESULTS_RETENTION_DAYS: i32 = 30;
const ABORT_MULTIPART_DAYS: i32 = 1;
const NONCURRENT_DAYS: i32 = 1;
/// S3's region without a location constraint.
const DEFAULT_REGION: &str = "us-east-1";

/// Default encryption of the archive (and of the Athena results).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Encryption {
    /// SSE-S3 (AES256).
    S3Managed,
    /// SSE-KMS with this key, S3 Bucket Keys on.
    Kms(KmsKey),
}

impl Encryption {
    fn describe(&self) -> String {
        match self {
            Encryption::S3Managed => "SSE-S3".to_owned(),
            Encryption::Kms(key) => format!("SSE-KMS with {} (S3 Bucket Key on)", key.arn),
        }
    }
}

/// One lifecycle rule, in the terms this command compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuleSpec {
    pub(crate) id: String,
    pub(crate) prefix: String,
    pub(crate) enabled: bool,
    pub(crate) expiration_days: Option<i32>,
    pub(crate) expires_on_date: bool,
    pub(crate) expired_delete_marker: bool,
    pub(crate) noncurrent_days: Option<i32>,
    pub(crate) abort_days: Option<i32>,
    /// Tag or size filters, transitions: anything this command never sets.
    pub(crate) narrowed: bool,
}

impl RuleSpec {
    fn new(id: &str, prefix: String) -> Self {
        RuleSpec {
            id: id.to_owned(),
            prefix,
            enabled: true,
            expiration_days: None,
            expires_on_date: false,
            expired_delete_marker: false,
            noncurrent_days: None,
            abort_days: None,
            narrowed: false,
        }
    }

    fn from_sdk(rule: &LifecycleRule) -> Self {
        let filter = rule.filter();
        let and = filter.and_then(LifecycleRuleFilter::and);
        #[allow(
            deprecated,
            reason = "rules written with the legacy Prefix element (CloudFormation's LifecycleConfiguration Prefix, older tools) still read back that way"
        )]
        let legacy_prefix = rule.prefix();
        let prefix = filter
            .and_then(LifecycleRuleFilter::prefix)
            .or_else(|| and.and_then(|and| and.prefix()))
            .or(legacy_prefix)
            .unwrap_or_default();
        let narrowed = filter.is_some_and(|filter| {
            filter.tag().is_some()
                || filter.object_size_greater_than().is_some()
                || filter.object_size_less_than().is_some()
        }) || and.is_some_and(|and| {
            !and.tags().is_empty()
                || and.object_size_greater_than().is_some()
                || and.object_size_less_than().is_some()
        }) || !rule.transitions().is_empty()
            || !rule.noncurrent_version_transitions().is_empty();
        let expiration = rule.expiration();
        RuleSpec {
            id: rule.id().unwrap_or_default().to_owned(),
            prefix: prefix.to_owned(),
            enabled: rule.status() == &ExpirationStatus::Enabled,
            expiration_days: expiration.and_then(LifecycleExpiration::days),
            expires_on_date: expiration.is_some_and(|expiration| expiration.date().is_some()),
            expired_delete_marker: expiration
                .and_then(LifecycleExpiration::expired_object_delete_marker)
                .unwrap_or(false),
            noncurrent_days: rule
                .noncurrent_version_expiration()
                .and_then(NoncurrentVersionExpiration::noncurrent_days),
            abort_days: rule
                .abort_incomplete_multipart_upload()
                .and_then(AbortIncompleteMultipartUpload::days_after_initiation),
            narrowed,
        }
    }

    fn to_sdk(&self) -> Result<LifecycleRule> {
        let mut builder = LifecycleRule::builder()
            .id(&self.id)
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix(&self.prefix).build());
        if let Some(days) = self.expiration_days {
            builder = builder.expiration(LifecycleExpiration::builder().days(days).build());
        } else if self.expired_delete_marker {
            builder = builder.expiration(
                LifecycleExpiration::builder()
                    .expired_object_delete_marker(true)
                    .build(),
            );
        }
        if let Some(days) = self.noncurrent_days {
            builder = builder.noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(days)
                    .build(),
            );
        }
        if let Some(days) = self.abort_days {
            builder = builder.abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(days)
                    .build(),
            );
        }
        builder
            .build()
            .map_err(|error| aws(format!("building lifecycle rule {}", self.id), &error))
    }

    /// Whether the rule may expire objects under `key_prefix` sooner than `days`.
    fn expires_sooner_than(&self, key_prefix: &str, days: u32) -> bool {
        let overlaps = key_prefix.starts_with(&self.prefix) || self.prefix.starts_with(key_prefix);
        let sooner = self.expires_on_date
            || self
                .expiration_days
                .is_some_and(|expiration| i64::from(expiration) < i64::from(days));
        self.enabled && overlaps && sooner
    }
}

/// The lifecycle rules this command sets, in the template's order. `versioned`: the
/// bucket keeps versions (Object Lock), so expiry leaves noncurrent versions and delete
/// markers that must be removed too.
pub(crate) fn lifecycle_rules(config: &ProvisionConfig, versioned: bool) -> Vec<RuleSpec> {
    let retention = i32::try_from(config.retention_days).unwrap_or(i32::MAX);
    let mut archive = RuleSpec::new(ARCHIVE_RULE, config.archive_key_prefix());
    archive.expiration_days = Some(retention);
    archive.abort_days = Some(ABORT_MULTIPART_DAYS);
    if versioned {
        archive.noncurrent_days = Some(NONCURRENT_DAYS);
    }
    let mut rules = vec![archive];
    if config.athena_results.bucket == config.bucket {
        let mut results = RuleSpec::new(RESULTS_RULE, config.athena_results.key_prefix.clone());
        results.expiration_days = Some(RESULTS_RETENTION_DAYS);
        results.abort_days = Some(ABORT_MULTIPART_DAYS);
        if versioned {
            results.noncurrent_days = Some(NONCURRENT_DAYS);
        }
        rules.push(results);
    }
    if versioned {
        let mut markers = RuleSpec::new(DELETE_MARKERS_RULE, String::new());
        markers.expired_delete_marker = true;
        rules.push(markers);
    }
    rules
}

fn describe_rules(rules: &[RuleSpec]) -> String {
    let mut parts = Vec::new();
    for rule in rules {
        let prefix = if rule.prefix.is_empty() {
            "the whole bucket"
        } else {
            rule.prefix.as_str()
        };
        if !rule.enabled {
            parts.push(format!("{} disabled", rule.id));
            continue;
        }
        if let Some(days) = rule.expiration_days {
            parts.push(format!("expire {prefix} after {days} days"));
        }
        if rule.expires_on_date {
            parts.push(format!("expire {prefix} on a date"));
        }
        if let Some(days) = rule.noncurrent_days {
            parts.push(format!(
                "delete noncurrent versions under {prefix} after {}",
                plural_days(days)
            ));
        }
        if rule.expired_delete_marker {
            parts.push(format!("remove expired delete markers in {prefix}"));
        }
        if rule.narrowed {
            parts.push(format!("{} has other conditions", rule.id));
        }
    }
    let mut abort: Vec<i32> = rules.iter().filter_map(|rule| rule.abort_days).collect();
    abort.sort_unstable();
    abort.dedup();
    for days in abort {
        parts.push(format!(
            "abort incomplete multipart uploads after {}",
            plural_days(days)
        ));
    }
    parts.join(", ")
}

fn plural_days(days: i32) -> String {
    if days == 1 {
        "1 day".to_owned()
    } else {
        format!("{days} days")
    }
}

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

/// Sids of the bucket-policy statements this command owns (others are kept as they are).
const TLS_ONLY_SID: &str = "IsletsDenyInsecureTransport";
const ENCRYPTION_SID: &str = "IsletsDenyOtherEncryption";

/// The statements this command puts in the bucket policy: no request without TLS, and no
/// upload that asks for another encryption than the bucket's (uploads without the header
/// get the bucket's default encryption, so none is ever stored unencrypted).
pub(crate) fn policy_statements(bucket: &str, encryption: &Encryption) -> Vec<serde_json::Value> {
    let algorithm = match encryption {
        Encryption::S3Managed => "AES256",
        Encryption::Kms(_) => "aws:kms",
    };
    vec![
        serde_json::json!({
            "Sid": TLS_ONLY_SID,
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}
        }),
        serde_json::json!({
            "Sid": ENCRYPTION_SID,
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": format!("arn:aws:s3:::{bucket}/*"),
            "Condition": {"StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption": algorithm}}
        }),
    ]
}

/// The policy with this command's statements in place and every other statement kept;
/// `None` when `current` already holds them unchanged.
pub(crate) fn merged_policy(
    current: Option<&serde_json::Value>,
    ours: &[serde_json::Value],
) -> Option<serde_json::Value> {
    let own = |statement: &serde_json::Value| {
        matches!(
            statement["Sid"].as_str(),
            Some(TLS_ONLY_SID | ENCRYPTION_SID)
        )
    };
    let statements: Vec<serde_json::Value> = current
        .and_then(|policy| policy["Statement"].as_array().cloned())
        .unwrap_or_default();
    let present: Vec<&serde_json::Value> = statements.iter().filter(|s| own(s)).collect();
    if present.len() == ours.len() && ours.iter().all(|wanted| present.contains(&wanted)) {
        return None;
    }
    let mut merged: Vec<serde_json::Value> = statements.into_iter().filter(|s| !own(s)).collect();
    merged.extend(ours.iter().cloned());
    Some(serde_json::json!({"Version": "2012-10-17", "Statement": merged}))
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

fn encryption_matches(current: Option<&ServerSideEncryptionRule>, desired: &Encryption) -> bool {
    let Some(rule) = current else {
        return false;
    };
    let Some(default) = rule.apply_server_side_encryption_by_default() else {
        return false;
    };
    match desired {
        // S3 ignores the Bucket Key with SSE-S3.
        Encryption::S3Managed => default.sse_algorithm() == &ServerSideEncryption::Aes256,
        Encryption::Kms(key) => {
            default.sse_algorithm() == &ServerSideEncryption::AwsKms
                && default
                    .kms_master_key_id()
                    .is_some_and(|current| key.is(current))
                && rule.bucket_key_enabled() == Some(true)
        }
    }
}

fn encryption_rule(desired: &Encryption) -> Result<ServerSideEncryptionRule> {
    let by_default = match desired {
        Encryption::S3Managed => ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::Aes256)
            .build(),
        Encryption::Kms(key) => ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::AwsKms)
            .kms_master_key_id(&key.arn)
            .build(),
    }
    .map_err(|error| aws("building the bucket encryption", &error))?;
    Ok(ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(by_default)
        .bucket_key_enabled(matches!(desired, Encryption::Kms(_)))
        .build())
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
    use super::*;

    fn config() -> ProvisionConfig {
        crate::config::sample_config()
    }

    #[test]
    fn lifecycle_rules_read_back_equal_to_what_is_set() {
        for versioned in [false, true] {
            let desired = lifecycle_rules(&config(), versioned);
            let round_trip: Vec<RuleSpec> = desired
                .iter()
                .map(|rule| RuleSpec::from_sdk(&rule.to_sdk().expect("rule")))
                .collect();
            assert_eq!(round_trip, desired);
        }
        let plain = lifecycle_rules(&config(), false);
        assert_eq!(
            describe_rules(&plain),
            "expire islets/ after 400 days, expire athena-results/ after 30 days, abort incomplete multipart uploads after 1 day"
        );
        let versioned = lifecycle_rules(&config(), true);
        assert_eq!(versioned.len(), 3);
        assert_eq!(versioned[0].noncurrent_days, Some(1));
        assert!(versioned[2].expired_delete_marker);
    }

    #[test]
    fn results_in_another_bucket_get_no_rule_here() {
        let mut config = config();
        config.athena_results.bucket = "query-results".into();
        let rules = lifecycle_rules(&config, false);
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].id, ARCHIVE_RULE);
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

    #[test]
    fn encryption_compares_key_ids_and_arns() {
        let key = KmsKey {
            arn: "arn:aws:kms:eu-west-1:123456789012:key/k-1".into(),
            key_id: "k-1".into(),
        };
        let desired = Encryption::Kms(key.clone());
        let rule = encryption_rule(&desired).expect("rule");
        assert!(encryption_matches(Some(&rule), &desired));
        assert!(!encryption_matches(Some(&rule), &Encryption::S3Managed));
        let by_id = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(
                ServerSideEncryptionByDefault::builder()
                    .sse_algorithm(ServerSideEncryption::AwsKms)
                    .kms_master_key_id("k-1")
                    .build()
                    .expect("default"),
            )
            .bucket_key_enabled(true)
            .build();
        assert!(encryption_matches(Some(&by_id), &desired));
        let sse_s3 = encryption_rule(&Encryption::S3Managed).expect("rule");
        assert!(encryption_matches(Some(&sse_s3), &Encryption::S3Managed));
        assert!(!encryption_matches(None, &Encryption::S3Managed));
    }

    #[test]
    fn the_bucket_policy_denies_plain_http_and_other_encryption_and_keeps_foreign_statements() {
        let ours = policy_statements("audit", &Encryption::S3Managed);
        let fresh = merged_policy(None, &ours).expect("a policy to set");
        assert_eq!(fresh["Statement"].as_array().map(Vec::len), Some(2));
        let tls = &fresh["Statement"][0];
        assert_eq!(tls["Effect"], "Deny");
        assert_eq!(tls["Condition"]["Bool"]["aws:SecureTransport"], "false");
        assert_eq!(
            fresh["Statement"][1]["Condition"]["StringNotEqualsIfExists"]["s3:x-amz-server-side-encryption"],
            "AES256"
        );
        assert!(merged_policy(Some(&fresh), &ours).is_none(), "idempotent");
        let foreign = serde_json::json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "TeamRead", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"},
             "Action": "s3:GetObject", "Resource": "arn:aws:s3:::audit/*"},
            {"Sid": TLS_ONLY_SID, "Effect": "Deny", "Principal": "*", "Action": "s3:*",
             "Resource": "arn:aws:s3:::audit/*"}
        ]});
        let merged = merged_policy(Some(&foreign), &ours).expect("ours changed");
        let sids: Vec<&str> = merged["Statement"]
            .as_array()
            .expect("statements")
            .iter()
            .filter_map(|s| s["Sid"].as_str())
            .collect();
        assert_eq!(sids, ["TeamRead", TLS_ONLY_SID, ENCRYPTION_SID]);
        let kms = policy_statements(
            "audit",
            &Encryption::Kms(KmsKey {
                arn: "arn:aws:kms:eu-west-1:1:key/k".into(),
                key_id: "k".into(),
            }),
        );
        assert_eq!(
            kms[1]["Condition"]["StringNotEqualsIfExists"]["s3:x-amz-server-side-encryption"],
            "aws:kms"
        );
    }
}
