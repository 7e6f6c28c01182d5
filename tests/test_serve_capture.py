"""Data capture: every answered request is on disk after SIGTERM, in SageMaker's layout."""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

from serve_helpers import csv_rows, json_instances, ServerProcess, packaged_model

from model.server.capture_writer import CaptureWriter
from monitoring.capture import CapturedPayload, CaptureRecord, parse_line

FILE_LAYOUT = re.compile(r"^churn-prod/AllTraffic/\d{4}/\d{2}/\d{2}/\d{2}/\d{2}-\d{2}-\d{3}-[0-9a-f-]{36}\.jsonl$")


def _records(root: Path) -> list:
    return [parse_line(line) for path in sorted(root.rglob("*.jsonl")) for line in path.read_bytes().splitlines()]


def _shape(value):
    """Keys of nested objects, values replaced by their type: what 'the same layout' compares."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    return type(value).__name__


def test_every_answered_request_is_captured_after_sigterm(tmp_path, monitor_fixtures):
    capture = tmp_path / "capture"
    requests = 60
    with ServerProcess(["--model", str(packaged_model()), "--host", "127.0.0.1", "--port", "0", "--workers", "2",
                        "--capture-dir", str(capture), "--endpoint-name", "churn-prod"]) as server:
        for number in range(requests):
            if number % 2:
                answer = server.client.post("/invocations", content=csv_rows(3, seed=2), headers={"content-type": "text/csv",
                                            "x-amzn-sagemaker-inference-id": f"inference-{number}"})
            else:
                answer = server.client.post("/invocations", json={"instances": json_instances(csv_rows(1, seed=number))})
            assert answer.status_code == 200
        assert server.client.post("/invocations", content="bad", headers={"content-type": "text/csv"}).status_code == 400
        code, _ = server.stop()
    assert code == 0
    files = sorted(path.relative_to(capture).as_posix() for path in capture.rglob("*.jsonl"))
    assert files and all(FILE_LAYOUT.match(name) for name in files), files
    records = _records(capture)
    assert len(records) == requests  # the 400 is not captured: SageMaker captures answered predictions
    assert len({record.event_id for record in records}) == requests
    csv_records = [record for record in records if record.input.encoding == "CSV"]
    assert sorted(record.inference_id for record in csv_records) == sorted(f"inference-{n}" for n in range(1, requests, 2))
    assert all(record.input.data == csv_rows(3, seed=2) and record.output.data.count("\n") == 3 for record in csv_records)
    json_records = [record for record in records if record.input.encoding == "JSON"]
    assert len(json_records) == requests // 2 and all(record.output.media_type() == "application/json"
                                                      for record in json_records)
    ours = json.loads((capture / files[0]).read_text().splitlines()[0])
    aws = json.loads((monitor_fixtures / "capture.jsonl").read_text().splitlines()[0])
    aws_shape, our_shape = _shape(aws), _shape(ours)
    our_shape["eventMetadata"].pop("inferenceId", None)
    assert our_shape == aws_shape


def test_sampling_zero_captures_nothing(tmp_path):
    with ServerProcess(["--model", str(packaged_model()), "--host", "127.0.0.1", "--port", "0", "--workers", "1",
                        "--capture-dir", str(tmp_path), "--capture-sampling", "0"]) as server:
        assert server.client.post("/invocations", content=csv_rows(1), headers={"content-type": "text/csv"}).status_code == 200
        health = server.client.get("/health").json()["capture"]
    assert health["sampling_percent"] == 0 and not list(tmp_path.rglob("*.jsonl"))


def _record(at: datetime) -> CaptureRecord:
    return CaptureRecord.new(CapturedPayload.from_bytes(b"1,2", "text/csv"),
                             CapturedPayload.from_bytes(b"0.5,1", "text/csv"), at=at)


def test_writer_rolls_files_by_hour_and_hands_closed_files_on(tmp_path):
    closed = []
    writer = CaptureWriter(tmp_path, "ep", "v1", on_closed=closed.append)
    first = datetime(2026, 1, 2, 3, 59, 59, tzinfo=timezone.utc)
    for at in (first, first, first + timedelta(seconds=2)):
        assert writer.offer(_record(at))
    writer.close()
    assert [path.parent.relative_to(tmp_path).as_posix() for path in closed] == ["ep/v1/2026/01/02/03", "ep/v1/2026/01/02/04"]
    assert [len(path.read_bytes().splitlines()) for path in closed] == [2, 1] and writer.written == 3


def test_a_full_buffer_drops_and_counts_instead_of_waiting(tmp_path):
    writer = CaptureWriter(tmp_path, "ep", "v1", capacity=1)
    gate = threading.Event()
    write = writer._write
    writer._write = lambda records: (gate.wait(), write(records))  # a disk that has stalled
    offered = [writer.offer(_record(datetime.now(timezone.utc))) for _ in range(200)]
    gate.set()
    writer.close()
    accepted = offered.count(True)
    assert 1 <= accepted <= 2 and writer.dropped == 200 - accepted
    assert writer.written == accepted == len(_records(tmp_path))


def test_a_failing_disk_is_counted_not_raised(tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    writer = CaptureWriter(blocked, "ep", "v1")  # a file where the capture folder should be
    for _ in range(3):
        assert writer.offer(_record(datetime.now(timezone.utc)))
    writer.close()
    assert writer.failed == 3 and writer.written == 0
