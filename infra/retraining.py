"""Drift-triggered retraining: a drift alarm going into ALARM sends GitHub a repository_dispatch.

EventBridge matches the alarm's state change (every drift alarm's name starts with
`<endpoint>-drift-`), and calls `POST /repos/<owner>/<name>/dispatches` through an API
destination. The GitHub token lives only in the connection (EventBridge keeps it in Secrets
Manager) and in the stack as a Pulumi secret. The model workflow listens for the event type
(`drift-alarm`), retrains, and opens the pull request that bumps the deployed version.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import iam

GITHUB_API = "https://api.github.com"


@dataclass(frozen=True)
class RetrainingArgs:
    prefix: str
    repository: str  # owner/name
    event_type: str
    github_token: pulumi.Input[str]  # a Pulumi secret
    alarm_name_prefixes: Sequence[str]
    model: str
    tags: dict


def event_pattern(alarm_name_prefixes: Sequence[str]) -> str:
    return json.dumps({
        "source": ["aws.cloudwatch"],
        "detail-type": ["CloudWatch Alarm State Change"],
        "detail": {"alarmName": [{"prefix": p} for p in alarm_name_prefixes], "state": {"value": ["ALARM"]}},
    }, sort_keys=True)


def dispatch_template(event_type: str, model: str, stack: str) -> str:
    """The repository_dispatch body; <alarm> and <time> are filled in from the event."""
    return json.dumps({"event_type": event_type, "client_payload": {
        "alarm": "<alarm>", "time": "<time>", "model": model, "stack": stack}})


class Retraining(pulumi.ComponentResource):
    def __init__(self, name: str, args: RetrainingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlship:watch:Retraining", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.connection = aws.cloudwatch.EventConnection(
            f"{name}-github", name=f"{args.prefix}-github", description=f"GitHub API for {args.repository}",
            authorization_type="API_KEY",
            auth_parameters={
                "api_key": {"key": "Authorization",
                            "value": pulumi.Output.secret(pulumi.Output.concat("Bearer ", args.github_token))},
                # GitHub refuses requests without a User-Agent, and wants its media type.
                "invocation_http_parameters": {"headers": [
                    {"key": "Accept", "value": "application/vnd.github+json", "is_value_secret": False},
                    {"key": "User-Agent", "value": f"{args.prefix}-retraining", "is_value_secret": False},
                    {"key": "X-GitHub-Api-Version", "value": "2022-11-28", "is_value_secret": False}]},
            },
            opts=child)
        self.destination = aws.cloudwatch.EventApiDestination(
            f"{name}-dispatch", name=f"{args.prefix}-repository-dispatch",
            description=f"repository_dispatch {args.event_type} on {args.repository}",
            connection_arn=self.connection.arn, http_method="POST",
            invocation_endpoint=f"{GITHUB_API}/repos/{args.repository}/dispatches",
            invocation_rate_limit_per_second=1, opts=child)
        self.rule = aws.cloudwatch.EventRule(
            f"{name}-drift", name=f"{args.prefix}-drift-retrain",
            description="A drift alarm fired: ask GitHub to retrain the model",
            event_pattern=event_pattern(args.alarm_name_prefixes), tags=args.tags, opts=child)
        role = iam.service_role(
            f"{name}-invoke", "events.amazonaws.com", parent=self, tags=args.tags,
            description=f"{args.prefix}: EventBridge calls GitHub for retraining",
            statements=[iam.statement(["events:InvokeApiDestination"], [self.destination.arn], "CallGitHub")])
        self.target = aws.cloudwatch.EventTarget(
            f"{name}-dispatch", rule=self.rule.name, arn=self.destination.arn, role_arn=role.arn,
            input_transformer={
                "input_paths": {"alarm": "$.detail.alarmName", "time": "$.time"},
                "input_template": dispatch_template(args.event_type, args.model, pulumi.get_stack()),
            },
            retry_policy={"maximum_event_age_in_seconds": 3600, "maximum_retry_attempts": 10}, opts=child)
        self.register_outputs({"rule_name": self.rule.name, "destination_arn": self.destination.arn})
