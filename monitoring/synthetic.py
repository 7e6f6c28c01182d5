"""Synthetic traffic for tests, the benchmark and demos: a churn-like data set and its capture.

Ten numeric and two categorical features, a logistic "model" for the output, and drift
injected into chosen features on request. Capture is written with monitoring.capture in
SageMaker's hourly folder layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas

from monitoring.capture import CapturedPayload, CaptureRecord, file_name, hour_folder

NUMERIC = [f"f{i}" for i in range(10)]
CATEGORICAL = {"plan": (["basic", "plus", "pro"], [0.5, 0.3, 0.2]), "region": (["eu", "us", "apac", "latam"], [0.4, 0.3, 0.2, 0.1])}
FEATURES = NUMERIC + list(CATEGORICAL)
_WEIGHTS = np.linspace(-0.6, 0.6, len(NUMERIC))


def frame(rows: int, seed: int = 0, drift: Sequence[str] = ()) -> pandas.DataFrame:
    """`rows` rows of the features; features named in `drift` are shifted (numeric) or re-weighted (categorical)."""
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {}
    for i, name in enumerate(NUMERIC):
        if i % 3 == 0:
            values = rng.integers(0, 100, rows).astype(float)
        elif i % 3 == 1:
            values = rng.gamma(2.0, 10.0 + i, rows).round(3)
        else:
            values = rng.normal(i * 5.0, 1.0 + i, rows).round(3)
        if name in drift:  # half a spread to the right: a clear drift, not noise
            values = values + 0.5 * float(np.std(values)) if i % 3 else values + 40
        columns[name] = values
    for name, (values, weights) in CATEGORICAL.items():
        columns[name] = rng.choice(values, rows, p=list(reversed(weights)) if name in drift else weights)
    return pandas.DataFrame(columns)


def predict(data: pandas.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(probability, label) of a fixed logistic model of the numeric features."""
    numeric = data[NUMERIC].to_numpy(dtype=float)
    mean, std = _reference()
    score = ((numeric - mean) / std) @ _WEIGHTS
    probability = 1.0 / (1.0 + np.exp(-score))
    return probability.round(6), (probability >= 0.5).astype(int)


_SCALE: list[np.ndarray] = []


def _reference() -> tuple[np.ndarray, np.ndarray]:
    """The model's fixed standardization, from undrifted data (so that drift moves predictions)."""
    if not _SCALE:
        reference = frame(10_000, seed=12345)[NUMERIC].to_numpy(dtype=float)
        _SCALE.extend([reference.mean(axis=0), reference.std(axis=0) + 1e-9])
    return _SCALE[0], _SCALE[1]


def csv_rows(data: pandas.DataFrame) -> list[str]:
    """Each row as a CSV line without header, in column order."""
    columns = [data[c].astype(str).tolist() for c in data.columns]
    return [",".join(row) for row in zip(*columns)]


def capture_lines(data: pandas.DataFrame, start: datetime, seconds_apart: float = 0.01, ids: bool = False):
    """(hour, line) for each row, as SageMaker captures a CSV request and response."""
    probability, label = predict(data)
    for i, text in enumerate(csv_rows(data)):
        at = start + timedelta(seconds=i * seconds_apart)
        record = CaptureRecord.new(
            CapturedPayload(content_type="text/csv", data=text, encoding="CSV"),
            CapturedPayload(content_type="text/csv", data=f"{probability[i]},{label[i]}", encoding="CSV"),
            inference_id=f"req-{i}" if ids else None, at=at,
        )
        yield at, record


def write_capture(root: Path, data: pandas.DataFrame, start: datetime | None = None, records_per_file: int = 20_000,
                  endpoint: str = "churn-endpoint", variant: str = "AllTraffic", seconds_apart: float = 0.01) -> list[CaptureRecord]:
    """Writes the rows as capture files under root/<endpoint>/<variant>/yyyy/mm/dd/hh/; returns the records (small data only)."""
    start = start or datetime(2026, 1, 2, 3, 0, tzinfo=timezone.utc)
    written: list[CaptureRecord] = []
    handle, count, hour = None, 0, None
    try:
        for at, record in capture_lines(data, start, seconds_apart):
            if handle is None or count >= records_per_file or at.replace(minute=0, second=0, microsecond=0) != hour:
                if handle:
                    handle.close()
                hour = at.replace(minute=0, second=0, microsecond=0)
                folder = Path(root) / hour_folder(endpoint, variant, at)
                folder.mkdir(parents=True, exist_ok=True)
                handle, count = open(folder / file_name(at), "wb"), 0
            handle.write(record.to_line())
            count += 1
            if len(data) <= 100_000:
                written.append(record)
    finally:
        if handle:
            handle.close()
    return written
