//! The CloudFormation template (`infra/cloudformation/islets-audit.yaml`) checked against
//! what `provision` sets: the Glue table generated from the Arrow schema, the queue settings,
//! the lifecycle rules, the workgroup. A drift between the two fails here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_yaml_ng::Value;

use crate::table::{
    Column, DATABASE_DESCRIPTION, INPUT_FORMAT, OUTPUT_FORMAT, SERDE_LIBRARY, TABLE_DESCRIPTION,
    TABLE_NAME, TableLocation, columns, partition_keys, table_parameters,
};

fn infra_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn template() -> Value {
    let path = infra_dir().join("cloudformation/islets-audit.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    // serde_yaml_ng keeps CloudFormation's short tags (!Ref, !Sub, ...) as
    // Value::Tagged, so the template parses without a custom loader.
    serde_yaml_ng::from_str(&text).expect("the template is YAML")
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// The `!Sub` string of a tagged value.
fn sub(value: &Value) -> String {
    match value {
        Value::Tagged(tagged) if tagged.tag == "Sub" => text(&tagged.value),
        other => panic!("not a !Sub: {other:?}"),
    }
}

fn template_columns(list: &Value) -> Vec<(String, String)> {
    list.as_sequence()
        .expect("a list of columns")
        .iter()
        .map(|column| (text(&column["Name"]), text(&column["Type"])))
        .collect()
}

fn names_and_types(columns: &[Column]) -> Vec<(String, String)> {
    columns
        .iter()
        .map(|column| (column.name.clone(), column.hive_type.clone()))
        .collect()
}

#[test]
fn the_template_glue_table_is_the_generated_one() {
    let template = template();
    let table = &template["Resources"]["EventsTable"]["Properties"]["TableInput"];
    assert_eq!(text(&table["Name"]), TABLE_NAME);
    assert_eq!(text(&table["TableType"]), "EXTERNAL_TABLE");
    let descriptor = &table["StorageDescriptor"];
    let documented = template_columns(&descriptor["Columns"]);
    let generated = names_and_types(&columns());
    if documented != generated {
        let first = documented
            .iter()
            .zip(&generated)
            .position(|(a, b)| a != b)
            .unwrap_or(documented.len().min(generated.len()));
        panic!(
            "the Glue columns of infra/cloudformation/islets-audit.yaml differ from the Arrow schema \
             (first difference at column {first}: template {:?}, schema {:?}); update the template's \
             EventsTable Columns (Name, Type) to:\n{}",
            documented.get(first),
            generated.get(first),
            generated
                .iter()
                .map(|(name, hive_type)| format!("  - Name: {name}\n    Type: {hive_type}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let partitions: Vec<(String, String, String)> = table["PartitionKeys"]
        .as_sequence()
        .expect("partition keys")
        .iter()
        .map(|key| {
            (
                text(&key["Name"]),
                text(&key["Type"]),
                text(&key["Comment"]),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = partition_keys()
        .into_iter()
        .map(|key| (key.name, key.hive_type, key.comment.unwrap_or_default()))
        .collect();
    assert_eq!(partitions, expected, "PartitionKeys");

    assert_eq!(text(&descriptor["InputFormat"]), INPUT_FORMAT);
    assert_eq!(text(&descriptor["OutputFormat"]), OUTPUT_FORMAT);
    assert_eq!(
        text(&descriptor["SerdeInfo"]["SerializationLibrary"]),
        SERDE_LIBRARY
    );
    // The template's parameters: the same keys and values; the location template is a
    // !Sub over the stack's bucket and prefix (`${!date}` is Sub's literal `${date}`).
    let location = TableLocation {
        bucket: "${ArchiveBucket}".to_owned(),
        prefix: "${Prefix}".to_owned(),
    };
    assert_eq!(sub(&descriptor["Location"]), location.location());
    let parameters = table["Parameters"].as_mapping().expect("parameters");
    let mut found = BTreeMap::new();
    for (key, value) in parameters {
        let value = match value {
            Value::Tagged(_) => sub(value).replace("${!", "${"),
            other => text(other),
        };
        found.insert(text(key), value);
    }
    assert_eq!(found, table_parameters(&location), "TableInput.Parameters");
}

#[test]
fn the_template_and_the_command_agree_on_retention_and_queues() {
    let template = template();
    let resources = &template["Resources"];
    let parameters = &template["Parameters"];
    let config = crate::config::sample_config();
    assert_eq!(
        text(&parameters["RetentionDays"]["MinValue"]),
        crate::config::MIN_RETENTION_DAYS.to_string()
    );
    assert_eq!(
        text(&parameters["RetentionDays"]["Default"]),
        config.retention_days.to_string()
    );
    assert_eq!(
        text(&parameters["AthenaBytesScannedCutoff"]["Default"]),
        config.bytes_scanned_cutoff.to_string()
    );
    assert_eq!(
        text(&parameters["GlueDatabaseName"]["Default"]),
        config.glue_database
    );
    assert_eq!(text(&parameters["Prefix"]["Default"]), config.prefix);

    let queue = &resources["AuditQueue"]["Properties"];
    let dlq = &resources["AuditDeadLetterQueue"]["Properties"];
    let desired_queue = crate::queues::queue_attributes(&config, "arn:dlq");
    let desired_dlq = crate::queues::dlq_attributes();
    for (name, value) in [
        ("MessageRetentionPeriod", &queue["MessageRetentionPeriod"]),
        ("VisibilityTimeout", &queue["VisibilityTimeout"]),
        (
            "ReceiveMessageWaitTimeSeconds",
            &queue["ReceiveMessageWaitTimeSeconds"],
        ),
    ] {
        assert_eq!(desired_queue[name], text(value), "AuditQueue {name}");
    }
    assert_eq!(
        desired_dlq["MessageRetentionPeriod"],
        text(&dlq["MessageRetentionPeriod"]),
        "AuditDeadLetterQueue MessageRetentionPeriod"
    );
    assert_eq!(
        text(&queue["RedrivePolicy"]["maxReceiveCount"]),
        config.max_receive_count.to_string()
    );

    let rules = resources["ArchiveBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
        .as_sequence()
        .expect("lifecycle rules");
    let desired = crate::bucket::lifecycle_rules(&config, false);
    assert_eq!(rules.len(), desired.len());
    for (rule, spec) in rules.iter().zip(&desired) {
        assert_eq!(text(&rule["Id"]), spec.id);
        let prefix = match &rule["Prefix"] {
            Value::Tagged(_) => sub(&rule["Prefix"]).replace("${Prefix}", &config.prefix),
            other => text(other),
        };
        assert_eq!(prefix, spec.prefix, "{}", spec.id);
        let days = match &rule["ExpirationInDays"] {
            Value::Tagged(_) => config.retention_days.to_string(),
            other => text(other),
        };
        assert_eq!(Some(days), spec.expiration_days.map(|d| d.to_string()));
        assert_eq!(
            text(&rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]),
            spec.abort_days.map(|d| d.to_string()).unwrap_or_default()
        );
    }

    let workgroup = &resources["AthenaWorkGroup"]["Properties"];
    assert_eq!(
        text(&workgroup["Description"]),
        crate::athena::WORKGROUP_DESCRIPTION
    );
    let configuration = &workgroup["WorkGroupConfiguration"];
    assert_eq!(
        text(&configuration["EngineVersion"]["SelectedEngineVersion"]),
        crate::athena::ENGINE_VERSION
    );
    assert_eq!(
        sub(&configuration["ResultConfiguration"]["OutputLocation"]),
        "s3://${ArchiveBucket}/athena-results/"
    );
    assert_eq!(
        text(&resources["GlueDatabase"]["Properties"]["DatabaseInput"]["Description"]),
        DATABASE_DESCRIPTION
    );
    assert_eq!(
        text(&resources["EventsTable"]["Properties"]["TableInput"]["Description"]),
        TABLE_DESCRIPTION
    );
}
