"""Publishing (CloudWatch, SNS against moto), S3 capture, and the bring-your-own-container entrypoint."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import boto3
import numpy as np
import orjson
import pytest
from moto import mock_aws

from mlship.cli import main as mlship
from monitoring import formats, publish, synthetic
from monitoring.baseline import write_baseline, write_prediction_baseline
from monitoring.run import RunOptions, metric_names, run
from monitoring.sources import S3Access

START = datetime(2026, 1, 2, 3, 0, tzinfo=timezone.utc)
REGION = "eu-west-1"


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("baseline")
    write_baseline(synthetic.frame(5_000, seed=1), folder)
    return folder


@pytest.fixture
def aws(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield


def _low_accuracy_window(tmp_path: Path) -> tuple[Path, Path]:
    window = synthetic.frame(1_000, seed=9, drift=["f1"])
    records = synthetic.write_capture(tmp_path / "capture", window, START)
    _, label = synthetic.predict(window)
    wrong = np.where(np.arange(len(label)) % 2 == 0, 1 - label, label)  # half the predictions wrong: accuracy 0.5
    lines = [orjson.dumps({"groundTruthData": {"data": str(int(t)), "encoding": "CSV"}, "eventMetadata": {"eventId": r.event_id}, "eventVersion": "0"})
             for r, t in zip(records, wrong)]
    (tmp_path / "truth.jsonl").write_bytes(b"\n".join(lines))
    return tmp_path / "capture", tmp_path / "truth.jsonl"


def test_low_accuracy_is_a_violation_and_an_sns_message_a_person_can_read(aws, baseline, tmp_path):
    capture, truth = _low_accuracy_window(tmp_path)
    sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
    topic = sns.create_topic(Name="model-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

    status = mlship(["monitor", "run", "--capture", str(capture), "--baseline", str(baseline), "--out", str(tmp_path / "out"),
                     "--ground-truth", str(truth), "--endpoint-name", "churn-prod", "--schedule-name", "churn-hourly",
                     "--sns-topic", topic, "--region", REGION, "--report-url", "s3://reports/churn/report.html", "--workers", "1"])
    assert status == 3
    violations = json.loads((tmp_path / "out" / "model_quality_constraint_violations.json").read_text())["violations"]
    assert [(v["metric_name"], v["constraint_check_type"]) for v in violations] == [("accuracy", "LessThanThreshold")]

    [message] = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    envelope = json.loads(message["Body"])
    assert envelope["Subject"].startswith("mlship monitor:") and "churn-prod" in envelope["Subject"]
    body = envelope["Message"]
    assert "Metric accuracy with 0.5 was LessThanThreshold '0.6'" in body
    assert "f1: baseline_drift_check" in body and "retraining is recommended" in body
    assert "s3://reports/churn/report.html" in body


def test_cloudwatch_metrics_have_model_monitor_names_and_dimensions(aws, baseline, tmp_path):
    capture, truth = _low_accuracy_window(tmp_path)
    result = run(RunOptions(capture=str(capture), baseline=baseline, out=tmp_path / "out", ground_truth=str(truth),
                            endpoint_name="churn-prod", schedule_name="churn-hourly", workers=1))
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    put = publish.put_metrics(result, cloudwatch)

    def listed(namespace):
        pages = cloudwatch.get_paginator("list_metrics").paginate(Namespace=namespace)
        return [m for page in pages for m in page["Metrics"]]

    data = listed("aws/sagemaker/Endpoints/data-metrics")
    model = listed("aws/sagemaker/Endpoints/model-metrics")
    assert len(data) + len(model) == put
    baseline_statistics = formats.read_statistics(baseline / "statistics.json")
    input_names = set(metric_names(baseline_statistics))
    assert input_names <= {m["MetricName"] for m in data}
    assert {"feature_baseline_drift_f1", "feature_null_plan", "feature_non_null_f0"} <= {m["MetricName"] for m in data}
    assert {"accuracy", "precision", "recall", "f1", "auc"} <= {m["MetricName"] for m in model}
    for metric in data + model:
        assert sorted((d["Name"], d["Value"]) for d in metric["Dimensions"]) == [("Endpoint", "churn-prod"), ("MonitoringSchedule", "churn-hourly")]


def test_put_metrics_batches_to_the_api_limit():
    class Recorder:
        calls: list[int] = []

        def put_metric_data(self, Namespace, MetricData):
            self.calls.append(len(MetricData))

    class Result:
        summary = {"endpoint": "e", "monitoring_schedule": "s"}
        data_metrics = {f"feature_null_x{i}": 0.0 for i in range(2_345)}
        model_metrics = {"accuracy": 0.9}

    recorder = Recorder()
    assert publish.put_metrics(Result(), recorder) == 2_346
    assert recorder.calls == [1000, 1000, 345, 1]


def test_reads_capture_from_an_s3_prefix(aws, baseline, tmp_path):
    synthetic.write_capture(tmp_path / "local", synthetic.frame(3_000, seed=4), START, records_per_file=1_000)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="capture", CreateBucketConfiguration={"LocationConstraint": REGION})
    for path in (tmp_path / "local").rglob("*.jsonl"):
        s3.upload_file(str(path), "capture", "datacapture/" + path.relative_to(tmp_path / "local").as_posix())
    result = run(RunOptions(capture="s3://capture/datacapture/churn-endpoint", baseline=baseline, out=tmp_path / "out",
                            access=S3Access(REGION), workers=1))
    assert result.summary["records"] == 3_000 and result.violations == []


def _sagemaker_mounts(tmp_path: Path, baseline: Path, window, monkeypatch) -> Path:
    """The folder tree and environment of a SageMaker processing job; returns the output folder."""
    endpoint_root = tmp_path / "opt/ml/processing/input/endpoint"
    synthetic.write_capture(endpoint_root, window, START, endpoint="churn-prod")
    stats_dir, constraints_dir = tmp_path / "opt/ml/processing/baseline/stats", tmp_path / "opt/ml/processing/baseline/constraints"
    stats_dir.mkdir(parents=True)
    constraints_dir.mkdir(parents=True)
    (stats_dir / "statistics.json").write_bytes((baseline / "statistics.json").read_bytes())
    (constraints_dir / "constraints.json").write_bytes((baseline / "constraints.json").read_bytes())
    env = {
        "dataset_format": '{"sagemakerCaptureJson": {"captureIndexNames": ["endpointInput", "endpointOutput"]}}',
        "dataset_source": str(endpoint_root / "churn-prod/AllTraffic/2026/01/02/03"),
        "output_path": str(tmp_path / "opt/ml/processing/resultdata"),
        "start_time": "2026-01-02T03:00:00Z",
        "end_time": "2026-01-02T04:00:00Z",
        "baseline_statistics": str(stats_dir / "statistics.json"),
        "baseline_constraints": str(constraints_dir / "constraints.json"),
        "publish_cloudwatch_metrics": "Enabled",
        "sagemaker_endpoint_name": "churn-prod",
        "sagemaker_monitoring_schedule_name": "churn-hourly",
        "MLSHIP_METRICS_ROOT": str(tmp_path / "opt/ml/output/metrics/cloudwatch"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return tmp_path / "opt/ml/processing/resultdata"


def test_byoc_entrypoint_reads_the_container_contract(baseline, tmp_path, monkeypatch):
    out = _sagemaker_mounts(tmp_path, baseline, synthetic.frame(2_000, seed=5, drift=["f2"]), monkeypatch)
    monkeypatch.delenv("MLSHIP_PREDICTION_BASELINE", raising=False)
    assert mlship(["monitor", "byoc"]) == 0  # violations are findings, not a failed job
    assert {"statistics.json", "constraint_violations.json", "drift.json", "summary.json"} <= {p.name for p in out.iterdir()}
    violations = formats.read_violations(out / "constraint_violations.json")
    assert [(v.feature_name, v.constraint_check_type) for v in violations] == [("f2", "baseline_drift_check")]
    metrics_root = tmp_path / "opt/ml/output/metrics/cloudwatch"
    lines = [json.loads(line) for line in (metrics_root / "metrics.jsonl").read_text().splitlines()]
    drift = next(line for line in lines if line["MetricName"] == "feature_baseline_drift_f2")
    assert drift["Namespace"] == "aws/sagemaker/Endpoints/data-metrics" and drift["Value"] > 0.1
    assert drift["Dimensions"] == [{"Name": "Endpoint", "Value": "churn-prod"}, {"Name": "MonitoringSchedule", "Value": "churn-hourly"}]
    assert isinstance(drift["Timestamp"], int)


def test_byoc_reads_the_prediction_baseline_the_schedule_names(aws, baseline, tmp_path, monkeypatch):
    # The schedule's environment names prediction_statistics.json in S3 (infra/model_monitor.py);
    # a name that leads nowhere costs prediction drift only, never the data checks.
    training = synthetic.frame(5_000, seed=1)
    write_prediction_baseline(*synthetic.predict(training), tmp_path / "published")
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="artifacts", CreateBucketConfiguration={"LocationConstraint": REGION})
    key = "models/churn/1.0.0/baseline/prediction_statistics.json"
    boto3.client("s3", region_name=REGION).upload_file(str(tmp_path / "published" / formats.PREDICTION_STATISTICS_FILE), "artifacts", key)
    monkeypatch.setenv("AWS_REGION", REGION)
    for run_name, source, expected in (("named", f"s3://artifacts/{key}", ["probability", "label"]),
                                       ("missing", "s3://artifacts/models/churn/9.9.9/baseline/prediction_statistics.json", [])):
        out = _sagemaker_mounts(tmp_path / run_name, baseline, synthetic.frame(2_000, seed=5), monkeypatch)
        monkeypatch.setenv("MLSHIP_PREDICTION_BASELINE", source)
        assert mlship(["monitor", "byoc"]) == 0
        detail = json.loads((out / "drift.json").read_text())
        assert [d["name"] for d in detail["prediction"]] == expected, run_name
        assert json.loads((out / "summary.json").read_text())["rows"] == 2_000


def test_byoc_refuses_an_incomplete_contract(monkeypatch, capsys):
    for key in ("dataset_source", "baseline_statistics", "baseline_constraints"):
        monkeypatch.delenv(key, raising=False)
    assert mlship(["monitor", "byoc"]) == 2
    assert "dataset_source, baseline_statistics, baseline_constraints" in capsys.readouterr().err
