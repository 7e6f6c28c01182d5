"""Serving benchmark: mlship's server against the Flask + gunicorn reference, side by side.

    PYTHONPATH=. python -m model.server.benchmark --model dist/churn-<version> [--workers 2] [--seconds 10]

Both servers call the same inference.py handlers with the same number of worker processes.
Load comes from separate processes: wrk (Debian's `wrk`) for maximum throughput, and
model/server/loadgen.py for latency at a fixed 200 requests/s (wrk has no fixed-rate mode).
Measured for mlship (default joblib path, and --onnx) and the reference: one-row JSON and 100-row
CSV throughput, p50/p99 at 200 req/s; and mlship's one-row throughput with capture on (100%
sampling) against off. Prints a Markdown table and JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_ready(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/ping", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _model_dir(model: Path, scratch: Path) -> Path:
    if model.is_dir() and (model / "model.tar.gz").is_file():
        model = model / "model.tar.gz"
    if model.is_file():
        with tarfile.open(model) as archive:
            archive.extractall(scratch, filter="data")
        return scratch
    return model


def _rows(features: list[dict], count: int) -> list[list]:
    """Valid rows from the feature schema, varied so that the model sees different values."""
    rows = []
    for number in range(count):
        row = []
        for feature in features:
            if feature["type"] == "numeric":
                low, high = float(feature.get("min", 0)), float(feature.get("max", 1))
                value = low + (high - low) * ((number * 37 % 100) / 100)
                row.append(round(value) if feature.get("dtype") == "integer" else round(value, 2))
            else:
                categories = feature.get("categories") or ["a"]
                row.append(categories[number % len(categories)])
        rows.append(row)
    return rows


def _wrk(url: str, content_type: str, body: str, seconds: int, connections: int) -> dict:
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write(f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "{content_type}"\n'
                 f"wrk.body = [==[{body}]==]\n")
    script.close()
    result = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name,
                             url + "/invocations"], capture_output=True, text=True, check=True)
    os.unlink(script.name)
    text = result.stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: (.*)", text)

    def latency(label: str) -> float:
        match = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", text)
        value, unit = float(match.group(1)), match.group(2)
        return round(value / 1000 if unit == "us" else value * 1000 if unit == "s" else value, 2)

    return {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
            "p50_ms": latency("50"), "p99_ms": latency("99"),
            "non_2xx": int(non_2xx.group(1)) if non_2xx else 0, "socket_errors": errors.group(1) if errors else ""}


def _fixed_rate(url: str, content_type: str, body: str, seconds: int, rate: float) -> dict:
    result = subprocess.run([sys.executable, "-m", "model.server.loadgen", "--url", url + "/invocations",
                             "--rate", str(rate), "--seconds", str(seconds), "--content-type", content_type,
                             "--body", body], capture_output=True, text=True, check=True, env=_env(), cwd=REPO)
    return json.loads(result.stdout)


class Server:
    def __init__(self, argv: list[str], url: str, env: dict | None = None):
        self.url = url
        self.process = subprocess.Popen(argv, env=env or _env(), cwd=REPO, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        _wait_ready(url)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _stop(self.process)


def mlship(model: Path, workers: int, capture: Path | None = None, flags: tuple[str, ...] = ()) -> Server:
    port = _free_port()
    argv = [sys.executable, "-m", "mlship", "serve", "--model", str(model), "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(workers), *flags]
    if capture is not None:
        argv += ["--capture-dir", str(capture), "--capture-sampling", "100"]
    return Server(argv, f"http://127.0.0.1:{port}")


def reference(model_dir: Path, workers: int) -> Server:
    port = _free_port()
    argv = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}",
            "model.server.reference_app:create_app()"]
    return Server(argv, f"http://127.0.0.1:{port}", env={**_env(), "MLSHIP_MODEL_DIR": str(model_dir)})


def measure(server: Server, bodies: dict, seconds: int, connections: int, rate: float) -> dict:
    one_type, one_body = bodies["one"]
    many_type, many_body = bodies["many"]
    _wrk(server.url, one_type, one_body, 2, connections)  # warm-up
    return {"one_row_json": _wrk(server.url, one_type, one_body, seconds, connections),
            "hundred_row_csv": _wrk(server.url, many_type, many_body, seconds, connections),
            "fixed_rate": _fixed_rate(server.url, one_type, one_body, seconds, rate)}


def _median(rounds: list):
    """The per-key median of the rounds' numbers (nested dicts kept, text from the first round)."""
    first = rounds[0]
    if isinstance(first, dict):
        return {key: _median([measured[key] for measured in rounds]) for key in first}
    if isinstance(first, (int, float)):
        return statistics.median(rounds)
    return first


def markdown(results: dict) -> str:
    mine, onnx, ref = results["mlship"], results["mlship_onnx"], results["reference"]
    lines = ["| measure | mlship (joblib, default) | mlship --onnx | Flask + gunicorn | mlship / reference |",
             "| --- | --- | --- | --- | --- |"]

    def row(label: str, key: str, measure: str, unit: str) -> None:
        a, b, c = mine[key][measure], onnx[key][measure], ref[key][measure]
        lines.append(f"| {label} | {a:g} {unit} | {b:g} {unit} | {c:g} {unit} | {a / c:.2f}x, --onnx {b / c:.2f}x |")

    row("one-row JSON, max throughput", "one_row_json", "requests_per_s", "req/s")
    row("100-row CSV, max throughput", "hundred_row_csv", "requests_per_s", "req/s")
    for key in ("p50_ms", "p99_ms"):
        row(f"{key[:3]} at {results['rate']:g} req/s (one-row JSON)", "fixed_rate", key, "ms")
    on, off = results["capture_on"]["requests_per_s"], mine["one_row_json"]["requests_per_s"]
    lines += ["", f"Capture at 100% sampling: {on:g} req/s with, {off:g} req/s without "
                  f"({(1 - on / off) * 100:+.1f}% cost); {results['capture_records']} records written."]
    return "\n".join(lines)


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--model", type=Path, required=True, help="model.tar.gz or dist/<name>-<version>/")
    cli.add_argument("--workers", type=int, default=2)
    cli.add_argument("--seconds", type=int, default=10)
    cli.add_argument("--connections", type=int, default=32)
    cli.add_argument("--rate", type=float, default=200.0)
    cli.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    args = cli.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("benchmark: wrk not found; install it with `apt-get install -y wrk`")
    scratch = Path(tempfile.mkdtemp(prefix="mlship-bench-"))
    model_dir = _model_dir(args.model, scratch / "model")
    features = json.loads((model_dir / "manifest.json").read_text())["features"]
    one = json.dumps({"instances": _rows(features, 1)})
    many = "\n".join(",".join(str(value) for value in row) for row in _rows(features, 100)) + "\n"
    bodies = {"one": ("application/json", one), "many": ("text/csv", many)}
    results: dict = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "workers": args.workers,
                     "seconds": args.seconds, "connections": args.connections, "rate": args.rate,
                     "rounds_run": args.rounds,
                     "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"}
    # On a shared machine the load from elsewhere drifts by the minute: every configuration is
    # measured once per round, rounds interleave them, and the median of the rounds is reported.
    rounds = []
    for number in range(1, args.rounds + 1):
        print(f"round {number}/{args.rounds}", file=sys.stderr, flush=True)
        measured: dict = {}
        with mlship(args.model, args.workers) as server:
            measured["mlship"] = measure(server, bodies, args.seconds, args.connections, args.rate)
        with mlship(args.model, args.workers, flags=("--onnx",)) as server:
            measured["mlship_onnx"] = measure(server, bodies, args.seconds, args.connections, args.rate)
        with reference(model_dir, args.workers) as server:
            measured["reference"] = measure(server, bodies, args.seconds, args.connections, args.rate)
        capture = scratch / f"capture-{number}"
        with mlship(args.model, args.workers, capture) as server:
            _wrk(server.url, *bodies["one"], 2, args.connections)
            measured["capture_on"] = _wrk(server.url, *bodies["one"], args.seconds, args.connections)
        measured["capture_records"] = sum(len(path.read_bytes().splitlines()) for path in capture.rglob("*.jsonl"))
        rounds.append(measured)
    results |= _median(rounds)
    results["rounds"] = rounds
    shutil.rmtree(scratch, ignore_errors=True)
    print(markdown(results))
    print()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
