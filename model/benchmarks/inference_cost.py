"""What the handlers cost per call: input_fn and predict_fn (and output_fn) for 1 and 100 CSV rows.

"lean" is predict_fn as shipped (the verified numpy path), "full" forces the whole scikit-learn pipeline.

Builds one release per classifier (synthetic data, default settings) in a temp dir, extracts each
model.tar.gz, imports its code/inference.py as the container does and times the handlers side by
side in one process. Run from the repository root:

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python model/benchmarks/inference_cost.py [--repeat 300]

Prints a Markdown table (median and p90 over --repeat calls, after a warm-up).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import itertools
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from mlship.cli import main as mlship
from model.data import synthetic_churn

CLASSIFIERS = ("hist_gradient_boosting", "logistic_regression")


def build(root: Path, classifier: str) -> Path:
    options = ["--set", f"build_dir={root / 'build'}", "--set", f"dist_dir={root / 'dist'}", "--set", f"classifier.kind={classifier}"]
    with contextlib.redirect_stdout(io.StringIO()):
        for command in ("train", "evaluate", "package"):
            if mlship(["model", command, *options]) != 0:
                raise SystemExit(f"mlship model {command} failed for {classifier}")
    model_dir = root / "model"
    with tarfile.open(root / "dist/churn-1.0.0/model.tar.gz") as tar:
        tar.extractall(model_dir, filter="data")
    return model_dir


def load_handlers(model_dir: Path, label: str):
    spec = importlib.util.spec_from_file_location(f"inference_{label}", model_dir / "code/inference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(call, repeat: int) -> tuple[float, float]:
    for _ in range(20):
        call()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1e3)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.9)]


def csv_body(rows: int, names: list[str]) -> str:
    frame = synthetic_churn(max(rows, 50), seed=99)[names].head(rows)
    return frame.to_csv(header=False, index=False, na_rep="")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    print("| classifier | path | rows | input_fn ms (median / p90) | predict_fn ms | output_fn ms | total median ms |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as temp:
        for classifier in CLASSIFIERS:
            handlers = load_handlers(build(Path(temp) / classifier, classifier), classifier)
            lean_model = handlers.model_fn(str(Path(temp) / classifier / "model"))
            full_model = handlers.model_fn(str(Path(temp) / classifier / "model"))
            full_model.lean = None  # the whole scikit-learn pipeline on every call
            for (path, model), rows in itertools.product((("lean", lean_model), ("full", full_model)), (1, 100)):
                body = csv_body(rows, model.names)
                data = handlers.input_fn(body, "text/csv")
                prediction = handlers.predict_fn(data, model)
                parse = timed(lambda: handlers.input_fn(body, "text/csv"), args.repeat)
                predict = timed(lambda: handlers.predict_fn(data, model), args.repeat)
                render = timed(lambda: handlers.output_fn(prediction, "text/csv"), args.repeat)
                print(f"| {classifier} | {path} | {rows} | {parse[0]:.3f} / {parse[1]:.3f} | {predict[0]:.3f} / {predict[1]:.3f} "
                      f"| {render[0]:.3f} / {render[1]:.3f} | {parse[0] + predict[0] + render[0]:.2f} |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
