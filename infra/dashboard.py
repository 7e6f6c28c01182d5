"""The stack's CloudWatch dashboard: traffic, latency, errors, drift per feature, model quality, the EC2 host."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.alarms import AGENT, DATA_METRICS, HOST_DISKS, MODEL_METRICS, SAGEMAKER, SAGEMAKER_INSTANCES, MonitoredEndpoint
from infra.settings import AlarmSettings


@dataclass(frozen=True)
class DashboardArgs:
    name: str
    region: str
    model: str
    thresholds: AlarmSettings
    drift_metrics: pulumi.Input[list[str]]
    # SageMaker endpoints: (name, variants)
    realtime: tuple[str, Sequence[str]] | None = None
    serverless: tuple[str, Sequence[str]] | None = None
    async_endpoint: tuple[str, Sequence[str]] | None = None
    ec2_instance_id: pulumi.Input[str] | None = None
    ec2_endpoint: str | None = None
    monitored: Sequence[MonitoredEndpoint] = field(default_factory=tuple)


def widget(title: str, region: str, metrics: list, stat: str, period: int = 300, threshold: float | None = None,
           width: int = 12) -> dict:
    properties = {"title": title, "region": region, "metrics": metrics, "stat": stat, "period": period,
                  "view": "timeSeries"}
    if threshold is not None:
        properties["annotations"] = {"horizontal": [{"value": threshold, "label": "alarm threshold"}]}
    return {"type": "metric", "width": width, "height": 6, "properties": properties}


def body(args: DashboardArgs, drift_metrics: list[str], instance_id: str | None) -> str:
    r, t = args.region, args.thresholds
    widgets: list[dict] = [{"type": "text", "width": 24, "height": 1, "properties": {
        "markdown": f"## {args.name}: model {args.model}. What each alarm means: README, Operations."}}]
    for endpoint, variants in filter(None, (args.realtime, args.serverless, args.async_endpoint)):
        def per_variant(metric: str, namespace: str = SAGEMAKER, **options) -> list:
            return [[namespace, metric, "EndpointName", endpoint, "VariantName", v, {"label": f"{v} {metric}", **options}]
                    for v in variants]
        widgets += [
            widget(f"{endpoint}: invocations", r, per_variant("Invocations"), "Sum"),
            widget(f"{endpoint}: model latency (microseconds)", r,
                   per_variant("ModelLatency", stat="p50") + per_variant("ModelLatency", stat="p99"), "p99"),
            widget(f"{endpoint}: errors", r, per_variant("Invocation4XXErrors") + per_variant("Invocation5XXErrors"), "Sum"),
        ]
        if (endpoint, variants) == args.serverless:
            widgets.append(widget(f"{endpoint}: cold starts (ModelSetupTime, microseconds)", r,
                                  per_variant("ModelSetupTime"), "Average", threshold=t.cold_start_ms * 1000))
        if (endpoint, variants) == args.async_endpoint:
            widgets.append(widget(f"{endpoint}: backlog and failures", r, [
                [SAGEMAKER, "ApproximateBacklogSize", "EndpointName", endpoint, {"stat": "Average"}],
                [SAGEMAKER, "InvocationFailures", "EndpointName", endpoint, {"stat": "Sum"}]], "Average"))
    for endpoint, variants in filter(None, (args.realtime, args.async_endpoint)):  # those running on instances
        metrics = [[SAGEMAKER_INSTANCES, m, "EndpointName", endpoint, "VariantName", v, {"label": f"{v} {m}"}]
                   for m in ("CPUUtilization", "MemoryUtilization", "DiskUtilization") for v in variants]
        widgets.append(widget(f"{endpoint}: instances (CPU is summed over vCPUs)", r, metrics, "Average"))
    for m in args.monitored if drift_metrics else ():  # nothing to draw before the version is published
        drift = [[DATA_METRICS, metric, "Endpoint", m.endpoint_name, "MonitoringSchedule", m.data_schedule,
                  {"label": metric.removeprefix("feature_baseline_drift_")}] for metric in drift_metrics]
        widgets.append(widget(f"{m.endpoint_name}: drift per feature (schedule {m.data_schedule})", r, drift,
                              "Maximum", 3600, t.drift_threshold))
        quality = [[MODEL_METRICS, metric, "Endpoint", m.endpoint_name, "MonitoringSchedule", m.model_schedule]
                   for metric in ("accuracy", "f1")]
        widgets.append(widget(f"{m.endpoint_name}: model quality (schedule {m.model_schedule})", r, quality,
                              "Minimum", 3600, t.min_accuracy))
    if instance_id:
        host = [["AWS/EC2", "CPUUtilization", "InstanceId", instance_id, {"label": "CPU %"}],
                [AGENT, "mem_used_percent", "InstanceId", instance_id, {"label": "memory %"}]]
        host += [[AGENT, "disk_used_percent", "InstanceId", instance_id, "path", path, {"label": f"disk {path} %"}]
                 for path in HOST_DISKS.values()]
        widgets.append(widget(f"EC2 host {args.ec2_endpoint} ({instance_id}): CPU, memory, disk", r, host,
                              "Average", threshold=t.disk_percent))
    return json.dumps({"widgets": widgets}, sort_keys=True)


class Dashboard(pulumi.ComponentResource):
    def __init__(self, name: str, args: DashboardArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlship:watch:Dashboard", name, None, opts)
        content = pulumi.Output.all(args.drift_metrics, args.ec2_instance_id).apply(
            lambda v: body(args, v[0], v[1]))
        self.dashboard = aws.cloudwatch.Dashboard(name, dashboard_name=args.name, dashboard_body=content,
                                                  opts=pulumi.ResourceOptions(parent=self))
        self.dashboard_name = self.dashboard.dashboard_name
        self.url = pulumi.Output.concat(f"https://{args.region}.console.aws.amazon.com/cloudwatch/home?region=",
                                        args.region, "#dashboards/dashboard/", self.dashboard.dashboard_name)
        self.register_outputs({"dashboard_name": self.dashboard_name, "url": self.url})
