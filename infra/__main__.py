"""The Pulumi program: read the stack's settings once, then compose one component per concern."""

from __future__ import annotations

import sys
from pathlib import Path

# Pulumi runs this file with infra/ as the program directory; the packages live one level up.
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import pulumi  # noqa: E402
import pulumi_aws as aws  # noqa: E402
import pulumi_github as github  # noqa: E402

from infra import iam  # noqa: E402
from infra import settings as stack_settings  # noqa: E402
from infra.alarms import Alarms, AlarmsArgs, MonitoredEndpoint, drift_alarm_prefix  # noqa: E402
from infra.alerts import Alerts, AlertsArgs  # noqa: E402
from infra.async_endpoint import AsyncEndpoint, AsyncEndpointArgs  # noqa: E402
from infra.baseline import deployed_drift_metrics  # noqa: E402
from infra.batch import BatchTransform, BatchTransformArgs  # noqa: E402
from infra.dashboard import Dashboard, DashboardArgs  # noqa: E402
from infra.ec2_host import Ec2Host, Ec2HostArgs  # noqa: E402
from infra.github import GitHubDelivery, GitHubDeliveryArgs  # noqa: E402
from infra.model_monitor import ModelMonitor, ModelMonitorArgs  # noqa: E402
from infra.models import Models, ModelsArgs, sklearn_image  # noqa: E402
from infra.realtime import CHALLENGER, PRIMARY, SHADOW, RealtimeEndpoint, RealtimeEndpointArgs  # noqa: E402
from infra.registry import ModelRegistry, ModelRegistryArgs  # noqa: E402
from infra.retraining import Retraining, RetrainingArgs  # noqa: E402
from infra.serverless import ServerlessEndpoint, ServerlessEndpointArgs  # noqa: E402
from infra.storage import Storage, StorageArgs  # noqa: E402

s = stack_settings.load(stack_settings.runtime_config(), pulumi.get_stack(), REPO)
tags = {"project": "mlship", "stack": s.stack, "model": s.model.name, **s.tags}
account_id = aws.get_caller_identity_output().account_id

storage = Storage("storage", StorageArgs(
    prefix=s.prefix, artifacts_noncurrent_days=s.storage.noncurrent_artifact_retention_days,
    capture_expire_days=s.storage.capture_retention_days, reports_expire_days=s.storage.report_retention_days,
    kms_deletion_window_days=s.storage.kms_deletion_window_days, protect=s.protect, tags=tags))
registry = ModelRegistry("registry", ModelRegistryArgs(
    group_name=s.model_package_group, model_name=s.model.name, protect=s.protect, tags=tags))

pulumi.export("model", str(s.model))
pulumi.export("region", s.region)
pulumi.export("kms_key_arn", storage.kms_key_arn)
pulumi.export("artifacts_bucket", storage.artifacts.name)
pulumi.export("artifacts_bucket_arn", storage.artifacts.arn)
pulumi.export("capture_bucket", storage.capture.name)
pulumi.export("capture_bucket_arn", storage.capture.arn)
pulumi.export("reports_bucket", storage.reports.name)
pulumi.export("reports_bucket_arn", storage.reports.arn)
pulumi.export("model_artifact_uri", pulumi.Output.concat("s3://", storage.artifacts.name, "/", s.model.key()))
pulumi.export("model_package_group", registry.group_name)

alerts = Alerts("alerts", AlertsArgs(
    prefix=s.prefix, account_id=account_id, emails=s.monitoring.alert_emails,
    kms_deletion_window_days=s.storage.kms_deletion_window_days, tags=tags))
pulumi.export("alerts_topic_arn", alerts.topic_arn)
# Endpoints whose monitor publishes Model Monitor's metrics: the drift and quality alarms watch them.
monitored: list[MonitoredEndpoint] = []

if s.enabled("ec2"):
    host = Ec2Host("host", Ec2HostArgs(
        prefix=s.prefix, region=s.region, account_id=account_id, settings=s.ec2, model=s.model,
        artifacts_bucket=storage.artifacts.name, artifacts_bucket_arn=storage.artifacts.arn,
        capture_bucket=storage.capture.name, capture_bucket_arn=storage.capture.arn,
        reports_bucket=storage.reports.name, reports_bucket_arn=storage.reports.arn,
        kms_key_arn=storage.kms_key_arn, ground_truth_prefix=s.monitoring.ground_truth_prefix,
        log_retention_days=s.monitoring.log_retention_days, protect=s.protect, tags=tags))
    monitored.append(MonitoredEndpoint("ec2", host.endpoint_name, host.schedule_name, host.schedule_name))
    pulumi.export("ec2_host", host.host_address)
    pulumi.export("ec2_user", host.ssh_user)
    pulumi.export("ec2_compose_dir", host.compose_dir)
    pulumi.export("ec2_instance_id", host.instance_id)
    pulumi.export("ec2_endpoint_name", host.endpoint_name)
    pulumi.export("ec2_role_arn", host.role_arn)
    pulumi.export("ec2_monitor_schedule", host.schedule_name)

sagemaker_targets = {"realtime", "serverless", "async", "batch"} & s.targets
if sagemaker_targets:
    versions = {PRIMARY: s.model}
    if s.realtime and s.realtime.challenger:
        versions[CHALLENGER] = s.realtime.challenger.model
    if s.realtime and s.realtime.shadow:
        versions[SHADOW] = s.realtime.shadow.model
    models = Models("models", ModelsArgs(
        prefix=s.prefix, region=s.region, account_id=account_id,
        image_uri=sklearn_image(s.region, s.container_version),
        artifacts_bucket=storage.artifacts.name, artifacts_bucket_arn=storage.artifacts.arn,
        kms_key_arn=storage.kms_key_arn, versions=versions, tags=tags))
    pulumi.export("sagemaker_execution_role_arn", models.role_arn)
    pulumi.export("sagemaker_model", models.models[PRIMARY].name)

if s.enabled("realtime"):
    realtime = RealtimeEndpoint("realtime", RealtimeEndpointArgs(
        endpoint_name=f"{s.prefix}-realtime", settings=s.realtime, models=models,
        capture_bucket=storage.capture.name, capture_bucket_arn=storage.capture.arn,
        kms_key_arn=storage.kms_key_arn, tags=tags, alarm_topic_arn=alerts.topic_arn))
    # Serverless endpoints cannot capture, so only the real-time endpoint gets Model Monitor.
    monitor = ModelMonitor("realtime-monitor", ModelMonitorArgs(
        endpoint_name=realtime.endpoint_name, endpoint=realtime.endpoint, model=s.model, region=s.region,
        account_id=account_id, settings=s.monitoring,
        artifacts_bucket=storage.artifacts.name, artifacts_bucket_arn=storage.artifacts.arn,
        capture_bucket=storage.capture.name, capture_bucket_arn=storage.capture.arn,
        reports_bucket=storage.reports.name, reports_bucket_arn=storage.reports.arn,
        kms_key_arn=storage.kms_key_arn, tags=tags))
    monitored.append(MonitoredEndpoint("realtime", realtime.endpoint_name, monitor.schedule_names["data"],
                                       monitor.schedule_names["model"]))
    pulumi.export("realtime_endpoint", realtime.endpoint.endpoint_name)
    pulumi.export("realtime_variants", realtime.variant_names)
    pulumi.export("realtime_shadow_variant", realtime.shadow_variant_name)
    pulumi.export("realtime_capture_uri", realtime.capture_uri)
    pulumi.export("realtime_rollback_alarms", [alarm.name for alarm in realtime.alarms])
    pulumi.export("realtime_monitoring_schedules", [monitor.data_quality_schedule.name, monitor.model_quality_schedule.name])
    pulumi.export("monitor_image", monitor.image_uri)
    pulumi.export("monitoring_reports_uri", monitor.reports_uri)
    pulumi.export("ground_truth_uri", monitor.ground_truth_uri)

if s.enabled("serverless"):
    serverless = ServerlessEndpoint("serverless", ServerlessEndpointArgs(
        endpoint_name=f"{s.prefix}-serverless", settings=s.serverless, model_name=models.models[PRIMARY].name,
        tags=tags))
    pulumi.export("serverless_endpoint", serverless.endpoint.endpoint_name)
    pulumi.export("serverless_variants", serverless.variant_names)

if s.enabled("async"):
    async_endpoint = AsyncEndpoint("async", AsyncEndpointArgs(
        endpoint_name=f"{s.prefix}-async", settings=s.async_, models=models, model_role=PRIMARY,
        bucket=storage.capture.name, bucket_arn=storage.capture.arn, kms_key_arn=storage.kms_key_arn, tags=tags,
        alarm_topic_arn=alerts.topic_arn))
    pulumi.export("async_endpoint", async_endpoint.endpoint.endpoint_name)
    pulumi.export("async_variants", async_endpoint.variant_names)
    pulumi.export("async_input_uri", async_endpoint.input_uri)
    pulumi.export("async_output_uri", async_endpoint.output_uri)

if s.enabled("batch"):
    batch = BatchTransform("batch", BatchTransformArgs(
        prefix=s.prefix, region=s.region, account_id=account_id, settings=s.batch, models=models,
        model_role=PRIMARY, bucket=storage.capture.name, bucket_arn=storage.capture.arn,
        kms_key_arn=storage.kms_key_arn, tags=tags))
    pulumi.export("batch_pipeline", batch.pipeline.pipeline_name)
    pulumi.export("batch_schedule", batch.schedule.name)
    pulumi.export("batch_input_uri", batch.input_uri)
    pulumi.export("batch_output_uri", batch.output_uri)

# The feature list of the deployed version's published baseline: one drift alarm per feature.
drift_metrics = deployed_drift_metrics(storage.artifacts.name, s.model) if monitored else []
alarms = Alarms("alarms", AlarmsArgs(
    topic_arn=alerts.topic_arn, region=s.region, thresholds=s.monitoring.alarms, tags=tags, drift_metrics=drift_metrics,
    realtime=(realtime.endpoint_name, realtime.variant_names, s.realtime.instance_type) if s.enabled("realtime") else None,
    serverless=(serverless.endpoint_name, serverless.variant_names[0]) if s.enabled("serverless") else None,
    async_endpoint=async_endpoint.endpoint_name if s.enabled("async") else None,
    ec2=(host.endpoint_name, host.instance_id) if s.enabled("ec2") else None,
    monitored=monitored))
pulumi.export("alarms", [alarm.name for alarm in alarms.alarms])
pulumi.export("drift_alarms", alarms.drift_alarm_names)

dashboard = Dashboard("dashboard", DashboardArgs(
    name=s.prefix, region=s.region, model=str(s.model), thresholds=s.monitoring.alarms, drift_metrics=drift_metrics,
    realtime=(realtime.endpoint_name, realtime.variant_names) if s.enabled("realtime") else None,
    serverless=(serverless.endpoint_name, serverless.variant_names) if s.enabled("serverless") else None,
    async_endpoint=(async_endpoint.endpoint_name, async_endpoint.variant_names) if s.enabled("async") else None,
    ec2_instance_id=host.instance_id if s.enabled("ec2") else None,
    ec2_endpoint=host.endpoint_name if s.enabled("ec2") else None,
    monitored=monitored))
pulumi.export("dashboard_url", dashboard.url)

github_token = pulumi.Config("mlship").get_secret("githubToken")
if s.monitoring.retraining.enabled and monitored:
    retraining = Retraining("retraining", RetrainingArgs(
        prefix=s.prefix, repository=s.monitoring.retraining.repository, event_type=s.monitoring.retraining.event_type,
        github_token=github_token, alarm_name_prefixes=[drift_alarm_prefix(m.endpoint_name) for m in monitored],
        model=str(s.model), tags=tags))
    pulumi.export("retraining_rule", retraining.rule.name)

if s.github:
    # The GitHub side of delivery: OIDC roles, the stack's environment, and the EC2 secrets the
    # deploy workflow reads. The provider manages the repository's owner (token: mlship:githubToken,
    # else GITHUB_TOKEN in the environment of `pulumi up`).
    github_provider = github.Provider("github", owner=s.github.owner, token=github_token)
    delivery = GitHubDelivery("github", GitHubDeliveryArgs(
        repository=s.github.repository, environment=s.github.environment,
        reviewer_user_ids=s.github.reviewer_user_ids, reviewer_team_ids=s.github.reviewer_team_ids,
        require_reviewers=s.production, existing_oidc_provider_arn=s.github.oidc_provider_arn,
        ec2_host=host.host_address if s.enabled("ec2") else None,
        ec2_user=host.ssh_user if s.enabled("ec2") else None,
        docker_compose_dir=host.compose_dir if s.enabled("ec2") else None,
        variables={"ARTIFACTS_BUCKET": storage.artifacts.name, "MODEL_PACKAGE_GROUP": registry.group_name},
        tags=tags), opts=pulumi.ResourceOptions(providers=[github_provider]))
    # A preview reads the deployed version's baseline (the drift alarms follow its features);
    # ReadOnlyAccess cannot decrypt it, so the preview role may read exactly that, through S3.
    aws.iam.RolePolicy("github-preview-baselines", role=delivery.preview_role_name, policy=iam.document([
        iam.statement(["s3:GetObject"], [iam.objects(storage.artifacts.arn, "models/")], "ReadPublishedBaselines"),
        iam.statement(["kms:Decrypt"], [storage.kms_key_arn], "DecryptThroughS3",
                      {"StringEquals": {"kms:ViaService": f"s3.{s.region}.amazonaws.com"}}),
    ]), opts=pulumi.ResourceOptions(parent=delivery))
    pulumi.export("github_environment", delivery.environment)
    pulumi.export("github_deploy_role_arn", delivery.deploy_role_arn)
    pulumi.export("github_preview_role_arn", delivery.preview_role_arn)
