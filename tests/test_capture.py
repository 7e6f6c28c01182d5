"""The capture record format, checked against AWS's own capture file."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import pytest

from conftest import MONITOR_FIXTURES, SHARED_MONITOR_FIXTURES

from monitoring.capture import CapturedPayload, CaptureFormatError, CaptureRecord, file_name, hour_folder, parse_line


def test_reads_every_line_of_aws_capture_file(monitor_fixtures):
    lines = (monitor_fixtures / "capture.jsonl").read_bytes().splitlines()
    records = [parse_line(line) for line in lines if line.strip()]
    assert len(records) == 44
    first = records[0]
    assert first.event_id == "74b0dd56-e7c8-368e-94b1-14a138a96000"
    assert first.inference_time is None  # the fixture holds the literal template "{%s}"
    assert first.input.text() == "9,45,45,42,7,5,0"
    assert first.input.media_type() == "text/csv"
    assert first.output.text() == "0.302709460258"


def test_written_record_has_the_layout_aws_writes(monitor_fixtures):
    reference = json.loads((monitor_fixtures / "capture.jsonl").read_text().splitlines()[0])
    record = CaptureRecord.new(
        CapturedPayload.from_bytes(b"1,2,3", "text/csv"),
        CapturedPayload.from_bytes(b"0.5,1", "text/csv"),
        inference_id="abc",
        at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
    )
    written = json.loads(record.to_line())
    assert written.keys() == reference.keys()
    assert written["captureData"].keys() == reference["captureData"].keys()
    for side in ("endpointInput", "endpointOutput"):
        assert written["captureData"][side].keys() == reference["captureData"][side].keys()
    assert written["eventMetadata"]["inferenceTime"] == "2026-01-02T03:04:05Z"
    assert written["eventMetadata"]["inferenceId"] == "abc"
    assert parse_line(record.to_line()) == record


def test_binary_payload_round_trips_as_base64():
    payload = CapturedPayload.from_bytes("é,1".encode("latin-1"), "text/csv")
    assert payload.encoding == "BASE64"
    assert base64.b64decode(payload.data) == "é,1".encode("latin-1")
    json_payload = CapturedPayload.from_bytes(b'{"instances": [[1]]}', "application/json")
    assert json_payload.encoding == "JSON"
    assert CapturedPayload("text/csv", base64.b64encode(b"4,5").decode(), "BASE64").text() == "4,5"


@pytest.mark.parametrize(
    "line, reason",
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"eventMetadata": {}}', "missing"),
        (b'{"captureData": {"endpointInput": {"data": 5}}, "eventMetadata": {}}', "no text 'data'"),
        (b'{"captureData": {"endpointInput": {"data": "1", "encoding": "XML"}}, "eventMetadata": {}}', "encoding"),
    ],
)
def test_bad_lines_are_refused_with_a_reason(line, reason):
    with pytest.raises(CaptureFormatError, match=reason):
        parse_line(line)


def test_capture_paths_follow_sagemaker_layout():
    at = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=timezone.utc)
    assert str(hour_folder("churn", "AllTraffic", at)) == "churn/AllTraffic/2026/03/04/05"
    name = file_name(at)
    assert name.startswith("06-07-890-") and name.endswith(".jsonl")


@pytest.mark.skipif(not SHARED_MONITOR_FIXTURES.is_dir(), reason="no ../shared beside this checkout to compare with")
def test_the_copied_aws_files_are_unchanged():
    shared = sorted(p.name for p in SHARED_MONITOR_FIXTURES.iterdir())
    assert sorted(p.name for p in MONITOR_FIXTURES.iterdir()) == shared
    for name in shared:
        assert (MONITOR_FIXTURES / name).read_bytes() == (SHARED_MONITOR_FIXTURES / name).read_bytes(), name
