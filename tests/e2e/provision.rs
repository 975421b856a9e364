//! `islets-audit provision` against moto: idempotence, what it creates, the dry run, the
//! refusals that create nothing; and the CloudFormation template deployed on moto's
//! CloudFormation, archiving an event published to one of its topics.
//!
//! The aggregate topics have fixed names (`listing-events`, ...), so these tests work in
//! regions of their own: other tests publish thousands of events to the `us-east-1` topics,
//! which would otherwise also flow into the queues provisioned here.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;
use std::time::Duration;

use aws_config::{Region, SdkConfig};
use aws_sdk_sns::types::MessageAttributeValue;
use islets_core::catalog::Catalog;
use islets_core::demo::{DemoOptions, generate};
use islets_core::record::DeliveryMode;
use serde_json::Value;

use crate::support::{
    AUDIT, INGESTER, Moto, Running, events_dir, moto, python, python_lines, read_events, repo_root,
    unique,
};

/// Region of the `provision` tests.
const REGION: &str = "eu-west-1";
/// Region of the template test (its stack creates the aggregate topics too).
const STACK_REGION: &str = "eu-central-1";

fn regional(moto: &Moto, region: &str) -> SdkConfig {
    moto.sdk
        .to_builder()
        .region(Region::new(region.to_owned()))
        .build()
}

fn s3(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    )
}

/// Uniquely named resources of one test, and the flags naming them.
struct Names {
    bucket: String,
    queue: String,
    database: String,
    workgroup: String,
}

impl Names {
    fn new() -> Self {
        let bucket = unique("provision");
        Names {
            queue: unique("audit"),
            database: bucket.replace('-', "_"),
            workgroup: unique("wg"),
            bucket,
        }
    }

    fn flags(&self) -> Vec<String> {
        [
            "--bucket",
            &self.bucket,
            "--queue-name",
            &self.queue,
            "--athena-database",
            &self.database,
            "--athena-workgroup",
            &self.workgroup,
        ]
        .iter()
        .map(|flag| (*flag).to_owned())
        .collect()
    }
}

async fn provision(moto: &Moto, flags: &[String]) -> Output {
    moto.command(AUDIT)
        .env("AWS_REGION", REGION)
        .arg("provision")
        .args(flags)
        .current_dir(repo_root())
        .output()
        .await
        .expect("run islets-audit provision")
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn stdout_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn bucket_exists(sdk: &SdkConfig, bucket: &str) -> bool {
    s3(sdk).head_bucket().bucket(bucket).send().await.is_ok()
}

/// The catalog's `<aggregate>-events` topics.
fn catalog_topics() -> BTreeSet<String> {
    Catalog::load_dir(&events_dir())
        .expect("catalog")
        .aggregates()
        .map(|aggregate| aggregate.topic_name())
        .collect()
}

/// A KMS key created for the test (moto's KMS, through boto3).
async fn create_kms_key(moto: &Moto) -> String {
    let script = format!(
        "import boto3\n\
         kms = boto3.client('kms', endpoint_url='{}', region_name='{REGION}', aws_access_key_id='testing', aws_secret_access_key='testing')\n\
         print(kms.create_key(Description='islets provision test')['KeyMetadata']['Arn'])",
        moto.endpoint
    );
    python_lines(&script).await.pop().expect("key ARN")
}

async fn queue_attributes(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
) -> (String, BTreeMap<String, String>) {
    let url = sqs
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .unwrap_or_else(|error| panic!("queue {name}: {error:?}"))
        .queue_url
        .expect("url");
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .expect("attributes")
        .attributes
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| (name.as_str().to_owned(), value))
        .collect();
    (url, attributes)
}

#[tokio::test]
async fn provision_twice_reports_no_changes_and_creates_the_pipeline() {
    let moto = moto();
    let sdk = regional(&moto, REGION);
    let names = Names::new();
    let key_arn = create_kms_key(&moto).await;
    let mut flags = names.flags();
    flags.extend(
        [
            "--create-topics",
            "--kms-key-id",
            &key_arn,
            "--events-dir",
            events_dir().to_str().expect("utf-8"),
        ]
        .map(str::to_owned),
    );

    let first = provision(&moto, &flags).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let lines = stdout_lines(&first);
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with(&format!("create bucket {}", names.bucket))),
        "{}",
        text(&first)
    );
    assert!(
        lines
            .last()
            .is_some_and(|line| line.ends_with("changes applied")),
        "{}",
        text(&first)
    );
    let second = provision(&moto, &flags).await;
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    assert_eq!(stdout_lines(&second), ["no changes"], "{}", text(&second));

    // The bucket: lifecycle of at least a year on the archive prefix, SSE-KMS with the
    // key, public access blocked.
    let s3 = s3(&sdk);
    let rules = s3
        .get_bucket_lifecycle_configuration()
        .bucket(&names.bucket)
        .send()
        .await
        .expect("lifecycle")
        .rules
        .unwrap_or_default();
    let archive = rules
        .iter()
        .find(|rule| {
            rule.filter()
                .and_then(|filter| filter.prefix())
                .is_some_and(|prefix| prefix == "islets/")
        })
        .unwrap_or_else(|| panic!("no lifecycle rule on islets/: {rules:?}"));
    let days = archive
        .expiration()
        .and_then(|expiration| expiration.days())
        .expect("expiration days");
    assert!(days >= 365, "{days}");
    assert_eq!(days, 400);
    assert_eq!(
        archive
            .abort_incomplete_multipart_upload()
            .and_then(|abort| abort.days_after_initiation()),
        Some(1)
    );
    let encryption = s3
        .get_bucket_encryption()
        .bucket(&names.bucket)
        .send()
        .await
        .expect("encryption");
    let rule = &encryption
        .server_side_encryption_configuration()
        .expect("configuration")
        .rules()[0];
    let default = rule
        .apply_server_side_encryption_by_default()
        .expect("default encryption");
    assert_eq!(default.sse_algorithm().as_str(), "aws:kms");
    assert_eq!(default.kms_master_key_id(), Some(key_arn.as_str()));
    assert_eq!(rule.bucket_key_enabled(), Some(true));
    let block = s3
        .get_public_access_block()
        .bucket(&names.bucket)
        .send()
        .await
        .expect("public access block");
    let block = block
        .public_access_block_configuration()
        .expect("configuration");
    assert_eq!(
        [
            block.block_public_acls(),
            block.ignore_public_acls(),
            block.block_public_policy(),
            block.restrict_public_buckets()
        ],
        [Some(true); 4]
    );

    // The queues: retention, visibility timeout, redrive to the DLQ after 5 receives.
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let (_, dlq) = queue_attributes(&sqs, &format!("{}-dlq", names.queue)).await;
    let (_, queue) = queue_attributes(&sqs, &names.queue).await;
    assert_eq!(dlq["MessageRetentionPeriod"], "1209600");
    assert_eq!(queue["MessageRetentionPeriod"], "1209600");
    assert_eq!(queue["VisibilityTimeout"], "300");
    let redrive: Value = serde_json::from_str(&queue["RedrivePolicy"]).expect("redrive JSON");
    assert_eq!(redrive["deadLetterTargetArn"], dlq["QueueArn"].as_str());
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        "5"
    );

    // The queue policy admits exactly the catalog's topics; the queue is subscribed to
    // each, in envelope mode.
    let sns = aws_sdk_sns::Client::new(&sdk);
    let mut topic_arns = BTreeMap::new();
    for page in sns
        .list_topics()
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await
    {
        for topic in page.expect("topics").topics() {
            let arn = topic.topic_arn().expect("arn").to_owned();
            let name = arn.rsplit(':').next().expect("name").to_owned();
            topic_arns.insert(name, arn);
        }
    }
    let wanted = catalog_topics();
    assert_eq!(wanted.len(), 3, "{wanted:?}");
    let policy: Value = serde_json::from_str(&queue["Policy"]).expect("policy JSON");
    let statements = policy["Statement"].as_array().expect("statements");
    assert_eq!(statements.len(), 1, "{policy}");
    assert_eq!(statements[0]["Principal"]["Service"], "sns.amazonaws.com");
    assert_eq!(statements[0]["Action"], "sqs:SendMessage");
    assert_eq!(statements[0]["Resource"], queue["QueueArn"].as_str());
    let sources: BTreeSet<String> = statements[0]["Condition"]["ArnEquals"]["aws:SourceArn"]
        .as_array()
        .expect("source ARNs")
        .iter()
        .map(|arn| arn.as_str().expect("ARN").to_owned())
        .collect();
    let expected_sources: BTreeSet<String> =
        wanted.iter().map(|name| topic_arns[name].clone()).collect();
    assert_eq!(sources, expected_sources);
    for name in &wanted {
        let subscriptions = sns
            .list_subscriptions_by_topic()
            .topic_arn(&topic_arns[name])
            .send()
            .await
            .expect("subscriptions");
        let ours: Vec<_> = subscriptions
            .subscriptions()
            .iter()
            .filter(|subscription| {
                subscription.protocol() == Some("sqs")
                    && subscription.endpoint() == Some(queue["QueueArn"].as_str())
            })
            .collect();
        assert_eq!(ours.len(), 1, "{name}: {subscriptions:?}");
        let attributes = sns
            .get_subscription_attributes()
            .subscription_arn(ours[0].subscription_arn().expect("arn"))
            .send()
            .await
            .expect("subscription attributes");
        assert_eq!(
            attributes
                .attributes()
                .and_then(|attributes| attributes.get("RawMessageDelivery"))
                .map(String::as_str),
            Some("false"),
            "{name}"
        );
    }

    // The Glue table: the columns generated from the Arrow schema, projection on date/hour.
    let script = format!(
        "import boto3, json\n\
         glue = boto3.client('glue', endpoint_url='{}', region_name='{REGION}', aws_access_key_id='testing', aws_secret_access_key='testing')\n\
         print(json.dumps(glue.get_table(DatabaseName='{}', Name='events')['Table'], default=str))",
        moto.endpoint, names.database
    );
    let table: Value =
        serde_json::from_str(&python_lines(&script).await.join("\n")).expect("table JSON");
    let columns: Vec<(String, String)> = table["StorageDescriptor"]["Columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|column| {
            (
                column["Name"].as_str().expect("name").to_owned(),
                column["Type"].as_str().expect("type").to_owned(),
            )
        })
        .collect();
    let generated: Vec<(String, String)> = islets_infra::columns()
        .into_iter()
        .map(|column| (column.name, column.hive_type))
        .collect();
    assert_eq!(columns, generated);
    let partitions: Vec<&str> = table["PartitionKeys"]
        .as_array()
        .expect("partition keys")
        .iter()
        .map(|key| key["Name"].as_str().expect("name"))
        .collect();
    assert_eq!(partitions, ["date", "hour"]);
    let parameters = &table["Parameters"];
    assert_eq!(parameters["projection.enabled"], "true");
    assert_eq!(parameters["projection.date.type"], "date");
    assert_eq!(parameters["projection.date.format"], "yyyy-MM-dd");
    assert_eq!(parameters["projection.hour.type"], "enum");
    assert_eq!(
        parameters["storage.location.template"],
        format!(
            "s3://{}/islets/events/date=${{date}}/hour=${{hour}}/",
            names.bucket
        )
    );
    assert_eq!(
        table["StorageDescriptor"]["Location"],
        format!("s3://{}/islets/events/", names.bucket)
    );

    // The workgroup: enforced result location (SSE-KMS too), scan cutoff.
    let athena = aws_sdk_athena::Client::new(&sdk);
    let workgroup = athena
        .get_work_group()
        .work_group(&names.workgroup)
        .send()
        .await
        .expect("workgroup");
    let configuration = workgroup
        .work_group()
        .and_then(|workgroup| workgroup.configuration())
        .expect("workgroup configuration");
    assert_eq!(configuration.enforce_work_group_configuration(), Some(true));
    assert_eq!(
        configuration.bytes_scanned_cutoff_per_query(),
        Some(100 * 1024 * 1024 * 1024)
    );
    let results = configuration.result_configuration().expect("results");
    assert_eq!(
        results.output_location(),
        Some(format!("s3://{}/athena-results/", names.bucket).as_str())
    );
    let results_encryption = results.encryption_configuration().expect("encryption");
    assert_eq!(results_encryption.encryption_option().as_str(), "SSE_KMS");
    assert_eq!(results_encryption.kms_key(), Some(key_arn.as_str()));
}

#[tokio::test]
async fn a_dry_run_prints_the_plan_and_creates_nothing() {
    let moto = moto();
    let sdk = regional(&moto, REGION);
    let names = Names::new();
    let mut flags = names.flags();
    flags.extend(["--create-topics", "--dry-run"].map(str::to_owned));
    let output = provision(&moto, &flags).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let lines = stdout_lines(&output);
    for expected in [
        format!("create bucket {} in {REGION}", names.bucket),
        format!("set default encryption of bucket {}: SSE-S3", names.bucket),
        format!(
            "set lifecycle of bucket {}: expire islets/ after 400 days",
            names.bucket
        ),
        format!("create queue {}-dlq", names.queue),
        format!("create queue {}: retention 14 days", names.queue),
        format!("set policy of queue {}", names.queue),
        format!("create Glue database {}", names.database),
        format!("create Glue table {}.events", names.database),
        format!("create Athena workgroup {}", names.workgroup),
    ] {
        assert!(
            lines.iter().any(|line| line.starts_with(&expected)),
            "no line starting with '{expected}' in:\n{}",
            text(&output)
        );
    }
    for topic in catalog_topics() {
        let expected = format!(
            "subscribe queue {} to {topic} (envelope delivery)",
            names.queue
        );
        assert!(lines.contains(&expected), "{expected}\n{}", text(&output));
    }
    assert!(
        lines.last().is_some_and(
            |line| line.starts_with("dry run:") && line.ends_with("nothing was changed")
        ),
        "{}",
        text(&output)
    );
    assert!(!bucket_exists(&sdk, &names.bucket).await);
    let queue = aws_sdk_sqs::Client::new(&sdk)
        .get_queue_url()
        .queue_name(&names.queue)
        .send()
        .await;
    assert!(queue.is_err(), "the queue was created: {queue:?}");
}

#[tokio::test]
async fn object_lock_is_set_when_the_bucket_is_created() {
    let moto = moto();
    let sdk = regional(&moto, REGION);
    let names = Names::new();
    let mut flags = names.flags();
    flags.extend(["--create-topics", "--object-lock", "governance"].map(str::to_owned));
    let first = provision(&moto, &flags).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert!(
        stdout_lines(&first).contains(&format!(
            "create bucket {} in {REGION} with Object Lock (GOVERNANCE mode)",
            names.bucket
        )),
        "{}",
        text(&first)
    );
    let second = provision(&moto, &flags).await;
    assert_eq!(stdout_lines(&second), ["no changes"], "{}", text(&second));

    let s3 = s3(&sdk);
    let lock = s3
        .get_object_lock_configuration()
        .bucket(&names.bucket)
        .send()
        .await
        .expect("object lock");
    let retention = lock
        .object_lock_configuration()
        .and_then(|configuration| configuration.rule())
        .and_then(|rule| rule.default_retention())
        .expect("default retention");
    assert_eq!(
        retention.mode().map(|mode| mode.as_str()),
        Some("GOVERNANCE")
    );
    assert_eq!(retention.days(), Some(400));
    // Versions left by expiry are removed too, so the storage is freed.
    let rules = s3
        .get_bucket_lifecycle_configuration()
        .bucket(&names.bucket)
        .send()
        .await
        .expect("lifecycle")
        .rules
        .unwrap_or_default();
    assert!(
        rules
            .iter()
            .any(|rule| rule.id() == Some("expire-delete-markers")
                && rule
                    .expiration()
                    .and_then(|expiration| expiration.expired_object_delete_marker())
                    == Some(true)),
        "{rules:?}"
    );

    // On a bucket that exists without Object Lock, the flag is refused before any change.
    let plain = Names::new();
    let mut plain_flags = plain.flags();
    plain_flags.push("--create-topics".into());
    let created = provision(&moto, &plain_flags).await;
    assert_eq!(created.status.code(), Some(0), "{}", text(&created));
    plain_flags
        .extend(["--object-lock", "compliance", "--retention-days", "500"].map(str::to_owned));
    let refused = provision(&moto, &plain_flags).await;
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains(&format!(
            "--object-lock: bucket {} exists without Object Lock",
            plain.bucket
        )),
        "{}",
        text(&refused)
    );
    assert!(refused.stdout.is_empty(), "{}", text(&refused));
}

#[tokio::test]
async fn bad_input_is_refused_with_exit_2_and_nothing_created() {
    let moto = moto();
    let sdk = regional(&moto, REGION);
    let broken_catalog = tempfile::tempdir().expect("catalog dir");
    std::fs::write(
        broken_catalog.path().join("listing.yaml"),
        "aggregate: listing\nevents:\n  sold: [this is: not an event\n",
    )
    .expect("write");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--retention-days".into(), "300".into()],
            "--retention-days 300 is under 365",
        ),
        (
            vec![
                "--kms-key-id".into(),
                "1234abcd-12ab-34cd-56ef-1234567890ab".into(),
            ],
            "--kms-key-id 1234abcd-12ab-34cd-56ef-1234567890ab: no such KMS key",
        ),
        (
            vec![
                "--events-dir".into(),
                broken_catalog.path().display().to_string(),
            ],
            "listing.yaml",
        ),
    ];
    for (extra, expected) in cases {
        let names = Names::new();
        let mut flags = names.flags();
        flags.push("--create-topics".into());
        flags.extend(extra);
        let output = provision(&moto, &flags).await;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{expected}: {}",
            text(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{expected}: {}", text(&output));
        assert!(
            output.stdout.is_empty(),
            "a change was reported: {}",
            text(&output)
        );
        assert!(
            !bucket_exists(&sdk, &names.bucket).await,
            "{expected}: the bucket was created"
        );
    }
}

#[tokio::test]
async fn the_template_deploys_and_an_event_published_to_its_topic_is_archived() {
    let moto = moto();
    let sdk = regional(&moto, STACK_REGION);
    let stack = unique("islets-stack");
    let bucket = unique("stack-archive");
    let deploy = tokio::process::Command::new(python())
        .arg(repo_root().join("infra/tests/deploy_stack.py"))
        .args([
            "--endpoint",
            &moto.endpoint,
            "--stack-name",
            &stack,
            "--bucket",
            &bucket,
            "--create-topics",
            "true",
            "--region",
            STACK_REGION,
        ])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .output()
        .await
        .expect("run deploy_stack.py");
    assert!(deploy.status.success(), "{}", text(&deploy));
    let outputs: BTreeMap<String, String> =
        serde_json::from_slice(&deploy.stdout).expect("stack outputs as JSON");
    let queue_url = outputs["QueueUrl"].clone();
    let topic_arn = outputs["ListingEventsTopicArn"].clone();
    assert_eq!(outputs["ArchiveUri"], format!("s3://{bucket}/islets"));

    // One valid listing event, with the four standard attributes.
    let catalog = Catalog::load_dir(&events_dir()).expect("catalog");
    let event = generate(
        &catalog,
        &DemoOptions {
            flows: 3,
            invalid_percent: 0,
            duplicate_percent: 0,
            poison_messages: 0,
            ..DemoOptions::default()
        },
    )
    .events
    .into_iter()
    .find(|event| event.aggregate == "listing")
    .expect("a listing event");
    let attribute = |value: &str| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .expect("attribute")
    };
    aws_sdk_sns::Client::new(&sdk)
        .publish()
        .topic_arn(&topic_arn)
        .message(&event.payload)
        .message_attributes("event_type", attribute(event.event_type))
        .message_attributes("aggregate", attribute(event.aggregate))
        .message_attributes("schema_version", attribute(&event.schema_version))
        .message_attributes("producer_system", attribute(event.producer_system))
        .send()
        .await
        .expect("publish");

    let mut command = moto.command(INGESTER);
    command
        .env("AWS_REGION", STACK_REGION)
        .args(["--source", "sqs", "--queue-url", &queue_url])
        .args(["--store", &outputs["ArchiveUri"]])
        .arg("--events-dir")
        .arg(events_dir())
        .args([
            "--exit-when-idle",
            "--wait-time-secs",
            "1",
            "--max-batch-age-secs",
            "2",
            "--visibility-timeout-secs",
            "30",
            "--listen",
            "127.0.0.1:0",
        ]);
    let mut ingester = Running::spawn(command);
    let status = ingester.wait(Duration::from_secs(120)).await;
    assert!(status.success(), "{}", ingester.log_text());

    let rows = read_events(&moto.archive(&bucket, "islets")).await;
    let (_, record) = rows
        .iter()
        .find(|(_, record)| record.event_id == event.event_id)
        .unwrap_or_else(|| panic!("event {} not archived: {rows:?}", event.event_id));
    assert!(record.schema_valid, "{:?}", record.schema_error);
    assert_eq!(record.payload, event.payload);
    assert_eq!(record.delivery, DeliveryMode::SnsEnvelope);
    assert_eq!(record.topic_arn.as_deref(), Some(topic_arn.as_str()));
    assert_eq!(record.aggregate.as_deref(), Some("listing"));
}
