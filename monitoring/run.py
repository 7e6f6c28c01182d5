"""A monitoring run: one window of capture checked against a baseline.

Reads the capture (a file, a folder tree, or an S3 prefix) in chunks, in parallel worker
processes that each fold their share into a Window; merges the windows; then writes
Model Monitor's files (statistics.json, constraint_violations.json, model-quality files
with ground truth), mlship's drift detail (drift.json) and a summary (summary.json).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from mlship.errors import UserError
from monitoring import checks, formats, multivariate, quality
from monitoring.capture import CaptureColumns, read_columns
from monitoring.drift import FeatureDrift, feature_drift, multivariate_drift
from monitoring.sources import Location, S3Access, list_files, read_chunks
from monitoring.formats import OUTPUT_FEATURES
from monitoring.window import Window

log = logging.getLogger(__name__)

EXIT_OK, EXIT_BAD_INPUT, EXIT_VIOLATIONS = 0, 2, 3
DEFAULT_OUTPUTS = [("probability", "Fractional"), ("label", "Integral")]


@dataclass(frozen=True)
class RunOptions:
    capture: str
    baseline: Path
    out: Path
    start: datetime | None = None
    end: datetime | None = None
    ground_truth: str | None = None
    endpoint_name: str = "local"
    schedule_name: str = "mlship-monitor"
    access: S3Access = field(default_factory=S3Access)
    workers: int = 0  # 0: one per CPU, at most 2 on this project's machines


@dataclass
class Baseline:
    statistics: formats.Statistics
    constraints: formats.Constraints
    pca: multivariate.PcaModel | None
    quality_constraints: dict[str, formats.ModelQualityConstraint]

    @classmethod
    def read(cls, folder: Path) -> Baseline:
        """A baseline folder as `mlship monitor baseline` writes it."""
        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(f"baseline folder {folder} does not exist; create one with `mlship monitor baseline`")
        return cls.from_files(folder / formats.STATISTICS_FILE, folder / formats.CONSTRAINTS_FILE)

    @classmethod
    def from_files(cls, statistics_path: Path, constraints_path: Path, prediction_statistics: Path | None = None) -> Baseline:
        """statistics.json and constraints.json; multivariate.json, model_quality_constraints.json and
        prediction_statistics.json (unless given) are looked for beside either (a SageMaker job mounts
        the two in separate folders)."""
        statistics = formats.read_statistics(statistics_path)
        constraints = formats.read_constraints(constraints_path)
        if not statistics.features:
            raise UserError(f"baseline {statistics_path} lists no features")
        folders = [Path(statistics_path).parent, Path(constraints_path).parent]
        quality_path, pca_path, prediction_path = (
            next((f / name for f in folders if (f / name).is_file()), None)
            for name in (formats.MODEL_QUALITY_CONSTRAINTS_FILE, multivariate.FILE, formats.PREDICTION_STATISTICS_FILE))
        prediction_path = prediction_statistics or prediction_path
        if prediction_path and not any(f.name in OUTPUT_FEATURES for f in statistics.features):
            outputs = [f for f in formats.read_statistics(prediction_path).features if f.name in OUTPUT_FEATURES]
            statistics = formats.Statistics(statistics.item_count, statistics.features + outputs)
        try:
            quality_constraints = (formats.model_quality_constraints_from_json(formats.read_json(quality_path, "model quality constraints"))
                                   if quality_path else dict(quality.DEFAULT_CONSTRAINTS))
            pca = multivariate.read(pca_path) if pca_path else None
        except (ValueError, KeyError, TypeError) as error:
            raise UserError(f"baseline: {error}") from None
        return cls(statistics, constraints, pca, quality_constraints)

    def kinds(self, names: list[str]) -> list[tuple[str, str]]:
        return [(f.name, f.inferred_type) for f in self.statistics.features if f.name in names]

    @property
    def input_features(self) -> list[tuple[str, str]]:
        return [(f.name, f.inferred_type) for f in self.statistics.features if f.name not in OUTPUT_FEATURES]

    @property
    def output_features(self) -> list[tuple[str, str]]:
        return self.kinds(list(OUTPUT_FEATURES)) or DEFAULT_OUTPUTS


@dataclass
class RunResult:
    out: Path
    summary: dict
    violations: list[formats.Violation]
    quality_violations: list[formats.Violation]
    drift: dict
    data_metrics: dict[str, float]
    model_metrics: dict[str, float]

    @property
    def exit_status(self) -> int:
        return EXIT_VIOLATIONS if self.violations or self.quality_violations else EXIT_OK


# The plan a worker process needs; set before the pool forks so workers inherit it.
_PLAN: dict = {}


def _scan(files: list[str]) -> Window:
    """One worker's share of the files, folded into a Window."""
    plan = _PLAN
    window = Window(plan["inputs"], plan["outputs"], plan["pca"])
    step = max(1, len(files) // 5)
    for done, file in enumerate(files, 1):
        try:
            for lines in read_chunks(file, plan["access"]):
                _fold(window, lines, plan)
        except OSError as error:  # a file that vanished or cannot be read: counted, the run goes on
            window.count(f"unreadable file: {error.strerror or error}", 1)
        if len(files) >= 10 and done % step == 0:
            log.info("reader %d: %d of %d files, %d records", os.getpid(), done, len(files), window.records)
    return window


def _fold(window: Window, lines: list[bytes], plan: dict) -> None:
    truth = plan["truth"]
    columns = read_columns(lines, CaptureColumns.empty(), plan["start"], plan["end"], keep_ids=truth is not None)
    window.records += columns.records
    window.add_inputs(columns.csv_inputs, columns.json_inputs)
    window.add_outputs(columns.csv_outputs, columns.json_outputs)
    for key in ("outside_window", "unparseable_time", "without_input", "without_output"):
        window.count(key, getattr(columns, key))
    for reason, count in columns.problems.items():
        window.count(f"bad line: {reason}", count)
    if truth is not None:
        problems: dict[str, int] = {}
        window.matched_truth = np.concatenate([window.matched_truth, quality.match(columns.keyed_outputs, truth, problems)])
        for reason, count in problems.items():
            window.count(reason, count)


def _balanced(files: list[tuple[str, int]], groups: int) -> list[list[str]]:
    """Files dealt into groups of about equal bytes, largest first."""
    loads = [0] * groups
    out: list[list[str]] = [[] for _ in range(groups)]
    for name, size in sorted(files, key=lambda f: -f[1]):
        smallest = loads.index(min(loads))
        out[smallest].append(name)
        loads[smallest] += size
    return [group for group in out if group]


def scan(options: RunOptions, baseline: Baseline, truth: dict[str, list[int]] | None) -> Window:
    files = list_files(Location.parse(options.capture, "capture"), options.access, options.start, options.end)
    log.info("reading %d capture file(s) (%.1f MB) from %s", len(files), sum(s for _, s in files) / 1e6, options.capture)
    _PLAN.update(inputs=baseline.input_features, outputs=baseline.output_features, pca=baseline.pca, truth=truth,
                 access=options.access, start=options.start, end=options.end)
    workers = options.workers or min(2, os.cpu_count() or 1)
    groups = _balanced(files, workers)
    window = Window(baseline.input_features, baseline.output_features, baseline.pca)
    if len(groups) <= 1:
        for group in groups:
            window.merge(_scan(group))
        return window
    with ProcessPoolExecutor(len(groups), mp_context=multiprocessing.get_context("fork")) as pool:
        for part in pool.map(_scan, groups):
            window.merge(part)
    return window


def read_truth(location: str, access: S3Access, since: datetime | None = None) -> tuple[dict[str, list[int]], dict[str, int]]:
    """Ground truth by inference id. Labels come after their predictions, so with a window start only
    the hourly folders from that hour on are read (files outside the hourly layout always are)."""
    truth: dict[str, list[int]] = {}
    problems: dict[str, int] = {}
    for file, _ in list_files(Location.parse(location, "ground truth"), access, since):
        for lines in read_chunks(file, access):
            quality.read_ground_truth(lines, truth, problems)
    return truth, problems


def run(options: RunOptions, baseline: Baseline | None = None) -> RunResult:
    """Runs the checks; `baseline` defaults to the folder options.baseline."""
    baseline = baseline or Baseline.read(options.baseline)
    if options.start and options.end and options.start >= options.end:
        raise UserError(f"--start {options.start:%Y-%m-%dT%H:%M:%SZ} is not before --end {options.end:%Y-%m-%dT%H:%M:%SZ}")
    truth, truth_problems = read_truth(options.ground_truth, options.access, options.start) if options.ground_truth else (None, {})
    window = scan(options, baseline, truth)
    for reason, count in truth_problems.items():
        window.count(reason, count)
    return evaluate(options, baseline, window)


def evaluate(options: RunOptions, baseline: Baseline, window: Window) -> RunResult:
    current = window.statistics()
    config = baseline.constraints.monitoring_config.distribution_constraints
    drift: dict[str, FeatureDrift] = {}
    for feature in current.features:
        reference = baseline.statistics.feature(feature.name)
        result = feature_drift(reference, feature, config) if reference is not None else None
        if result is not None:
            drift[feature.name] = result
    violations = checks.side_violations(window.inputs, baseline.constraints, drift)
    if any(baseline.constraints.feature(name) for name in OUTPUT_FEATURES):  # only against constraints of it
        violations += checks.side_violations(window.outputs, baseline.constraints, drift)
    outputs = [name for name, _ in baseline.output_features]
    detail = {
        "version": 1,
        "window": {"start": _iso(options.start), "end": _iso(options.end), "records": window.records},
        "comparison": config.to_json(),
        "features": [drift[n].to_json() for n in window.inputs.names if n in drift],
        "prediction": [drift[n].to_json() for n in outputs if n in drift],
        "multivariate": multivariate_drift(baseline.pca, window.pca_errors.statistics("reconstruction_error"), config.comparison_threshold) if baseline.pca else None,
    }
    if not detail["prediction"]:
        detail["prediction_note"] = ("the baseline has no probability/label features (prediction_statistics.json, "
                                     "written by `mlship model package`), so prediction drift has nothing to compare with")
    out = Path(options.out)
    formats.write_statistics(out / formats.STATISTICS_FILE, current)
    formats.write_violations(out / formats.VIOLATIONS_FILE, violations)
    formats.write_json(out / formats.DRIFT_FILE, detail)

    model_metrics: dict[str, float] = {}
    quality_violations: list[formats.Violation] = []
    quality_summary = None
    if window.matched_truth.shape[0]:
        metrics, confusion = quality.evaluate(window.matched_truth)
        model_metrics = {name: value for name, (value, _) in metrics.items() if np.isfinite(value)}
        quality_violations = quality.violations(metrics, baseline.quality_constraints)
        formats.write_json(out / formats.MODEL_QUALITY_STATISTICS_FILE,
                           formats.model_quality_statistics_to_json(int(window.matched_truth.shape[0]), metrics, confusion, quality.now()))
        formats.write_model_quality_violations(out / formats.MODEL_QUALITY_VIOLATIONS_FILE, quality_violations)
        quality_summary = {"rows_with_ground_truth": int(window.matched_truth.shape[0]), **{k: round(v, 6) for k, v in model_metrics.items()}}

    drifted = [d.name for d in drift.values() if d.drifted and d.name not in outputs]
    prediction_drifted = [name for name in outputs if name in drift and drift[name].drifted]
    multivariate_drifted = bool(detail["multivariate"] and detail["multivariate"]["drifted"])
    by_type: dict[str, int] = {}
    for violation in violations + quality_violations:
        by_type[violation.constraint_check_type] = by_type.get(violation.constraint_check_type, 0) + 1
    summary = {
        "endpoint": options.endpoint_name,
        "monitoring_schedule": options.schedule_name,
        "capture": options.capture,
        "window": detail["window"],
        "records": window.records,
        "rows": window.inputs.columns.rows,
        "violations": len(violations) + len(quality_violations),
        "violations_by_check": by_type,
        "drifted_features": drifted,
        "prediction_drift": prediction_drifted,
        "multivariate_drift": multivariate_drifted,
        "retrain_recommended": bool(drifted or prediction_drifted) or multivariate_drifted,
        "model_quality": quality_summary,
        "skipped": {**window.capture_counts,
                    **{f"input: {k}": v for k, v in window.inputs.columns.unreadable.items()},
                    **{f"output: {k}": v for k, v in window.outputs.columns.unreadable.items()}},
        "rows_with_missing_columns": window.inputs.columns.missing_columns,
        "rows_with_extra_columns": window.inputs.columns.extra_columns,
        "empty_window": window.records == 0,
        "out": str(out),
    }
    result = RunResult(out, summary, violations, quality_violations, detail, data_metrics(current, drift), model_metrics)
    summary["exit_status"] = result.exit_status
    formats.write_json(out / formats.SUMMARY_FILE, summary)
    return result


def data_metrics(current: formats.Statistics, drift: dict[str, FeatureDrift]) -> dict[str, float]:
    """Model Monitor's data-quality metric values for this window, by metric name."""
    values: dict[str, float] = {}
    for feature in current.features:
        values[f"feature_null_{feature.name}"] = float(feature.num_missing)
        values[f"feature_non_null_{feature.name}"] = float(feature.num_present)
        if feature.name in drift:
            values[f"feature_baseline_drift_{feature.name}"] = float(drift[feature.name].distance)
    return values


def metric_names(statistics: formats.Statistics) -> list[str]:
    """The data-quality metric names a baseline's features produce (one drift alarm per feature needs them)."""
    return [f"{kind}_{feature.name}" for feature in statistics.features for kind in ("feature_baseline_drift", "feature_null", "feature_non_null")]


def _iso(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None
