"""The deployed model version's baseline, as `mlship model publish` uploaded it, read at preview time.

The drift alarms follow the features of the baseline the deployed version was published with,
so a model whose features change gets its alarms changed in the same preview. A real preview
reads `models/<name>/<version>/baseline/statistics.json` from the artifacts bucket (the invoke
`aws:s3/getObject`); the offline plan answers that invoke from a local release folder
(infra/offline.py).
"""

from __future__ import annotations

import base64
import json

import pulumi
import pulumi_aws as aws

from infra.settings import ModelRef

STATISTICS = "baseline/statistics.json"
CONSTRAINTS = "baseline/constraints.json"
PREDICTIONS = "baseline/prediction_statistics.json"
DRIFT_METRIC_PREFIX = "feature_baseline_drift_"


def statistics_uri(bucket: pulumi.Input[str], model: ModelRef) -> pulumi.Output[str]:
    return pulumi.Output.concat("s3://", bucket, "/", model.key(STATISTICS))


def constraints_uri(bucket: pulumi.Input[str], model: ModelRef) -> pulumi.Output[str]:
    return pulumi.Output.concat("s3://", bucket, "/", model.key(CONSTRAINTS))


def prediction_statistics_uri(bucket: pulumi.Input[str], model: ModelRef) -> pulumi.Output[str]:
    """The model's output baseline, which only mlship's own monitor image reads (AWS's analyzer has no use for it)."""
    return pulumi.Output.concat("s3://", bucket, "/", model.key(PREDICTIONS))


def drift_metrics(body: str, where: str) -> list[str]:
    """The drift metric names (feature_baseline_drift_<feature>) a statistics.json makes the monitor publish."""
    from monitoring import formats
    from monitoring.run import metric_names

    try:
        statistics = formats.Statistics.from_json(json.loads(body))
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{where} is not a Model Monitor statistics.json: {error}") from None
    if not statistics.features:
        raise ValueError(f"{where} lists no features: republish the model with its baseline")
    return [name for name in metric_names(statistics) if name.startswith(DRIFT_METRIC_PREFIX)]


def deployed_drift_metrics(bucket: pulumi.Input[str], model: ModelRef,
                           parent: pulumi.Resource | None = None) -> pulumi.Output[list[str]]:
    """The drift metric names of the deployed version, read from its published statistics.json.

    Before the version is published (the first `pulumi up --target` that creates the buckets)
    there is nothing to read: no drift alarms yet, and a warning saying why.
    """
    key = model.key(STATISTICS)
    options = pulumi.InvokeOutputOptions(parent=parent)

    def read(listed) -> pulumi.Output[list[str]] | list[str]:
        if key not in (listed.keys or []):
            pulumi.log.warn(f"s3://{listed.bucket}/{key} does not exist: {model} is not published yet, so there are "
                            "no drift alarms; publish it (mlship model publish) and run pulumi up again")
            return []
        return aws.s3.get_object_output(bucket=listed.bucket, key=key, opts=options).apply(parse)

    def parse(result) -> list[str]:
        # The model publisher stores JSON as application/json, so S3 hands the body back as text.
        body = result.body or (base64.b64decode(result.body_base64).decode() if result.body_base64 else "")
        return drift_metrics(body, f"s3://{result.bucket}/{key} ({model})")
    return aws.s3.get_objects_output(bucket=bucket, prefix=key, max_keys=1, opts=options).apply(read)
