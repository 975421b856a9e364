//! The Athena workgroup: enforced result location and encryption, a per-query scan
//! cutoff, engine version 3, CloudWatch metrics.

use aws_sdk_athena::Client;
use aws_sdk_athena::error::ProvideErrorMetadata;
use aws_sdk_athena::types::{
    EncryptionConfiguration, EncryptionOption, EngineVersion, ResultConfiguration,
    ResultConfigurationUpdates, WorkGroup, WorkGroupConfiguration, WorkGroupConfigurationUpdates,
    WorkGroupState,
};

use crate::bucket::Encryption;
use crate::config::ProvisionConfig;
use crate::error::{Result, aws};
use crate::plan::Plan;

pub(crate) const ENGINE_VERSION: &str = "Athena engine version 3";
pub(crate) const WORKGROUP_DESCRIPTION: &str = "Islets Audit queries over the archive";
const GIB: u64 = 1024 * 1024 * 1024;

fn describe_bytes(bytes: u64) -> String {
    if bytes.is_multiple_of(GIB) {
        format!("{} GiB", bytes / GIB)
    } else {
        format!("{bytes} bytes")
    }
}

fn describe_encryption(encryption: &Encryption) -> String {
    match encryption {
        Encryption::S3Managed => "SSE-S3".to_owned(),
        Encryption::Kms(key) => format!("SSE-KMS with {}", key.arn),
    }
}

fn encryption_configuration(encryption: &Encryption) -> Result<EncryptionConfiguration> {
    let builder = match encryption {
        Encryption::S3Managed => {
            EncryptionConfiguration::builder().encryption_option(EncryptionOption::SseS3)
        }
        Encryption::Kms(key) => EncryptionConfiguration::builder()
            .encryption_option(EncryptionOption::SseKms)
            .kms_key(&key.arn),
    };
    builder
        .build()
        .map_err(|error| aws("building the workgroup's result encryption", &error))
}

/// What differs between the workgroup and the desired one, for the plan line.
fn differences(
    workgroup: &WorkGroup,
    config: &ProvisionConfig,
    encryption: &Encryption,
) -> Vec<String> {
    let mut parts = Vec::new();
    if workgroup.description() != Some(WORKGROUP_DESCRIPTION) {
        parts.push("description".to_owned());
    }
    if workgroup.state() != Some(&WorkGroupState::Enabled) {
        parts.push("enable it".to_owned());
    }
    let Some(configuration) = workgroup.configuration() else {
        parts.push("its whole configuration".to_owned());
        return parts;
    };
    if configuration.enforce_work_group_configuration() != Some(true) {
        parts.push("enforce its settings".to_owned());
    }
    if configuration.publish_cloud_watch_metrics_enabled() != Some(true) {
        parts.push("publish CloudWatch metrics".to_owned());
    }
    let cutoff = configuration
        .bytes_scanned_cutoff_per_query()
        .and_then(|bytes| u64::try_from(bytes).ok());
    if cutoff != Some(config.bytes_scanned_cutoff) {
        let was = cutoff.map_or_else(|| "none".to_owned(), describe_bytes);
        parts.push(format!(
            "scan cutoff {} per query (was {was})",
            describe_bytes(config.bytes_scanned_cutoff)
        ));
    }
    let results = configuration.result_configuration();
    let output = results.and_then(ResultConfiguration::output_location);
    let desired_output = config.athena_results.to_string();
    if output != Some(desired_output.as_str()) {
        parts.push(format!(
            "results in {desired_output} (was {})",
            output.unwrap_or("none")
        ));
    }
    let current_encryption = results.and_then(ResultConfiguration::encryption_configuration);
    let encryption_ok = match (encryption, current_encryption) {
        (Encryption::S3Managed, Some(current)) => {
            current.encryption_option() == &EncryptionOption::SseS3
        }
        (Encryption::Kms(key), Some(current)) => {
            current.encryption_option() == &EncryptionOption::SseKms
                && current.kms_key().is_some_and(|current| key.is(current))
        }
        (_, None) => false,
    };
    if !encryption_ok {
        parts.push(format!(
            "results encrypted with {}",
            describe_encryption(encryption)
        ));
    }
    let engine = configuration
        .engine_version()
        .and_then(EngineVersion::selected_engine_version);
    if engine != Some(ENGINE_VERSION) {
        parts.push(ENGINE_VERSION.to_owned());
    }
    parts
}

/// Creates the workgroup, or updates the settings that differ.
pub(crate) async fn apply(
    athena: &Client,
    config: &ProvisionConfig,
    encryption: &Encryption,
    plan: &mut Plan<'_>,
) -> Result<()> {
    let name = config.athena_workgroup.as_str();
    let current = match athena.get_work_group().work_group(name).send().await {
        // moto 5.2 answers an empty 200 for a workgroup that does not exist.
        Ok(output) => output.work_group().cloned(),
        Err(error)
            if error.as_service_error().is_some_and(|service| {
                service.is_invalid_request_exception()
                    && service
                        .message()
                        .is_some_and(|message| message.contains("not found"))
            }) =>
        {
            None
        }
        Err(error) => return Err(aws(format!("GetWorkGroup {name}"), &error)),
    };
    let engine = EngineVersion::builder()
        .selected_engine_version(ENGINE_VERSION)
        .build();
    match current {
        None => {
            if plan.change(format!(
                "create Athena workgroup {name}: results in {} ({}), scan cutoff {} per query, {ENGINE_VERSION}, settings enforced, CloudWatch metrics on",
                config.athena_results,
                describe_encryption(encryption),
                describe_bytes(config.bytes_scanned_cutoff)
            )) {
                let configuration = WorkGroupConfiguration::builder()
                    .result_configuration(
                        ResultConfiguration::builder()
                            .output_location(config.athena_results.to_string())
                            .encryption_configuration(encryption_configuration(encryption)?)
                            .build(),
                    )
                    .enforce_work_group_configuration(true)
                    .publish_cloud_watch_metrics_enabled(true)
                    .bytes_scanned_cutoff_per_query(cutoff(config))
                    .engine_version(engine)
                    .build();
                athena
                    .create_work_group()
                    .name(name)
                    .description(WORKGROUP_DESCRIPTION)
                    .configuration(configuration)
                    .send()
                    .await
                    .map_err(|error| aws(format!("CreateWorkGroup {name}"), &error))?;
            }
        }
        Some(workgroup) => {
            let parts = differences(&workgroup, config, encryption);
            if !parts.is_empty()
                && plan.change(format!(
                    "update Athena workgroup {name}: {}",
                    parts.join(", ")
                ))
            {
                let updates = WorkGroupConfigurationUpdates::builder()
                    .enforce_work_group_configuration(true)
                    .publish_cloud_watch_metrics_enabled(true)
                    .bytes_scanned_cutoff_per_query(cutoff(config))
                    .result_configuration_updates(
                        ResultConfigurationUpdates::builder()
                            .output_location(config.athena_results.to_string())
                            .encryption_configuration(encryption_configuration(encryption)?)
                            .build(),
                    )
                    .engine_version(engine)
                    .build();
                athena
                    .update_work_group()
                    .work_group(name)
                    .description(WORKGROUP_DESCRIPTION)
                    .state(WorkGroupState::Enabled)
                    .configuration_updates(updates)
                    .send()
                    .await
                    .map_err(|error| aws(format!("UpdateWorkGroup {name}"), &error))?;
            }
        }
    }
    Ok(())
}

fn cutoff(config: &ProvisionConfig) -> i64 {
    i64::try_from(config.bytes_scanned_cutoff).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workgroup(config: &ProvisionConfig, encryption: &Encryption) -> WorkGroup {
        WorkGroup::builder()
            .name(&config.athena_workgroup)
            .state(WorkGroupState::Enabled)
            .description(WORKGROUP_DESCRIPTION)
            .configuration(
                WorkGroupConfiguration::builder()
                    .result_configuration(
                        ResultConfiguration::builder()
                            .output_location(config.athena_results.to_string())
                            .encryption_configuration(
                                encryption_configuration(encryption).expect("encryption"),
                            )
                            .build(),
                    )
                    .enforce_work_group_configuration(true)
                    .publish_cloud_watch_metrics_enabled(true)
                    .bytes_scanned_cutoff_per_query(cutoff(config))
                    .engine_version(
                        EngineVersion::builder()
                            .selected_engine_version(ENGINE_VERSION)
                            .effective_engine_version(ENGINE_VERSION)
                            .build(),
                    )
                    .build(),
            )
            .build()
            .expect("workgroup")
    }

    #[test]
    fn a_workgroup_as_created_has_no_differences() {
        let config = crate::config::sample_config();
        let current = workgroup(&config, &Encryption::S3Managed);
        assert!(differences(&current, &config, &Encryption::S3Managed).is_empty());
        let mut smaller = config.clone();
        smaller.bytes_scanned_cutoff = 10 * GIB;
        assert_eq!(
            differences(&current, &smaller, &Encryption::S3Managed),
            ["scan cutoff 10 GiB per query (was 100 GiB)"]
        );
        let key = crate::kms::KmsKey {
            arn: "arn:aws:kms:eu-west-1:1:key/k".into(),
            key_id: "k".into(),
        };
        assert_eq!(
            differences(&current, &config, &Encryption::Kms(key)),
            ["results encrypted with SSE-KMS with arn:aws:kms:eu-west-1:1:key/k"]
        );
    }
}
