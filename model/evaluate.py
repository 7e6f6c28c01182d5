"""Evaluate: hold-out metrics and the quality gate; the verdict is recorded for package to check."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from mlship.errors import UserError
from model.files import sha256_file, write_atomic
from model.settings import Settings
from model.train import DATA_FILE, IDENTITY_FILE, METRICS_FILE, MODEL_FILE, to_matrix


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]
    failures: list[str]  # one sentence per missed gate: metric, value, threshold

    @property
    def passed(self) -> bool:
        return not self.failures


def read_workdir(settings: Settings) -> tuple[Path, dict]:
    """The trained model's working folder and identity; a clear error when train has not run."""
    work = settings.workdir
    if not (work / IDENTITY_FILE).is_file() or not (work / MODEL_FILE).is_file():
        raise UserError(f"no trained model {settings.release} in {work}; run `mlship model train` first (same --version)")
    return work, json.loads((work / IDENTITY_FILE).read_text())


def score(labels: np.ndarray, probability: np.ndarray, threshold: float) -> dict[str, float]:
    predicted = (probability >= threshold).astype(int)
    return {
        "auc_roc": float(roc_auc_score(labels, probability)),
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "recall": float(recall_score(labels, predicted, zero_division=0)),
        "f1": float(f1_score(labels, predicted, zero_division=0)),
        "accuracy": float(accuracy_score(labels, predicted)),
    }


def bootstrap_deviations(labels: np.ndarray, probability: np.ndarray, threshold: float, seed: int, rounds: int = 30) -> dict[str, float]:
    """Each metric's standard deviation over bootstrap resamples of the hold-out set (Model Monitor reports one)."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(rounds):
        pick = rng.integers(0, len(labels), len(labels))
        if labels[pick].min() != labels[pick].max():
            samples.append(score(labels[pick], probability[pick], threshold))
    return {name: round(float(np.std([s[name] for s in samples])), 6) for name in samples[0]} if samples else {}


def gate(metrics: dict[str, float], gates: dict[str, float]) -> list[str]:
    return [
        f"{metric} {metrics[metric]:.4f} is below the gate's threshold {threshold:.4f}"
        for metric, threshold in gates.items()
        if metrics[metric] < threshold
    ]


def holdout_predictions(work: Path, identity: dict) -> tuple[np.ndarray, np.ndarray]:
    """The model's probabilities on the hold-out rows, and the rows' true labels."""
    pipeline = joblib.load(work / MODEL_FILE)
    x_holdout, y_holdout = joblib.load(work / DATA_FILE)["holdout"]
    return pipeline.predict_proba(to_matrix(x_holdout, identity["features"]))[:, 1], y_holdout.to_numpy()


def evaluate(settings: Settings) -> Evaluation:
    work, identity = read_workdir(settings)
    probability, labels = holdout_predictions(work, identity)
    threshold = identity["decision_threshold"]
    metrics = score(labels, probability, threshold)
    result = Evaluation(metrics, gate(metrics, settings.gates))
    predicted = (probability >= threshold).astype(int)
    record = {
        "model_sha256": sha256_file(work / MODEL_FILE),
        "holdout_rows": len(labels),
        "metrics": {name: round(value, 6) for name, value in metrics.items()},
        "standard_deviations": bootstrap_deviations(labels, probability, threshold, settings.seed),
        "confusion_matrix": {str(actual): {str(guess): int(((labels == actual) & (predicted == guess)).sum()) for guess in (0, 1)}
                             for actual in (0, 1)},
        "gates": settings.gates,
        "passed": result.passed,
        "failures": result.failures,
    }
    write_atomic(work / METRICS_FILE, (json.dumps(record, indent=2) + "\n").encode())
    return result


def passed_evaluation(settings: Settings, work: Path) -> dict:
    """The record (metrics, deviations, confusion matrix) of an evaluation that passed the gate for exactly this model.joblib, else a UserError."""
    path = work / METRICS_FILE
    if not path.is_file():
        raise UserError(f"{settings.release} has not been evaluated; run `mlship model evaluate` first")
    record = json.loads(path.read_text())
    if record["model_sha256"] != sha256_file(work / MODEL_FILE):
        raise UserError(f"{settings.release} was retrained after its evaluation; run `mlship model evaluate` again")
    failures = gate(record["metrics"], settings.gates)  # today's gates, in case the settings changed
    if failures:
        raise UserError(f"{settings.release} failed the quality gate ({'; '.join(failures)}); nothing packaged")
    return record
