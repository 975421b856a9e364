#!/usr/bin/env python3
"""Static checks of infra/ against the rest of the repository. Needs PyYAML only; no AWS.

    python3 infra/tests/check_template.py

- the template's aggregate topics are exactly `<aggregate>-events` for events/*.yaml;
- the Glue columns equal the `events` column table of docs/ARCHIVE.md (names, types, order;
  the Rust test compares them with the Arrow schema itself);
- partition projection covers the layout (date yyyy-MM-dd, hour 00-23, the location template);
- RetentionDays cannot go under 365, and the Athena results are outside the archive prefix;
- the IAM policies are valid JSON with no action wildcards, only Allow/Deny statements,
  no NotAction/NotResource, and only the placeholders documented in infra/README.md.

Ends with 'N passed, N failed'; exits 1 when anything failed.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "cloudformation" / "islets-audit.yaml"
IAM_DIR = ROOT / "infra" / "iam"
PLACEHOLDERS = {"BucketName", "Prefix", "QueueArn", "DlqArn", "Region", "AccountId",
                "WorkGroup", "GlueDatabase", "KmsKeyArn"}


class _CfnLoader(yaml.SafeLoader):
    pass


def _cfn_tag(loader, tag_suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix in ("Ref", "Condition"):
        return {tag_suffix: value}
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)

results: list[tuple[bool, str]] = []


def check(ok: bool, what: str) -> None:
    results.append((ok, what))
    print(f"{'ok  ' if ok else 'FAIL'} {what}")


def strings_in(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings_in(value)


def catalog_aggregates() -> set[str]:
    aggregates = set()
    for path in sorted((ROOT / "events").glob("*.yaml")):
        aggregates.add(yaml.safe_load(path.read_text(encoding="utf-8"))["aggregate"])
    return aggregates


def archive_columns() -> list[tuple[str, str]]:
    text = (ROOT / "docs" / "ARCHIVE.md").read_text(encoding="utf-8")
    block = text.split("<!-- events-columns:begin -->", 1)[1].split("<!-- events-columns:end -->", 1)[0]
    columns = []
    for line in block.splitlines():
        match = re.match(r"\|\s*`([^`]+)`\s*\|\s*`([^`]+)`", line)
        if match:
            columns.append((match.group(1), match.group(2)))
    return columns


def check_template() -> None:
    template = yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506
    resources = template["Resources"]

    expected_topics = {f"{a}-events" for a in catalog_aggregates()}
    created = {r["Properties"]["TopicName"] for r in resources.values() if r["Type"] == "AWS::SNS::Topic"}
    check(created == expected_topics,
          f"topics created with CreateTopics=true are the catalog's: {sorted(created)}")
    subscribed = set()
    for r in resources.values():
        if r["Type"] == "AWS::SNS::Subscription":
            subscribed.update(re.findall(r":([a-z0-9-]+-events)$", r["Properties"]["TopicArn"]["Fn::Sub"]))
    check(subscribed == expected_topics, f"existing topics subscribed: {sorted(subscribed)}")
    policy = resources["AuditQueuePolicy"]["Properties"]["PolicyDocument"]
    admitted = set()
    for s in strings_in(policy):
        admitted.update(re.findall(r":([a-z0-9-]+-events)$", s))
    check(admitted == expected_topics, f"queue policy admits exactly those topics: {sorted(admitted)}")
    check(all(":" in a and "*" not in a for st in policy["Statement"] for a in _as_list(st["Action"])),
          "queue policy has no action wildcard")

    table = resources["EventsTable"]["Properties"]["TableInput"]
    columns = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
    documented = archive_columns()
    check(len(documented) == 22, f"docs/ARCHIVE.md lists {len(documented)} events columns")
    check(columns == documented, "Glue columns equal docs/ARCHIVE.md's events table (name, type, order)")
    if columns != documented:
        for i, (got, want) in enumerate(zip(columns, documented)):
            if got != want:
                print(f"     first difference at column {i}: template {got}, ARCHIVE.md {want}")
                break
    check([p["Name"] for p in table["PartitionKeys"]] == ["date", "hour"]
          and all(p["Type"] == "string" for p in table["PartitionKeys"]),
          "partition keys date, hour (string)")
    params = table["Parameters"]
    check(params.get("projection.enabled") == "true"
          and params.get("projection.date.type") == "date"
          and params.get("projection.date.format") == "yyyy-MM-dd"
          and params.get("projection.hour.type") == "enum"
          and params.get("projection.hour.values") == ",".join(f"{h:02d}" for h in range(24)),
          "partition projection: date yyyy-MM-dd, hour 00..23")
    location = table["StorageDescriptor"]["Location"]["Fn::Sub"]
    location_template = params["storage.location.template"]["Fn::Sub"]
    check(location_template == location + "date=${!date}/hour=${!hour}/",
          "storage.location.template is Location + date=${date}/hour=${hour}/")
    check(table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"]
          == "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe", "Parquet SerDe")

    retention = template["Parameters"]["RetentionDays"]
    check(retention.get("MinValue", 0) >= 365 and retention["Default"] >= retention["MinValue"],
          f"RetentionDays MinValue {retention.get('MinValue')}, Default {retention['Default']}")
    prefix_pattern = template["Parameters"]["Prefix"]["AllowedPattern"]
    check(re.fullmatch(prefix_pattern, "islets") is not None
          and re.fullmatch(prefix_pattern, "athena-results") is None
          and re.fullmatch(prefix_pattern, "athena-results/x") is None
          and re.fullmatch(prefix_pattern, "islets/") is None,
          "Prefix cannot be under athena-results/ nor end with '/'")
    rules = resources["ArchiveBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    archive_rule = next(r for r in rules if r["Id"] == "expire-archive")
    check(archive_rule["ExpirationInDays"] == {"Ref": "RetentionDays"}
          and archive_rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1,
          "lifecycle: archive expires after RetentionDays, incomplete uploads aborted after 1 day")
    output_location = resources["AthenaWorkGroup"]["Properties"]["WorkGroupConfiguration"][
        "ResultConfiguration"]["OutputLocation"]["Fn::Sub"]
    check(output_location.endswith("/athena-results/")
          and any(r["Prefix"] == "athena-results/" and r["ExpirationInDays"] <= 30 for r in rules),
          "Athena results under athena-results/ with their own lifecycle rule")


def _as_list(value):
    return value if isinstance(value, list) else [value]


def check_policies() -> None:
    readme = (ROOT / "infra" / "README.md").read_text(encoding="utf-8")
    for name in sorted(PLACEHOLDERS):
        check(f"`${{{name}}}`" in readme, f"infra/README.md documents ${{{name}}}")
    for path in sorted(IAM_DIR.glob("*.json")):
        rel = path.relative_to(ROOT)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            check(False, f"{rel}: valid JSON ({error})")
            continue
        check(doc.get("Version") == "2012-10-17", f"{rel}: Version 2012-10-17")
        actions = [a for st in doc["Statement"] for a in _as_list(st.get("Action", []))]
        bad = [a for a in actions if not re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", a)]
        check(not bad, f"{rel}: {len(actions)} actions, none with a wildcard{': ' + str(bad) if bad else ''}")
        check(all(st.get("Effect") in ("Allow", "Deny") and "NotAction" not in st
                  and "NotResource" not in st and "Principal" not in st for st in doc["Statement"]),
              f"{rel}: identity policy statements (Allow/Deny, no NotAction/NotResource/Principal)")
        sids = [st.get("Sid") for st in doc["Statement"]]
        check(all(sids) and len(set(sids)) == len(sids), f"{rel}: every statement has a unique Sid")
        used = set(re.findall(r"\$\{([A-Za-z]+)\}", path.read_text(encoding="utf-8")))
        check(used <= PLACEHOLDERS, f"{rel}: placeholders {sorted(used)} are all documented")
        # Only actions IAM cannot scope to a resource may name Resource "*".
        unscoped = {"sns:ListTopics", "sqs:ListQueues"}
        wide = [st for st in doc["Statement"] if "*" in _as_list(st.get("Resource", []))]
        check(all(set(_as_list(st.get("Action", []))) <= unscoped for st in wide),
              f"{rel}: Resource \"*\" only for actions without resource-level permissions")


def check_infrastructure_promises() -> None:
    """The bucket denies plain HTTP and other encryption; every topic is encrypted."""
    template = yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506
    resources = template["Resources"]
    policies = [r for r in resources.values() if r["Type"] == "AWS::S3::BucketPolicy"]
    check(len(policies) == 1, "one bucket policy")
    statements = policies[0]["Properties"]["PolicyDocument"]["Statement"] if policies else []
    tls = [st for st in statements if st.get("Effect") == "Deny"
           and st.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"]
    check(len(tls) == 1 and tls[0].get("Action") == "s3:*" and len(_as_list(tls[0].get("Resource"))) == 2,
          "the bucket policy denies every request without TLS, on the bucket and its objects")
    sse = [st for st in statements if st.get("Effect") == "Deny" and st.get("Action") == "s3:PutObject"
           and "s3:x-amz-server-side-encryption" in st.get("Condition", {}).get("StringNotEqualsIfExists", {})]
    check(len(sse) == 1, "the bucket policy denies uploads asking for another encryption")
    topics = {name: r for name, r in resources.items() if r["Type"] == "AWS::SNS::Topic"}
    plain = sorted(name for name, r in topics.items() if not r["Properties"].get("KmsMasterKeyId"))
    check(topics and not plain, f"every SNS topic is encrypted at rest (KmsMasterKeyId){': not ' + str(plain) if plain else ''}")


def check_role_needs() -> None:
    """Each binary's policy grants the calls its code makes."""
    needs = {
        "ingester-policy.json": {"sqs:ReceiveMessage", "sqs:DeleteMessage",
                                 "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes",
                                 "s3:PutObject", "s3:ListBucket",
                                 # The journal: an entry per flush, old entries pruned.
                                 "s3:DeleteObject"},
        # Every call replay/src makes, its pre-flight checks included (resolve_topic,
        # resolve_queue, catalog_topics, the drill's scratch topic and queue).
        "replay-policy.json": {"s3:GetObject", "s3:ListBucket", "s3:PutObject",
                               "sns:Publish", "sns:GetTopicAttributes", "sns:ListTopics",
                               "sns:CreateTopic", "sns:DeleteTopic", "sns:Subscribe",
                               "sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes",
                               "sqs:CreateQueue", "sqs:DeleteQueue", "sqs:ReceiveMessage",
                               "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                               "sqs:SetQueueAttributes"},
    }
    for name, wanted in needs.items():
        doc = json.loads((IAM_DIR / name).read_text(encoding="utf-8"))
        granted = {a for st in doc["Statement"] if st.get("Effect") == "Allow"
                   for a in _as_list(st.get("Action", []))}
        missing = sorted(wanted - granted)
        check(not missing, f"infra/iam/{name}: grants what the binary calls{': missing ' + str(missing) if missing else ''}")


def main() -> int:
    check_template()
    check_policies()
    check_role_needs()
    check_infrastructure_promises()
    failed = sum(1 for ok, _ in results if not ok)
    print(f"check_template: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
