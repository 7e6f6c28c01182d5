"""mlship's policy rules: what must never ship (mandatory) and what should not (advisory).

Each rule is a plain function over a resource's properties (or over the stack's resources),
so that the rules are importable and testable without the policy pack's gRPC server, which
building the pack object starts; `infra/policy/__main__.py` is the only place that builds the pack.

Properties arrive as the policy SDK presents them: camelCase names, dicts and lists wrapped
in the SDK's unknown-checking proxy, which raises `UnknownValueError` when a rule reads a value
that is only known after apply. The SDK reports such a rule as "can't run during preview"
(advisory); rules that can decide without the unknown value avoid reading it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

MANDATORY, ADVISORY = EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY
WORLD = ("0.0.0.0/0", "::/0")
# The container contract's port (GET /ping, POST /invocations): the one port that may face the internet.
DEFAULT_SERVING_PORTS = [8080]

INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
VOLUME = "aws:ebs/volume:Volume"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SG_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG_EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_ENCRYPTION = ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                     "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2")
BUCKET_VERSIONING = ("aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2")
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
IAM_POLICIES = ("aws:iam/policy:Policy", "aws:iam/rolePolicy:RolePolicy", "aws:iam/userPolicy:UserPolicy",
                "aws:iam/groupPolicy:GroupPolicy", "aws:iam/role:Role")
IAM_ATTACHMENTS = ("aws:iam/rolePolicyAttachment:RolePolicyAttachment",
                   "aws:iam/userPolicyAttachment:UserPolicyAttachment",
                   "aws:iam/groupPolicyAttachment:GroupPolicyAttachment", "aws:iam/policyAttachment:PolicyAttachment")
KMS_KEY = "aws:kms/key:Key"
SNS_TOPIC = "aws:sns/topic:Topic"
ENDPOINT_CONFIG = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
ENDPOINTS = ("aws:sagemaker/endpoint:Endpoint", "aws-native:sagemaker:Endpoint")
MONITORING_SCHEDULES = ("aws:sagemaker/monitoringSchedule:MonitoringSchedule",
                        "aws-native:sagemaker:MonitoringSchedule")
ADMIN_POLICY_ARN = "arn:aws:iam::aws:policy/AdministratorAccess"


def _items(value: Any) -> list[Any]:
    """A list property as a list (absent -> empty); strings are not lists."""
    if value is None:
        return []
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    return [value]


def _get(props: Mapping[str, Any], *path: str) -> Any:
    current: Any = props
    for key in path:
        if not isinstance(current, Mapping) or key not in current:
            return None
        current = current[key]
    return current


def _document(value: Any) -> Mapping[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return {}
    return value if isinstance(value, Mapping) else {}


def _statements(document: Any) -> list[Mapping[str, Any]]:
    return [s for s in _items(_document(document).get("Statement")) if isinstance(s, Mapping)]


def _is_set(props: Mapping[str, Any], key: str) -> bool:
    """Is the property given? A value known only after apply (a key's ARN, say) is given."""
    try:
        return bool(props.get(key))
    except UnknownValueError:
        return True


# --- resource rules: (props, config) -> violation messages ------------------------------------

def ec2_imdsv2(props: Mapping[str, Any], config: Mapping[str, Any], resource_type: str = "") -> Iterator[str]:
    if _get(props, "metadataOptions", "httpTokens") != "required":
        yield "instance metadata must require session tokens (IMDSv2): set metadataOptions.httpTokens to 'required'"


def ec2_root_volume_encrypted(props: Mapping[str, Any], config: Mapping[str, Any], resource_type: str = "") -> Iterator[str]:
    if _get(props, "rootBlockDevice", "encrypted") is not True:
        yield "the root volume must be encrypted: set rootBlockDevice.encrypted to true"
    for index, device in enumerate(_items(props.get("ebsBlockDevices"))):
        if _get(device, "encrypted") is not True:
            yield f"ebsBlockDevices[{index}] must be encrypted: set encrypted to true"


def ec2_detailed_monitoring(props: Mapping[str, Any], config: Mapping[str, Any], resource_type: str = "") -> Iterator[str]:
    if props.get("monitoring") is not True:
        yield "detailed monitoring is off: set monitoring to true for 1-minute CloudWatch metrics"


def ebs_encrypted(props: Mapping[str, Any], config: Mapping[str, Any], resource_type: str = "") -> Iterator[str]:
    if props.get("encrypted") is not True:
        yield "the EBS volume must be encrypted: set encrypted to true"


def _ingress_entries(resource_type: str, props: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if resource_type == SECURITY_GROUP:
        return [e for e in _items(props.get("ingress")) if isinstance(e, Mapping)]
    if resource_type == SG_RULE:
        return [props] if props.get("type") == "ingress" else []
    if resource_type == SG_INGRESS:
        return [props]
    return []


def _world_sources(entry: Mapping[str, Any]) -> list[str]:
    sources = [*_items(entry.get("cidrBlocks")), *_items(entry.get("ipv6CidrBlocks")),
               *_items(entry.get("cidrIpv4")), *_items(entry.get("cidrIpv6"))]
    return [s for s in sources if s in WORLD]


def _ports(entry: Mapping[str, Any]) -> tuple[int, int]:
    protocol = str(entry.get("protocol", entry.get("ipProtocol", "")))
    if protocol in ("-1", "all"):
        return 0, 65535
    low = entry.get("fromPort")
    high = entry.get("toPort", low)
    return (0, 65535) if low is None else (int(low), int(high if high is not None else low))


def _ingress_rule(check: Callable[[Mapping[str, Any], tuple[int, int], list[str], Mapping[str, Any]], Iterator[str]]):
    def rule(props: Mapping[str, Any], config: Mapping[str, Any], resource_type: str = SECURITY_GROUP) -> Iterator[str]:
        for entry in _ingress_entries(resource_type, props):
            world = _world_sources(entry)
            if world:
                yield from check(entry, _ports(entry), world, config)
    return rule


@_ingress_rule
def no_ssh_from_internet(entry, ports, world, config) -> Iterator[str]:
    if ports[0] <= 22 <= ports[1]:
        yield f"SSH (port 22) is open to {', '.join(world)}: allow it from a named admin CIDR or use SSM instead"


@_ingress_rule
def no_world_ingress(entry, ports, world, config) -> Iterator[str]:
    allowed = [int(p) for p in config.get("servingPorts", DEFAULT_SERVING_PORTS)]
    if not (ports[0] == ports[1] and ports[0] in allowed):
        shown = f"port {ports[0]}" if ports[0] == ports[1] else f"ports {ports[0]}-{ports[1]}"
        yield (f"{shown} is open to {', '.join(world)}; only the serving port(s) {allowed} may face the internet "
               "(policy config servingPorts)")


def sg_rule_descriptions(props: Mapping[str, Any], config: Mapping[str, Any],
                         resource_type: str = SECURITY_GROUP) -> Iterator[str]:
    if resource_type == SECURITY_GROUP:
        entries = [(f"{kind}[{i}]", e) for kind in ("ingress", "egress")
                   for i, e in enumerate(_items(props.get(kind))) if isinstance(e, Mapping)]
    else:
        entries = [("rule", props)]
    for where, entry in entries:
        if not entry.get("description"):
            yield f"{where} has no description: say who or what the rule is for"


def s3_public_access_block_complete(props: Mapping[str, Any], config: Mapping[str, Any], resource_type: str = "") -> Iterator[str]:
    off = [k for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
           if props.get(k) is not True]
    if off:
        yield f"the public access block must turn on all four settings; off: {', '.join(off)}"


def iam_no_wildcard_admin(props: Mapping[str, Any], config: Mapping[str, Any],
                          resource_type: str = "aws:iam/policy:Policy") -> Iterator[str]:
    if resource_type in IAM_ATTACHMENTS:
        if props.get("policyArn") == ADMIN_POLICY_ARN:
            yield "attaches AdministratorAccess: grant the actions the role needs instead"
        return
    documents = [props.get("policy")] if resource_type != "aws:iam/role:Role" else [
        _get(p, "policy") for p in _items(props.get("inlinePolicies"))]
    for document in documents:
        for statement in _statements(document):
            if statement.get("Effect") != "Allow":
                continue
            actions = _items(statement.get("Action"))
            resources = _items(statement.get("Resource"))
            if any(a in ("*", "*:*") for a in actions) and "*" in resources:
                yield "grants every action on every resource (Action '*', Resource '*'): name the actions and resources"
            if statement.get("NotAction") is not None and "*" in resources:
                yield "grants everything but a list (NotAction with Resource '*'): name the actions instead"


def kms_rotation(props: Mapping[str, Any], config: Mapping[str, Any], resource_type: str = "") -> Iterator[str]:
    spec = props.get("customerMasterKeySpec") or props.get("keySpec") or "SYMMETRIC_DEFAULT"
    if spec == "SYMMETRIC_DEFAULT" and props.get("enableKeyRotation") is not True:
        yield "automatic key rotation is off: set enableKeyRotation to true"


def sns_encrypted(props: Mapping[str, Any], config: Mapping[str, Any], resource_type: str = "") -> Iterator[str]:
    if not _is_set(props, "kmsMasterKeyId"):
        yield "the topic is not encrypted: set kmsMasterKeyId (a customer managed key or alias/aws/sns)"


def _instance_variants(props: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Instance-backed variants: serverless variants can have neither data capture nor a KMS key."""
    return [v for v in _items(props.get("productionVariants"))
            if isinstance(v, Mapping) and v.get("serverlessConfig") is None]


def sagemaker_data_capture(props: Mapping[str, Any], config: Mapping[str, Any], resource_type: str = "") -> Iterator[str]:
    if not _instance_variants(props) or props.get("asyncInferenceConfig") is not None:
        return
    capture = props.get("dataCaptureConfig")
    if capture is None or _get(capture, "enableCapture") is False:
        yield "a real-time endpoint configuration must capture data for monitoring: set dataCaptureConfig"
    elif not _get(capture, "destinationS3Uri"):
        yield "dataCaptureConfig has no destinationS3Uri"


def sagemaker_kms(props: Mapping[str, Any], config: Mapping[str, Any], resource_type: str = "") -> Iterator[str]:
    if _instance_variants(props) and not _is_set(props, "kmsKeyArn"):
        yield "the endpoint configuration must encrypt its storage volumes: set kmsKeyArn"


# --- stack rules: (resources, config) -> (resource, message) ----------------------------------

def _known(props: Mapping[str, Any], key: str) -> Any:
    """A property's value, or None when absent or unknown until apply (matching must not fail on those)."""
    try:
        return props.get(key)
    except UnknownValueError:
        return None


def _names(resource: PolicyResource) -> set[str]:
    names = {resource.name}
    for key in ("bucket", "name", "endpointName", "id"):
        value = _known(resource.props, key)
        if isinstance(value, str) and value:
            names.add(value)
    return names


def _refers(resource: PolicyResource, prop: str, target: PolicyResource) -> bool:
    """Does `resource`'s property `prop` point at `target` (by dependency, or by the target's name)?"""
    if any(dep.urn == target.urn for dep in resource.property_dependencies.get(prop, [])):
        return True
    value = _known(resource.props, prop)
    return isinstance(value, str) and value in _names(target)


def _mentions(value: Any, names: set[str]) -> bool:
    try:
        if isinstance(value, Mapping):
            return any(_mentions(value[k], names) for k in value)
        if isinstance(value, Sequence) and not isinstance(value, str):
            return any(_mentions(item, names) for item in value)
    except UnknownValueError:
        return False
    return isinstance(value, str) and value in names


def _depends_on(resource: PolicyResource, target: PolicyResource) -> bool:
    deps = [*resource.dependencies, *(d for ds in resource.property_dependencies.values() for d in ds)]
    return any(d.urn == target.urn for d in deps) or _mentions(resource.props, _names(target) - {target.name})


def _companions(resources: list[PolicyResource], types: Sequence[str], bucket: PolicyResource) -> list[PolicyResource]:
    return [r for r in resources if r.resource_type in types and _refers(r, "bucket", bucket)]


def _buckets(resources: list[PolicyResource]) -> list[PolicyResource]:
    return [r for r in resources if r.resource_type in BUCKETS]


def s3_public_access_blocked(resources: list[PolicyResource], config) -> Iterator[tuple[PolicyResource, str]]:
    for bucket in _buckets(resources):
        if not _companions(resources, (PUBLIC_ACCESS_BLOCK,), bucket):
            yield bucket, "the bucket has no BucketPublicAccessBlock: add one with all four settings on"


def s3_kms_encryption(resources: list[PolicyResource], config) -> Iterator[tuple[PolicyResource, str]]:
    for bucket in _buckets(resources):
        configs = _companions(resources, BUCKET_ENCRYPTION, bucket)
        algorithms = {_get(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm")
                      for c in configs for rule in _items(c.props.get("rules"))}
        if not algorithms & {"aws:kms", "aws:kms:dsse"}:
            yield bucket, "the bucket is not encrypted with KMS: add a server-side encryption configuration using aws:kms"


def _is_artifacts(bucket: PolicyResource) -> bool:
    tags = _known(bucket.props, "tags")
    purpose = tags.get("mlship:purpose") if isinstance(tags, Mapping) else None
    return purpose == "artifacts" or "artifact" in " ".join(_names(bucket)).lower()


def s3_artifacts_versioned(resources: list[PolicyResource], config) -> Iterator[tuple[PolicyResource, str]]:
    for bucket in filter(_is_artifacts, _buckets(resources)):
        statuses = {_get(v.props, "versioningConfiguration", "status")
                    for v in _companions(resources, BUCKET_VERSIONING, bucket)}
        if "Enabled" not in statuses:
            yield bucket, "the artifacts bucket must keep versions (model versions are immutable): enable versioning"


def _denies_plain_http(policy: PolicyResource) -> bool:
    for statement in _statements(_known(policy.props, "policy")):
        condition = _document(statement.get("Condition"))
        secure = _get(condition, "Bool", "aws:SecureTransport")
        if statement.get("Effect") == "Deny" and str(secure).lower() == "false":
            return True
    return False


def s3_tls_only(resources: list[PolicyResource], config) -> Iterator[tuple[PolicyResource, str]]:
    for bucket in _buckets(resources):
        if not any(_denies_plain_http(p) for p in _companions(resources, (BUCKET_POLICY,), bucket)):
            yield bucket, "the bucket accepts plain HTTP: add a bucket policy denying aws:SecureTransport = false"


def _real_time_endpoints(resources: list[PolicyResource]) -> list[PolicyResource]:
    configs = [r for r in resources if r.resource_type == ENDPOINT_CONFIG
               and _instance_variants(r.props) and _known(r.props, "asyncInferenceConfig") is None]
    return [e for e in resources if e.resource_type in ENDPOINTS
            and any(_refers(e, "endpointConfigName", c) for c in configs)]


def sagemaker_rollback_alarms(resources: list[PolicyResource], config) -> Iterator[tuple[PolicyResource, str]]:
    for endpoint in _real_time_endpoints(resources):
        alarms = _items(_get(endpoint.props, "deploymentConfig", "autoRollbackConfiguration", "alarms"))
        if not alarms:
            yield endpoint, "a real-time endpoint must roll back on alarms: set deploymentConfig.autoRollbackConfiguration"


def sagemaker_monitoring_schedule(resources: list[PolicyResource], config) -> Iterator[tuple[PolicyResource, str]]:
    schedules = [r for r in resources if r.resource_type in MONITORING_SCHEDULES]
    for endpoint in _real_time_endpoints(resources):
        watchers = [r for r in resources if _depends_on(r, endpoint) and "JobDefinition" in r.resource_type]
        watched = any(_depends_on(s, endpoint) or any(_depends_on(s, w) for w in watchers) for s in schedules)
        if not watched:
            yield endpoint, "a real-time endpoint must have a Model Monitor schedule watching it"


# --- the rule table ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    level: EnforcementLevel
    types: tuple[str, ...] = ()  # resource rules: the types checked
    check: Callable[..., Iterator[Any]] | None = None
    stack_check: Callable[..., Iterator[tuple[PolicyResource, str]]] | None = None
    config: dict[str, dict[str, Any]] = field(default_factory=dict)

    def violations(self, resource_type: str, props: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> list[str]:
        """Messages for one resource (a resource rule; an empty list when it passes or does not apply)."""
        if resource_type not in self.types or self.check is None:
            return []
        return list(self.check(props, config or {}, resource_type))

    def stack_violations(self, resources: list[PolicyResource], config: Mapping[str, Any] | None = None):
        return list(self.stack_check(resources, config or {})) if self.stack_check else []

    def policy(self) -> ResourceValidationPolicy | StackValidationPolicy:
        schema = PolicyConfigSchema(self.config) if self.config else None
        if self.stack_check is not None:
            def validate_stack(args: StackValidationArgs, report: ReportViolation) -> None:
                for resource, message in self.stack_violations(args.resources, args.get_config()):
                    report(message, resource.urn)
            return StackValidationPolicy(self.name, self.description, validate_stack, self.level, schema)

        def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
            for message in self.violations(args.resource_type, args.props, args.get_config()):
                report(message)
        return ResourceValidationPolicy(self.name, self.description, validate, self.level, schema)


RULES: list[Rule] = [
    Rule("ec2-imdsv2", "EC2 instances and launch templates require IMDSv2 session tokens.", MANDATORY,
         (INSTANCE, LAUNCH_TEMPLATE), ec2_imdsv2),
    Rule("ec2-root-volume-encrypted", "EC2 root and attached block devices are encrypted.", MANDATORY,
         (INSTANCE,), ec2_root_volume_encrypted),
    Rule("ec2-detailed-monitoring", "EC2 instances send 1-minute CloudWatch metrics.", ADVISORY,
         (INSTANCE,), ec2_detailed_monitoring),
    Rule("ebs-volume-encrypted", "EBS volumes are encrypted.", MANDATORY, (VOLUME,), ebs_encrypted),
    Rule("sg-no-ssh-from-internet", "No security group opens SSH (22) to the whole internet.", MANDATORY,
         (SECURITY_GROUP, SG_RULE, SG_INGRESS), no_ssh_from_internet),
    Rule("sg-no-world-ingress", "Only the serving port may be open to 0.0.0.0/0 or ::/0.", MANDATORY,
         (SECURITY_GROUP, SG_RULE, SG_INGRESS), no_world_ingress,
         config={"servingPorts": {"type": "array", "items": {"type": "integer"}, "default": DEFAULT_SERVING_PORTS}}),
    Rule("sg-rule-descriptions", "Every security group rule says what it is for.", ADVISORY,
         (SECURITY_GROUP, SG_RULE, SG_INGRESS, SG_EGRESS), sg_rule_descriptions),
    Rule("s3-public-access-block", "Every bucket has a public access block.", MANDATORY,
         stack_check=s3_public_access_blocked),
    Rule("s3-public-access-block-complete", "Public access blocks turn on all four settings.", MANDATORY,
         (PUBLIC_ACCESS_BLOCK,), s3_public_access_block_complete),
    Rule("s3-kms-encryption", "Every bucket is encrypted with KMS.", MANDATORY, stack_check=s3_kms_encryption),
    Rule("s3-artifacts-versioning", "The artifacts bucket keeps object versions.", MANDATORY,
         stack_check=s3_artifacts_versioned),
    Rule("s3-tls-only", "Every bucket refuses plain-HTTP requests.", MANDATORY, stack_check=s3_tls_only),
    Rule("iam-no-wildcard-admin", "No IAM policy grants every action on every resource.", MANDATORY,
         (*IAM_POLICIES, *IAM_ATTACHMENTS), iam_no_wildcard_admin),
    Rule("kms-key-rotation", "Symmetric KMS keys rotate automatically.", MANDATORY, (KMS_KEY,), kms_rotation),
    Rule("sns-topic-encrypted", "SNS topics are encrypted with KMS.", MANDATORY, (SNS_TOPIC,), sns_encrypted),
    Rule("sagemaker-data-capture", "Real-time endpoint configurations capture data for monitoring.", MANDATORY,
         (ENDPOINT_CONFIG,), sagemaker_data_capture),
    Rule("sagemaker-endpoint-kms", "Instance-backed endpoint configurations encrypt with KMS.", MANDATORY,
         (ENDPOINT_CONFIG,), sagemaker_kms),
    # A production guard: mandatory by default; dev disables it in infra/policy/config/dev.json.
    Rule("sagemaker-rollback-alarms", "Real-time endpoints roll back automatically on alarms (prod).", MANDATORY,
         stack_check=sagemaker_rollback_alarms),
    Rule("sagemaker-monitoring-schedule", "Every real-time endpoint has a monitoring schedule.", MANDATORY,
         stack_check=sagemaker_monitoring_schedule),
]


def policies() -> list[ResourceValidationPolicy | StackValidationPolicy]:
    return [rule.policy() for rule in RULES]
