//! What the archive is encrypted with and what its bucket policy denies: default
//! encryption (SSE-S3, or SSE-KMS with a Bucket Key), no request without TLS, no upload
//! asking for another encryption. Statements of other owners are kept as they are.

use aws_sdk_s3::types::{
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionRule,
};

use crate::error::{Result, aws};
use crate::kms::KmsKey;

/// Default encryption of the archive (and of the Athena results).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Encryption {
    /// SSE-S3 (AES256).
    S3Managed,
    /// SSE-KMS with this key, S3 Bucket Keys on.
    Kms(KmsKey),
}

impl Encryption {
    /// The encryption in words, for the plan.
    pub(super) fn describe(&self) -> String {
        match self {
            Encryption::S3Managed => "SSE-S3".to_owned(),
            Encryption::Kms(key) => format!("SSE-KMS with {} (S3 Bucket Key on)", key.arn),
        }
    }
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

/// Whether the bucket's current default encryption is `desired`.
pub(super) fn encryption_matches(
    current: Option<&ServerSideEncryptionRule>,
    desired: &Encryption,
) -> bool {
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

/// The default-encryption rule for `desired`.
pub(super) fn encryption_rule(desired: &Encryption) -> Result<ServerSideEncryptionRule> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
