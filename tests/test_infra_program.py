"""The Pulumi program, run offline under Pulumi's mocks for every Pulumi.<stack>.yaml in the repository."""

from __future__ import annotations

import base64
import json
import re

import pytest

from infra import offline
from infra.offline import Plan
from infra.settings import TRAFFIC_ROUTING, load
from infra_support import COMPOSE, REPO, compose_overrides, compose_text, policy
from mlship.errors import UserError

STACKS = sorted(offline.stack_files())
BUCKET = "aws:s3/bucket:Bucket"
ENDPOINT = "aws-native:sagemaker:Endpoint"
ENDPOINT_CONFIG = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict:
    cache: dict = {}

    def get(stack: str):
        if stack not in cache:
            overrides = compose_overrides(stack, tmp_path_factory.mktemp(stack))
            config = {**offline.stack_config(stack), **overrides}
            cache[stack] = (offline.run(stack, overrides=overrides), load(config, stack, REPO), config)
        return cache[stack]
    return get


@pytest.fixture(params=STACKS)
def run(request, runs):
    return runs(request.param)


def children_of(plan: Plan, parent_name: str, type_: str):
    parents = {r.urn for r in plan.resources if r.name == parent_name and not r.custom}
    return [r for r in plan.of_type(type_) if r.parent in parents]


def test_every_stack_file_is_found():
    assert {"dev", "prod"} <= set(STACKS)


def test_buckets_are_encrypted_private_tls_only_with_lifecycle(run):
    plan, s, _ = run
    key_arn = plan.outputs["kms_key_arn"]
    buckets = plan.of_type(BUCKET)
    assert {b.name for b in buckets} == {"storage-artifacts", "storage-capture", "storage-reports"}
    for bucket in buckets:
        (sse,) = children_of(plan, bucket.name, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
        rule = sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]
        assert rule == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": key_arn}
        (block,) = children_of(plan, bucket.name, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
        assert all(block.inputs[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
        (bucket_policy,) = children_of(plan, bucket.name, "aws:s3/bucketPolicy:BucketPolicy")
        (deny,) = policy(bucket_policy.inputs["policy"])["Statement"]
        assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert bucket.inputs["forceDestroy"] is (not s.production)
        assert bucket.protect is s.production
    (versioning,) = children_of(plan, "storage-artifacts", "aws:s3/bucketVersioning:BucketVersioning")
    assert versioning.inputs["versioningConfiguration"] == {"status": "Enabled"}
    (capture_rules,) = children_of(plan, "storage-capture", "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    expiry = [r["expiration"]["days"] for r in capture_rules.inputs["rules"] if "expiration" in r]
    assert expiry == [s.storage.capture_retention_days]
    key = plan.one("aws:kms/key:Key", "storage-key")
    assert key.inputs["enableKeyRotation"] is True and key.protect is s.production


def test_ec2_host_imdsv2_encrypted_volumes_detailed_monitoring(run):
    plan, s, _ = run
    instance = plan.one("aws:ec2/instance:Instance")
    assert instance.inputs["metadataOptions"]["httpTokens"] == "required"
    assert instance.inputs["rootBlockDevice"]["encrypted"] is True
    assert instance.inputs["rootBlockDevice"]["kmsKeyId"] == plan.outputs["kms_key_arn"]
    assert instance.inputs["monitoring"] is True
    assert instance.inputs["instanceType"] == s.ec2.instance_type
    assert instance.ignore_changes == ["ami"]
    volume = plan.one("aws:ebs/volume:Volume")
    assert volume.inputs["encrypted"] is True and volume.inputs["type"] == "gp3"
    assert volume.inputs["size"] == s.ec2.data_volume_gb and volume.protect is s.production
    attachment = plan.one("aws:ec2/volumeAttachment:VolumeAttachment")
    assert attachment.inputs["volumeId"] == "host-data-id" and attachment.inputs["instanceId"] == "host-id"
    assert plan.outputs["ec2_user"] == s.ec2.ssh_user and plan.outputs["ec2_compose_dir"] == s.ec2.compose_dir
    assert plan.outputs["ec2_host"]
    assert len(plan.of_type("aws:ec2/eip:Eip")) == int(s.ec2.elastic_ip)


def test_security_group_opens_ssh_and_serving_port_only_to_configured_cidrs(run):
    plan, s, _ = run
    group = plan.one("aws:ec2/securityGroup:SecurityGroup")
    by_port = {rule["fromPort"]: rule for rule in group.inputs["ingress"]}
    assert set(by_port) == {22, s.ec2.serving_port}
    assert by_port[22]["cidrBlocks"] == list(s.ec2.ssh_cidrs)
    assert by_port[s.ec2.serving_port]["cidrBlocks"] == list(s.ec2.serving_cidrs)
    assert all(rule["description"] for rule in group.inputs["ingress"] + group.inputs["egress"])
    if s.production:
        assert "0.0.0.0/0" not in by_port[22]["cidrBlocks"]


def test_user_data_writes_the_compose_file_and_keeps_the_data_volume(run):
    plan, s, config = run
    script = plan.one("aws:ec2/instance:Instance").inputs["userData"]
    encoded = re.search(r"echo (\S+) \| base64 -d > (\S+)", script)
    assert base64.b64decode(encoded.group(1)).decode() == compose_text(config)
    assert encoded.group(2) == f"{s.ec2.compose_dir}/docker-compose.yml"
    assert 'blkid "$DEVICE" >/dev/null || mkfs.ext4' in script  # formats only a blank volume
    assert "host-data-id".replace("-", "") in script
    assert f"aws s3 cp --recursive s3://storage-artifacts/models/{s.model.name}/{s.model.version}/ " in script
    assert f"MLSHIP_MODEL_DIR=/data/models/{s.model.name}/{s.model.version}\n" in script
    assert f"MLSHIP_ENDPOINT=mlship-{s.stack}-ec2\n" in script
    assert "MLSHIP_CAPTURE_S3=s3://storage-capture/capture\n" in script
    assert "docker-compose-v2" in script and "amazon-cloudwatch-agent" in script
    assert f"MLSHIP_IMAGE={s.ec2.image}\n" in script
    assert "docker compose up -d --no-build" in script


def test_data_capture_on_the_real_time_endpoint_only(run):
    plan, s, _ = run
    configs = {c.name: c for c in plan.of_type(ENDPOINT_CONFIG)}
    capture = configs["realtime-config"].inputs["dataCaptureConfig"]
    assert capture["enableCapture"] is True
    assert capture["initialSamplingPercentage"] == s.realtime.capture_sampling_percent
    assert capture["destinationS3Uri"] == "s3://storage-capture/capture"
    assert capture["kmsKeyId"] == plan.outputs["kms_key_arn"]
    assert {o["captureMode"] for o in capture["captureOptions"]} == {"Input", "Output"}
    for name in ("serverless-config", "async-config"):
        assert "dataCaptureConfig" not in configs[name].inputs
    serverless = configs["serverless-config"].inputs["productionVariants"][0]["serverlessConfig"]
    assert serverless["memorySizeInMb"] == s.serverless.memory_mb
    assert serverless["maxConcurrency"] == s.serverless.max_concurrency


def test_rollout_and_rollback_alarms(run):
    plan, s, _ = run
    endpoint = plan.one(ENDPOINT, "realtime")
    assert endpoint.inputs["endpointName"] == plan.outputs["realtime_endpoint"] == f"mlship-{s.stack}-realtime"
    deployment = endpoint.inputs["deploymentConfig"]
    routing = deployment["blueGreenUpdatePolicy"]["trafficRoutingConfiguration"]
    assert routing["type"] == s.realtime.rollout.type in TRAFFIC_ROUTING
    alarms = {a.inputs["name"]: a for a in children_of(plan, "realtime", "aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert {a["alarmName"] for a in deployment["autoRollbackConfiguration"]["alarms"]} == set(alarms)
    assert {a.inputs["metricName"] for a in alarms.values()} == {"Invocation5XXErrors", "ModelLatency"}
    for alarm in alarms.values():
        assert alarm.inputs["dimensions"]["EndpointName"] == endpoint.inputs["endpointName"]
    if s.production:
        assert routing["type"] in ("CANARY", "LINEAR")
        size = routing.get("canarySize") or routing["linearStepSize"]
        assert size["type"] == "CAPACITY_PERCENT" and size["value"] <= 50 or size["value"] * 2 <= s.realtime.instance_count
        variants = plan.one(ENDPOINT_CONFIG, "realtime-config").inputs["productionVariants"]
        assert variants[0]["initialInstanceCount"] >= 2


def test_autoscaling_survives_deployments_and_weights_stay_declared(run):
    plan, s, _ = run
    endpoint = plan.one(ENDPOINT, "realtime")
    # A deployment keeps the instance count the autoscaler chose, and applies the declared weights.
    assert endpoint.inputs["retainAllVariantProperties"] is True
    assert endpoint.inputs["excludeRetainedVariantProperties"] == [{"variantPropertyType": "DesiredWeight"}]
    config = plan.one(ENDPOINT_CONFIG, "realtime-config")
    assert endpoint.inputs["endpointConfigName"] == config.name  # the mock's name for the Pulumi-named config
    assert "name" not in config.inputs  # Pulumi names it: a change makes a new one before the old is deleted
    assert config.inputs["productionVariants"][0]["initialVariantWeight"] == s.realtime.weight
    target = plan.one("aws:appautoscaling/target:Target", "realtime-primary-scaling")
    assert target.inputs["resourceId"] == f"endpoint/mlship-{s.stack}-realtime/variant/primary"
    assert target.inputs["scalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    assert (target.inputs["minCapacity"], target.inputs["maxCapacity"]) == (
        s.realtime.autoscaling.min_instances, s.realtime.autoscaling.max_instances)
    scaling = plan.one("aws:appautoscaling/policy:Policy", "realtime-primary-invocations")
    tracking = scaling.inputs["targetTrackingScalingPolicyConfiguration"]
    assert tracking["predefinedMetricSpecification"]["predefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"
    assert scaling.inputs["resourceId"] == target.inputs["resourceId"]
    async_target = plan.one("aws:appautoscaling/target:Target", "async-scaling")
    assert async_target.inputs["minCapacity"] == s.async_.min_instances
    assert plan.one(ENDPOINT, "async").inputs["retainAllVariantProperties"] is True


def test_async_endpoint_writes_to_s3_and_notifies(run):
    plan, s, _ = run
    config = plan.one(ENDPOINT_CONFIG, "async-config").inputs["asyncInferenceConfig"]
    assert config["outputConfig"]["s3OutputPath"] == "s3://storage-capture/async/output/"
    assert config["outputConfig"]["s3FailurePath"] == "s3://storage-capture/async/failure/"
    topics = {t.name: t for t in plan.of_type("aws:sns/topic:Topic") if t.name.startswith("async-")}
    notify = config["outputConfig"]["notificationConfig"]
    assert notify == {"successTopic": "arn:aws:sns:eu-west-1:123456789012:async-success",
                      "errorTopic": "arn:aws:sns:eu-west-1:123456789012:async-error"}
    assert all(t.inputs["kmsMasterKeyId"] == plan.outputs["kms_key_arn"] for t in topics.values())
    assert config["clientConfig"]["maxConcurrentInvocationsPerInstance"] == s.async_.max_concurrent_invocations_per_instance


def test_batch_pipeline_has_a_transform_step_started_on_schedule(run):
    plan, s, _ = run
    pipeline = plan.one("aws:sagemaker/pipeline:Pipeline")
    definition = policy(pipeline.inputs["pipelineDefinition"])
    (step,) = definition["Steps"]
    assert step["Type"] == "Transform"
    arguments = step["Arguments"]
    assert arguments["ModelName"] == plan.outputs["sagemaker_model"]
    assert arguments["TransformInput"]["SplitType"] == "Line"
    assert arguments["TransformInput"]["ContentType"] == s.batch.content_type
    assert arguments["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == {"Get": "Parameters.InputUri"}
    assert arguments["BatchStrategy"] == "MultiRecord"
    assert arguments["TransformResources"]["InstanceType"] == s.batch.instance_type
    parameters = {p["Name"]: p["DefaultValue"] for p in definition["Parameters"]}
    assert parameters["InputUri"] == f"s3://storage-capture/{s.batch.input_prefix}"
    assert parameters["OutputUri"] == f"s3://storage-capture/{s.batch.output_prefix}"
    schedule = plan.one("aws:scheduler/schedule:Schedule")
    assert schedule.inputs["scheduleExpression"] == s.batch.schedule
    assert schedule.inputs["target"]["arn"] == f"arn:aws:sagemaker:eu-west-1:123456789012:{pipeline.name}"
    scheduler_policy = policy(next(p for p in plan.of_type("aws:iam/rolePolicy:RolePolicy")
                                   if p.name == "batch-scheduler-permissions").inputs["policy"])
    (start,) = scheduler_policy["Statement"]
    assert start["Action"] == ["sagemaker:StartPipelineExecution"] and start["Resource"] == [schedule.inputs["target"]["arn"]]


def test_registry_and_model(run):
    plan, s, _ = run
    group = plan.one("aws:sagemaker/modelPackageGroup:ModelPackageGroup")
    assert group.inputs["modelPackageGroupName"] == plan.outputs["model_package_group"] == f"mlship-{s.stack}-{s.model.name}"
    assert group.protect is s.production
    model = plan.one("aws:sagemaker/model:Model", "models-primary")
    container = model.inputs["primaryContainer"]
    assert container["modelDataUrl"] == plan.outputs["model_artifact_uri"]
    assert container["modelDataUrl"].endswith(f"models/{s.model.name}/{s.model.version}/model.tar.gz")
    assert re.fullmatch(r"\d+\.dkr\.ecr\.eu-west-1\.amazonaws\.com/sagemaker-scikit-learn:" + re.escape(s.container_version) + "-cpu-py3",
                        container["image"])
    assert container["environment"]["SAGEMAKER_PROGRAM"] == "inference.py"


def test_policies_are_least_privilege(run):
    plan, _, _ = run
    documents = [policy(p.inputs["policy"]) for p in plan.of_type("aws:iam/rolePolicy:RolePolicy")]
    assert len(documents) >= 6
    for document in documents:
        for statement in document["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            assert "*" not in actions, statement
            if statement["Effect"] == "Allow" and "*" in resources:
                assert not any(a.endswith(":*") for a in actions), statement
    for role in plan.of_type("aws:iam/role:Role"):
        if role.name.startswith("github-"):
            continue  # GitHub Actions' OIDC roles: tests/test_github_delivery.py
        (trust,) = policy(role.inputs["assumeRolePolicy"])["Statement"]
        assert set(trust["Principal"]) == {"Service"} and trust["Action"] == "sts:AssumeRole"


def test_ab_challenger_and_shadow_variants(tmp_path):
    config = {**offline.stack_config("prod"), **compose_overrides("prod", tmp_path)}
    realtime = {**config["mlship:realtime"], "weight": 0.9,
                "challenger": {"model": "churn@1.1.0", "weight": 0.1, "instanceCount": 1},
                "shadow": {"model": "churn@1.2.0", "instanceType": "ml.m5.large"}}
    plan = offline.run("prod", overrides={**compose_overrides("prod", tmp_path), "mlship:realtime": realtime})
    config = plan.one(ENDPOINT_CONFIG, "realtime-config").inputs
    weights = {v["variantName"]: v["initialVariantWeight"] for v in config["productionVariants"]}
    assert weights == {"primary": 0.9, "challenger": 0.1}
    models = {m.name: m.inputs["primaryContainer"]["modelDataUrl"] for m in plan.of_type("aws:sagemaker/model:Model")}
    assert models["models-challenger"].endswith("models/churn/1.1.0/model.tar.gz")
    assert models["models-shadow"].endswith("models/churn/1.2.0/model.tar.gz")
    by_variant = {v["variantName"]: v["modelName"] for v in config["productionVariants"] + config["shadowProductionVariants"]}
    assert by_variant == {"primary": "models-primary", "challenger": "models-challenger", "shadow": "models-shadow"}
    challenger = plan.one("aws:appautoscaling/target:Target", "realtime-challenger-scaling")
    assert challenger.inputs["resourceId"] == "endpoint/mlship-prod-realtime/variant/challenger"
    assert challenger.inputs["minCapacity"] == challenger.inputs["maxCapacity"] == 1
    assert plan.outputs["realtime_variants"] == ["primary", "challenger"]
    assert plan.outputs["realtime_shadow_variant"] == "shadow"


def test_a_stack_enables_only_the_targets_it_names(tmp_path):
    plan = offline.run("dev", overrides={**compose_overrides("dev", tmp_path), "mlship:targets": ["ec2"]})
    assert plan.of_type("aws:ec2/instance:Instance")
    assert not [r for r in plan.resources if r.type == "aws:sagemaker/model:Model" or r.type.startswith("aws-native:sagemaker")]
    assert "realtime_endpoint" not in plan.outputs and plan.outputs["model_package_group"] == "mlship-dev-churn"


def test_plan_of_a_checkout_matches_the_in_process_plan(runs):
    if not COMPOSE.is_file():
        pytest.skip("the serving compose file is not in this checkout yet")
    in_process, _, _ = runs("dev")
    other = offline.run_checkout("dev", REPO)
    def identity(plan):  # registration order varies with the event loop; the set of resources does not
        return sorted((r.urn, r.parent or "", json.dumps(r.inputs, sort_keys=True)) for r in plan.resources)
    assert identity(other) == identity(in_process)
    assert other.outputs == in_process.outputs
    with pytest.raises(UserError, match="the offline plan of stack 'staging' in .* failed: mlship plan: error: stack 'staging'"):
        offline.run_checkout("staging", REPO)
