"""What the SageMaker endpoint components share: the endpoint itself and its autoscaling wiring.

Deployments and autoscaling: every endpoint configuration change creates a new configuration
(Pulumi names it, so the old one is deleted only after the endpoint has moved). The endpoint is
updated with RetainAllVariantProperties, so the instance count the autoscaler chose survives a
deployment; DesiredWeight is excluded from retention, so the weights declared in the stack file are
the ones that apply after a deployment. Weights live only in the immutable configuration, so a live
weight never shows up as a diff on the next preview.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_aws as aws
import pulumi_aws_native as aws_native

SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"


def endpoint(name: str, endpoint_name: str, config: aws.sagemaker.EndpointConfiguration, parent: pulumi.Resource,
             tags: dict, deployment_config: dict | None = None, autoscaled: bool = False,
             depends_on: Sequence[pulumi.Resource] = ()) -> aws_native.sagemaker.Endpoint:
    return aws_native.sagemaker.Endpoint(
        name,
        endpoint_name=endpoint_name,
        endpoint_config_name=config.name,
        deployment_config=deployment_config,
        retain_all_variant_properties=autoscaled or None,
        exclude_retained_variant_properties=[{"variant_property_type": "DesiredWeight"}] if autoscaled else None,
        tags=[{"key": k, "value": v} for k, v in sorted(tags.items())],
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)),
    )


def scalable_variant(name: str, endpoint_name: pulumi.Input[str], variant: str, min_instances: int,
                     max_instances: int, parent: pulumi.Resource,
                     depends_on: Sequence[pulumi.Resource]) -> aws.appautoscaling.Target:
    """Register one variant's instance count with Application Auto Scaling."""
    return aws.appautoscaling.Target(
        name,
        service_namespace="sagemaker",
        resource_id=pulumi.Output.concat("endpoint/", endpoint_name, "/variant/", variant),
        scalable_dimension=SCALABLE_DIMENSION,
        min_capacity=min_instances,
        max_capacity=max_instances,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)),
    )


def target_tracking(name: str, target: aws.appautoscaling.Target, target_value: float, parent: pulumi.Resource,
                    scale_in_cooldown: int, scale_out_cooldown: int, predefined: str | None = None,
                    customized: dict | None = None) -> aws.appautoscaling.Policy:
    configuration = {
        "target_value": target_value,
        "scale_in_cooldown": scale_in_cooldown,
        "scale_out_cooldown": scale_out_cooldown,
    }
    if predefined:
        configuration["predefined_metric_specification"] = {"predefined_metric_type": predefined}
    if customized:
        configuration["customized_metric_specification"] = customized
    return aws.appautoscaling.Policy(
        name,
        policy_type="TargetTrackingScaling",
        service_namespace=target.service_namespace,
        resource_id=target.resource_id,
        scalable_dimension=target.scalable_dimension,
        target_tracking_scaling_policy_configuration=configuration,
        opts=pulumi.ResourceOptions(parent=parent),
    )
