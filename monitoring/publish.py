"""Publishing a run's results: CloudWatch metrics under Model Monitor's names, an SNS alert.

Metrics go to the namespaces Model Monitor uses (data quality: aws/sagemaker/Endpoints/
data-metrics; model quality: aws/sagemaker/Endpoints/model-metrics) with dimensions
Endpoint and MonitoringSchedule, so dashboards and alarms built for Model Monitor work
unchanged. On a SageMaker schedule (bring-your-own container) the same metrics are
written as JSON lines for SageMaker to publish.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

from monitoring.run import RunResult

log = logging.getLogger(__name__)

DATA_NAMESPACE = "aws/sagemaker/Endpoints/data-metrics"
MODEL_NAMESPACE = "aws/sagemaker/Endpoints/model-metrics"
MAX_METRICS_PER_CALL = 1000  # PutMetricData's limit on MetricData entries (and 1 MB per call)
SUBJECT_LIMIT = 100  # SNS subjects are at most 100 characters


def metric_data(result: RunResult, at: datetime | None = None) -> dict[str, list[dict]]:
    """namespace -> PutMetricData entries for this run."""
    at = at or datetime.now(timezone.utc)
    dimensions = [{"Name": "Endpoint", "Value": result.summary["endpoint"]},
                  {"Name": "MonitoringSchedule", "Value": result.summary["monitoring_schedule"]}]

    def entries(values: dict[str, float]) -> list[dict]:
        return [{"MetricName": name, "Dimensions": dimensions, "Timestamp": at, "Value": float(value), "Unit": "None"} for name, value in values.items()]

    data = {DATA_NAMESPACE: entries(result.data_metrics)}
    if result.model_metrics:
        data[MODEL_NAMESPACE] = entries(result.model_metrics)
    return data


def put_metrics(result: RunResult, cloudwatch) -> int:
    """Puts the run's metrics in batches the API accepts; returns how many were put."""
    count = 0
    for namespace, entries in metric_data(result).items():
        for first in range(0, len(entries), MAX_METRICS_PER_CALL):
            batch = entries[first:first + MAX_METRICS_PER_CALL]
            cloudwatch.put_metric_data(Namespace=namespace, MetricData=batch)
            count += len(batch)
    log.info("put %d CloudWatch metrics", count)
    return count


def write_metric_lines(result: RunResult, folder: Path) -> Path:
    """The metrics as JSON lines, the form a bring-your-own container hands to SageMaker."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "metrics.jsonl"
    lines = []
    for namespace, entries in metric_data(result).items():
        for entry in entries:
            lines.append(json.dumps({"MetricName": entry["MetricName"], "Namespace": namespace, "Timestamp": int(entry["Timestamp"].timestamp()),
                                     "Dimensions": entry["Dimensions"], "Value": entry["Value"]}))
    path.write_text("".join(line + "\n" for line in lines))
    return path


def alert_message(result: RunResult, report_location: str) -> tuple[str, str]:
    """(subject, body) of the e-mail a person on call reads: what broke, by how much, where to look."""
    summary = result.summary
    subject = f"mlship monitor: {summary['violations']} violations on {summary['endpoint']}"
    if summary["retrain_recommended"]:
        subject += " (retrain recommended)"
    window = summary["window"]
    lines = [
        f"Endpoint {summary['endpoint']}, schedule {summary['monitoring_schedule']}: {summary['violations']} constraint violations "
        f"in {summary['records']} records (window {window['start'] or 'open'} to {window['end'] or 'open'}).",
        "",
    ]
    if result.quality_violations:
        lines.append("Model quality:")
        lines += [f"  - {v.description}" for v in result.quality_violations]
        lines.append("")
    if result.violations:
        lines.append("Data quality:")
        drift = {d["name"]: d for d in result.drift["features"] + result.drift["prediction"]}
        for v in result.violations:
            detail = ""
            if v.constraint_check_type == "baseline_drift_check" and v.feature_name in drift:
                d = drift[v.feature_name]
                detail = f" (L-inf {d['linf_simple']}, PSI {d['psi']}, p-value {d['p_value']:.3g})"
            lines.append(f"  - {v.feature_name}: {v.constraint_check_type}: {v.description.strip()}{detail}")
        lines.append("")
    if summary["retrain_recommended"]:
        lines += ["Drift crossed its threshold: retraining is recommended.", ""]
    if summary["skipped"]:
        lines.append("Skipped input: " + ", ".join(f"{k}: {v}" for k, v in sorted(summary["skipped"].items())))
        lines.append("")
    lines.append(f"Results and report: {report_location}")
    return subject[:SUBJECT_LIMIT], "\n".join(lines) + "\n"


def send_alert(result: RunResult, sns, topic_arn: str, report_location: str) -> str:
    subject, body = alert_message(result, report_location)
    return sns.publish(TopicArn=topic_arn, Subject=subject, Message=body)["MessageId"]
