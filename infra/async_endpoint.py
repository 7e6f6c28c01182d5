"""The asynchronous endpoint: requests and results in S3, SNS notifications, scaling on the backlog."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.endpoint_common import endpoint, scalable_variant, target_tracking
from infra.models import Models
from infra.settings import AsyncSettings

VARIANT = "primary"
PREFIX = "async"


@dataclass(frozen=True)
class AsyncEndpointArgs:
    endpoint_name: str
    settings: AsyncSettings
    models: Models
    model_role: str
    bucket: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    tags: dict
    # Told once per wake-up from zero instances, so a slow first answer has an explanation.
    alarm_topic_arn: pulumi.Input[str] | None = None


class AsyncEndpoint(pulumi.ComponentResource):
    """Callers put requests under async/input/; results land under async/output/ (failures under async/failure/)."""

    def __init__(self, name: str, args: AsyncEndpointArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlship:sagemaker:AsyncEndpoint", name, None, opts)
        s = args.settings
        child = pulumi.ResourceOptions(parent=self)
        self.endpoint_name = args.endpoint_name
        self.variant_names = [VARIANT]
        self.success_topic = aws.sns.Topic(f"{name}-success", kms_master_key_id=args.kms_key_arn, tags=args.tags, opts=child)
        self.error_topic = aws.sns.Topic(f"{name}-error", kms_master_key_id=args.kms_key_arn, tags=args.tags, opts=child)
        location = pulumi.Output.concat("s3://", args.bucket, f"/{PREFIX}")
        self.input_uri = pulumi.Output.concat(location, "/input/")
        self.output_uri = pulumi.Output.concat(location, "/output/")
        self.failure_uri = pulumi.Output.concat(location, "/failure/")
        grant = args.models.grant(f"{name}-io", [
            iam.statement(["s3:GetObject"], [iam.objects(args.bucket_arn, f"{PREFIX}/input/")], "ReadRequests"),
            iam.statement(["s3:PutObject"], [iam.objects(args.bucket_arn, f"{PREFIX}/output/"),
                                             iam.objects(args.bucket_arn, f"{PREFIX}/failure/")], "WriteResults"),
            iam.statement(["sns:Publish"], [self.success_topic.arn, self.error_topic.arn], "Notify"),
        ], parent=self)
        self.config = aws.sagemaker.EndpointConfiguration(
            f"{name}-config",
            production_variants=[{
                "variant_name": VARIANT, "model_name": args.models.models[args.model_role].name,
                "instance_type": s.instance_type,
                # A configuration needs at least one instance; the autoscaler takes it to zero.
                "initial_instance_count": max(s.min_instances, 1), "initial_variant_weight": 1.0,
            }],
            async_inference_config={
                "output_config": {
                    "s3_output_path": self.output_uri, "s3_failure_path": self.failure_uri,
                    "kms_key_id": args.kms_key_arn,
                    "notification_config": {"success_topic": self.success_topic.arn, "error_topic": self.error_topic.arn},
                },
                "client_config": {"max_concurrent_invocations_per_instance": s.max_concurrent_invocations_per_instance},
            },
            kms_key_arn=args.kms_key_arn, tags=args.tags, opts=child)
        self.endpoint = endpoint(name, args.endpoint_name, self.config, self, args.tags, autoscaled=True,
                                 depends_on=[grant])
        self.scaling_target = scalable_variant(f"{name}-scaling", args.endpoint_name, VARIANT, s.min_instances,
                                               s.max_instances, self, depends_on=[self.endpoint])
        dimensions = [{"name": "EndpointName", "value": args.endpoint_name}]
        target_tracking(f"{name}-backlog", self.scaling_target, s.target_backlog_per_instance, self, 600, 60,
                        customized={"metric_name": "ApproximateBacklogSizePerInstance", "namespace": "AWS/SageMaker",
                                    "dimensions": dimensions, "statistic": "Average"})
        if s.min_instances == 0:
            self._scale_out_from_zero(name, args)
        self.register_outputs({
            "endpoint_name": self.endpoint.endpoint_name, "variant_names": self.variant_names,
            "input_uri": self.input_uri, "output_uri": self.output_uri, "failure_uri": self.failure_uri,
            "success_topic_arn": self.success_topic.arn, "error_topic_arn": self.error_topic.arn,
        })

    def _scale_out_from_zero(self, name: str, args: AsyncEndpointArgs) -> None:
        """Target tracking cannot leave zero (no instance, no per-instance backlog): a step policy does."""
        t = self.scaling_target
        step = aws.appautoscaling.Policy(
            f"{name}-from-zero", policy_type="StepScaling", service_namespace=t.service_namespace,
            resource_id=t.resource_id, scalable_dimension=t.scalable_dimension,
            step_scaling_policy_configuration={
                "adjustment_type": "ChangeInCapacity", "cooldown": 300, "metric_aggregation_type": "Average",
                "step_adjustments": [{"metric_interval_lower_bound": "0", "scaling_adjustment": 1}],
            },
            opts=pulumi.ResourceOptions(parent=self))
        aws.cloudwatch.MetricAlarm(
            f"{name}-backlog-without-capacity", name=f"{args.endpoint_name}-backlog-without-capacity",
            namespace="AWS/SageMaker", metric_name="HasBacklogWithoutCapacity",
            dimensions={"EndpointName": args.endpoint_name}, statistic="Average", period=60,
            evaluation_periods=2, threshold=1, comparison_operator="GreaterThanOrEqualToThreshold",
            treat_missing_data="missing", tags=args.tags,
            alarm_actions=[step.arn, *([args.alarm_topic_arn] if args.alarm_topic_arn else [])],
            alarm_description="Requests are waiting and no instance runs: scaling out from zero (a notice, "
                              "nothing to do; the first answers wait for an instance to start).",
            opts=pulumi.ResourceOptions(parent=self))
