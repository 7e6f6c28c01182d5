"""mlship's monitor as a SageMaker Model Monitor bring-your-own container.

SageMaker mounts the hour's capture under /opt/ml/processing/input/endpoint/<endpoint>/
<variant>/yyyy/mm/dd/hh and the baseline files where `baseline_statistics` and
`baseline_constraints` say, and passes the rest as environment variables. The container
writes its results to `output_path` (SageMaker uploads them) and, when
`publish_cloudwatch_metrics` is Enabled, CloudWatch metrics as JSON lines under
/opt/ml/output/metrics/cloudwatch (MLSHIP_METRICS_ROOT overrides that root, for tests).
Violations are a finding, not a failure: the container exits 0 and SageMaker reports them.
The model's output baseline (prediction_statistics.json) is not among what SageMaker mounts: the
schedule passes its location in MLSHIP_PREDICTION_BASELINE and the container reads it itself.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path

from mlship.errors import UserError
from monitoring import formats, publish
from monitoring.run import Baseline, RunOptions, RunResult, run
from monitoring.sources import S3Access

log = logging.getLogger(__name__)

METRICS_ROOT = Path("/opt/ml/output/metrics/cloudwatch")
DEFAULT_OUTPUT = "/opt/ml/processing/resultdata"
REQUIRED = ("dataset_source", "baseline_statistics", "baseline_constraints")


def _time(env: Mapping[str, str], key: str):
    from monitoring.capture import parse_time

    text = env.get(key)
    if not text:
        return None
    moment = parse_time(text)
    if moment is None:
        raise UserError(f"environment variable {key}={text!r} is not an ISO 8601 time")
    return moment


def _prediction_baseline(env: Mapping[str, str], scratch: Path) -> Path | None:
    """prediction_statistics.json, which a processing job does not mount: the schedule names it in
    MLSHIP_PREDICTION_BASELINE (s3:// or a path). Without it the run still checks the data, and
    drift.json says prediction drift had nothing to compare with."""
    source = env.get("MLSHIP_PREDICTION_BASELINE")
    if not source:
        return None
    if not source.startswith("s3://"):
        if Path(source).is_file():
            return Path(source)
        log.warning("no prediction baseline at %s; checking the data without prediction drift", source)
        return None
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = source[5:].partition("/")
    target = scratch / formats.PREDICTION_STATISTICS_FILE
    try:
        S3Access(env.get("AWS_REGION")).client().download_file(bucket, key, str(target))
    except (BotoCoreError, ClientError) as error:
        log.warning("no prediction baseline (%s: %s); checking the data without prediction drift", source, error)
        return None
    return target


def run_container(env: Mapping[str, str]) -> RunResult:
    missing = [key for key in REQUIRED if not env.get(key)]
    if missing:
        raise UserError(f"the container contract needs environment variables {', '.join(missing)}; see SageMaker's bring-your-own-container contract")
    dataset_format = env.get("dataset_format")
    if dataset_format:
        try:
            parsed = json.loads(dataset_format)
        except ValueError:
            raise UserError(f"dataset_format {dataset_format!r} is not JSON") from None
        if not isinstance(parsed, dict) or not any("capture" in key.lower() for key in parsed):
            raise UserError(f"dataset_format {dataset_format!r} is not SageMaker capture; this monitor reads sagemakerCaptureJson")
    with tempfile.TemporaryDirectory() as scratch:
        predictions = _prediction_baseline(env, Path(scratch))
        baseline = Baseline.from_files(Path(env["baseline_statistics"]), Path(env["baseline_constraints"]), predictions)
    options = RunOptions(
        capture=env["dataset_source"],
        baseline=Path(env["baseline_statistics"]).parent,
        out=Path(env.get("output_path") or DEFAULT_OUTPUT),
        start=_time(env, "start_time"),
        end=_time(env, "end_time"),
        ground_truth=env.get("ground_truth_source") or None,
        endpoint_name=env.get("sagemaker_endpoint_name", "unknown"),
        schedule_name=env.get("sagemaker_monitoring_schedule_name", "unknown"),
    )
    result = run(options, baseline)
    if env.get("publish_cloudwatch_metrics", "Enabled") == "Enabled":
        path = publish.write_metric_lines(result, Path(env.get("MLSHIP_METRICS_ROOT") or METRICS_ROOT))
        log.info("CloudWatch metrics for SageMaker to publish: %s", path)
    return result
