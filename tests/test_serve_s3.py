"""Capture upload to S3 (moto): same key layout as SageMaker's capture, transient failures retried."""

from __future__ import annotations

from datetime import datetime, timezone

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError
from moto.server import ThreadedMotoServer
from serve_helpers import csv_rows, ServerProcess, packaged_model, python_env

from model.server.capture_writer import CaptureWriter
from model.server.s3_upload import S3Uploader
from monitoring.capture import CapturedPayload, CaptureRecord, parse_line

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def moto_s3(monkeypatch):
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, config=Config(retries={"total_max_attempts": 1}))
    client.create_bucket(Bucket="capture-bucket")
    yield endpoint, client
    server.stop()


def test_closed_files_are_uploaded_with_a_transient_failure_retried(tmp_path, moto_s3):
    _, client = moto_s3
    failures = []

    def fail_first_put(request, **_):
        if request.method == "PUT" and not failures:
            failures.append(request.url)
            raise EndpointConnectionError(endpoint_url=request.url)

    client.meta.events.register("before-send.s3.PutObject", fail_first_put)
    uploader = S3Uploader("s3://capture-bucket/datacapture", tmp_path, client=client, backoff=0.01)
    writer = CaptureWriter(tmp_path, "churn-prod", "AllTraffic", on_closed=uploader.submit)
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    writer.offer(CaptureRecord.new(CapturedPayload.from_bytes(b"1,2", "text/csv"),
                                   CapturedPayload.from_bytes(b"0.5,1", "text/csv"), at=at))
    writer.close()
    uploader.close()
    assert failures and uploader.retries == 1 and uploader.uploaded == 1 and uploader.failed == 0
    keys = [item["Key"] for item in client.list_objects_v2(Bucket="capture-bucket")["Contents"]]
    local = next(tmp_path.rglob("*.jsonl"))
    assert keys == [f"datacapture/churn-prod/AllTraffic/2026/01/02/03/{local.name}"]
    body = client.get_object(Bucket="capture-bucket", Key=keys[0])["Body"].read()
    assert body == local.read_bytes() and parse_line(body.splitlines()[0]).input.data == "1,2"


def test_an_upload_that_keeps_failing_is_counted_not_raised(tmp_path, moto_s3):
    _, client = moto_s3
    (tmp_path / "f.jsonl").write_text("{}\n")
    uploader = S3Uploader("s3://no-such-bucket/p", tmp_path, client=client, attempts=2, backoff=0.01)
    uploader.submit(tmp_path / "f.jsonl")
    uploader.close()
    assert uploader.failed == 1 and uploader.uploaded == 0 and uploader.retries == 1


def test_the_server_uploads_its_capture_on_shutdown(tmp_path, moto_s3):
    endpoint, client = moto_s3
    env = {**python_env(), **CREDENTIALS, "AWS_ENDPOINT_URL_S3": endpoint}
    with ServerProcess(["--model", str(packaged_model()), "--host", "127.0.0.1", "--port", "0", "--workers", "1",
                        "--capture-dir", str(tmp_path), "--capture-s3", "s3://capture-bucket/ec2",
                        "--endpoint-name", "churn"], env=env) as server:
        for _ in range(3):
            assert server.client.post("/invocations", content=csv_rows(1), headers={"content-type": "text/csv"}).status_code == 200
        code, log = server.stop()
    assert code == 0, log
    objects = client.list_objects_v2(Bucket="capture-bucket", Prefix="ec2/churn/AllTraffic/")["Contents"]
    assert len(objects) == 1
    body = client.get_object(Bucket="capture-bucket", Key=objects[0]["Key"])["Body"].read()
    assert len(body.splitlines()) == 3


def test_capture_s3_needs_a_capture_dir_and_an_s3_url(tmp_path):
    import subprocess
    import sys

    from serve_helpers import REPO

    for extra, message in ((["--capture-s3", "s3://b/p"], "--capture-s3 needs --capture-dir"),
                           (["--capture-dir", str(tmp_path), "--capture-s3", "http://b/p"], "expected s3://bucket/prefix")):
        result = subprocess.run([sys.executable, "-m", "mlship", "serve", "--model", str(packaged_model()), *extra],
                                capture_output=True, text=True, env=python_env(), cwd=REPO, timeout=60)
        assert result.returncode == 2 and message in result.stderr
