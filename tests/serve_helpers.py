"""Helpers for the server's tests: a small packaged model and a real server process on 127.0.0.1."""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def _mlship(*args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "mlship", *args], check=True, cwd=cwd, env=python_env(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)


@functools.cache
def packaged_model() -> Path:
    """dist/<name>-<version>/ from the real `mlship model train/evaluate/package`, on a small synthetic
    table; built once per test process (about 15 seconds)."""
    work = Path(tempfile.mkdtemp(prefix="mlship-serve-test-"))
    atexit.register(shutil.rmtree, work, True)
    overrides = ["--set", "data.rows=2000", "--set", "classifier.max_iter=50",
                 "--set", f"build_dir={work / 'build'}", "--set", f"dist_dir={work / 'dist'}"]
    for step in ("train", "evaluate", "package"):
        _mlship("model", step, *overrides, cwd=work)
    (release,) = (work / "dist").iterdir()
    return release


@functools.cache
def features() -> list[dict]:
    return json.loads((packaged_model() / "manifest.json").read_text())["features"]


def _value(feature: dict, rng, missing_share: float) -> str:
    if feature.get("nullable") and rng.random() < missing_share:
        return ""
    if feature["type"] == "numeric":
        low, high = float(feature["min"]), float(feature["max"])
        value = low + (high - low) * rng.random()
        return str(round(value)) if feature.get("dtype") == "integer" else f"{value:.3f}"
    return rng.choice(feature["categories"])


def csv_rows(count: int, seed: int = 0, missing_share: float = 0.0) -> str:
    """`count` valid CSV rows for the packaged model's schema, one per line."""
    import random

    rng = random.Random(seed)
    return "".join(",".join(_value(feature, rng, missing_share) for feature in features()) + "\n"
                   for _ in range(count))


def json_instances(csv_text: str) -> list[list]:
    """The same rows as JSON lists (numbers as numbers, missing as null)."""
    rows = []
    for line in csv_text.splitlines():
        row = []
        for feature, value in zip(features(), line.split(",")):
            row.append(None if value == "" else float(value) if feature["type"] == "numeric" else value)
        rows.append(row)
    return rows


def python_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


class ServerProcess:
    """`mlship serve` (or any command printing `listening on http://HOST:PORT`) as a child process."""

    def __init__(self, args: list[str], command: list[str] | None = None, wait_ready: bool = True, env=None):
        base = command or [sys.executable, "-m", "mlship", "serve"]
        # stderr goes to a file: a pipe nobody reads would fill up with access-log lines and block the server.
        self._log = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(base + args, stdout=subprocess.PIPE, stderr=self._log,
                                        env=env or python_env(), cwd=REPO, text=True)
        self.log_text = ""
        line = self.process.stdout.readline()
        if "listening on " not in line:
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"server did not start: {line}{self.stop()[1]}")
        self.url = line.split("listening on ", 1)[1].split()[0]
        self.client = httpx.Client(base_url=self.url, timeout=30)
        if wait_ready:
            self.wait_for_ping(200)

    def wait_for_ping(self, status: int, timeout: float = 60.0) -> httpx.Response:
        deadline = time.monotonic() + timeout
        while True:
            response = self.client.get("/ping")
            if response.status_code == status or time.monotonic() > deadline:
                return response
            time.sleep(0.1)

    def stop(self, timeout: float = 30.0) -> tuple[int, str]:
        """SIGTERM, wait; returns the exit code and stderr. Safe to call twice."""
        if hasattr(self, "client"):
            self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if not self._log.closed:
            self._log.seek(0)
            self.log_text = self._log.read()
            self._log.close()
            self.process.stdout.close()
        return self.process.returncode, self.log_text

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
