"""The container files, tested without Docker: the image's own command serves a model from a
clean copy of what the Dockerfile copies, and the compose file has what the EC2 host relies on."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from datetime import datetime, timezone

import pytest
import yaml
from serve_helpers import csv_rows, REPO, ServerProcess, packaged_model

SERVER_DIR = REPO / "model" / "server"


def _dockerfile() -> dict[str, list[str]]:
    """Instruction -> arguments of each line, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (SERVER_DIR / "Dockerfile").read_text())
    instructions: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            instructions.setdefault(keyword.upper(), []).append(rest.strip())
    return instructions


def _compose() -> dict:
    return yaml.safe_load((SERVER_DIR / "docker-compose.yml").read_text())


def test_image_is_pinned_slim_non_root_with_a_ping_healthcheck():
    docker = _dockerfile()
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", docker["FROM"][0])
    assert docker["USER"] == ["mlship"]
    assert "/ping" in docker["HEALTHCHECK"][0] and "--start-period" in docker["HEALTHCHECK"][0]
    assert "8080" in docker["EXPOSE"]


def test_image_requirements_are_pinned_as_in_the_lock_file():
    lock = dict(line.split("==") for line in (REPO / "requirements.lock").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    pins = [line for line in (SERVER_DIR / "requirements.txt").read_text().splitlines()
            if line and not line.startswith("#")]
    assert pins
    for pin in pins:
        name, version = pin.split("==")
        assert lock.get(name) == version, pin


def test_the_images_command_serves_a_model_from_a_clean_copy(tmp_path):
    docker = _dockerfile()
    image = tmp_path / "opt-mlship"
    for source_dest in docker["COPY"]:
        *sources, dest = source_dest.split()
        if dest.startswith("/tmp/"):
            continue  # the requirement pins, used by pip only
        for source in sources:
            target = image / dest if source.endswith("/") else image / dest / os.path.basename(source)
            if source.endswith("/"):
                shutil.copytree(REPO / source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(REPO / source, target)
    env_line = shlex.split(docker["ENV"][0])
    image_env = dict(item.split("=", 1) for item in env_line)
    assert image_env["PYTHONPATH"] == "/opt/mlship" and image_env["OMP_NUM_THREADS"] == "1"
    entrypoint, command = json.loads(docker["ENTRYPOINT"][0]), json.loads(docker["CMD"][0])
    assert entrypoint[0] == "python" and "serve" in command
    capture = tmp_path / "capture"
    argv = [sys.executable, *entrypoint[1:], *command]
    argv = [str(packaged_model()) if arg == "/opt/ml/model" else str(capture) if arg == "/data/capture" else
            "0" if arg == "8080" else arg for arg in argv] + ["--host", "127.0.0.1", "--workers", "1"]
    env = {**os.environ, **image_env, "PYTHONPATH": str(image)}
    with ServerProcess([], command=argv, env=env) as server:
        port = server.url.rsplit(":", 1)[1]
        healthcheck = json.loads(docker["HEALTHCHECK"][0].split("CMD", 1)[1])
        healthcheck = [sys.executable if arg == "python" else arg.replace(":8080/", f":{port}/") for arg in healthcheck]
        assert subprocess.run(healthcheck, timeout=30).returncode == 0
        assert server.client.post("/invocations", content=csv_rows(1), headers={"content-type": "text/csv"}).status_code == 200
        code, log = server.stop()
    assert code == 0, log
    assert len(list(capture.rglob("*.jsonl"))) == 1
    loaded = [line for line in log.splitlines() if "loaded" in line]
    assert loaded, log


def test_compose_runs_the_server_with_capture_on_the_data_volume():
    compose = _compose()
    server = compose["services"]["server"]
    assert server["ports"] == ["8080:8080"] and server["restart"] == "unless-stopped"
    assert server["command"][:3] == ["serve", "--model", "/opt/ml/model"]
    assert any(volume.endswith(":/opt/ml/model:ro") for volume in server["volumes"])
    assert any(volume.startswith("${MLSHIP_DATA_DIR:-/data}/capture:") for volume in server["volumes"])
    assert "--capture-dir" in server["command"] and "/data/capture" in server["command"]
    assert server["logging"]["driver"] == "json-file" and server["logging"]["options"]["max-size"]
    assert server["read_only"] is True and "ALL" in server["cap_drop"]
    grace = int(server["stop_grace_period"].rstrip("s"))
    assert grace > 30  # longer than the server's own drain timeout, so SIGKILL never cuts the capture flush


def test_compose_runs_the_monitor_hourly_on_the_previous_hour():
    compose = _compose()
    monitor = compose["services"]["monitor"]
    assert monitor["image"] == compose["services"]["server"]["image"] and monitor["restart"] == "unless-stopped"
    assert any(volume.endswith(":/data/capture:ro") for volume in monitor["volumes"])
    script = monitor["command"][0].replace("$$", "$")  # compose's escape for a literal $
    assert "mlship monitor run" in script
    if shutil.which("sh") is None or subprocess.run(["date", "-u", "-d", "@0"], capture_output=True).returncode:
        pytest.skip("needs sh and GNU date, as in the image")
    # Run one loop turn, with sleep and python replaced by recorders.
    once = script.replace("while true; do", "for turn in 1; do", 1)
    result = subprocess.run(["sh", "-c", 'sleep() { echo "slept $1"; }; python() { echo "ran $*"; }; ' + once],
                            capture_output=True, text=True, timeout=10, env={**os.environ, "MLSHIP_ENDPOINT": "churn"})
    slept = int(re.search(r"slept (\d+)", result.stdout).group(1))
    ran = re.search(r"ran (.*)", result.stdout).group(1).split()
    assert 300 <= slept <= 3600 + 300
    assert ran[:4] == ["-m", "mlship", "monitor", "run"]
    arguments = dict(zip(ran[4::2], ran[5::2]))
    start, end = (datetime.fromisoformat(arguments[key].replace("Z", "+00:00")) for key in ("--start", "--end"))
    assert (end - start).total_seconds() == 3600 and end.minute == end.second == 0
    assert end > datetime.now(timezone.utc)  # the hour that will have just closed when it wakes
    assert arguments["--capture"] == "/data/capture/churn" and arguments["--baseline"] == "/opt/ml/model/baseline"
