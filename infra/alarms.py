"""Alarms: every one notifies the alerts topic when it fires and when it clears.

Per target: the real-time endpoint's error rate and instance utilisation (its latency and 5xx
alarms live with the endpoint, because they also roll deployments back), the serverless
endpoint's cold starts and errors, the asynchronous endpoint's backlog and failures, the EC2
host's CPU, memory, disks and a status check that recovers the instance; per monitored
endpoint (real-time, EC2 host): one drift alarm per feature of the deployed model's baseline,
and model quality (accuracy, f1) below its threshold.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.baseline import DRIFT_METRIC_PREFIX
from infra.settings import AlarmSettings

SAGEMAKER = "AWS/SageMaker"
SAGEMAKER_INSTANCES = "/aws/sagemaker/Endpoints"
DATA_METRICS = "aws/sagemaker/Endpoints/data-metrics"
MODEL_METRICS = "aws/sagemaker/Endpoints/model-metrics"
AGENT = "CWAgent"
HOST_DISKS = {"root": "/", "data": "/data"}


def vcpus(instance_type: str) -> int:
    """vCPUs of a general-purpose instance size: SageMaker sums CPUUtilization over them (200% = 2 busy cores)."""
    size = instance_type.rsplit(".", 1)[-1]
    match = re.fullmatch(r"(\d*)xlarge", size)
    if match:
        return 4 * int(match.group(1) or 1)
    return 2 if size in ("medium", "large") else 1


def notify(topic_arn: pulumi.Input[str]) -> dict:
    """The actions that make an alarm reach people: when it fires and when it clears."""
    return {"alarm_actions": [topic_arn], "ok_actions": [topic_arn]}


@dataclass(frozen=True)
class MonitoredEndpoint:
    """An endpoint whose monitor publishes Model Monitor's metrics (a SageMaker schedule or the EC2 host's)."""

    key: str  # short, for resource names: realtime, ec2
    endpoint_name: str
    data_schedule: str
    model_schedule: str


@dataclass(frozen=True)
class AlarmsArgs:
    topic_arn: pulumi.Input[str]
    region: str
    thresholds: AlarmSettings
    tags: dict
    drift_metrics: pulumi.Input[list[str]]
    realtime: tuple[str, Sequence[str], str] | None = None  # endpoint, variants, instance type
    serverless: tuple[str, str] | None = None  # endpoint, variant
    async_endpoint: str | None = None
    ec2: tuple[str, pulumi.Input[str]] | None = None  # host name (mlship-<stack>-ec2), instance id
    monitored: Sequence[MonitoredEndpoint] = field(default_factory=tuple)


class Alarms(pulumi.ComponentResource):
    def __init__(self, name: str, args: AlarmsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlship:watch:Alarms", name, None, opts)
        self._args = args
        self._name = name
        self.alarms: list[aws.cloudwatch.MetricAlarm] = []
        t = args.thresholds
        if args.realtime:
            self._realtime(*args.realtime)
        if args.serverless:
            endpoint, variant = args.serverless
            dims = {"EndpointName": endpoint, "VariantName": variant}
            self._alarm("serverless-cold-start", f"{endpoint}-model-setup-time", SAGEMAKER, "ModelSetupTime", dims,
                        t.cold_start_ms * 1000, "Average", 300,  # microseconds
                        f"Cold starts take more than {t.cold_start_ms} ms on average: raise provisionedConcurrency.")
            self._alarm("serverless-5xx", f"{endpoint}-5xx-errors", SAGEMAKER, "Invocation5XXErrors", dims,
                        t.serverless_errors_5xx, "Sum", 300, "Server errors from the serverless endpoint's model.",
                        operator="GreaterThanOrEqualToThreshold")
        if args.async_endpoint:
            dims = {"EndpointName": args.async_endpoint}
            self._alarm("async-backlog", f"{args.async_endpoint}-backlog", SAGEMAKER, "ApproximateBacklogSize", dims,
                        t.async_backlog, "Average", 300,
                        f"More than {t.async_backlog} requests wait: raise mlship:async.maxInstances.")
            self._alarm("async-failures", f"{args.async_endpoint}-failed-invocations", SAGEMAKER, "InvocationFailures",
                        dims, t.async_failures, "Sum", 300, "Asynchronous requests failed: see async/failure/.",
                        operator="GreaterThanOrEqualToThreshold")
        if args.ec2:
            self._host(*args.ec2)
        for monitored in args.monitored:
            self._model_quality(monitored)
        self.drift_alarm_names = pulumi.Output.from_input(args.drift_metrics).apply(
            lambda metrics: [self._drift(m, metric) for m in args.monitored for metric in metrics])
        self.register_outputs({"alarm_names": [a.name for a in self.alarms], "drift_alarm_names": self.drift_alarm_names})

    def _alarm(self, key: str, alarm_name: str, namespace: str, metric: str, dimensions: dict,
               threshold: float, statistic: str, period: int, description: str,
               operator: str = "GreaterThanThreshold", evaluation_periods: int = 3, missing: str = "notBreaching",
               extra_actions: Sequence[str] = ()) -> aws.cloudwatch.MetricAlarm:
        actions = notify(self._args.topic_arn)
        actions["alarm_actions"] = [*extra_actions, *actions["alarm_actions"]]
        alarm = aws.cloudwatch.MetricAlarm(
            f"{self._name}-{key}", name=alarm_name, namespace=namespace, metric_name=metric, dimensions=dimensions,
            threshold=threshold, statistic=statistic, period=period, evaluation_periods=evaluation_periods,
            datapoints_to_alarm=min(2, evaluation_periods), comparison_operator=operator,
            treat_missing_data=missing, alarm_description=description, tags=self._args.tags, **actions,
            opts=pulumi.ResourceOptions(parent=self))
        self.alarms.append(alarm)
        return alarm

    def _realtime(self, endpoint: str, variants: Sequence[str], instance_type: str) -> None:
        t = self._args.thresholds
        cpu = t.cpu_percent * vcpus(instance_type)
        for variant in variants:
            dims = {"EndpointName": endpoint, "VariantName": variant}
            key = f"realtime-{variant}"
            self._error_rate(f"{key}-4xx", f"{endpoint}-{variant}-4xx-rate", dims, t.errors_4xx_percent)
            self._alarm(f"{key}-cpu", f"{endpoint}-{variant}-cpu", SAGEMAKER_INSTANCES, "CPUUtilization", dims, cpu,
                        "Average", 300, f"CPU above {t.cpu_percent:g}% of {vcpus(instance_type)} vCPUs: scale out.")
            self._alarm(f"{key}-memory", f"{endpoint}-{variant}-memory", SAGEMAKER_INSTANCES, "MemoryUtilization",
                        dims, t.memory_percent, "Average", 300,
                        f"Memory above {t.memory_percent:g}%: a larger instance type, or a leak in the model.")
            self._alarm(f"{key}-disk", f"{endpoint}-{variant}-disk", SAGEMAKER_INSTANCES, "DiskUtilization", dims,
                        t.disk_percent, "Average", 300, f"Disk above {t.disk_percent:g}% on the endpoint's instances.")

    def _error_rate(self, key: str, alarm_name: str, dims: dict, percent: float) -> None:
        def metric(id_: str, name: str) -> dict:
            return {"id": id_, "return_data": False, "metric": {
                "namespace": SAGEMAKER, "metric_name": name, "dimensions": dims, "period": 300, "stat": "Sum"}}
        alarm = aws.cloudwatch.MetricAlarm(
            f"{self._name}-{key}", name=alarm_name, comparison_operator="GreaterThanThreshold", threshold=percent,
            evaluation_periods=3, datapoints_to_alarm=2, treat_missing_data="notBreaching",
            alarm_description=f"More than {percent:g}% of requests rejected (4xx): a client sends what the model "
                              "does not accept (schema change?).",
            metric_queries=[
                {"id": "rate", "label": "4xx errors (% of invocations)", "return_data": True,
                 "expression": "IF(invocations > 0, 100 * errors / invocations, 0)"},
                metric("errors", "Invocation4XXErrors"), metric("invocations", "Invocations")],
            tags=self._args.tags, **notify(self._args.topic_arn), opts=pulumi.ResourceOptions(parent=self))
        self.alarms.append(alarm)

    def _host(self, host: str, instance_id: pulumi.Input[str]) -> None:
        t = self._args.thresholds
        dims = {"InstanceId": instance_id}
        self._alarm("ec2-cpu", f"{host}-cpu", "AWS/EC2", "CPUUtilization", dims,
                    t.cpu_percent, "Average", 300, f"The EC2 host's CPU above {t.cpu_percent:g}%.")
        self._alarm("ec2-memory", f"{host}-memory", AGENT, "mem_used_percent", dims,
                    t.memory_percent, "Average", 300, f"The EC2 host's memory above {t.memory_percent:g}%.")
        for disk, path in HOST_DISKS.items():
            self._alarm(f"ec2-disk-{disk}", f"{host}-disk-{disk}", AGENT,
                        "disk_used_percent", {**dims, "path": path}, t.disk_percent, "Maximum", 300,
                        f"The EC2 host's {path} above {t.disk_percent:g}% full.")
        self._alarm("ec2-status", f"{host}-system-status", "AWS/EC2",
                    "StatusCheckFailed_System", dims, 0, "Maximum", 60,
                    "AWS's hardware under the EC2 host failed: EC2 recovers the instance onto healthy hardware.",
                    evaluation_periods=2, missing="missing",
                    extra_actions=[f"arn:aws:automate:{self._args.region}:ec2:recover"])

    def _model_quality(self, m: MonitoredEndpoint) -> None:
        t = self._args.thresholds
        dims = {"Endpoint": m.endpoint_name, "MonitoringSchedule": m.model_schedule}
        for metric, threshold in (("accuracy", t.min_accuracy), ("f1", t.min_f1)):
            self._alarm(f"{m.key}-{metric}", f"{m.endpoint_name}-{metric}", MODEL_METRICS, metric, dims, threshold,
                        "Minimum", 3600, f"{metric} against ground truth below {threshold:g}: retrain or roll back.",
                        operator="LessThanThreshold", evaluation_periods=1, missing="ignore")

    def _drift(self, m: MonitoredEndpoint, metric: str) -> str:
        t = self._args.thresholds
        feature = metric[len(DRIFT_METRIC_PREFIX):]
        alarm_name = drift_alarm_name(m.endpoint_name, feature)
        # Runs are hourly or rarer: without a new result the alarm keeps its state (ignore).
        self._alarm(f"{m.key}-drift-{feature}", alarm_name, DATA_METRICS, metric,
                    {"Endpoint": m.endpoint_name, "MonitoringSchedule": m.data_schedule}, t.drift_threshold,
                    "Maximum", 3600, f"{feature} has drifted from the deployed model's baseline (distance above "
                    f"{t.drift_threshold:g}): retrain on recent data.", evaluation_periods=1, missing="ignore")
        return alarm_name


def drift_alarm_name(endpoint_name: str, feature: str) -> str:
    return f"{drift_alarm_prefix(endpoint_name)}{feature}"


def drift_alarm_prefix(endpoint_name: str) -> str:
    """Every drift alarm of an endpoint starts with this: the retraining rule matches on it."""
    return f"{endpoint_name}-drift-"
