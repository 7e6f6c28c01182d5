"""Batch transform on a schedule: a SageMaker Pipeline with one transform step, started by EventBridge Scheduler."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.models import Models
from infra.settings import BatchSettings

STEP = "BatchTransform"


def pipeline_definition(model_name: str, input_uri: str, output_uri: str, kms_key_arn: str,
                        s: BatchSettings) -> str:
    """The pipeline as SageMaker's pipeline definition JSON: one transform step over the input prefix."""
    return json.dumps({
        "Version": "2020-12-01",
        "Metadata": {},
        "Parameters": [
            {"Name": "InputUri", "Type": "String", "DefaultValue": input_uri},
            {"Name": "OutputUri", "Type": "String", "DefaultValue": output_uri},
            {"Name": "InstanceCount", "Type": "Integer", "DefaultValue": s.instance_count},
        ],
        "Steps": [{
            "Name": STEP,
            "Type": "Transform",
            "Arguments": {
                "ModelName": model_name,
                "BatchStrategy": "MultiRecord",
                "MaxPayloadInMB": s.max_payload_mb,
                "TransformInput": {
                    "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": {"Get": "Parameters.InputUri"}}},
                    "ContentType": s.content_type,
                    "SplitType": "Line",
                },
                "TransformOutput": {
                    "S3OutputPath": {"Get": "Parameters.OutputUri"},
                    "Accept": s.content_type,
                    "AssembleWith": "Line",
                    "KmsKeyId": kms_key_arn,
                },
                "TransformResources": {
                    "InstanceType": s.instance_type,
                    "InstanceCount": {"Get": "Parameters.InstanceCount"},
                    "VolumeKmsKeyId": kms_key_arn,
                },
            },
        }],
    }, sort_keys=True)


@dataclass(frozen=True)
class BatchTransformArgs:
    prefix: str
    region: str
    account_id: pulumi.Input[str]
    settings: BatchSettings
    models: Models
    model_role: str
    bucket: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    tags: dict


class BatchTransform(pulumi.ComponentResource):
    def __init__(self, name: str, args: BatchTransformArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlship:sagemaker:BatchTransform", name, None, opts)
        s = args.settings
        self.input_uri = pulumi.Output.concat("s3://", args.bucket, "/", s.input_prefix)
        self.output_uri = pulumi.Output.concat("s3://", args.bucket, "/", s.output_prefix)
        # The transform job runs as the model's execution role: it reads the input and writes the output.
        grant = args.models.grant(f"{name}-io", [
            iam.statement(["s3:ListBucket"], [args.bucket_arn], "ListInput",
                          {"StringLike": {"s3:prefix": [f"{s.input_prefix}*"]}}),
            iam.statement(["s3:GetObject"], [iam.objects(args.bucket_arn, s.input_prefix)], "ReadInput"),
            iam.statement(["s3:PutObject"], [iam.objects(args.bucket_arn, s.output_prefix)], "WriteOutput"),
        ], parent=self)
        arn = pulumi.Output.concat("arn:aws:sagemaker:", args.region, ":", args.account_id, ":")
        self.pipeline_role = iam.service_role(
            f"{name}-pipeline", "sagemaker.amazonaws.com", parent=self, account_id=args.account_id, tags=args.tags,
            description=f"{args.prefix}: runs the batch transform pipeline's transform job",
            statements=[
                iam.statement(["sagemaker:AddTags", "sagemaker:CreateTransformJob", "sagemaker:DescribeTransformJob",
                               "sagemaker:StopTransformJob"],
                              [pulumi.Output.concat(arn, "transform-job/*")], "RunTransformJob"),
                iam.statement(["kms:CreateGrant", "kms:DescribeKey"], [args.kms_key_arn], "EncryptTransformVolumes"),
            ])
        model_name = args.models.models[args.model_role].name
        definition = pulumi.Output.all(model_name, self.input_uri, self.output_uri, args.kms_key_arn).apply(
            lambda v: pipeline_definition(v[0], v[1], v[2], v[3], s))
        self.pipeline = aws.sagemaker.Pipeline(
            name, pipeline_name=f"{args.prefix}-batch-transform", pipeline_display_name=f"{args.prefix}-batch-transform",
            pipeline_description="Scores every file under the input prefix with the deployed model version.",
            pipeline_definition=definition, role_arn=self.pipeline_role.arn, tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[grant]))
        self.scheduler_role = iam.service_role(
            f"{name}-scheduler", "scheduler.amazonaws.com", parent=self, account_id=args.account_id, tags=args.tags,
            description=f"{args.prefix}: starts the batch transform pipeline on schedule",
            statements=[iam.statement(["sagemaker:StartPipelineExecution"], [self.pipeline.arn], "StartPipeline")])
        self.schedule = aws.scheduler.Schedule(
            name, name=f"{args.prefix}-batch-transform", schedule_expression=s.schedule,
            schedule_expression_timezone=s.timezone, flexible_time_window={"mode": "OFF"},
            target={"arn": self.pipeline.arn, "role_arn": self.scheduler_role.arn,
                    "sagemaker_pipeline_parameters": {"pipeline_parameters": [
                        {"name": "InputUri", "value": self.input_uri},
                        {"name": "OutputUri", "value": self.output_uri}]},
                    "retry_policy": {"maximum_retry_attempts": 2, "maximum_event_age_in_seconds": 3600}},
            opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"pipeline_name": self.pipeline.pipeline_name, "pipeline_arn": self.pipeline.arn,
                               "schedule_name": self.schedule.name, "input_uri": self.input_uri,
                               "output_uri": self.output_uri})
