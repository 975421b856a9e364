#!/usr/bin/env python3
"""Inspects a deployed islets-audit stack and sends one event through it.

    verify_stack.py --stack-name islets-audit [--endpoint http://127.0.0.1:5055 --moto]

Reads the stack's parameters, outputs and resources, then checks what the template promises:
bucket encryption, lifecycle (archive expiry >= 365 days, Athena results), public access
block, versioning off; queue retention, visibility timeout, redrive to the DLQ, SSE, queue
policy; a subscription of the audit queue to every aggregate topic in envelope mode; the Glue
table and its partition projection; the Athena workgroup; the alarms. Then it publishes one
message to the listing topic and waits for the SNS envelope in the audit queue (and deletes
that one message; any other message it sees is made visible again at once).

A resource the endpoint's CloudFormation did not create is reported SKIP (moto creates only
some resource types). With --moto, properties that moto 5.2.1's CloudFormation is known to
drop on resources it does create (the bucket's lifecycle, public access block and ownership
controls) are SKIP too instead of FAIL; every other check still applies. Ends with
'N passed, N failed, N skipped'; exits 1 if anything failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid

import boto3
from botocore.exceptions import ClientError

# Properties moto 5.2.1's AWS::S3::Bucket ignores (it applies BucketEncryption and Tags only).
MOTO_BUCKET_GAPS = {"lifecycle", "public access block", "ownership controls"}
AGGREGATE_TOPIC_OUTPUTS = ["ListingEventsTopicArn", "CompanyEventsTopicArn", "AgentEventsTopicArn"]

counts = {"passed": 0, "failed": 0, "skipped": 0}


def report(status: str, what: str, detail: str = "") -> None:
    counts[{"PASS": "passed", "FAIL": "failed", "SKIP": "skipped"}[status]] += 1
    print(f"{status} {what}" + (f": {detail}" if detail else ""))


def check(ok: bool, what: str, detail: str = "") -> None:
    report("PASS" if ok else "FAIL", what, "" if ok else detail)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack-name", required=True)
    parser.add_argument("--endpoint", help="AWS endpoint URL (moto_server); default: AWS itself")
    parser.add_argument("--region", default=os.environ.get("AWS_REGION")
                        or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
    parser.add_argument("--moto", action="store_true",
                        help="report moto's known CloudFormation gaps as SKIP instead of FAIL")
    parser.add_argument("--no-round-trip", action="store_true", help="do not publish a test event")
    args = parser.parse_args()

    if args.endpoint and not os.environ.get("AWS_ACCESS_KEY_ID") and not os.environ.get("AWS_PROFILE"):
        os.environ["AWS_ACCESS_KEY_ID"] = "testing"
        os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"

    def client(service):
        return boto3.client(service, endpoint_url=args.endpoint, region_name=args.region)

    cfn, s3, sqs, sns = client("cloudformation"), client("s3"), client("sqs"), client("sns")
    try:
        stack = cfn.describe_stacks(StackName=args.stack_name)["Stacks"][0]
    except ClientError as error:
        print(f"verify_stack: {error}", file=sys.stderr)
        return 1
    params = {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters", [])}
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    physical = {
        r["LogicalResourceId"]: r.get("PhysicalResourceId")
        for page in cfn.get_paginator("list_stack_resources").paginate(StackName=args.stack_name)
        for r in page["StackResourceSummaries"]
    }
    check(stack["StackStatus"] in ("CREATE_COMPLETE", "UPDATE_COMPLETE"), "stack status",
          stack["StackStatus"])

    def created(logical_id: str) -> bool:
        if logical_id in physical:
            return True
        report("SKIP", logical_id, "not created by the endpoint's CloudFormation")
        return False

    def gap(what: str) -> bool:
        if args.moto and what in MOTO_BUCKET_GAPS:
            report("SKIP", f"bucket {what}", "moto's CloudFormation does not apply it")
            return True
        return False

    prefix = params.get("Prefix", "islets")
    kms_key = params.get("KmsKeyArn", "")
    retention = int(params.get("RetentionDays", "400"))

    # ------------------------------------------------------------------ bucket
    if created("ArchiveBucket"):
        bucket = outputs["BucketName"]
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        default = rules[0]["ApplyServerSideEncryptionByDefault"]
        if kms_key:
            check(default["SSEAlgorithm"] == "aws:kms" and default.get("KMSMasterKeyID") == kms_key,
                  "bucket encryption SSE-KMS with KmsKeyArn", json.dumps(default))
        else:
            check(default["SSEAlgorithm"] == "AES256", "bucket encryption SSE-S3", json.dumps(default))
        try:
            lifecycle = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        except ClientError:
            lifecycle = None
        if lifecycle is None and gap("lifecycle"):
            pass
        else:
            lifecycle = lifecycle or []

            def rule_for(p):
                return next((r for r in lifecycle if r.get("Status") == "Enabled" and
                             (r.get("Prefix") or r.get("Filter", {}).get("Prefix")) == p), None)

            archive = rule_for(f"{prefix}/")
            check(archive is not None and archive.get("Expiration", {}).get("Days") == retention >= 365
                  and archive.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation") == 1,
                  f"lifecycle: {prefix}/ expires after {retention} days, uploads aborted after 1 day",
                  json.dumps(lifecycle, default=str))
            results = rule_for("athena-results/")
            check(results is not None and results.get("Expiration", {}).get("Days") == 30,
                  "lifecycle: athena-results/ expires after 30 days", json.dumps(lifecycle, default=str))
        try:
            block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        except ClientError:
            block = None
        if not (block is None and gap("public access block")):
            check(block is not None and all(block.values()) and len(block) == 4,
                  "public access blocked", json.dumps(block))
        try:
            ownership = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
        except ClientError:
            ownership = None
        if not (ownership is None and gap("ownership controls")):
            check(ownership == [{"ObjectOwnership": "BucketOwnerEnforced"}], "ACLs disabled",
                  json.dumps(ownership))
        versioning = s3.get_bucket_versioning(Bucket=bucket).get("Status")
        check(versioning != "Enabled", "versioning off", str(versioning))

    # ------------------------------------------------------------------ queues
    queue_attrs = dlq_attrs = None
    if created("AuditDeadLetterQueue"):
        dlq_attrs = sqs.get_queue_attributes(QueueUrl=outputs["DlqUrl"], AttributeNames=["All"])["Attributes"]
        check(dlq_attrs.get("MessageRetentionPeriod") == "1209600", "DLQ retention 14 days",
              dlq_attrs.get("MessageRetentionPeriod"))
        check(dlq_attrs.get("SqsManagedSseEnabled") == "true" or "KmsMasterKeyId" in dlq_attrs,
              "DLQ encrypted at rest", json.dumps(dlq_attrs))
    if created("AuditQueue"):
        queue_attrs = sqs.get_queue_attributes(QueueUrl=outputs["QueueUrl"], AttributeNames=["All"])["Attributes"]
        check(queue_attrs.get("MessageRetentionPeriod") == "1209600", "queue retention 14 days",
              queue_attrs.get("MessageRetentionPeriod"))
        check(int(queue_attrs.get("VisibilityTimeout", 0)) >= 90, "queue visibility timeout >= 3 x 30 s",
              queue_attrs.get("VisibilityTimeout"))
        check(queue_attrs.get("SqsManagedSseEnabled") == "true" or "KmsMasterKeyId" in queue_attrs,
              "queue encrypted at rest", json.dumps(queue_attrs))
        redrive = json.loads(queue_attrs.get("RedrivePolicy", "{}"))
        check(redrive.get("deadLetterTargetArn") == outputs.get("DlqArn")
              and int(redrive.get("maxReceiveCount", 0)) == 5,
              "redrive to the DLQ after 5 receives", json.dumps(redrive))
    topic_arns = [outputs[k] for k in AGGREGATE_TOPIC_OUTPUTS if k in outputs]
    check(len(topic_arns) == 3, "the stack names three aggregate topics", str(topic_arns))
    if created("AuditQueuePolicy") and queue_attrs is not None:
        policy = json.loads(queue_attrs.get("Policy", "{}"))
        statements = policy.get("Statement", [])
        sources = set()
        for st in statements:
            arns = st.get("Condition", {}).get("ArnEquals", {}).get("aws:SourceArn", [])
            sources.update([arns] if isinstance(arns, str) else arns)
        check(len(statements) == 1 and statements[0].get("Principal") == {"Service": "sns.amazonaws.com"}
              and statements[0].get("Action") in ("sqs:SendMessage", ["sqs:SendMessage"])
              and sources == set(topic_arns),
              "queue policy admits SendMessage from the aggregate topics only", json.dumps(policy))

    # ------------------------------------------------------------------ subscriptions
    subscription_ids = (["ListingEventsTopic", "CompanyEventsTopic", "AgentEventsTopic"]
                        if params.get("CreateTopics") == "true"
                        else ["ListingEventsSubscription", "CompanyEventsSubscription", "AgentEventsSubscription"])
    subscriptions_created = True
    for logical_id, topic_arn in zip(subscription_ids, topic_arns):
        if not created(logical_id):
            subscriptions_created = False
            continue
        subs = [s for s in sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
                if s["Protocol"] == "sqs" and s["Endpoint"] == outputs.get("QueueArn")]
        raw = None
        if subs:
            attrs = sns.get_subscription_attributes(SubscriptionArn=subs[0]["SubscriptionArn"])["Attributes"]
            raw = attrs.get("RawMessageDelivery", "false")
        check(len(subs) == 1 and raw == "false",
              f"{topic_arn.rsplit(':', 1)[1]} delivers to the audit queue in envelope mode",
              f"{len(subs)} subscriptions, RawMessageDelivery {raw}")

    # ------------------------------------------------------------------ Glue, Athena, alarms
    database_created, table_created = created("GlueDatabase"), created("EventsTable")
    if database_created and table_created:
        table = client("glue").get_table(DatabaseName=outputs["GlueDatabase"], Name="events")["Table"]
        p = table.get("Parameters", {})
        check(p.get("projection.enabled") == "true" and p.get("projection.date.type") == "date"
              and p.get("projection.hour.type") == "enum"
              and p.get("storage.location.template")
              == f"s3://{outputs['BucketName']}/{prefix}/events/date=${{date}}/hour=${{hour}}/",
              "Glue table events with partition projection", json.dumps(p))
        check([k["Name"] for k in table.get("PartitionKeys", [])] == ["date", "hour"],
              "partition keys date, hour")
    if created("AthenaWorkGroup"):
        config = client("athena").get_work_group(WorkGroup=outputs["WorkGroup"])["WorkGroup"]["Configuration"]
        check(config.get("EnforceWorkGroupConfiguration") is True
              and config.get("ResultConfiguration", {}).get("OutputLocation")
              == f"s3://{outputs['BucketName']}/athena-results/"
              and config.get("BytesScannedCutoffPerQuery", 0) > 0,
              "Athena workgroup: enforced, results in athena-results/, scan cutoff", json.dumps(config, default=str))
    cloudwatch = client("cloudwatch")
    for logical_id, metric in (("DeadLetterQueueNotEmptyAlarm", "ApproximateNumberOfMessagesVisible"),
                               ("AuditQueueBacklogAlarm", "ApproximateAgeOfOldestMessage")):
        if created(logical_id):
            alarms = cloudwatch.describe_alarms(AlarmNames=[physical[logical_id]])["MetricAlarms"]
            check(len(alarms) == 1 and alarms[0]["MetricName"] == metric, f"alarm {logical_id}")

    # ------------------------------------------------------------------ one event through
    if not args.no_round_trip and not subscriptions_created:
        report("SKIP", "round trip through listing-events", "its subscription was not created")
    elif not args.no_round_trip and topic_arns and queue_attrs is not None:
        body = json.dumps({"event_id": str(uuid.uuid4()), "probe": "verify_stack"})
        published = sns.publish(
            TopicArn=topic_arns[0], Message=body,
            MessageAttributes={"event_type": {"DataType": "String", "StringValue": "probe"},
                               "aggregate": {"DataType": "String", "StringValue": "listing"}})["MessageId"]
        found = None
        deadline = time.monotonic() + 20
        while found is None and time.monotonic() < deadline:
            messages = sqs.receive_message(QueueUrl=outputs["QueueUrl"], MaxNumberOfMessages=10,
                                           WaitTimeSeconds=2, VisibilityTimeout=30).get("Messages", [])
            for message in messages:
                try:
                    envelope = json.loads(message["Body"])
                except ValueError:
                    envelope = {}
                if isinstance(envelope, dict) and envelope.get("MessageId") == published:
                    found = envelope
                    sqs.delete_message(QueueUrl=outputs["QueueUrl"], ReceiptHandle=message["ReceiptHandle"])
                else:
                    sqs.change_message_visibility(QueueUrl=outputs["QueueUrl"],
                                                  ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
        check(found is not None and found.get("Type") == "Notification"
              and found.get("TopicArn") == topic_arns[0] and found.get("Message") == body
              and "Timestamp" in found and "MessageAttributes" in found,
              "an event published to listing-events reaches the audit queue as an SNS envelope",
              json.dumps(found) if found else "not received within 20 s")

    print(f"verify_stack: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
