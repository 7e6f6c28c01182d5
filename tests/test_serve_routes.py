"""Every route of the real server on 127.0.0.1, both content types, one and many rows, bad input."""

from __future__ import annotations

import json
import shutil
import socket
import tarfile
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from serve_helpers import ServerProcess, csv_rows, features, json_instances, packaged_model

CSV = {"content-type": "text/csv"}


def one_row() -> str:
    return csv_rows(1, seed=5).strip()


def three_rows() -> str:
    return csv_rows(3, seed=1, missing_share=0.3)


def with_cell(row: str, column: int, value: str) -> str:
    """The row with its 1-based `column` replaced by `value`."""
    cells = row.split(",")
    cells[column - 1] = value
    return ",".join(cells)


def first_numeric_column() -> int:
    return next(index for index, feature in enumerate(features(), start=1) if feature["type"] == "numeric")


@pytest.fixture(scope="module")
def server():
    with ServerProcess(["--model", str(packaged_model()), "--host", "127.0.0.1", "--port", "0", "--workers", "1"]) as running:
        yield running


def test_ping_answers_200_once_loaded(server):
    assert server.client.get("/ping").status_code == 200


def test_one_csv_row_gives_probability_and_label(server):
    response = server.client.post("/invocations", content=one_row(), headers=CSV)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv"
    probability, label = response.text.strip().split(",")
    assert 0 <= float(probability) <= 1 and label == str(int(float(probability) >= 0.5))


def test_many_csv_rows_give_one_line_each_in_order(server):
    many = server.client.post("/invocations", content=three_rows(), headers=CSV).text.splitlines()
    singles = [server.client.post("/invocations", content=row, headers=CSV).text.strip()
               for row in three_rows().splitlines()]
    assert many == singles and len(many) == 3


def test_json_lists_and_objects_give_the_same_predictions(server):
    rows = json_instances(three_rows())
    names = [feature["name"] for feature in features()]
    as_lists = server.client.post("/invocations", json={"instances": rows})
    as_objects = server.client.post("/invocations", json={"instances": [
        {name: value for name, value in zip(names, row) if value is not None} for row in rows]})
    assert as_lists.status_code == as_objects.status_code == 200
    assert as_lists.headers["content-type"] == "application/json"
    predictions = as_lists.json()["predictions"]
    assert predictions == as_objects.json()["predictions"] and len(predictions) == 3
    csv_answer = server.client.post("/invocations", content=three_rows(), headers=CSV).text
    assert float(csv_answer.split(",")[0]) == pytest.approx(predictions[0]["probability"], abs=1e-5)


def test_accept_header_picks_the_response_type(server):
    as_json = server.client.post("/invocations", content=one_row(), headers={**CSV, "accept": "application/json"})
    assert as_json.headers["content-type"] == "application/json" and len(as_json.json()["predictions"]) == 1
    as_csv = server.client.post("/invocations", json={"instances": json_instances(one_row())},
                                headers={"accept": "text/csv"})
    assert as_csv.headers["content-type"] == "text/csv" and as_csv.text.count("\n") == 1
    refused = server.client.post("/invocations", content=one_row(), headers={**CSV, "accept": "image/png"})
    assert refused.status_code == 406 and "text/csv" in refused.text


BAD_INPUT = {
    "text in a number": (lambda: with_cell(one_row(), first_numeric_column(), "abc"), "text/csv", 400,
                         lambda: ["row 1", f"column {first_numeric_column()}"]),
    "short second row": (lambda: one_row() + "\n" + ",".join(one_row().split(",")[:3]), "text/csv", 400,
                         lambda: ["row 2", "expected"]),
    "unclosed quote": (lambda: '"' + one_row() + "\n" + one_row(), "text/csv", 400, lambda: ["row 1"]),
    "text in a JSON number": (lambda: json.dumps({"instances": json_instances(one_row()) + [
        ["x" if feature["type"] == "numeric" else value for feature, value in zip(features(), json_instances(one_row())[0])]]}),
        "application/json", 400, lambda: ["row 2", f"column {first_numeric_column()}"]),
    "truncated JSON": (lambda: '{"instances": [[1, 2', "application/json", 400, lambda: ["JSON"]),
    "text/plain": (one_row, "text/plain", 415, lambda: ["text/csv", "application/json"]),
    "no content type": (one_row, "", 415, lambda: ["text/csv"]),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_a_4xx_naming_what_is_wrong(server, case):
    body, content_type, status, names = BAD_INPUT[case]
    response = server.client.post("/invocations", content=body(), headers={"content-type": content_type})
    assert response.status_code == status, response.text
    for name in names():
        assert name in response.text


def test_body_over_6_mb_is_413_before_it_is_read(server):
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
                    b"Content-Length: 6291457\r\n\r\n" + b"1" * 1000)
        assert raw.recv(4096).startswith(b"HTTP/1.1 413 ")
    row = one_row() + "\n"
    exactly_6_mb = row * (6 * 1024 * 1024 // len(row))
    assert server.client.post("/invocations", content=exactly_6_mb, headers=CSV).status_code == 200
    assert server.client.post("/invocations", content=exactly_6_mb + "x" * 1024 * 1024, headers=CSV).status_code == 413


def test_unknown_path_is_404_and_wrong_method_405(server):
    assert server.client.get("/nope").status_code == 404
    wrong = server.client.get("/invocations")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"


def test_health_names_the_model_and_the_capture_state(server):
    manifest = json.loads(tarfile.open(packaged_model() / "model.tar.gz").extractfile("manifest.json").read())
    health = server.client.get("/health").json()
    assert health["status"] == "ready"
    assert health["model"] == {"name": manifest["name"], "version": manifest["version"], "sha256": manifest["sha256"]}
    assert health["uptime_seconds"] > 0 and health["capture"]["enabled"] is False


def test_metrics_count_requests_by_status(server):
    server.client.post("/invocations", content="x", headers={"content-type": "text/html"})
    text = server.client.get("/metrics").text
    assert 'mlship_requests_total{worker="0",path="/invocations",status="415"}' in text
    assert "mlship_request_duration_seconds_bucket" in text and "mlship_requests_in_flight" in text
    assert 'mlship_model_info{worker="0",name="churn",version="1.0.0"' in text


def _scrape(server) -> tuple[str, list]:
    text = server.client.get("/metrics").text
    return text, [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def test_one_scrape_shows_every_worker_with_each_metric_family_once():
    with ServerProcess(["--model", str(packaged_model()), "--host", "127.0.0.1", "--port", "0", "--workers", "2"]) as server:
        deadline = time.monotonic() + 60
        while True:  # both workers load the model; each one's snapshot reaches the other within a second
            _, samples = _scrape(server)
            loaded = {s.labels["worker"] for s in samples if s.name == "mlship_model_info" and s.value == 1}
            if loaded == {"0", "1"} or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert loaded == {"0", "1"}
        for _ in range(30):  # a new connection each time: either worker may take it
            with httpx.Client(base_url=server.url) as client:
                assert client.post("/invocations", content=one_row(), headers=CSV).status_code == 200
        time.sleep(1.5)
        text, samples = _scrape(server)
    answered = [s for s in samples if s.name == "mlship_requests_total" and s.labels["path"] == "/invocations"]
    assert sum(s.value for s in answered) == 30 and all(s.labels["status"] == "200" for s in answered)
    histogram_count = sum(s.value for s in samples if s.name == "mlship_request_duration_seconds_count")
    assert histogram_count >= 30
    types = [line for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types)), "a metric family is declared twice"


def test_openapi_document_and_docs_page(server):
    document = server.client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.") and "/invocations" in document["paths"]
    assert set(document["paths"]["/invocations"]["post"]["requestBody"]["content"]) == {"text/csv", "application/json"}
    docs = server.client.get("/docs")
    assert docs.headers["content-type"].startswith("text/html") and "/openapi.json" in docs.text


def test_access_log_is_json_with_a_request_id(tmp_path):
    with ServerProcess(["--model", str(packaged_model()), "--host", "127.0.0.1", "--port", "0", "--workers", "1"]) as running:
        answer = running.client.post("/invocations", content=one_row(), headers={**CSV, "x-request-id": "req-42",
                                                                                 "x-amzn-sagemaker-inference-id": "inf-7"})
        assert answer.headers["x-request-id"] == "req-42"
        _, log = running.stop()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    mine = [line for line in lines if line["request_id"] == "req-42"]
    assert mine and mine[0]["path"] == "/invocations" and mine[0]["status"] == 200
    assert mine[0]["inference_id"] == "inf-7" and mine[0]["duration_ms"] > 0


def test_a_model_failing_its_checksum_is_never_served(tmp_path):
    with tarfile.open(packaged_model() / "model.tar.gz") as archive:
        archive.extractall(tmp_path / "model", filter="data")
    manifest_path = tmp_path / "model" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "sha256": "0" * 64}))
    running = ServerProcess(["--model", str(tmp_path / "model"), "--host", "127.0.0.1", "--port", "0",
                             "--workers", "1"], wait_ready=False)
    try:
        deadline_answer = running.wait_for_ping(200, timeout=8)
        assert deadline_answer.status_code == 503 and "ModelIntegrityError" in deadline_answer.text
        assert running.client.post("/invocations", content=one_row(), headers=CSV).status_code == 503
    finally:
        _, log = running.stop()
    assert "model not served: ModelIntegrityError" in log


def test_a_missing_model_is_a_one_line_error(tmp_path):
    import subprocess
    import sys

    from serve_helpers import REPO, python_env

    result = subprocess.run([sys.executable, "-m", "mlship", "serve", "--model", str(tmp_path / "nothing")],
                            capture_output=True, text=True, env=python_env(), cwd=REPO, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("mlship serve: error: --model") and result.stderr.count("\n") == 1


def test_serves_an_extracted_directory_and_a_tarball(tmp_path):
    tarball = tmp_path / "model.tar.gz"
    shutil.copy(packaged_model() / "model.tar.gz", tarball)
    with ServerProcess(["--model", str(tarball), "--host", "127.0.0.1", "--port", "0", "--workers", "1"]) as running:
        assert running.client.post("/invocations", content=one_row(), headers=CSV).status_code == 200
