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

from infra import settings as stack_settings  # noqa: E402
from infra.async_endpoint import AsyncEndpoint, AsyncEndpointArgs  # noqa: E402
from infra.batch import BatchTransform, BatchTransformArgs  # noqa: E402
from infra.ec2_host import Ec2Host, Ec2HostArgs  # noqa: E402
from infra.models import Models, ModelsArgs, sklearn_image  # noqa: E402
from infra.realtime import CHALLENGER, PRIMARY, SHADOW, RealtimeEndpoint, RealtimeEndpointArgs  # noqa: E402
from infra.registry import ModelRegistry, ModelRegistryArgs  # noqa: E402
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

if s.enabled("ec2"):
    host = Ec2Host("host", Ec2HostArgs(
        prefix=s.prefix, region=s.region, account_id=account_id, settings=s.ec2, model=s.model,
        artifacts_bucket=storage.artifacts.name, artifacts_bucket_arn=storage.artifacts.arn,
        capture_bucket=storage.capture.name, capture_bucket_arn=storage.capture.arn,
        kms_key_arn=storage.kms_key_arn, protect=s.protect, tags=tags))
    pulumi.export("ec2_host", host.host_address)
    pulumi.export("ec2_user", host.ssh_user)
    pulumi.export("ec2_compose_dir", host.compose_dir)
    pulumi.export("ec2_instance_id", host.instance_id)
    pulumi.export("ec2_endpoint_name", host.endpoint_name)
    pulumi.export("ec2_role_arn", host.role_arn)

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
        kms_key_arn=storage.kms_key_arn, tags=tags))
    pulumi.export("realtime_endpoint", realtime.endpoint.endpoint_name)
    pulumi.export("realtime_variants", realtime.variant_names)
    pulumi.export("realtime_shadow_variant", realtime.shadow_variant_name)
    pulumi.export("realtime_capture_uri", realtime.capture_uri)
    pulumi.export("realtime_rollback_alarms", [alarm.name for alarm in realtime.alarms])

if s.enabled("serverless"):
    serverless = ServerlessEndpoint("serverless", ServerlessEndpointArgs(
        endpoint_name=f"{s.prefix}-serverless", settings=s.serverless, model_name=models.models[PRIMARY].name,
        tags=tags))
    pulumi.export("serverless_endpoint", serverless.endpoint.endpoint_name)
    pulumi.export("serverless_variants", serverless.variant_names)

if s.enabled("async"):
    async_endpoint = AsyncEndpoint("async", AsyncEndpointArgs(
        endpoint_name=f"{s.prefix}-async", settings=s.async_, models=models, model_role=PRIMARY,
        bucket=storage.capture.name, bucket_arn=storage.capture.arn, kms_key_arn=storage.kms_key_arn, tags=tags))
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
