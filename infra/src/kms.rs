//! The KMS key of SSE-KMS: it must exist, be enabled and be a symmetric encryption key,
//! checked before anything is created.

use aws_sdk_kms::Client;
use aws_sdk_kms::types::{KeySpec, KeyState, KeyUsageType};

use crate::error::{Error, Result, preflight};

/// A resolved KMS key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KmsKey {
    pub(crate) arn: String,
    pub(crate) key_id: String,
}

impl KmsKey {
    /// Whether `reference` (as S3 or Athena report it) names this key.
    pub(crate) fn is(&self, reference: &str) -> bool {
        reference == self.arn || reference == self.key_id
    }
}

/// Resolves `--kms-key-id` (id, ARN, alias/NAME or alias ARN) with DescribeKey.
pub(crate) async fn resolve(kms: &Client, key: &str, region: &str) -> Result<KmsKey> {
    let output = match kms.describe_key().key_id(key).send().await {
        Ok(output) => output,
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|service| service.is_not_found_exception()) =>
        {
            return Err(Error::Config(format!(
                "--kms-key-id {key}: no such KMS key in {region} (pass a key id, key ARN or alias/NAME of a key in the bucket's region, or leave it out for SSE-S3)"
            )));
        }
        Err(error) => {
            return Err(preflight(
                format!("--kms-key-id {key}: cannot describe the key"),
                &error,
            ));
        }
    };
    let Some(metadata) = output.key_metadata() else {
        return Err(Error::Config(format!(
            "--kms-key-id {key}: KMS returned no key metadata"
        )));
    };
    if metadata.key_state() != Some(&KeyState::Enabled) {
        return Err(Error::Config(format!(
            "--kms-key-id {key}: the key is {} (it must be enabled)",
            metadata
                .key_state()
                .map_or("in an unknown state", |state| state.as_str())
        )));
    }
    let symmetric = metadata
        .key_spec()
        .is_none_or(|spec| spec == &KeySpec::SymmetricDefault);
    let encrypts = metadata
        .key_usage()
        .is_none_or(|usage| usage == &KeyUsageType::EncryptDecrypt);
    if !symmetric || !encrypts {
        return Err(Error::Config(format!(
            "--kms-key-id {key}: S3 and Athena need a symmetric encryption key (SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT)"
        )));
    }
    let Some(arn) = metadata.arn() else {
        return Err(Error::Config(format!(
            "--kms-key-id {key}: KMS returned the key without its ARN"
        )));
    };
    Ok(KmsKey {
        arn: arn.to_owned(),
        key_id: metadata.key_id().to_owned(),
    })
}
