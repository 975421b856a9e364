//! The lifecycle rules provisioning owns (archive expiry, Athena results expiry, removal
//! of expired delete markers, abort of incomplete uploads), compared in one shape whether
//! they were written by this command, by CloudFormation or by an older tool.

use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, ExpirationStatus, LifecycleExpiration, LifecycleRule,
    LifecycleRuleFilter, NoncurrentVersionExpiration,
};

use crate::config::ProvisionConfig;
use crate::error::{Result, aws};

/// Lifecycle rule expiring the archive after the retention.
pub(crate) const ARCHIVE_RULE: &str = "expire-archive";
/// Lifecycle rule expiring the journal (`<prefix>/journal/`: hints for readers, a day old
/// at most when read; the ingester also removes them).
pub(crate) const JOURNAL_RULE: &str = "expire-journal";
/// Days after which journal entries expire.
const JOURNAL_RETENTION_DAYS: i32 = 2;
/// Lifecycle rule expiring Athena results (when they are in the archive bucket).
pub(crate) const RESULTS_RULE: &str = "expire-athena-results";
/// Lifecycle rule removing expired delete markers (versioned, i.e. Object Lock, buckets).
pub(crate) const DELETE_MARKERS_RULE: &str = "expire-delete-markers";
/// Every rule this command owns; other rules of the bucket are kept as they are.
pub(super) const OWN_RULES: [&str; 4] = [
    ARCHIVE_RULE,
    JOURNAL_RULE,
    RESULTS_RULE,
    DELETE_MARKERS_RULE,
];
const RESULTS_RETENTION_DAYS: i32 = 30;
const ABORT_MULTIPART_DAYS: i32 = 1;
const NONCURRENT_DAYS: i32 = 1;
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
    pub(super) fn new(id: &str, prefix: String) -> Self {
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

    pub(super) fn from_sdk(rule: &LifecycleRule) -> Self {
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

    pub(super) fn to_sdk(&self) -> Result<LifecycleRule> {
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
    pub(super) fn expires_sooner_than(&self, key_prefix: &str, days: u32) -> bool {
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
    let mut journal = RuleSpec::new(
        JOURNAL_RULE,
        format!("{}journal/", config.archive_key_prefix()),
    );
    journal.expiration_days = Some(JOURNAL_RETENTION_DAYS);
    journal.abort_days = Some(ABORT_MULTIPART_DAYS);
    if versioned {
        journal.noncurrent_days = Some(NONCURRENT_DAYS);
    }
    let mut rules = vec![archive, journal];
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

/// The rules in words, for the plan and messages.
pub(super) fn describe_rules(rules: &[RuleSpec]) -> String {
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
            "expire islets/ after 400 days, expire islets/journal/ after 2 days, expire athena-results/ after 30 days, abort incomplete multipart uploads after 1 day"
        );
        let versioned = lifecycle_rules(&config(), true);
        assert_eq!(versioned.len(), 4);
        assert_eq!(versioned[0].noncurrent_days, Some(1));
        assert_eq!(versioned[1].noncurrent_days, Some(1));
        assert!(versioned[3].expired_delete_marker);
    }

    #[test]
    fn results_in_another_bucket_get_no_rule_here() {
        let mut config = config();
        config.athena_results.bucket = "query-results".into();
        let rules = lifecycle_rules(&config, false);
        let ids: Vec<&str> = rules.iter().map(|rule| rule.id.as_str()).collect();
        assert_eq!(ids, [ARCHIVE_RULE, JOURNAL_RULE]);
    }
}
