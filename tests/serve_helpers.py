"""Helpers for the server's tests: a small packaged model and a real server process on 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
FIXTURE_HANDLERS = Path(__file__).with_name("serve_fixture") / "inference.py"

FEATURES = [
    {"name": "tenure", "type": "numeric", "dtype": "integer", "min": 0, "max": 72, "nullable": False},
    {"name": "monthly_charges", "type": "numeric", "dtype": "float", "min": 18.0, "max": 120.0, "nullable": True},
    {"name": "contract", "type": "categorical", "dtype": "string",
     "categories": ["month-to-month", "one-year", "two-year"], "nullable": False},
    {"name": "internet", "type": "categorical", "dtype": "string", "categories": ["dsl", "fiber", "none"],
     "nullable": True},
]
CSV_ROW = "12,70.5,month-to-month,fiber"
CSV_ROWS = "\n".join([CSV_ROW, "60,25.0,two-year,none", "3,,one-year,dsl"]) + "\n"


def _synthetic_rows(count: int, seed: int = 7):
    import numpy as np

    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 73, count)
    charges = rng.uniform(18, 120, count).round(2)
    contract = rng.choice(FEATURES[2]["categories"], count)
    internet = rng.choice(FEATURES[3]["categories"], count)
    logit = -0.04 * tenure + 0.03 * (charges - 60) + (contract == "month-to-month") * 1.2
    churn = (rng.uniform(size=count) < 1 / (1 + np.exp(-logit))).astype(int)
    rows = np.empty((count, 4), dtype=object)
    rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3] = tenure.astype(float), charges, contract, internet
    return rows, churn


def _train(rows, labels):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    columns = ColumnTransformer([("numbers", "passthrough", [0, 1]),
                                 ("categories", OneHotEncoder(handle_unknown="ignore", sparse_output=False), [2, 3])])
    return Pipeline([("columns", columns), ("model", HistGradientBoostingClassifier(max_iter=40))]).fit(rows, labels)


def write_package(out: Path, handlers: Path = FIXTURE_HANDLERS, name: str = "churn", version: str = "0.1.0") -> Path:
    """dist/<name>-<version>/model.tar.gz in the package contract's layout; returns the dist folder."""
    import joblib

    staging = out / "staging"
    (staging / "code").mkdir(parents=True)
    joblib.dump(_train(*_synthetic_rows(2000)), staging / "model.joblib")
    digest = hashlib.sha256((staging / "model.joblib").read_bytes()).hexdigest()
    manifest = {"name": name, "version": version, "sha256": digest, "features": FEATURES,
                "target": {"name": "churn", "classes": [0, 1]},
                "output": [{"name": "probability", "type": "numeric"}, {"name": "label", "type": "numeric"}]}
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
    shutil.copy(handlers, staging / "code" / "inference.py")
    (staging / "code" / "requirements.txt").write_text("")
    dist = out / "dist" / f"{name}-{version}"
    dist.mkdir(parents=True)
    with tarfile.open(dist / "model.tar.gz", "w:gz") as archive:
        for path in sorted(staging.rglob("*")):
            archive.add(path, arcname=path.relative_to(staging).as_posix(), recursive=False)
    shutil.rmtree(staging)
    return dist


@functools.cache
def packaged_model() -> Path:
    """One package per test process (training takes a second or two)."""
    return write_package(Path(tempfile.mkdtemp(prefix="mlship-serve-test-")))


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
