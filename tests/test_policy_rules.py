"""The policy pack's rules, run through pulumi_policy's own policy objects and unknown-value proxy."""

from __future__ import annotations

import json

import pytest
from pulumi_policy import ResourceValidationArgs, ResourceValidationPolicy, StackValidationArgs, StackValidationPolicy
from pulumi_policy.policy import PolicyResource
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

from conftest import REPO
from infra.policy import rules as r

BY_NAME = {rule.name: rule for rule in r.RULES}
POLICIES = {policy.name: policy for policy in r.policies()}
TLS_POLICY = json.dumps({"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:*",
                                        "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"],
                                        "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]})
ADMIN = json.dumps({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
READ = json.dumps({"Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/*"}]})
GOOD_INSTANCE = {"instanceType": "t3.small", "metadataOptions": {"httpTokens": "required"}, "monitoring": True,
                 "rootBlockDevice": {"encrypted": True, "volumeSize": 20}}
VARIANT = {"variantName": "primary", "modelName": "m", "instanceType": "ml.m5.large", "initialInstanceCount": 1}
CAPTURE = {"enableCapture": True, "initialSamplingPercentage": 100, "destinationS3Uri": "s3://c/capture",
           "captureOptions": [{"captureMode": "Input"}, {"captureMode": "Output"}]}


def ingress(port: int, cidr: str, description: str = "why") -> dict:
    return {"protocol": "tcp", "fromPort": port, "toPort": port, "cidrBlocks": [cidr], "description": description}


# (rule, resource type, passing properties, violating properties)
RESOURCE_CASES = [
    ("ec2-imdsv2", r.INSTANCE, GOOD_INSTANCE, {**GOOD_INSTANCE, "metadataOptions": {"httpTokens": "optional"}}),
    ("ec2-imdsv2", r.LAUNCH_TEMPLATE, {"metadataOptions": {"httpTokens": "required"}}, {}),
    ("ec2-root-volume-encrypted", r.INSTANCE, GOOD_INSTANCE, {**GOOD_INSTANCE, "rootBlockDevice": {"volumeSize": 20}}),
    ("ec2-detailed-monitoring", r.INSTANCE, GOOD_INSTANCE, {**GOOD_INSTANCE, "monitoring": False}),
    ("ebs-volume-encrypted", r.VOLUME, {"encrypted": True, "size": 20}, {"size": 20}),
    ("sg-no-ssh-from-internet", r.SECURITY_GROUP, {"ingress": [ingress(22, "10.1.0.0/16")]},
     {"ingress": [ingress(22, "0.0.0.0/0")]}),
    ("sg-no-ssh-from-internet", r.SG_INGRESS, {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22,
                                                "cidrIpv4": "192.0.2.0/24"},
     {"ipProtocol": "-1", "cidrIpv6": "::/0"}),
    ("sg-no-world-ingress", r.SECURITY_GROUP, {"ingress": [ingress(8080, "0.0.0.0/0"), ingress(5432, "10.0.0.0/8")]},
     {"ingress": [ingress(8080, "0.0.0.0/0"), ingress(5432, "0.0.0.0/0")]}),
    ("sg-no-world-ingress", r.SG_RULE, {"type": "ingress", "protocol": "tcp", "fromPort": 8080, "toPort": 8080,
                                         "cidrBlocks": ["0.0.0.0/0"]},
     {"type": "ingress", "protocol": "tcp", "fromPort": 8000, "toPort": 9000, "cidrBlocks": ["0.0.0.0/0"]}),
    ("sg-rule-descriptions", r.SECURITY_GROUP, {"ingress": [ingress(8080, "0.0.0.0/0")],
                                                 "egress": [{**ingress(443, "0.0.0.0/0"), "description": "https"}]},
     {"ingress": [ingress(8080, "0.0.0.0/0", description="")]}),
    ("s3-public-access-block-complete", r.PUBLIC_ACCESS_BLOCK,
     {"bucket": "b", "blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True,
      "restrictPublicBuckets": True},
     {"bucket": "b", "blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True}),
    ("iam-no-wildcard-admin", "aws:iam/rolePolicy:RolePolicy", {"policy": READ}, {"policy": ADMIN}),
    ("iam-no-wildcard-admin", "aws:iam/role:Role", {"inlinePolicies": [{"name": "read", "policy": READ}]},
     {"inlinePolicies": [{"name": "all", "policy": ADMIN}]}),
    ("iam-no-wildcard-admin", "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
     {"policyArn": "arn:aws:iam::aws:policy/AmazonSageMakerReadOnly"},
     {"policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}),
    ("kms-key-rotation", r.KMS_KEY, {"enableKeyRotation": True}, {"enableKeyRotation": False}),
    ("sns-topic-encrypted", r.SNS_TOPIC, {"kmsMasterKeyId": "alias/aws/sns"}, {"name": "alerts"}),
    ("sagemaker-data-capture", r.ENDPOINT_CONFIG, {"productionVariants": [VARIANT], "dataCaptureConfig": CAPTURE},
     {"productionVariants": [VARIANT], "dataCaptureConfig": {**CAPTURE, "enableCapture": False}}),
    ("sagemaker-endpoint-kms", r.ENDPOINT_CONFIG, {"productionVariants": [VARIANT], "kmsKeyArn": "arn:aws:kms:k"},
     {"productionVariants": [VARIANT]}),
]


def run_resource_policy(name: str, resource_type: str, props: dict, config: dict | None = None) -> list[str]:
    """Validate like the analyzer does: properties behind the SDK's unknown-checking proxy."""
    policy = POLICIES[name]
    assert isinstance(policy, ResourceValidationPolicy)
    reported: list[str] = []
    args = ResourceValidationArgs(resource_type, unknown_checking_proxy(json.loads(json.dumps(props))),
                                  f"urn:pulumi:dev::mlship::{resource_type}::x", "x", None, None, config or {})
    policy.validate(args, lambda message, urn=None: reported.append(message))
    return reported


@pytest.mark.parametrize("name, resource_type, good, bad", RESOURCE_CASES,
                         ids=[f"{c[0]}:{c[1].rsplit(':', 1)[-1]}" for c in RESOURCE_CASES])
def test_resource_rule_passes_and_violates(name, resource_type, good, bad):
    assert run_resource_policy(name, resource_type, good) == []
    assert run_resource_policy(name, resource_type, bad) != []


def test_serving_ports_come_from_policy_config():
    props = {"ingress": [ingress(443, "0.0.0.0/0")]}
    assert run_resource_policy("sg-no-world-ingress", r.SECURITY_GROUP, props) != []
    assert run_resource_policy("sg-no-world-ingress", r.SECURITY_GROUP, props, {"servingPorts": [443]}) == []


def test_serverless_configurations_need_neither_capture_nor_kms():
    serverless = {"productionVariants": [{"variantName": "s", "modelName": "m",
                                          "serverlessConfig": {"memorySizeInMb": 2048, "maxConcurrency": 5}}]}
    assert run_resource_policy("sagemaker-data-capture", r.ENDPOINT_CONFIG, serverless) == []
    assert run_resource_policy("sagemaker-endpoint-kms", r.ENDPOINT_CONFIG, serverless) == []


def test_unknown_values_raise_the_sdk_error_the_analyzer_turns_into_an_advisory():
    unknown_tokens = {**GOOD_INSTANCE, "metadataOptions": {"httpTokens": UNKNOWN_STRING_VALUE}}
    with pytest.raises(UnknownValueError) as raised:
        run_resource_policy("ec2-imdsv2", r.INSTANCE, unknown_tokens)
    assert raised.value.props == ["metadataOptions", "httpTokens"]
    assert "can't be known during preview" in raised.value.message


def test_rules_decide_without_values_they_do_not_need():
    # a VPC id or a KMS key ARN known only after apply does not stop the rules that do not read them
    sg = {"vpcId": UNKNOWN_STRING_VALUE, "ingress": [ingress(8080, "0.0.0.0/0")]}
    assert run_resource_policy("sg-no-world-ingress", r.SECURITY_GROUP, sg) == []
    config = {"productionVariants": [VARIANT], "dataCaptureConfig": CAPTURE, "kmsKeyArn": UNKNOWN_STRING_VALUE}
    assert run_resource_policy("sagemaker-data-capture", r.ENDPOINT_CONFIG, config) == []
    assert run_resource_policy("sagemaker-endpoint-kms", r.ENDPOINT_CONFIG, config) == []


# --- stack rules ------------------------------------------------------------------------------

def res(type_: str, name: str, props: dict, deps: dict[str, list[PolicyResource]] | None = None) -> PolicyResource:
    urn = f"urn:pulumi:prod::mlship::{type_}::{name}"
    flat = [d for ds in (deps or {}).values() for d in ds]
    return PolicyResource(type_, unknown_checking_proxy(json.loads(json.dumps(props))), urn, name, None, None, None,
                          flat, dict(deps or {}))


def bucket_with(*, block=True, kms=True, versioning=True, tls=True, name="artifacts") -> list[PolicyResource]:
    # the bucket's name is unknown until apply: companions point at it by property dependency
    bucket = res("aws:s3/bucket:Bucket", name, {"bucket": UNKNOWN_STRING_VALUE, "tags": {"mlship:purpose": "artifacts"}})
    dep = {"bucket": [bucket]}
    found = [bucket]
    if block:
        found.append(res(r.PUBLIC_ACCESS_BLOCK, f"{name}-block", {"bucket": UNKNOWN_STRING_VALUE,
                                                                  "blockPublicAcls": True}, dep))
    if kms:
        found.append(res(r.BUCKET_ENCRYPTION[0], f"{name}-sse", {"bucket": UNKNOWN_STRING_VALUE, "rules": [
            {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": "k"}}]}, dep))
    if versioning:
        found.append(res(r.BUCKET_VERSIONING[0], f"{name}-versions",
                         {"bucket": UNKNOWN_STRING_VALUE, "versioningConfiguration": {"status": "Enabled"}}, dep))
    if tls:
        found.append(res(r.BUCKET_POLICY, f"{name}-tls", {"bucket": UNKNOWN_STRING_VALUE, "policy": TLS_POLICY}, dep))
    return found


def endpoint_with(*, alarms=True, schedule=True, native=False) -> list[PolicyResource]:
    config = res(r.ENDPOINT_CONFIG, "config", {"name": "churn-config-abc", "productionVariants": [VARIANT],
                                               "dataCaptureConfig": CAPTURE, "kmsKeyArn": "k"})
    deployment = {"blueGreenUpdatePolicy": {"trafficRoutingConfiguration": {"type": "CANARY"}}}
    if alarms:
        deployment["autoRollbackConfiguration"] = {"alarms": [{"alarmName": "churn-5xx"}]}
    endpoint = res(r.ENDPOINTS[native], "endpoint", {"name" if not native else "endpointName": "churn-prod",
                                                     "endpointConfigName": "churn-config-abc",
                                                     "deploymentConfig": deployment})
    found = [config, endpoint]
    if schedule:
        job = res("aws:sagemaker/dataQualityJobDefinition:DataQualityJobDefinition", "data-quality",
                  {"name": "churn-dq", "dataQualityJobInput": {"endpointInput": {"endpointName": "churn-prod"}}})
        found += [job, res("aws:sagemaker/monitoringSchedule:MonitoringSchedule", "schedule",
                           {"monitoringScheduleConfig": {"monitoringJobDefinitionName": "churn-dq",
                                                         "monitoringType": "DataQuality"}})]
    return found


STACK_CASES = [
    ("s3-public-access-block", bucket_with(), bucket_with(block=False)),
    ("s3-kms-encryption", bucket_with(), bucket_with(kms=False)),
    ("s3-artifacts-versioning", bucket_with(), bucket_with(versioning=False)),
    ("s3-tls-only", bucket_with(), bucket_with(tls=False)),
    ("sagemaker-rollback-alarms", endpoint_with(), endpoint_with(alarms=False)),
    ("sagemaker-rollback-alarms", endpoint_with(native=True), endpoint_with(alarms=False, native=True)),
    ("sagemaker-monitoring-schedule", endpoint_with(), endpoint_with(schedule=False)),
    ("sagemaker-monitoring-schedule", endpoint_with(native=True), endpoint_with(schedule=False, native=True)),
]


def run_stack_policy(name: str, resources: list[PolicyResource]) -> list[tuple[str, str]]:
    policy = POLICIES[name]
    assert isinstance(policy, StackValidationPolicy)
    reported: list[tuple[str, str]] = []
    policy.validate(StackValidationArgs(resources, {}), lambda message, urn=None: reported.append((message, urn)))
    return reported


@pytest.mark.parametrize("name, good, bad", STACK_CASES, ids=[f"{c[0]}:{c[1][-1].resource_type}" for c in STACK_CASES])
def test_stack_rule_passes_and_violates(name, good, bad):
    assert run_stack_policy(name, good) == []
    violations = run_stack_policy(name, bad)
    assert len(violations) == 1
    assert violations[0][1] == bad[0 if name.startswith("s3") else 1].urn  # reported on the bucket / endpoint


def test_only_the_artifacts_bucket_needs_versioning():
    logs = bucket_with(versioning=False, name="access-logs")
    logs[0] = res("aws:s3/bucket:Bucket", "access-logs", {"bucket": "mlship-logs"})
    assert run_stack_policy("s3-artifacts-versioning", logs) == []


def test_every_rule_has_a_case_and_the_pack_is_big_enough():
    covered = {c[0] for c in RESOURCE_CASES} | {c[0] for c in STACK_CASES}
    assert covered == set(BY_NAME)
    assert len(r.RULES) >= 15
    levels = {rule.level.value for rule in r.RULES}
    assert levels == {"mandatory", "advisory"}


def test_the_pack_is_built_only_in_its_entry_file():
    policy_dir = REPO / "infra" / "policy"
    assert (policy_dir / "PulumiPolicy.yaml").is_file()
    builders = [p.relative_to(REPO).as_posix() for p in (REPO / "infra").rglob("*.py")
                if "PolicyPack(" in p.read_text()]
    assert builders == ["infra/policy/__main__.py"]
    for stack in ("dev", "prod"):
        config = json.loads((policy_dir / "config" / f"{stack}.json").read_text())
        assert set(config) <= set(BY_NAME)
    dev = json.loads((policy_dir / "config" / "dev.json").read_text())
    assert dev["sagemaker-rollback-alarms"] == "disabled"
    assert "sagemaker-rollback-alarms" not in json.loads((policy_dir / "config" / "prod.json").read_text())
