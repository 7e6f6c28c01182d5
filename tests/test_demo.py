"""`mlship demo` end to end, with small traffic: what a newcomer is promised, checked."""

from __future__ import annotations

import argparse
import json
import re
from contextlib import ExitStack

import boto3
import pytest

from mlship.demo import BUCKET, DRIFT, GROUP, REGION, Demo, main


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """Runs the demo once and keeps its emulator up so that the tests can look inside it."""
    import io
    from contextlib import redirect_stdout

    workdir = tmp_path_factory.mktemp("demo") / "run"
    args = argparse.Namespace(workdir=workdir, requests=80, train_rows=3000, skip_plan=True)
    out = io.StringIO()
    with ExitStack() as stack:
        demo = Demo(args, stack)
        with redirect_stdout(out):
            assert demo.run() == 0
        yield demo, workdir, out.getvalue()
    assert demo.server.poll() is not None, "the demo left its server running"


def _client(demo, service):
    return boto3.client(service, region_name=REGION, endpoint_url=demo.endpoint_url,
                        aws_access_key_id="demo", aws_secret_access_key="demo")


def test_injected_drift_is_flagged_and_named_in_the_summary(demo_run):
    _, workdir, output = demo_run
    violations = json.loads((workdir / "monitor" / "constraint_violations.json").read_text())["violations"]
    drifted = {v["feature_name"] for v in violations if v["constraint_check_type"] == "baseline_drift_check"}
    assert set(DRIFT) <= drifted
    flagged_line = next(line for line in output.splitlines() if "drift flagged" in line)
    for feature in DRIFT:
        assert feature in flagged_line
    # The packaged release carries a prediction baseline, so the model's output is compared too.
    predictions = next(line for line in output.splitlines() if line.strip().startswith("predictions"))
    assert re.search(r"probability distance \d\.\d{3}", predictions) and "label distance" in predictions


def test_bad_requests_are_refused_with_4xx_and_good_ones_answered(demo_run):
    _, _, output = demo_run
    traffic = next(line for line in output.splitlines() if line.strip().startswith("traffic"))
    bad = traffic.split("bad", 1)[1]
    statuses = [int(status) for status in re.findall(r"x (\d{3})", bad)]
    assert statuses and all(400 <= status < 500 for status in statuses)
    assert "normal 80 x 200" in traffic and "drifted 80 x 200" in traffic


def test_report_and_files_exist(demo_run):
    _, workdir, output = demo_run
    report = (workdir / "report.html").read_text()
    assert "<html" in report.lower() and "data:image/png;base64" in report
    assert "monthly_charges" in report
    assert list((workdir / "capture").rglob("*.jsonl"))
    assert str(workdir / "report.html") in output


def test_emulator_holds_the_published_version_and_the_alert(demo_run):
    demo, _, _ = demo_run
    keys = [o["Key"] for o in _client(demo, "s3").list_objects_v2(Bucket=BUCKET, Prefix="models/")["Contents"]]
    assert "models/churn/1.0.0/manifest.json" in keys
    packages = _client(demo, "sagemaker").list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
    assert len(packages) == 1
    queue = _client(demo, "sqs").get_queue_url(QueueName="mlship-demo-inbox")["QueueUrl"]
    messages = _client(demo, "sqs").receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert any("violation" in message["Body"] for message in messages)
    metrics = _client(demo, "cloudwatch").list_metrics(Namespace="aws/sagemaker/Endpoints/data-metrics")["Metrics"]
    assert any(m["MetricName"] == "feature_baseline_drift_monthly_charges" for m in metrics)


def test_a_folder_the_demo_did_not_make_is_never_emptied(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    from mlship.errors import UserError

    with pytest.raises(UserError, match="was not made by the demo"):
        main(["--workdir", str(tmp_path), "--skip-plan"])
    assert (tmp_path / "precious.txt").read_text() == "keep me"
