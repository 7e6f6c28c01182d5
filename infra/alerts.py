"""Alerts: the SNS topic every alarm notifies, encrypted with its own KMS key, and its e-mail subscriptions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.iam import document


@dataclass(frozen=True)
class AlertsArgs:
    prefix: str
    account_id: pulumi.Input[str]
    emails: Sequence[str]
    kms_deletion_window_days: int
    tags: dict


class Alerts(pulumi.ComponentResource):
    """CloudWatch alarms publish to an encrypted topic only if their service may use the key: the
    stack's storage key does not allow that, so the topic has a key whose policy does."""

    def __init__(self, name: str, args: AlertsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlship:watch:Alerts", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        publishers = ["cloudwatch.amazonaws.com", "events.amazonaws.com"]
        self.key = aws.kms.Key(
            f"{name}-key", description=f"{args.prefix}: alert messages", enable_key_rotation=True,
            deletion_window_in_days=args.kms_deletion_window_days, tags=args.tags, opts=child,
            policy=document([
                {"Sid": "AccountAdministers", "Effect": "Allow", "Action": "kms:*", "Resource": "*",
                 "Principal": {"AWS": pulumi.Output.concat("arn:aws:iam::", args.account_id, ":root")}},
                {"Sid": "AlarmsEncryptMessages", "Effect": "Allow", "Principal": {"Service": publishers},
                 "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
                 "Condition": {"StringEquals": {"aws:SourceAccount": args.account_id}}},
            ]))
        aws.kms.Alias(f"{name}-key", name=f"alias/{args.prefix}-alerts", target_key_id=self.key.key_id, opts=child)
        self.topic = aws.sns.Topic(f"{name}-topic", name=f"{args.prefix}-alerts", kms_master_key_id=self.key.arn,
                                   tags=args.tags, opts=child)
        aws.sns.TopicPolicy(f"{name}-topic", arn=self.topic.arn, opts=child, policy=document([
            {"Sid": "AlarmsPublish", "Effect": "Allow", "Principal": {"Service": publishers},
             "Action": "sns:Publish", "Resource": self.topic.arn,
             "Condition": {"StringEquals": {"aws:SourceAccount": args.account_id}}},
        ]))
        # Each address gets a confirmation mail; nothing is delivered to it until it is confirmed.
        for email in args.emails:
            aws.sns.TopicSubscription(f"{name}-{email}", topic=self.topic.arn, protocol="email", endpoint=email,
                                      opts=child)
        self.topic_arn = self.topic.arn
        self.register_outputs({"topic_arn": self.topic_arn, "emails": list(args.emails)})
