"""The real-time endpoint: variants, data capture, blue/green rollout with rollback alarms, autoscaling."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.endpoint_common import endpoint, scalable_variant, target_tracking
from infra.models import Models
from infra.settings import RealtimeSettings

PRIMARY, CHALLENGER, SHADOW = "primary", "challenger", "shadow"
CAPTURE_PREFIX = "capture"


@dataclass(frozen=True)
class RealtimeEndpointArgs:
    endpoint_name: str
    settings: RealtimeSettings
    models: Models
    capture_bucket: pulumi.Input[str]
    capture_bucket_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    tags: dict
    alarm_topic_arn: pulumi.Input[str] | None = None  # who hears about a rollback


class RealtimeEndpoint(pulumi.ComponentResource):
    """A real-time endpoint whose deployments shift traffic gradually and roll back on alarms."""

    def __init__(self, name: str, args: RealtimeEndpointArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlship:sagemaker:RealtimeEndpoint", name, None, opts)
        s = args.settings
        child = pulumi.ResourceOptions(parent=self)
        self.endpoint_name = args.endpoint_name
        self.variant_names = [PRIMARY] + ([CHALLENGER] if s.challenger else [])
        self.shadow_variant_name = SHADOW if s.shadow else None
        self.capture_uri = pulumi.Output.concat("s3://", args.capture_bucket, f"/{CAPTURE_PREFIX}")
        grant = args.models.grant(f"{name}-capture", [
            iam.statement(["s3:PutObject"], [iam.objects(args.capture_bucket_arn, f"{CAPTURE_PREFIX}/{args.endpoint_name}/")],
                          "WriteDataCapture"),
        ], parent=self)

        variants = [self._variant(PRIMARY, args.models.models[PRIMARY].name, s.instance_type, s.instance_count, s.weight)]
        if s.challenger:
            variants.append(self._variant(CHALLENGER, args.models.models[CHALLENGER].name, s.challenger.instance_type,
                                          s.challenger.instance_count, s.challenger.weight))
        shadows = None
        if s.shadow:
            shadows = [self._variant(SHADOW, args.models.models[SHADOW].name, s.shadow.instance_type,
                                     s.shadow.instance_count, 1.0)]
        capture = None
        if s.capture_enabled:
            capture = {
                "enable_capture": True,
                "initial_sampling_percentage": s.capture_sampling_percent,
                "destination_s3_uri": self.capture_uri,
                "kms_key_id": args.kms_key_arn,
                "capture_options": [{"capture_mode": "Input"}, {"capture_mode": "Output"}],
                "capture_content_type_header": {"csv_content_types": ["text/csv"],
                                                "json_content_types": ["application/json"]},
            }
        # Named by Pulumi: a changed configuration is a new one, and the old one is deleted only
        # after the endpoint has moved to it.
        self.config = aws.sagemaker.EndpointConfiguration(
            f"{name}-config", production_variants=variants, shadow_production_variants=shadows,
            data_capture_config=capture, kms_key_arn=args.kms_key_arn, tags=args.tags, opts=child)

        self.alarms = self._rollback_alarms(name, s, args.tags, args.alarm_topic_arn)
        self.endpoint = endpoint(
            name, args.endpoint_name, self.config, self, args.tags, autoscaled=True,
            depends_on=[grant, *self.alarms],
            deployment_config={
                "blue_green_update_policy": {
                    "traffic_routing_configuration": self._traffic_routing(s),
                    "termination_wait_in_seconds": s.rollout.termination_wait_seconds,
                    "maximum_execution_timeout_in_seconds": s.rollout.timeout_seconds,
                },
                "auto_rollback_configuration": {"alarms": [{"alarm_name": a.name} for a in self.alarms]},
            })

        a = s.autoscaling
        self.scaling_targets = {PRIMARY: scalable_variant(
            f"{name}-{PRIMARY}-scaling", args.endpoint_name, PRIMARY, a.min_instances, a.max_instances, self,
            depends_on=[self.endpoint])}
        target_tracking(f"{name}-{PRIMARY}-invocations", self.scaling_targets[PRIMARY], a.target_invocations_per_instance,
                        self, a.scale_in_cooldown_seconds, a.scale_out_cooldown_seconds,
                        predefined="SageMakerVariantInvocationsPerInstance")
        if s.challenger:
            # Pinned (min = max): the autoscaler, not the endpoint update, owns the live count,
            # so a changed instanceCount in the stack file applies without a redeployment.
            self.scaling_targets[CHALLENGER] = scalable_variant(
                f"{name}-{CHALLENGER}-scaling", args.endpoint_name, CHALLENGER, s.challenger.instance_count,
                s.challenger.instance_count, self, depends_on=[self.endpoint])

        self.register_outputs({
            "endpoint_name": self.endpoint.endpoint_name,
            "variant_names": self.variant_names,
            "shadow_variant_name": self.shadow_variant_name,
            "capture_uri": self.capture_uri,
            "rollback_alarms": [alarm.name for alarm in self.alarms],
        })

    @staticmethod
    def _variant(variant: str, model_name: pulumi.Input[str], instance_type: str, count: int, weight: float) -> dict:
        # The weight is always written out as a float: left unset, AWS fills in 1.0 and the
        # provider shows a difference on every preview.
        return {"variant_name": variant, "model_name": model_name, "instance_type": instance_type,
                "initial_instance_count": count, "initial_variant_weight": float(weight)}

    @staticmethod
    def _traffic_routing(s: RealtimeSettings) -> dict:
        routing = {"type": s.rollout.type, "wait_interval_in_seconds": s.rollout.wait_seconds}
        size = {"type": s.rollout.size_type, "value": s.rollout.size}
        if s.rollout.type == "CANARY":
            routing["canary_size"] = size
        elif s.rollout.type == "LINEAR":
            routing["linear_step_size"] = size
        return routing

    def _rollback_alarms(self, name: str, s: RealtimeSettings, tags: dict,
                         topic_arn: pulumi.Input[str] | None) -> list[aws.cloudwatch.MetricAlarm]:
        """The alarms that stop a deployment and send traffic back to the old fleet (and tell the alerts topic)."""
        dimensions = {"EndpointName": self.endpoint_name, "VariantName": PRIMARY}
        common = {"namespace": "AWS/SageMaker", "dimensions": dimensions, "period": 60, "evaluation_periods": 3,
                  "datapoints_to_alarm": 2, "comparison_operator": "GreaterThanOrEqualToThreshold",
                  "treat_missing_data": "notBreaching", "tags": tags}
        if topic_arn is not None:
            common.update(alarm_actions=[topic_arn], ok_actions=[topic_arn])
        opts = pulumi.ResourceOptions(parent=self)
        errors = aws.cloudwatch.MetricAlarm(
            f"{name}-5xx", name=f"{self.endpoint_name}-5xx-errors", metric_name="Invocation5XXErrors",
            statistic="Sum", threshold=s.error_alarm_5xx_count,
            alarm_description="Server errors from the model container; rolls a deployment back.", **common, opts=opts)
        latency = aws.cloudwatch.MetricAlarm(
            f"{name}-latency", name=f"{self.endpoint_name}-p99-latency", metric_name="ModelLatency",
            extended_statistic="p99", threshold=s.latency_alarm_p99_ms * 1000,  # ModelLatency is in microseconds
            alarm_description=f"Model latency p99 above {s.latency_alarm_p99_ms} ms; rolls a deployment back.",
            **common, opts=opts)
        return [errors, latency]
