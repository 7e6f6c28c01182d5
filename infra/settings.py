"""The stack's settings: read once from the stack configuration into one typed, validated object.

Every value the program uses comes from here. A wrong value raises `SettingsError` before any
resource is registered, with a message that names the key, the value and what is allowed.
Environments differ only in their Pulumi.<stack>.yaml; `production: true` in a stack file turns
on the rules a production stack must keep (no SSH from the internet, at least two instances
behind a gradual rollout, stateful resources protected from deletion).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlship.errors import UserError

NAMESPACE = "mlship"
TARGETS = ("ec2", "realtime", "serverless", "async", "batch")
SECRET_KEYS = ("githubToken",)
SERVERLESS_MEMORY_MB = tuple(range(1024, 6145, 1024))
TRAFFIC_ROUTING = ("ALL_AT_ONCE", "CANARY", "LINEAR")
SIZE_TYPES = ("CAPACITY_PERCENT", "INSTANCE_COUNT")
BATCH_CONTENT_TYPES = ("text/csv", "application/json", "application/jsonlines")
# The retention periods CloudWatch Logs accepts.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                      2922, 3288, 3653)
SCHEDULE_RE = r"cron\(\S+ \S+ \S+ \S+ \S+ \S+\)"
# ISO 8601 durations before the schedule's run, as Model Monitor's endpoint input takes them.
OFFSET_RE = r"-P(T\d+[HM]|\d+D(T\d+H)?)"
EMAIL_RE = r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}"
ECR_IMAGE_RE = r"\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/[a-z0-9._/-]+(:[A-Za-z0-9._-]+|@sha256:[0-9a-f]{64})"
# sagemaker-core knows these scikit-learn container versions; the model is pickled with
# scikit-learn 1.9, so the default is the 1.9 container.
DEFAULT_CONTAINER_VERSION = "1.9-0"
MODEL_RE = re.compile(r"^(?P<name>[a-z][a-z0-9-]{0,30})@(?P<version>[0-9A-Za-z][0-9A-Za-z.+-]{0,40})$")


class SettingsError(UserError):
    """A stack setting is missing or has a value the program refuses."""


@dataclass(frozen=True)
class ModelRef:
    """One published model version: `<name>@<version>` in the stack file."""

    name: str
    version: str

    def key(self, file: str = "model.tar.gz") -> str:
        """The S3 key of one of this version's files in the artifact bucket."""
        return f"models/{self.name}/{self.version}/{file}"

    @property
    def slug(self) -> str:
        """The version as it may appear in AWS resource names (letters, digits, hyphens)."""
        return re.sub(r"[^0-9A-Za-z-]", "-", f"{self.name}-{self.version}")

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class StorageSettings:
    capture_retention_days: int
    report_retention_days: int
    noncurrent_artifact_retention_days: int
    kms_deletion_window_days: int


@dataclass(frozen=True)
class Ec2Settings:
    instance_type: str
    availability_zone: str
    data_volume_gb: int
    ssh_public_key: str
    ssh_cidrs: tuple[str, ...]
    serving_cidrs: tuple[str, ...]
    serving_port: int
    ssh_user: str
    compose_dir: str
    compose_file: Path
    image: str | None
    elastic_ip: bool
    ami: str | None
    vpc_id: str | None
    subnet_id: str | None


@dataclass(frozen=True)
class RolloutSettings:
    type: str
    size_type: str
    size: int
    wait_seconds: int
    termination_wait_seconds: int
    timeout_seconds: int


@dataclass(frozen=True)
class AutoscalingSettings:
    min_instances: int
    max_instances: int
    target_invocations_per_instance: float
    scale_in_cooldown_seconds: int
    scale_out_cooldown_seconds: int


@dataclass(frozen=True)
class VariantSettings:
    """An extra variant beside the production one: an A/B challenger or a shadow."""

    model: ModelRef
    instance_type: str
    instance_count: int
    weight: float


@dataclass(frozen=True)
class RealtimeSettings:
    instance_type: str
    instance_count: int
    weight: float
    capture_enabled: bool
    capture_sampling_percent: int
    rollout: RolloutSettings
    autoscaling: AutoscalingSettings
    latency_alarm_p99_ms: int
    error_alarm_5xx_count: int
    challenger: VariantSettings | None
    shadow: VariantSettings | None


@dataclass(frozen=True)
class ServerlessSettings:
    memory_mb: int
    max_concurrency: int
    provisioned_concurrency: int


@dataclass(frozen=True)
class AsyncSettings:
    instance_type: str
    max_concurrent_invocations_per_instance: int
    min_instances: int
    max_instances: int
    target_backlog_per_instance: float


@dataclass(frozen=True)
class BatchSettings:
    schedule: str
    timezone: str
    instance_type: str
    instance_count: int
    input_prefix: str
    output_prefix: str
    content_type: str
    max_payload_mb: int


@dataclass(frozen=True)
class AlarmSettings:
    """Thresholds of the alarms beside the two rollback alarms (which are in mlship:realtime.alarms)."""

    errors_4xx_percent: float
    cpu_percent: float
    memory_percent: float
    disk_percent: float
    cold_start_ms: int
    serverless_errors_5xx: int
    async_backlog: int
    async_failures: int
    drift_threshold: float
    min_accuracy: float
    min_f1: float


@dataclass(frozen=True)
class RetrainingSettings:
    """Drift-triggered retraining: a drift alarm sends GitHub a repository_dispatch."""

    enabled: bool
    repository: str | None
    event_type: str


@dataclass(frozen=True)
class MonitoringSettings:
    alert_emails: tuple[str, ...]
    schedule: str
    image: str | None  # None: AWS's Model Monitor analyzer for the region
    instance_type: str
    volume_gb: int
    max_runtime_seconds: int
    ground_truth_prefix: str
    quality_start_offset: str
    quality_end_offset: str
    log_retention_days: int
    alarms: AlarmSettings
    retraining: RetrainingSettings


@dataclass(frozen=True)
class GitHubSettings:
    """The repository whose Actions deploy this stack (mlship:github); GitHubDelivery is built from it."""

    repository: str
    environment: str
    reviewer_user_ids: tuple[int, ...]
    reviewer_team_ids: tuple[int, ...]
    oidc_provider_arn: str | None

    @property
    def owner(self) -> str:
        return self.repository.split("/", 1)[0]


@dataclass(frozen=True)
class Settings:
    stack: str
    region: str
    production: bool
    model: ModelRef
    container_version: str
    targets: frozenset[str]
    tags: Mapping[str, str]
    storage: StorageSettings
    ec2: Ec2Settings | None
    realtime: RealtimeSettings | None
    serverless: ServerlessSettings | None
    async_: AsyncSettings | None
    batch: BatchSettings | None
    monitoring: MonitoringSettings
    github: GitHubSettings | None

    @property
    def prefix(self) -> str:
        """The prefix of every name this stack gives AWS: `mlship-<stack>`."""
        return f"{NAMESPACE}-{self.stack}"

    @property
    def protect(self) -> bool:
        """Production stacks protect stateful resources from `pulumi destroy` and deletion."""
        return self.production

    @property
    def model_package_group(self) -> str:
        """The Model Package Group that `mlship model publish --group` registers into."""
        return f"{self.prefix}-{self.model.name}"

    def enabled(self, target: str) -> bool:
        return target in self.targets


class _Section:
    """Typed reads from one object of the stack configuration, with errors that name the key."""

    def __init__(self, key: str, values: Any):
        if values is None:
            values = {}
        if not isinstance(values, Mapping):
            raise SettingsError(f"{key} = {values!r}: must be an object (a YAML mapping)")
        self.key = key
        self.values = dict(values)
        self.read: set[str] = set()

    def name(self, sub: str) -> str:
        return f"{self.key}{':' if self.key == NAMESPACE else '.'}{sub}"

    def raw(self, sub: str, default: Any = ...) -> Any:
        self.read.add(sub)
        if sub in self.values and self.values[sub] is not None:
            return self.values[sub]
        if default is ...:
            raise SettingsError(f"{self.name(sub)} is missing: set it in Pulumi.<stack>.yaml")
        return default

    def section(self, sub: str) -> _Section | None:
        value = self.raw(sub, None)
        return None if value is None else _Section(self.name(sub), value)

    def integer(self, sub: str, default: Any = ..., low: int | None = None, high: int | None = None) -> int:
        value = self.raw(sub, default)
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
                value = int(value)
            else:
                raise SettingsError(f"{self.name(sub)} = {value!r}: must be a whole number")
        return _in_range(self.name(sub), value, low, high)

    def number(self, sub: str, default: Any = ..., low: float | None = None, high: float | None = None) -> float:
        value = self.raw(sub, default)
        try:
            if isinstance(value, bool):
                raise ValueError
            value = float(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{self.name(sub)} = {value!r}: must be a number") from None
        return _in_range(self.name(sub), value, low, high)

    def boolean(self, sub: str, default: Any = ...) -> bool:
        value = self.raw(sub, default)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if not isinstance(value, bool):
            raise SettingsError(f"{self.name(sub)} = {value!r}: must be true or false")
        return value

    def texts(self, sub: str, pattern: str, default: Any = ...) -> tuple[str, ...]:
        value = self.raw(sub, default)
        if not isinstance(value, list) or not all(isinstance(v, str) and re.fullmatch(pattern, v) for v in value):
            raise SettingsError(f"{self.name(sub)} = {value!r}: must be a list of strings matching {pattern}")
        return tuple(value)

    def ids(self, sub: str) -> tuple[int, ...]:
        value = self.raw(sub, [])
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
            raise SettingsError(f"{self.name(sub)} = {value!r}: must be a list of numeric GitHub ids (not logins)")
        if len(value) > 6:
            raise SettingsError(f"{self.name(sub)} lists {len(value)} ids: GitHub allows at most 6 per environment")
        return tuple(value)

    def text(self, sub: str, default: Any = ..., pattern: str | None = None, allowed: tuple[str, ...] = ()) -> str:
        value = self.raw(sub, default)
        if value is None:
            return value
        if not isinstance(value, str) or not value.strip():
            raise SettingsError(f"{self.name(sub)} = {value!r}: must be a non-empty string")
        if allowed and value not in allowed:
            raise SettingsError(f"{self.name(sub)} = {value!r}: must be one of {', '.join(allowed)}")
        if pattern and not re.fullmatch(pattern, value):
            raise SettingsError(f"{self.name(sub)} = {value!r}: must match {pattern}")
        return value

    def cidrs(self, sub: str, default: Any = ...) -> tuple[str, ...]:
        value = self.raw(sub, default)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise SettingsError(f"{self.name(sub)} = {value!r}: must be a list of CIDR blocks such as 203.0.113.0/24")
        for cidr in value:
            try:
                ipaddress.ip_network(str(cidr), strict=True)
            except ValueError:
                raise SettingsError(
                    f"{self.name(sub)} contains {cidr!r}: not a CIDR block (write e.g. 203.0.113.7/32)"
                ) from None
        return tuple(str(cidr) for cidr in value)

    def finish(self) -> None:
        """Refuse keys the program does not read: a typo must not be silently ignored."""
        unknown = sorted(set(self.values) - self.read)
        if unknown:
            known = ", ".join(sorted(self.read))
            raise SettingsError(f"{self.name(unknown[0])} is not a known setting; known keys in {self.key}: {known}")


def _in_range(key: str, value: float, low: float | None, high: float | None) -> Any:
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low} and {high}" if low is not None and high is not None else (
            f"at least {low}" if low is not None else f"at most {high}")
        raise SettingsError(f"{key} = {value!r}: must be {bounds}")
    return value


def parse_model(key: str, value: Any) -> ModelRef:
    match = MODEL_RE.match(str(value)) if isinstance(value, str) else None
    if not match:
        raise SettingsError(
            f"{key} = {value!r}: must be <name>@<version>, e.g. churn@1.0.0 "
            "(name: lower-case letters, digits, hyphens; version: letters, digits, . + -)"
        )
    return ModelRef(match["name"], match["version"])


def known_container_versions() -> tuple[str, ...]:
    """The scikit-learn serving container versions that the SageMaker SDK knows."""
    from sagemaker.core import image_uris

    return tuple(image_uris.config_for_framework("sklearn")["inference"]["versions"])


def load(config: Mapping[str, Any], stack: str, repo: Path) -> Settings:
    """Validate a stack's configuration (keys as in Pulumi.<stack>.yaml) into Settings.

    `repo` anchors relative paths (the compose file).
    """
    region = config.get("aws:region")
    if not isinstance(region, str) or not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
        raise SettingsError(f"aws:region = {region!r}: must be an AWS region such as eu-west-1")
    for key in SECRET_KEYS:
        value = config.get(f"{NAMESPACE}:{key}")
        if value is not None and not _is_secret(value):
            raise SettingsError(
                f"{NAMESPACE}:{key} is stored in plain text: set it with "
                f"`pulumi config set --secret {NAMESPACE}:{key}` so only its ciphertext is in the stack file"
            )
    top = _Section(NAMESPACE, {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith(f"{NAMESPACE}:")})
    top.read.update(SECRET_KEYS)

    production = top.boolean("production", False)
    model = parse_model(f"{NAMESPACE}:model", top.raw("model"))
    container_version = top.text("containerVersion", DEFAULT_CONTAINER_VERSION)
    versions = known_container_versions()
    if container_version not in versions:
        raise SettingsError(
            f"{NAMESPACE}:containerVersion = {container_version!r}: must be one of {', '.join(versions)}"
        )
    targets = top.raw("targets")
    if not isinstance(targets, list) or not targets or any(t not in TARGETS for t in targets):
        raise SettingsError(f"{NAMESPACE}:targets = {targets!r}: must be a non-empty list of {', '.join(TARGETS)}")
    tags = top.raw("tags", {})
    if not isinstance(tags, Mapping) or not all(isinstance(v, str) for v in tags.values()):
        raise SettingsError(f"{NAMESPACE}:tags = {tags!r}: must be a mapping of strings to strings")

    storage = _storage(_Section(f"{NAMESPACE}:storage", top.raw("storage", {})))
    ec2 = _ec2(top.section("ec2"), production, repo) if "ec2" in targets else None
    realtime = _realtime(top.section("realtime"), production, model) if "realtime" in targets else None
    serverless = _serverless(top.section("serverless")) if "serverless" in targets else None
    async_ = _async(top.section("async")) if "async" in targets else None
    batch = _batch(top.section("batch")) if "batch" in targets else None
    if realtime and not realtime.capture_enabled:
        raise SettingsError(
            f"{NAMESPACE}:realtime.dataCapture.enabled = false: Model Monitor watches every real-time endpoint "
            "through its captured requests; keep capture on (lower samplingPercent to capture less)")
    github = _github(top.section("github"), production)
    monitoring = _monitoring(_Section(f"{NAMESPACE}:monitoring", top.raw("monitoring", {})), github,
                             "githubToken" in {k.split(":", 1)[1] for k in config if k.startswith(f"{NAMESPACE}:")})
    for target, value in (("ec2", ec2), ("realtime", realtime), ("serverless", serverless), ("async", async_), ("batch", batch)):
        if target not in targets:
            top.read.add(target)  # a disabled target's settings may stay in the file
        elif value is None:
            raise SettingsError(f"{NAMESPACE}:{target} is missing: target {target!r} is enabled in {NAMESPACE}:targets")
    top.finish()
    return Settings(
        stack=stack, region=region, production=production, model=model,
        container_version=container_version, targets=frozenset(targets), tags=dict(tags),
        storage=storage, ec2=ec2, realtime=realtime, serverless=serverless, async_=async_, batch=batch,
        monitoring=monitoring, github=github,
    )


def _is_secret(value: Any) -> bool:
    # In a stack file a secret is {"secure": "<ciphertext>"}; in a running program it is unreadable.
    return isinstance(value, Mapping) and set(value) == {"secure"}


def _storage(s: _Section) -> StorageSettings:
    result = StorageSettings(
        capture_retention_days=s.integer("captureRetentionDays", 30, 1, 3650),
        report_retention_days=s.integer("reportRetentionDays", 90, 1, 3650),
        noncurrent_artifact_retention_days=s.integer("noncurrentArtifactRetentionDays", 90, 1, 3650),
        kms_deletion_window_days=s.integer("kmsDeletionWindowDays", 30, 7, 30),
    )
    s.finish()
    return result


def _ec2(s: _Section | None, production: bool, repo: Path) -> Ec2Settings | None:
    if s is None:
        return None
    ssh_cidrs = s.cidrs("sshCidrs")
    world = [c for c in ssh_cidrs if ipaddress.ip_network(c).prefixlen == 0]
    if production and world:
        raise SettingsError(
            f"{s.name('sshCidrs')} contains {world[0]}: SSH open to the "
            "whole internet is refused in a production stack; list your VPN or office CIDRs"
        )
    compose = Path(s.text("composeFile", "model/server/docker-compose.yml"))
    compose = compose if compose.is_absolute() else repo / compose
    if not compose.is_file():
        raise SettingsError(
            f"{s.name('composeFile')} = {str(compose)!r}: file not found; the EC2 host's user data embeds "
            "the serving container's compose file"
        )
    key = s.text("sshPublicKey", pattern=r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp\d+) [A-Za-z0-9+/=]+( .*)?")
    result = Ec2Settings(
        instance_type=s.text("instanceType", "t3.small", pattern=r"[a-z][a-z0-9-]*\.[a-z0-9]+"),
        availability_zone=s.text("availabilityZone", pattern=r"[a-z]{2}(-[a-z]+)+-\d[a-z]"),
        data_volume_gb=s.integer("dataVolumeGb", 20, 1, 16384),
        ssh_public_key=key,
        ssh_cidrs=ssh_cidrs,
        serving_cidrs=s.cidrs("servingCidrs"),
        serving_port=_published_port(s, compose),
        ssh_user=s.text("sshUser", "ubuntu", pattern=r"[a-z_][a-z0-9_-]{0,31}"),
        compose_dir=s.text("composeDir", "/opt/mlship", pattern=r"/[A-Za-z0-9._/-]+"),
        compose_file=compose,
        image=s.text("image", None, pattern=r"[a-z0-9.-]+(:\d+)?/[a-z0-9._/-]+(:[A-Za-z0-9._-]+|@sha256:[0-9a-f]{64})"),
        elastic_ip=s.boolean("elasticIp", False),
        ami=s.text("ami", None, pattern=r"ami-[0-9a-f]{8,17}"),
        vpc_id=s.text("vpcId", None, pattern=r"vpc-[0-9a-f]{8,17}"),
        subnet_id=s.text("subnetId", None, pattern=r"subnet-[0-9a-f]{8,17}"),
    )
    if (result.vpc_id is None) != (result.subnet_id is None):
        raise SettingsError(f"{s.name('vpcId')} and {s.name('subnetId')}: set both or neither (neither = default VPC)")
    s.finish()
    return result


def _published_port(s: _Section, compose: Path) -> int:
    """The serving port opened in the security group: one the compose file publishes on the host."""
    port = s.integer("servingPort", 8080, 1024, 65535)
    try:
        services = (yaml.safe_load(compose.read_text()) or {}).get("services") or {}
    except yaml.YAMLError as error:
        raise SettingsError(f"{s.name('composeFile')} = {str(compose)!r}: not valid YAML ({error})") from None
    published = sorted({int(str(mapping).split(":")[-2].split("/")[0])
                        for service in services.values() for mapping in (service or {}).get("ports", [])
                        if isinstance(mapping, (str, int)) and str(mapping).count(":") >= 1})
    if port not in published:
        raise SettingsError(
            f"{s.name('servingPort')} = {port}: the compose file {compose.name} publishes "
            f"{', '.join(map(str, published)) or 'no port'} on the host; open one of those"
        )
    return port


def _rollout(s: _Section, production: bool, instance_count: int) -> RolloutSettings:
    kind = s.text("type", "ALL_AT_ONCE", allowed=TRAFFIC_ROUTING)
    if production and kind == "ALL_AT_ONCE":
        raise SettingsError(
            f"{s.name('type')} = 'ALL_AT_ONCE': a production stack shifts traffic gradually; use CANARY or LINEAR"
        )
    size_type = s.text("sizeType", "CAPACITY_PERCENT", allowed=SIZE_TYPES)
    size = s.integer("size", 0 if kind == "ALL_AT_ONCE" else ..., 0 if kind == "ALL_AT_ONCE" else 1)
    if kind != "ALL_AT_ONCE":
        low = 10 if kind == "LINEAR" else 1
        if size_type == "CAPACITY_PERCENT" and not low <= size <= 50:
            raise SettingsError(
                f"{s.name('size')} = {size}: a {kind.lower()} step must be {low}-50 percent of the instances"
            )
        if size_type == "INSTANCE_COUNT" and size * 2 > instance_count:
            raise SettingsError(
                f"{s.name('size')} = {size} instances: a {kind.lower()} step may be at most 50% of the "
                f"{instance_count} instances ({instance_count // 2} or fewer)"
            )
    result = RolloutSettings(
        type=kind, size_type=size_type, size=size,
        wait_seconds=s.integer("waitSeconds", 300, 0, 3600),
        termination_wait_seconds=s.integer("terminationWaitSeconds", 300, 0, 3600),
        timeout_seconds=s.integer("timeoutSeconds", 3600, 600, 14400),
    )
    s.finish()
    return result


def _autoscaling(s: _Section, instance_count: int) -> AutoscalingSettings:
    result = AutoscalingSettings(
        min_instances=s.integer("minInstances", instance_count, 1),
        max_instances=s.integer("maxInstances", max(instance_count, 2), 1),
        target_invocations_per_instance=s.number("targetInvocationsPerInstance", 100.0, 1.0),
        scale_in_cooldown_seconds=s.integer("scaleInCooldownSeconds", 300, 0, 3600),
        scale_out_cooldown_seconds=s.integer("scaleOutCooldownSeconds", 60, 0, 3600),
    )
    if not result.min_instances <= instance_count <= result.max_instances:
        raise SettingsError(
            f"{s.key}: minInstances {result.min_instances} <= instanceCount {instance_count} <= "
            f"maxInstances {result.max_instances} must hold"
        )
    s.finish()
    return result


def _variant(s: _Section | None, model: ModelRef, default_type: str, weighted: bool) -> VariantSettings | None:
    if s is None:
        return None
    result = VariantSettings(
        model=parse_model(s.name("model"), s.raw("model", str(model))),
        instance_type=s.text("instanceType", default_type, pattern=r"ml\.[a-z0-9]+\.[a-z0-9]+"),
        instance_count=s.integer("instanceCount", 1, 1, 100),
        weight=s.number("weight", 0.1, 0.0, 1.0) if weighted else 1.0,
    )
    s.finish()
    return result


def _realtime(s: _Section | None, production: bool, model: ModelRef) -> RealtimeSettings | None:
    if s is None:
        return None
    count = s.integer("instanceCount", 1, 1, 100)
    if production and count < 2:
        raise SettingsError(
            f"{s.name('instanceCount')} = {count}: a production real-time endpoint needs at least 2 instances"
        )
    instance_type = s.text("instanceType", pattern=r"ml\.[a-z0-9]+\.[a-z0-9]+")
    capture = s.section("dataCapture") or _Section(s.name("dataCapture"), {})
    alarms = s.section("alarms") or _Section(s.name("alarms"), {})
    result = RealtimeSettings(
        instance_type=instance_type,
        instance_count=count,
        weight=s.number("weight", 1.0, 0.0, 1.0),
        capture_enabled=capture.boolean("enabled", True),
        capture_sampling_percent=capture.integer("samplingPercent", 100, 1, 100),
        rollout=_rollout(s.section("rollout") or _Section(s.name("rollout"), {}), production, count),
        autoscaling=_autoscaling(s.section("autoscaling") or _Section(s.name("autoscaling"), {}), count),
        latency_alarm_p99_ms=alarms.integer("latencyP99Ms", 500, 1),
        error_alarm_5xx_count=alarms.integer("errors5xx", 5, 1),
        challenger=_variant(s.section("challenger"), model, instance_type, weighted=True),
        shadow=_variant(s.section("shadow"), model, instance_type, weighted=False),
    )
    capture.finish()
    alarms.finish()
    s.finish()
    return result


def _serverless(s: _Section | None) -> ServerlessSettings | None:
    if s is None:
        return None
    memory = s.integer("memoryMb", 2048)
    if memory not in SERVERLESS_MEMORY_MB:
        raise SettingsError(
            f"{s.name('memoryMb')} = {memory}: must be one of {', '.join(map(str, SERVERLESS_MEMORY_MB))} "
            "(1024..6144 in steps of 1024)"
        )
    if s.values.get("dataCapture") not in (None, False) and s.values.get("dataCapture") != {"enabled": False}:
        raise SettingsError(
            f"{s.name('dataCapture')} = {s.values['dataCapture']!r}: serverless endpoints cannot capture data "
            "(SageMaker does not support it); capture on the real-time endpoint instead"
        )
    s.read.add("dataCapture")
    max_concurrency = s.integer("maxConcurrency", 5, 1, 200)
    result = ServerlessSettings(
        memory_mb=memory,
        max_concurrency=max_concurrency,
        provisioned_concurrency=s.integer("provisionedConcurrency", 0, 0, max_concurrency),
    )
    s.finish()
    return result


def _async(s: _Section | None) -> AsyncSettings | None:
    if s is None:
        return None
    result = AsyncSettings(
        instance_type=s.text("instanceType", pattern=r"ml\.[a-z0-9]+\.[a-z0-9]+"),
        max_concurrent_invocations_per_instance=s.integer("maxConcurrentInvocationsPerInstance", 4, 1, 1000),
        min_instances=s.integer("minInstances", 0, 0, 100),
        max_instances=s.integer("maxInstances", 2, 1, 100),
        target_backlog_per_instance=s.number("targetBacklogPerInstance", 5.0, 1.0),
    )
    if result.min_instances > result.max_instances:
        raise SettingsError(
            f"{s.name('minInstances')} = {result.min_instances}: must not exceed maxInstances {result.max_instances}"
        )
    s.finish()
    return result


def _batch(s: _Section | None) -> BatchSettings | None:
    if s is None:
        return None
    result = BatchSettings(
        schedule=s.text("schedule", pattern=r"(cron\(\S+ \S+ \S+ \S+ \S+ \S+\)|rate\(\d+ (minute|minutes|hour|hours|day|days)\))"),
        timezone=s.text("timezone", "UTC", pattern=r"[A-Za-z_]+(/[A-Za-z_+-]+)*"),
        instance_type=s.text("instanceType", pattern=r"ml\.[a-z0-9]+\.[a-z0-9]+"),
        instance_count=s.integer("instanceCount", 1, 1, 100),
        input_prefix=s.text("inputPrefix", "batch/input/", pattern=r"[A-Za-z0-9!_.*'()/-]+/"),
        output_prefix=s.text("outputPrefix", "batch/output/", pattern=r"[A-Za-z0-9!_.*'()/-]+/"),
        content_type=s.text("contentType", "text/csv", allowed=BATCH_CONTENT_TYPES),
        max_payload_mb=s.integer("maxPayloadMb", 6, 1, 100),
    )
    s.finish()
    return result


def _alarms(s: _Section) -> AlarmSettings:
    result = AlarmSettings(
        errors_4xx_percent=s.number("errors4xxPercent", 5.0, 0.1, 100.0),
        cpu_percent=s.number("cpuPercent", 80.0, 1.0, 100.0),
        memory_percent=s.number("memoryPercent", 85.0, 1.0, 100.0),
        disk_percent=s.number("diskPercent", 85.0, 1.0, 100.0),
        cold_start_ms=s.integer("coldStartMs", 5000, 1),
        serverless_errors_5xx=s.integer("serverlessErrors5xx", 5, 1),
        async_backlog=s.integer("asyncBacklog", 100, 1),
        async_failures=s.integer("asyncFailures", 1, 1),
        # Model Monitor's default comparison threshold for the baseline distance.
        drift_threshold=s.number("driftThreshold", 0.1, 0.0, 1.0),
        min_accuracy=s.number("minAccuracy", 0.6, 0.0, 1.0),
        min_f1=s.number("minF1", 0.5, 0.0, 1.0),
    )
    s.finish()
    return result


def _retraining(s: _Section, github: GitHubSettings | None, has_token: bool) -> RetrainingSettings:
    enabled = s.boolean("enabled", False)
    repository = s.text("repository", github.repository if github else None, pattern=r"[A-Za-z0-9-]+/[A-Za-z0-9_.-]+")
    result = RetrainingSettings(enabled=enabled, repository=repository,
                                event_type=s.text("eventType", "drift-alarm", pattern=r"[A-Za-z0-9_.-]{1,100}"))
    if enabled and repository is None:
        raise SettingsError(f"{s.name('repository')} is missing: retraining is enabled and mlship:github names no "
                            "repository; set owner/name of the repository whose model workflow retrains")
    if enabled and not has_token:
        raise SettingsError(f"{s.name('enabled')} = true needs {NAMESPACE}:githubToken: set it with "
                            f"`pulumi config set --secret {NAMESPACE}:githubToken` (a token allowed to send "
                            "repository_dispatch)")
    s.finish()
    return result


def _monitoring(s: _Section, github: GitHubSettings | None, has_token: bool) -> MonitoringSettings:
    schedule = s.text("schedule", "cron(0 * ? * * *)")
    if not re.fullmatch(SCHEDULE_RE, schedule):
        raise SettingsError(f"{s.name('schedule')} = {schedule!r}: must be a Model Monitor cron expression, "
                            "hourly or rarer, such as cron(0 * ? * * *) (hourly) or cron(0 0 ? * * *) (daily)")
    result = MonitoringSettings(
        alert_emails=s.texts("alertEmails", EMAIL_RE, []),
        schedule=schedule,
        image=s.text("image", None, pattern=ECR_IMAGE_RE),
        instance_type=s.text("instanceType", "ml.m5.large", pattern=r"ml\.[a-z0-9]+\.[a-z0-9]+"),
        volume_gb=s.integer("volumeGb", 20, 1, 16384),
        # A run must end before the next hourly one starts.
        max_runtime_seconds=s.integer("maxRuntimeSeconds", 1800, 60, 3600),
        ground_truth_prefix=s.text("groundTruthPrefix", "ground-truth/", pattern=r"[A-Za-z0-9!_.*'()/-]+/"),
        quality_start_offset=s.text("qualityStartOffset", "-P1D", pattern=OFFSET_RE),
        quality_end_offset=s.text("qualityEndOffset", "-PT1H", pattern=OFFSET_RE),
        log_retention_days=s.integer("logRetentionDays", 30),
        alarms=_alarms(s.section("alarms") or _Section(s.name("alarms"), {})),
        retraining=_retraining(s.section("retraining") or _Section(s.name("retraining"), {}), github, has_token),
    )
    if result.log_retention_days not in LOG_RETENTION_DAYS:
        raise SettingsError(f"{s.name('logRetentionDays')} = {result.log_retention_days}: must be one of "
                            f"{', '.join(map(str, LOG_RETENTION_DAYS))} (what CloudWatch Logs accepts)")
    s.finish()
    return result


def _github(s: _Section | None, production: bool) -> GitHubSettings | None:
    if s is None:
        return None
    reviewers = s.section("reviewers") or _Section(s.name("reviewers"), {})
    result = GitHubSettings(
        repository=s.text("repository", pattern=r"[A-Za-z0-9-]+/[A-Za-z0-9_.-]+"),
        environment=s.text("environment", "production" if production else "dev", pattern=r"[A-Za-z0-9_.-]{1,255}"),
        reviewer_user_ids=reviewers.ids("users"),
        reviewer_team_ids=reviewers.ids("teams"),
        oidc_provider_arn=s.text("oidcProviderArn", None,
                                 pattern=r"arn:aws:iam::\d{12}:oidc-provider/token\.actions\.githubusercontent\.com"),
    )
    reviewers.finish()
    if production and not (result.reviewer_user_ids or result.reviewer_team_ids):
        raise SettingsError(f"{reviewers.key} is empty: a production stack deploys only after a review; list "
                            "GitHub user ids (users) or team ids (teams), at most 6 of each")
    s.finish()
    return result


def runtime_config() -> dict[str, Any]:
    """The running program's configuration, decoded as it is written in Pulumi.<stack>.yaml.

    Pulumi hands structured values to the program as JSON strings; secrets are replaced by a
    `{"secure": ...}` marker here so that `load` can check they were stored encrypted.
    """
    import json

    from pulumi.runtime import config as runtime

    values = {**runtime.get_config_env(), **runtime.CONFIG.get()}
    secret_keys = set(runtime.get_config_secret_keys_env()) | {k for k in values if runtime.is_config_secret(k)}
    decoded: dict[str, Any] = {}
    for key, value in values.items():
        if key in secret_keys:
            decoded[key] = {"secure": "[secret]"}
        elif isinstance(value, str) and value[:1] in ("{", "["):
            decoded[key] = json.loads(value)
        else:
            decoded[key] = value
    return decoded
