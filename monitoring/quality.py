"""Model quality against ground truth: binary-classification metrics in Model Monitor's layout.

Ground truth records (`{"groundTruthData": {"data": "1", "encoding": "CSV"}, "eventMetadata":
{"eventId": ...}}`) are keyed by eventId; a captured prediction matches on its inferenceId
first, its eventId otherwise. A payload with several rows matches row by row.
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone

import numpy as np
import orjson

from monitoring.formats import ModelQualityConstraint, Violation
from monitoring.window import ColumnCounts, json_row

DEFAULT_CONSTRAINTS = {"accuracy": ModelQualityConstraint(0.6, "LessThanThreshold")}
BOOTSTRAP_ROUNDS = 30
BOOTSTRAP_ROWS = 100_000


def ground_truth_line(event_id: str, labels: list[int]) -> bytes:
    """One ground truth record, as a labelling job writes it: the true labels of a captured request.

    `event_id` is the captured request's inferenceId (or eventId); several labels, one per row.
    """
    record = {"groundTruthData": {"data": ",".join(str(int(label)) for label in labels), "encoding": "CSV"},
              "eventMetadata": {"eventId": event_id}, "eventVersion": "0"}
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def read_ground_truth(lines: list[bytes], into: dict[str, list[int]], problems: dict[str, int]) -> None:
    """Adds eventId -> true labels (one per row) to `into`; counts unusable lines in `problems`."""
    for line in lines:
        if not line.strip():
            continue
        try:
            raw = orjson.loads(line)
            data = raw["groundTruthData"]
            text = data["data"]
            if data.get("encoding") == "BASE64":
                text = base64.b64decode(text).decode()
            if data.get("encoding") == "JSON":
                parsed = orjson.loads(text)
                labels = [int(float(v)) for v in (parsed if isinstance(parsed, list) else [parsed])]
            else:
                labels = [int(float(v)) for v in text.replace("\n", ",").split(",") if v.strip()]
            into[str(raw["eventMetadata"]["eventId"])] = labels
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError):
            problems["ground truth line unusable"] = problems.get("ground truth line unusable", 0) + 1


def predictions(is_json: bool, text: str) -> list[tuple[float, float]]:
    """(probability, label) per row of one captured output; raises ValueError if unreadable."""
    if is_json:
        document = orjson.loads(text)
        items = document["predictions"] if isinstance(document, dict) else document
        rows = [json_row(item, ["probability", "label"], ColumnCounts()) for item in items]
    else:
        rows = [line.split(",") for line in text.replace("\r", "").split("\n") if line]
    out = []
    for row in rows:
        probability = float(row[0])
        label = float(row[1]) if len(row) > 1 and row[1] not in (None, "") else float(probability >= 0.5)
        out.append((probability, label))
    return out


def match(keyed_outputs, truth: dict[str, list[int]], problems: dict[str, int]) -> np.ndarray:
    """Rows of (probability, predicted label, true label) for the predictions that have ground truth."""
    matched = []
    for event_id, inference_id, is_json, text in keyed_outputs:
        labels = truth.get(inference_id) if inference_id else None
        if labels is None:
            labels = truth.get(event_id)
        if labels is None:
            continue
        try:
            rows = predictions(is_json, text)
        except (ValueError, KeyError, TypeError, IndexError, orjson.JSONDecodeError):
            problems["prediction unreadable for ground truth"] = problems.get("prediction unreadable for ground truth", 0) + 1
            continue
        if len(rows) != len(labels):
            problems["ground truth rows differ from prediction rows"] = problems.get("ground truth rows differ from prediction rows", 0) + 1
            continue
        matched.extend((p, label, truth_label) for (p, label), truth_label in zip(rows, labels))
    return np.array(matched, dtype=float).reshape(-1, 3)


def _metrics(probability: np.ndarray, predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    tp = float(np.sum((predicted == 1) & (actual == 1)))
    fp = float(np.sum((predicted == 1) & (actual == 0)))
    fn = float(np.sum((predicted == 0) & (actual == 1)))
    tn = float(np.sum((predicted == 0) & (actual == 0)))
    n = len(actual)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    positives, negatives = actual.sum(), n - actual.sum()
    if positives and negatives:
        from scipy.stats import rankdata  # only with ground truth: scipy.stats is slow to import

        ranks = rankdata(probability)
        auc = float((ranks[actual == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))
    else:
        auc = float("nan")
    return {
        "accuracy": (tp + tn) / n,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "auc": auc,
        "true_positive_rate": recall,
        "true_negative_rate": tn / (tn + fp) if tn + fp else 0.0,
        "false_positive_rate": fp / (fp + tn) if fp + tn else 0.0,
        "false_negative_rate": fn / (fn + tp) if fn + tp else 0.0,
    }


def _spread(values: list[float]) -> float:
    """Standard deviation of the defined values; NaN when none is (AUC of samples with one class only)."""
    finite = [value for value in values if np.isfinite(value)]
    return float(np.std(finite)) if finite else float("nan")


def evaluate(matched: np.ndarray, seed: int = 0) -> tuple[dict[str, tuple[float, float]], dict[str, dict[str, int]]]:
    """Metrics as (value, bootstrap standard deviation) and the confusion matrix (actual -> predicted -> count)."""
    probability, predicted, actual = matched[:, 0], matched[:, 1], matched[:, 2]
    values = _metrics(probability, predicted, actual)
    rng = np.random.default_rng(seed)
    size = min(len(actual), BOOTSTRAP_ROWS)
    samples = [_metrics(*matched[rng.integers(0, len(actual), size)].T) for _ in range(BOOTSTRAP_ROUNDS)]
    metrics = {name: (value, _spread([s[name] for s in samples])) for name, value in values.items()}
    confusion = {str(a): {str(p): int(np.sum((actual == a) & (predicted == p))) for p in (0, 1)} for a in (0, 1)}
    return metrics, confusion


def violations(metrics: dict[str, tuple[float, float]], constraints: dict[str, ModelQualityConstraint]) -> list[Violation]:
    out = []
    for name, constraint in constraints.items():
        if name in metrics and np.isfinite(metrics[name][0]) and constraint.is_violated_by(metrics[name][0]):
            value = metrics[name][0]
            out.append(Violation(name, constraint.comparison_operator, f"Metric {name} with {value:.6g} was {constraint.comparison_operator} '{constraint.threshold}'"))
    return out


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
