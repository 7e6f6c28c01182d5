"""`mlship plan --stack dev|prod [--json]`: what a stack would create, from the program itself, offline."""

from __future__ import annotations

import argparse
import json
from typing import Any

from infra.offline import Plan, PlannedResource, run, stack_files

# The inputs a reviewer reads first, per resource type: what holds data, serves traffic, opens
# access or costs money. Every other input is in --json.
RELEVANT: dict[str, tuple[str, ...]] = {
    "aws:kms/key:Key": ("enableKeyRotation", "deletionWindowInDays"),
    "aws:s3/bucket:Bucket": ("forceDestroy",),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": ("rules",),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": ("blockPublicAcls", "blockPublicPolicy",
                                                               "ignorePublicAcls", "restrictPublicBuckets"),
    "aws:s3/bucketVersioning:BucketVersioning": ("versioningConfiguration",),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": ("rules",),
    "aws:ec2/instance:Instance": ("instanceType", "ami", "metadataOptions", "rootBlockDevice", "monitoring",
                                  "userDataReplaceOnChange", "userData"),
    "aws:ebs/volume:Volume": ("size", "type", "encrypted", "availabilityZone"),
    "aws:ec2/securityGroup:SecurityGroup": ("ingress", "egress"),
    "aws:ec2/eip:Eip": ("domain",),
    "aws:iam/role:Role": ("assumeRolePolicy",),
    "aws:iam/rolePolicy:RolePolicy": ("policy",),
    "aws:sagemaker/model:Model": ("primaryContainer",),
    "aws:sagemaker/endpointConfiguration:EndpointConfiguration": ("productionVariants", "shadowProductionVariants",
                                                                  "dataCaptureConfig", "asyncInferenceConfig"),
    "aws-native:sagemaker:Endpoint": ("endpointName", "deploymentConfig", "retainAllVariantProperties",
                                      "excludeRetainedVariantProperties"),
    "aws:appautoscaling/target:Target": ("resourceId", "minCapacity", "maxCapacity"),
    "aws:appautoscaling/policy:Policy": ("policyType", "targetTrackingScalingPolicyConfiguration",
                                         "stepScalingPolicyConfiguration"),
    "aws:sagemaker/pipeline:Pipeline": ("pipelineName", "pipelineDefinition"),
    "aws:scheduler/schedule:Schedule": ("name", "scheduleExpression", "scheduleExpressionTimezone"),
    "aws:sagemaker/modelPackageGroup:ModelPackageGroup": ("modelPackageGroupName",),
    "aws:sns/topic:Topic": ("name", "kmsMasterKeyId"),
    "aws:sns/topicSubscription:TopicSubscription": ("protocol", "endpoint"),
    "aws:cloudwatch/metricAlarm:MetricAlarm": ("name", "namespace", "metricName", "dimensions", "threshold",
                                               "comparisonOperator", "extendedStatistic", "statistic", "alarmActions"),
    "aws:cloudwatch/dashboard:Dashboard": ("dashboardName",),
    "aws:cloudwatch/logGroup:LogGroup": ("name", "retentionInDays"),
    "aws:sagemaker/dataQualityJobDefinition:DataQualityJobDefinition": (
        "dataQualityAppSpecification", "dataQualityBaselineConfig", "dataQualityJobInput", "dataQualityJobOutputConfig"),
    "aws-native:sagemaker:ModelQualityJobDefinition": (
        "endpointName", "modelQualityAppSpecification", "modelQualityBaselineConfig", "modelQualityJobInput"),
    "aws:sagemaker/monitoringSchedule:MonitoringSchedule": ("name", "monitoringScheduleConfig"),
    "aws:cloudwatch/eventRule:EventRule": ("name", "eventPattern"),
    "aws:cloudwatch/eventApiDestination:EventApiDestination": ("invocationEndpoint", "httpMethod"),
    "aws:cloudwatch/eventTarget:EventTarget": ("arn", "inputTransformer"),
    "aws:s3/bucketObjectv2:BucketObjectv2": ("key", "content"),
}
JSON_TEXT = ("policy", "assumeRolePolicy", "pipelineDefinition", "eventPattern", "content")


def _whole(value: Any) -> Any:
    """Numbers travel through the engine as floats; show 3600, not 3600.0."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole(v) for v in value]
    return value


def _widget_titles(body: Any) -> list[str]:
    widgets = json.loads(body)["widgets"] if isinstance(body, str) else []
    return [w["properties"].get("title") or w["properties"].get("markdown", "") for w in widgets]


# Inputs too long to show whole, summarised: input -> (shown as, how).
SUMMARIES: dict[str, dict[str, tuple[str, Any]]] = {
    "aws:cloudwatch/dashboard:Dashboard": {"dashboardBody": ("widgets", _widget_titles)},
}


def relevant(resource: PlannedResource) -> dict[str, Any]:
    """The reviewer-relevant inputs of one resource, JSON strings decoded, long ones summarised."""
    shown = {label: summarise(resource.inputs[key]) for key, (label, summarise) in SUMMARIES.get(resource.type, {}).items()
             if key in resource.inputs}
    for key in RELEVANT.get(resource.type, ()):
        if key in resource.inputs:
            value = resource.inputs[key]
            shown[key] = _whole(json.loads(value) if key in JSON_TEXT and isinstance(value, str) else value)
    return shown


def render(plan: Plan) -> str:
    parents = {r.urn: r.name for r in plan.resources}
    protected = sum(r.protect for r in plan.resources)
    lines = [f"stack {plan.stack}: {len(plan.resources)} resources "
             f"({sum(r.custom for r in plan.resources)} in AWS, {protected} protected from deletion), offline plan",
             "ids, ARNs, the account (123456789012) and the AMI are offline placeholders for what AWS assigns"]
    lines += [f"note: {note}" for note in plan.notes]
    for r in plan.resources:
        flags = [f for f, on in (("protected", r.protect), ("retained on delete", r.retain_on_delete)) if on]
        if r.ignore_changes:
            flags.append(f"ignores changes to {', '.join(r.ignore_changes)}")
        parent = parents.get(r.parent, "stack") if r.parent else "stack"
        lines.append(f"\n{r.type}  {r.name}  (parent: {parent}){'  [' + '; '.join(flags) + ']' if flags else ''}")
        for key, value in relevant(r).items():
            text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
            if "\n" in text:  # user data and the like: say how big, not what
                text = f"<{len(text.splitlines())} lines>"
            lines.append(f"    {key}: {text}")
    lines.append("\noutputs:")
    lines += [f"    {name}: {json.dumps(value)}" for name, value in plan.outputs.items()]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    stacks = sorted(stack_files())
    parser = argparse.ArgumentParser(
        prog="mlship plan",
        description="Run the Pulumi program under Pulumi's mocks with a stack's Pulumi.<stack>.yaml and show "
                    "every resource it would create. No cloud account and no Pulumi CLI needed.")
    parser.add_argument("--stack", required=True, help=f"the stack to plan ({', '.join(stacks) or 'none found'})")
    parser.add_argument("--json", action="store_true", help="every resource with all its inputs, as JSON")
    args = parser.parse_args(argv)
    plan = run(args.stack)
    print(json.dumps(plan.to_json(), indent=2, sort_keys=True) if args.json else render(plan))
    return 0
