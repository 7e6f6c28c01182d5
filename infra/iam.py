"""IAM policy documents and roles, written the one way every component uses."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws


def statement(actions: Sequence[str], resources: Sequence[Any], sid: str, condition: dict | None = None) -> dict:
    """One Allow statement; `resources` may hold Outputs (ARNs of this stack's resources)."""
    result = {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": list(resources)}
    if condition:
        result["Condition"] = condition
    return result


def document(statements: Sequence[dict]) -> pulumi.Output[str]:
    """A policy document as JSON, resolved once the ARNs it names are known."""
    return pulumi.Output.from_input(list(statements)).apply(
        lambda resolved: json.dumps({"Version": "2012-10-17", "Statement": resolved}, sort_keys=True)
    )


def trust(service: str, account_id: pulumi.Input[str] | None = None) -> str | pulumi.Output[str]:
    """A trust policy letting one AWS service assume the role (only for this account when given)."""
    condition = None if account_id is None else {"StringEquals": {"aws:SourceAccount": account_id}}
    principal = {"Sid": "ServiceAssumesRole", "Effect": "Allow", "Principal": {"Service": service},
                 "Action": "sts:AssumeRole"}
    if condition:
        principal["Condition"] = condition
    return document([principal])


def service_role(name: str, service: str, statements: Sequence[dict], parent: pulumi.Resource,
                 description: str, account_id: pulumi.Input[str] | None = None,
                 tags: dict | None = None) -> aws.iam.Role:
    """A role for one AWS service with exactly the given inline permissions and nothing attached."""
    opts = pulumi.ResourceOptions(parent=parent)
    role = aws.iam.Role(name, assume_role_policy=trust(service, account_id), description=description,
                        max_session_duration=3600, tags=tags, opts=opts)
    aws.iam.RolePolicy(f"{name}-permissions", role=role.id, policy=document(statements), opts=opts)
    return role


def kms_use(key_arn: pulumi.Input[str], sid: str = "UseStackKey") -> dict:
    """Encrypt and decrypt with the stack's key (S3 objects, SNS messages, volumes)."""
    return statement(["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"], [key_arn], sid)


def objects(bucket_arn: pulumi.Input[str], prefix: str) -> pulumi.Output[str]:
    """The ARN pattern of the objects under one prefix of a bucket."""
    return pulumi.Output.concat(bucket_arn, "/", prefix, "*")
