#!/usr/bin/env python3
"""Deploys infra/cloudformation/islets-audit.yaml on a CloudFormation endpoint (moto_server in
tests) and prints the stack outputs as one JSON object on stdout.

    deploy_stack.py --endpoint http://127.0.0.1:5055 --stack-name islets-audit \
                    --bucket audit-archive --create-topics true

Waits for CREATE_COMPLETE; on any other end state prints the failed resources and their
reasons on stderr and exits 1 (2 for bad arguments, an unreadable template, or parameters
that break the template's constraints: moto does not enforce those, so this script does). Resources
that the template asks for but the endpoint's CloudFormation did not create (moto supports
only some resource types, and skips the others silently) are listed on stderr;
--require-all-resources turns that into a failure (exit 3).

Credentials and region come from the usual AWS variables; without credentials it uses
moto's dummy ones, so it never signs with real credentials unless they are set.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import boto3
import yaml
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

DEFAULT_TEMPLATE = Path(__file__).resolve().parents[1] / "cloudformation" / "islets-audit.yaml"


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation YAML: `!Ref x` becomes {"Ref": x}, `!Sub s` {"Fn::Sub": s}, ..."""


def _cfn_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template(path: Path) -> tuple[str, dict]:
    body = path.read_text(encoding="utf-8")
    return body, yaml.load(body, Loader=_CfnLoader)  # noqa: S506 (SafeLoader subclass)


def parameter_values(template: dict, given: dict[str, str]) -> dict[str, str]:
    values = {}
    for name, spec in template.get("Parameters", {}).items():
        if name in given:
            values[name] = given[name]
        elif "Default" in spec:
            values[name] = str(spec["Default"])
    return values


def constraint_errors(template: dict, values: dict[str, str]) -> list[str]:
    """Parameter constraints as CloudFormation enforces them before creating anything.

    moto 5.2 does not enforce AllowedValues, AllowedPattern, MinValue/MaxValue or
    MinLength/MaxLength, so without this a RetentionDays of 300 would deploy on moto; on AWS
    it is refused. Checking here keeps the emulator run honest about what AWS accepts.
    """
    errors = []
    for name, spec in template.get("Parameters", {}).items():
        if name not in values:
            errors.append(f"Parameter {name} has no value and no default")
            continue
        value = values[name]
        if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
            errors.append(f"Parameter {name} must be one of {spec['AllowedValues']} (got {value!r})")
        if spec.get("Type") == "Number":
            try:
                number = float(value)
            except ValueError:
                errors.append(f"Parameter {name} must be a number (got {value!r})")
                continue
            if "MinValue" in spec and number < float(spec["MinValue"]):
                errors.append(f"Parameter {name} must be a number not less than {spec['MinValue']} (got {value})")
            if "MaxValue" in spec and number > float(spec["MaxValue"]):
                errors.append(f"Parameter {name} must be a number not greater than {spec['MaxValue']} (got {value})")
        else:
            if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
                errors.append(f"Parameter {name} failed to satisfy constraint: "
                              f"{spec.get('ConstraintDescription', spec['AllowedPattern'])} (got {value!r})")
            if "MinLength" in spec and len(value) < int(spec["MinLength"]):
                errors.append(f"Parameter {name} is shorter than {spec['MinLength']} characters")
            if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
                errors.append(f"Parameter {name} is longer than {spec['MaxLength']} characters")
    return errors


def evaluate_condition(expr, params: dict[str, str], conditions: dict) -> bool:
    """The condition functions this template uses: Equals, Not, And, Or, Condition, Ref."""

    def value(x):
        if isinstance(x, dict) and "Ref" in x:
            return params.get(x["Ref"], "")
        return str(x)

    if isinstance(expr, dict):
        if "Fn::Equals" in expr:
            a, b = expr["Fn::Equals"]
            return value(a) == value(b)
        if "Fn::Not" in expr:
            return not evaluate_condition(expr["Fn::Not"][0], params, conditions)
        if "Fn::And" in expr:
            return all(evaluate_condition(e, params, conditions) for e in expr["Fn::And"])
        if "Fn::Or" in expr:
            return any(evaluate_condition(e, params, conditions) for e in expr["Fn::Or"])
        if "Condition" in expr:
            return evaluate_condition(conditions[expr["Condition"]], params, conditions)
    raise ValueError(f"unsupported condition expression: {expr!r}")


def expected_resources(template: dict, params: dict[str, str]) -> dict[str, str]:
    conditions = template.get("Conditions", {})
    expected = {}
    for logical_id, resource in template["Resources"].items():
        condition = resource.get("Condition")
        if condition and not evaluate_condition(conditions[condition], params, conditions):
            continue
        expected[logical_id] = resource["Type"]
    return expected


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", required=True, help="AWS endpoint URL (moto_server)")
    parser.add_argument("--stack-name", required=True)
    parser.add_argument("--bucket", required=True, help="BucketName parameter")
    parser.add_argument("--create-topics", choices=["true", "false"], default="true",
                        help="CreateTopics parameter (default true: the emulator has no topics)")
    parser.add_argument("--prefix", help="Prefix parameter (template default: islets)")
    parser.add_argument("--retention-days", help="RetentionDays parameter (template default: 400)")
    parser.add_argument("--kms-key-arn", help="KmsKeyArn parameter (default: SSE-S3)")
    parser.add_argument("--parameter", action="append", default=[], metavar="KEY=VALUE",
                        help="any other template parameter; repeatable")
    parser.add_argument("--region", default=os.environ.get("AWS_REGION")
                        or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
    parser.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the stack")
    parser.add_argument("--require-all-resources", action="store_true",
                        help="fail when the endpoint did not create every resource the template asks for")
    args = parser.parse_args()

    given = {"BucketName": args.bucket, "CreateTopics": args.create_topics}
    if args.prefix is not None:
        given["Prefix"] = args.prefix
    if args.retention_days is not None:
        given["RetentionDays"] = args.retention_days
    if args.kms_key_arn is not None:
        given["KmsKeyArn"] = args.kms_key_arn
    for item in args.parameter:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"deploy_stack: --parameter {item!r}: expected KEY=VALUE", file=sys.stderr)
            return 2
        given[key] = value

    try:
        body, template = load_template(args.template)
    except (OSError, yaml.YAMLError) as error:
        print(f"deploy_stack: cannot read the template {args.template}: {error}", file=sys.stderr)
        return 2
    unknown = sorted(set(given) - set(template.get("Parameters", {})))
    if unknown:
        print(f"deploy_stack: the template has no parameter {', '.join(unknown)}", file=sys.stderr)
        return 2

    params = parameter_values(template, given)
    errors = constraint_errors(template, params)
    if errors:
        print("deploy_stack: CloudFormation would refuse these parameters (nothing was created):",
              file=sys.stderr)
        for error in errors:
            print(f"  {error}", file=sys.stderr)
        return 2

    if not os.environ.get("AWS_ACCESS_KEY_ID") and not os.environ.get("AWS_PROFILE"):
        os.environ["AWS_ACCESS_KEY_ID"] = "testing"
        os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    cfn = boto3.client("cloudformation", endpoint_url=args.endpoint, region_name=args.region,
                       config=Config(retries={"max_attempts": 3}))

    try:
        cfn.create_stack(
            StackName=args.stack_name,
            TemplateBody=body,
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in given.items()],
        )
        deadline = time.monotonic() + args.timeout
        while True:
            stack = cfn.describe_stacks(StackName=args.stack_name)["Stacks"][0]
            status = stack["StackStatus"]
            if not status.endswith("_IN_PROGRESS"):
                break
            if time.monotonic() > deadline:
                print(f"deploy_stack: stack {args.stack_name} still {status} after {args.timeout:.0f}s",
                      file=sys.stderr)
                return 1
            time.sleep(0.5)

        if status != "CREATE_COMPLETE":
            print(f"deploy_stack: stack {args.stack_name} ended {status}"
                  + (f": {stack['StackStatusReason']}" if stack.get("StackStatusReason") else ""),
                  file=sys.stderr)
            for event in cfn.describe_stack_events(StackName=args.stack_name)["StackEvents"]:
                if event.get("ResourceStatus", "").endswith("FAILED"):
                    print(f"  {event['LogicalResourceId']} ({event.get('ResourceType')}): "
                          f"{event['ResourceStatus']} {event.get('ResourceStatusReason', '')}",
                          file=sys.stderr)
            return 1

        created = {
            r["LogicalResourceId"]
            for page in cfn.get_paginator("list_stack_resources").paginate(StackName=args.stack_name)
            for r in page["StackResourceSummaries"]
        }
    except (ClientError, BotoCoreError) as error:
        print(f"deploy_stack: {error}", file=sys.stderr)
        return 1

    missing = {k: t for k, t in expected_resources(template, params).items() if k not in created}
    if missing:
        print(f"deploy_stack: {args.stack_name} is CREATE_COMPLETE, but the endpoint's CloudFormation "
              f"did not create {len(missing)} of the template's resources "
              "(an emulator skips the types it does not support):", file=sys.stderr)
        for logical_id, resource_type in sorted(missing.items(), key=lambda kv: (kv[1], kv[0])):
            print(f"  {logical_id} ({resource_type})", file=sys.stderr)
        if args.require_all_resources:
            return 3

    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    json.dump(outputs, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
