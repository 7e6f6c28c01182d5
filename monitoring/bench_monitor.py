"""Benchmark of `mlship monitor run`, and Evidently's DataDriftPreset on the same rows.

    PYTHONPATH=. OMP_NUM_THREADS=1 python -m monitoring.bench_monitor [--records 1000000] [--big 10000000] [--evidently]

1. Generates a baseline (100,000 training rows: 10 numeric + 2 categorical features) and
   `--records` capture records (CSV in the JSONL envelope, hourly folders, drift in f1 and f4).
2. Times `mlship monitor run` on them end to end (a subprocess: process start, reading,
   checks, files) and samples the resident memory of its whole process tree.
3. Measures peak memory on `--big` records: copies (hard links) of the generated window
   under further hour folders, so the monitor reads that many records.
4. With --evidently: creates a virtual environment (WORKDIR/evidently-venv, Python 3.11,
   evidently==0.7.23 and pandas < 3), loads the same rows into memory there and
   times DataDriftPreset on them (loading not counted).
Generated data is kept in --workdir and reused by later runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

DRIFTED = ["f1", "f4"]
START = datetime(2026, 1, 2, 0, 0, tzinfo=timezone.utc)
PER_HOUR = 100_000
EVIDENTLY = ["evidently==0.7.23", "pandas<3", "orjson"]  # evidently does not cap pandas itself but breaks on 3.x
REPO = Path(__file__).resolve().parents[1]


def _generate_part(args: tuple[str, int, int]) -> None:
    from monitoring import synthetic

    root, first_hour, hours = args
    for hour in range(first_hour, first_hour + hours):
        window = synthetic.frame(PER_HOUR, seed=1000 + hour, drift=DRIFTED)
        synthetic.write_capture(Path(root), window, START + timedelta(hours=hour), records_per_file=25_000, seconds_apart=3600 / PER_HOUR)


def generate(workdir: Path, records: int) -> tuple[Path, Path]:
    """The baseline and a capture tree of `records` records (kept and reused)."""
    from monitoring import synthetic
    from monitoring.baseline import write_baseline

    baseline, capture = workdir / "baseline", workdir / f"capture-{records}"
    if not (baseline / "statistics.json").is_file():
        training = synthetic.frame(100_000, seed=1)
        probability, label = synthetic.predict(training)
        write_baseline(training.assign(probability=probability, label=label), baseline)
        training.to_csv(workdir / "reference.csv", index=False)
    if not (capture / "done").is_file():
        hours = -(-records // PER_HOUR)
        parts = [(str(capture), h, 1) for h in range(hours)]
        print(f"generating {records:,} capture records in {capture} ...", flush=True)
        with ProcessPoolExecutor(2) as pool:
            list(pool.map(_generate_part, parts))
        (capture / "done").write_text("")
    return baseline, capture


def replicate(capture: Path, copies: int, workdir: Path) -> Path:
    """A tree holding `copies` hard-linked copies of the capture, each under its own later hours."""
    big = workdir / f"capture-x{copies}-{capture.name}"
    if (big / "done").is_file():
        return big
    files = [p for p in capture.rglob("*.jsonl")]
    for copy in range(copies):
        for path in files:
            relative = path.relative_to(capture).parts
            year_index = len(relative) - 5  # endpoint/variant/yyyy/mm/dd/hh/file
            day = int(relative[year_index + 2]) + copy
            target = big.joinpath(*relative[:year_index + 2], f"{day:02d}", *relative[year_index + 3:])
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                os.link(path, target)
    (big / "done").write_text("")
    return big


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                total += next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))
            with open(f"/proc/{current}/task/{current}/children") as children:
                stack += [int(c) for c in children.read().split()]
        except (OSError, StopIteration):
            continue
    return total


def measure(command: list[str], env: dict) -> dict:
    peak = [0]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def sample():
        while process.poll() is None:
            peak[0] = max(peak[0], _tree_rss(process.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    out, err = process.communicate()
    elapsed = time.perf_counter() - started
    sampler.join()
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the process and its workers: on a shared machine, less noisy than wall time.
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {"seconds": round(elapsed, 2), "cpu_seconds": round(cpu, 2), "peak_rss_mb": round(peak[0] / 2**20), "exit": process.returncode, "stdout": out.strip()[-600:], "stderr": err.strip()[-600:]}


def monitor(capture: Path, baseline: Path, out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "mlship", "monitor", "run", "--capture", str(capture), "--baseline", str(baseline), "--out", str(out)]
    return measure(command, env)


_EVIDENTLY_RUNNER = r'''
import json, sys, time
from pathlib import Path
import pandas as pd, orjson
workdir = Path(sys.argv[1]); capture = Path(sys.argv[2])
reference = pd.read_csv(workdir / "reference.csv")
columns = list(reference.columns)
rows = []
for path in sorted(capture.rglob("*.jsonl")):
    with open(path, "rb") as handle:
        rows += [orjson.loads(line)["captureData"]["endpointInput"]["data"] for line in handle]
import io
current = pd.read_csv(io.StringIO("\n".join(rows)), header=None, names=columns)
del rows
from evidently import Dataset, DataDefinition, Report
from evidently.presets import DataDriftPreset
numeric = [c for c in columns if c.startswith("f")]
categorical = [c for c in columns if not c.startswith("f")]
definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
started, cpu_started = time.perf_counter(), time.process_time()
report = Report([DataDriftPreset()])
snapshot = report.run(Dataset.from_pandas(current, data_definition=definition), Dataset.from_pandas(reference, data_definition=definition))
result = snapshot.dict()
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
drifted = []
for metric in result.get("metrics", []):
    config = metric.get("config", {})
    if config.get("type", "").endswith("ValueDrift"):
        value, threshold, method = metric["value"], config["threshold"], config["method"]
        if (value < threshold) if "p_value" in method else (value >= threshold):
            drifted.append(config["column"])
print(json.dumps({"rows": len(current), "reference_rows": len(reference), "seconds": round(elapsed, 2), "cpu_seconds": round(cpu, 2), "drifted_columns": drifted}))
'''


# The same rows as Evidently gets, loaded the same way (not timed), then mlship's checks on them.
_IN_MEMORY_RUNNER = r'''
import io, json, sys, time
from pathlib import Path
import pandas as pd
from monitoring.capture import parse_line
from monitoring.run import Baseline, RunOptions, evaluate
from monitoring.window import Window
workdir, capture, baseline_dir = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
rows = []
for path in sorted(capture.rglob("*.jsonl")):
    with open(path, "rb") as handle:
        rows += [parse_line(line).input.text() for line in handle]
current = pd.read_csv(io.StringIO("\n".join(rows)), header=None)
del rows
baseline = Baseline.read(baseline_dir)
started, cpu_started = time.perf_counter(), time.process_time()
window = Window(baseline.input_features, baseline.output_features, baseline.pca)
for first in range(0, len(current), 100_000):
    window.add_input_frame(current.iloc[first:first + 100_000])
result = evaluate(RunOptions(capture="memory", baseline=baseline_dir, out=workdir / "out-in-memory"), baseline, window)
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
drifted = sorted({v.feature_name for v in result.violations if v.constraint_check_type == "baseline_drift_check"})
print(json.dumps({"rows": len(current), "seconds": round(elapsed, 2), "cpu_seconds": round(cpu, 2), "drifted_columns": drifted}))
'''


def in_memory(workdir: Path, capture: Path, baseline: Path) -> dict:
    """mlship's checks on rows already in memory: the like-for-like comparison with Evidently."""
    runner = workdir / "in_memory_runner.py"
    runner.write_text(_IN_MEMORY_RUNNER)
    measured = measure([sys.executable, str(runner), str(workdir), str(capture), str(baseline)],
                       dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"))
    measured.update(json.loads(measured["stdout"].splitlines()[-1]))
    return measured


def evidently(workdir: Path, capture: Path) -> dict:
    venv = workdir / "evidently-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} with {' '.join(EVIDENTLY)} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *EVIDENTLY], check=True)
    runner = workdir / "evidently_runner.py"
    runner.write_text(_EVIDENTLY_RUNNER)
    measured = measure([str(python), str(runner), str(workdir), str(capture)], dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        measured.update(json.loads(measured["stdout"].splitlines()[-1]))
    except (ValueError, IndexError):
        pass
    return measured


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--big", type=int, default=10_000_000, help="records for the peak-memory run (0: skip)")
    parser.add_argument("--evidently", action="store_true", help="also time Evidently's DataDriftPreset (creates a venv)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mlship-bench-monitor"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    baseline, capture = generate(args.workdir, args.records)
    results: dict = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": f"{os.cpu_count()} cores, {platform.machine()}", "records": args.records,
                     "load_average_1m_at_start": round(os.getloadavg()[0], 2)}
    run = monitor(capture, baseline, args.workdir / "out")
    run["records_per_second"] = round(args.records / run["seconds"])
    run["records_per_cpu_second"] = round(args.records / run["cpu_seconds"])
    results["monitor"] = run
    print(json.dumps({"monitor": run}, indent=2), flush=True)
    if args.big:
        copies = -(-args.big // args.records)
        big = replicate(capture, copies, args.workdir)
        run_big = monitor(big, baseline, args.workdir / "out-big")
        run_big["records"] = copies * args.records
        run_big["records_per_second"] = round(run_big["records"] / run_big["seconds"])
        results["monitor_big"] = run_big
        print(json.dumps({"monitor_big": run_big}, indent=2), flush=True)
    if args.evidently:
        results["evidently"] = evidently(args.workdir, capture)
        print(json.dumps({"evidently": results["evidently"]}, indent=2), flush=True)
        results["in_memory"] = in_memory(args.workdir, capture, baseline)
        print(json.dumps({"in_memory": results["in_memory"]}, indent=2), flush=True)
        if results["evidently"]["exit"] == 0:
            # End to end (mlship reads 1M capture records from disk, Evidently gets them in memory) ...
            results["speedup_vs_evidently"] = round(results["evidently"]["seconds"] / run["seconds"], 1)
            results["speedup_vs_evidently_cpu"] = round(results["evidently"]["cpu_seconds"] / run["cpu_seconds"], 1)
            # ... and like for like: both on the same rows held in memory, loading not counted.
            results["speedup_vs_evidently_in_memory"] = round(results["evidently"]["seconds"] / results["in_memory"]["seconds"], 1)
            results["speedup_vs_evidently_in_memory_cpu"] = round(results["evidently"]["cpu_seconds"] / results["in_memory"]["cpu_seconds"], 1)
    results["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)  # other work on the machine while measuring
    (args.workdir / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if not isinstance(v, dict)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
