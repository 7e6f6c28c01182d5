"""Model Monitor for one real-time endpoint: data-quality and model-quality job definitions and their schedules.

The data-quality job compares each hour of captured requests with the baseline the deployed model
version was published with (models/<name>/<version>/baseline/ in the artifacts bucket) and
publishes feature_baseline_drift_<feature> and friends to CloudWatch. The model-quality job joins
captured predictions with the ground truth callers upload under the ground-truth prefix and
checks accuracy and f1 against constraints written here from the stack's thresholds. Results go
to the reports bucket under monitoring/<endpoint>/<schedule>/yyyy/mm/dd/hh/, the layout the
EC2 host's monitor uses too. Serverless endpoints cannot capture data, so they get no monitor.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_aws_native as aws_native

from infra import iam
from infra.baseline import constraints_uri, prediction_statistics_uri, statistics_uri
from infra.models import image_repository_arn
from infra.settings import ModelRef, MonitoringSettings

REPORTS_PREFIX = "monitoring"
CAPTURE_PREFIX = "capture"
INPUT_PATH = "/opt/ml/processing/input/endpoint"
OUTPUT_PATH = "/opt/ml/processing/resultdata"
# Captured responses are "<probability>,<label>" (the inference handler's text/csv output).
PROBABILITY_ATTRIBUTE, INFERENCE_ATTRIBUTE = "0", "1"


def analyzer_image(region: str) -> str:
    """AWS's Model Monitor analyzer for the region, as the SageMaker SDK resolves it (offline)."""
    from sagemaker.core import image_uris

    # The SDK says at INFO that this image needs no instance type: not news to anyone planning.
    logging.getLogger(image_uris.__name__).setLevel(logging.WARNING)
    return image_uris.retrieve("model-monitor", region=region)


def schedule_names(endpoint_name: str) -> dict[str, str]:
    """The schedule names: CloudWatch's MonitoringSchedule dimension, so the alarms know them in advance."""
    return {"data": f"{endpoint_name}-data-quality", "model": f"{endpoint_name}-model-quality"}


def quality_constraints(settings: MonitoringSettings) -> str:
    """Model Monitor's model-quality constraints from the stack's thresholds (monitoring.formats writes the format)."""
    from monitoring import formats

    below = "LessThanThreshold"
    return json.dumps(formats.model_quality_constraints_to_json({
        "accuracy": formats.ModelQualityConstraint(settings.alarms.min_accuracy, below),
        "f1": formats.ModelQualityConstraint(settings.alarms.min_f1, below),
    }), indent=2, sort_keys=True)


@dataclass(frozen=True)
class ModelMonitorArgs:
    endpoint_name: str
    endpoint: pulumi.Resource
    model: ModelRef
    region: str
    account_id: pulumi.Input[str]
    settings: MonitoringSettings
    artifacts_bucket: pulumi.Input[str]
    artifacts_bucket_arn: pulumi.Input[str]
    capture_bucket: pulumi.Input[str]
    capture_bucket_arn: pulumi.Input[str]
    reports_bucket: pulumi.Input[str]
    reports_bucket_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    tags: dict


class ModelMonitor(pulumi.ComponentResource):
    def __init__(self, name: str, args: ModelMonitorArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlship:watch:ModelMonitor", name, None, opts)
        s = args.settings
        endpoint = args.endpoint_name
        self.image_uri = s.image or analyzer_image(args.region)
        self.schedule_names = schedule_names(endpoint)
        self.reports_uri = pulumi.Output.concat("s3://", args.reports_bucket, f"/{REPORTS_PREFIX}")
        self.ground_truth_uri = pulumi.Output.concat("s3://", args.capture_bucket, f"/{s.ground_truth_prefix}{endpoint}")
        # The schedules are tagged with the endpoint they watch: reviewers and the policy pack see it.
        tags = {**args.tags, "mlship-endpoint": endpoint}
        self.role = self._role(name, args)
        child = pulumi.ResourceOptions(parent=self, depends_on=[args.endpoint, self.role])

        self.constraints = aws.s3.BucketObjectv2(
            f"{name}-model-quality-constraints", bucket=args.artifacts_bucket,
            key=f"{REPORTS_PREFIX}/{endpoint}/model_quality_constraints.json", content=quality_constraints(s),
            content_type="application/json", server_side_encryption="aws:kms", kms_key_id=args.kms_key_arn,
            tags=args.tags, opts=pulumi.ResourceOptions(parent=self))
        cluster = {"instance_count": 1, "instance_type": s.instance_type, "volume_size_in_gb": s.volume_gb,
                   "volume_kms_key_id": args.kms_key_arn}
        output = {"s3_uri": self.reports_uri, "local_path": OUTPUT_PATH, "s3_upload_mode": "EndOfJob"}

        # Named by Pulumi: a changed definition is a new one, and the schedule moves to it before
        # the old one (still in use until then) is deleted.
        self.data_quality = aws.sagemaker.DataQualityJobDefinition(
            f"{name}-data-quality",
            data_quality_app_specification={
                "image_uri": self.image_uri,
                # mlship's monitor also measures prediction drift, from a file SageMaker does not mount.
                **({"environment": {"MLSHIP_PREDICTION_BASELINE": prediction_statistics_uri(args.artifacts_bucket, args.model)}}
                   if s.image else {}),
            },
            data_quality_baseline_config={
                "statistics_resource": {"s3_uri": statistics_uri(args.artifacts_bucket, args.model)},
                "constraints_resource": {"s3_uri": constraints_uri(args.artifacts_bucket, args.model)},
            },
            data_quality_job_input={"endpoint_input": {
                "endpoint_name": endpoint, "local_path": INPUT_PATH,
                "s3_data_distribution_type": "FullyReplicated", "s3_input_mode": "File"}},
            data_quality_job_output_config={"kms_key_id": args.kms_key_arn, "monitoring_outputs": {"s3_output": output}},
            job_resources={"cluster_config": cluster},
            network_config={"enable_inter_container_traffic_encryption": True},
            role_arn=self.role.arn,
            stopping_condition={"max_runtime_in_seconds": s.max_runtime_seconds},
            tags=tags, opts=child)
        self.model_quality = aws_native.sagemaker.ModelQualityJobDefinition(
            f"{name}-model-quality",
            endpoint_name=endpoint,
            model_quality_app_specification={"image_uri": self.image_uri, "problem_type": "BinaryClassification"},
            model_quality_baseline_config={"constraints_resource": {
                "s3_uri": pulumi.Output.concat("s3://", self.constraints.bucket, "/", self.constraints.key)}},
            model_quality_job_input={
                "endpoint_input": {
                    "endpoint_name": endpoint, "local_path": INPUT_PATH,
                    "inference_attribute": INFERENCE_ATTRIBUTE, "probability_attribute": PROBABILITY_ATTRIBUTE,
                    "probability_threshold_attribute": 0.5,
                    # Ground truth arrives later than the request: look back over a window that has it.
                    "start_time_offset": s.quality_start_offset, "end_time_offset": s.quality_end_offset,
                    "s3_data_distribution_type": "FullyReplicated", "s3_input_mode": "File"},
                "ground_truth_s3_input": {"s3_uri": self.ground_truth_uri},
            },
            model_quality_job_output_config={"kms_key_id": args.kms_key_arn,
                                             "monitoring_outputs": [{"s3_output": output}]},
            job_resources={"cluster_config": cluster},
            network_config={"enable_inter_container_traffic_encryption": True},
            role_arn=self.role.arn,
            stopping_condition={"max_runtime_in_seconds": s.max_runtime_seconds},
            tags=[{"key": k, "value": v} for k, v in sorted(tags.items())],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.endpoint, self.role, self.constraints]))

        self.data_quality_schedule = self._schedule(
            f"{name}-data-quality", self.schedule_names["data"], "DataQuality", self.data_quality.name, s.schedule, tags)
        self.model_quality_schedule = self._schedule(
            f"{name}-model-quality", self.schedule_names["model"], "ModelQuality",
            self.model_quality.job_definition_name, s.schedule, tags)
        self.register_outputs({
            "image_uri": self.image_uri, "reports_uri": self.reports_uri, "ground_truth_uri": self.ground_truth_uri,
            "data_quality_schedule": self.data_quality_schedule.name,
            "model_quality_schedule": self.model_quality_schedule.name,
        })

    def _schedule(self, name: str, schedule_name: str, kind: str, definition: pulumi.Input[str], expression: str,
                  tags: dict) -> aws.sagemaker.MonitoringSchedule:
        return aws.sagemaker.MonitoringSchedule(
            name, name=schedule_name, tags=tags,
            monitoring_schedule_config={"monitoring_type": kind, "monitoring_job_definition_name": definition,
                                        "schedule_config": {"schedule_expression": expression}},
            opts=pulumi.ResourceOptions(parent=self))

    def _role(self, name: str, args: ModelMonitorArgs) -> aws.iam.Role:
        endpoint, s = args.endpoint_name, args.settings
        logs = pulumi.Output.concat("arn:aws:logs:", args.region, ":", args.account_id,
                                    ":log-group:/aws/sagemaker/ProcessingJobs*")
        readable = [f"{CAPTURE_PREFIX}/{endpoint}/", f"{s.ground_truth_prefix}{endpoint}/"]
        return iam.service_role(
            f"{name}-role", "sagemaker.amazonaws.com", parent=self, account_id=args.account_id, tags=args.tags,
            description=f"Model Monitor jobs watching {endpoint}",
            statements=[
                iam.statement(["s3:GetObject"], [iam.objects(args.artifacts_bucket_arn, args.model.key("baseline/")),
                                                 iam.objects(args.artifacts_bucket_arn, f"{REPORTS_PREFIX}/{endpoint}/")],
                              "ReadBaselines"),
                iam.statement(["s3:GetObject"], [iam.objects(args.capture_bucket_arn, p) for p in readable],
                              "ReadCaptureAndGroundTruth"),
                iam.statement(["s3:ListBucket"], [args.capture_bucket_arn], "ListCaptureAndGroundTruth",
                              {"StringLike": {"s3:prefix": [f"{p}*" for p in readable]}}),
                iam.statement(["s3:PutObject"], [iam.objects(args.reports_bucket_arn, f"{REPORTS_PREFIX}/{endpoint}/")],
                              "WriteReports"),
                iam.kms_use(args.kms_key_arn),
                iam.statement(["ecr:GetAuthorizationToken"], ["*"], "LogInToEcr"),
                iam.statement(["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                              [image_repository_arn(self.image_uri)], "PullMonitorImage"),
                iam.statement(["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
                              [logs], "WriteLogs"),
                iam.statement(["cloudwatch:PutMetricData"], ["*"], "PublishMonitorMetrics",
                              {"StringLike": {"cloudwatch:namespace": "aws/sagemaker/Endpoints/*"}}),
            ])
