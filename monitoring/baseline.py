"""Baselines: statistics.json and constraints.json from a training data set.

The files are Model Monitor's current layout, so the same baseline drives AWS's own
analyzer on a SageMaker schedule and mlship's monitor everywhere else. Beside them go
multivariate.json, the PCA model the monitor's multivariate drift score needs, and (from
`mlship model package`) prediction_statistics.json, the model's output distribution.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas

from mlship.errors import UserError
from monitoring import multivariate
from monitoring.formats import (
    CONSTRAINTS_FILE,
    OUTPUT_FEATURES,
    PREDICTION_STATISTICS_FILE,
    STATISTICS_FILE,
    Constraints,
    FeatureConstraints,
    FeatureStatistics,
    MonitoringConfig,
    Statistics,
    write_constraints,
    write_statistics,
)
from monitoring.sketches import WeightedCdf, equal_width_buckets, new_sketch, to_layout

MAX_DOMAIN = 10_000  # a string feature with more distinct values than this is not categorical


def write_baseline(frame: pandas.DataFrame, out_dir: Path, exclude: Sequence[str] = ()) -> tuple[Path, Path]:
    """Writes statistics.json and constraints.json (and multivariate.json) for the frame's columns.

    Numeric columns become Integral (integer dtype) or Fractional (float dtype) features with a KLL
    sketch and 10 equal-width buckets; every other column is a String feature with its
    categories. `exclude` names columns to leave out, such as the label. Returns the paths
    of statistics.json and constraints.json.
    """
    unknown = sorted(set(exclude) - set(map(str, frame.columns)))
    if unknown:
        raise UserError(f"cannot exclude {', '.join(unknown)}: no such column; columns are {', '.join(map(str, frame.columns))}")
    columns = [c for c in frame.columns if str(c) not in set(exclude)]
    if not columns:
        raise UserError("the data has no columns left to baseline")
    if len(frame) == 0:
        raise UserError("the data has no rows; a baseline needs at least one")
    statistics = Statistics(len(frame), [feature_statistics(str(c), frame[c]) for c in columns])
    constraints = Constraints([suggest_constraints(f) for f in statistics.features], MonitoringConfig())
    out_dir = Path(out_dir)
    statistics_path = write_statistics(out_dir / STATISTICS_FILE, statistics)
    constraints_path = write_constraints(out_dir / CONSTRAINTS_FILE, constraints)
    numeric = [f.name for f in statistics.features if f.is_numeric and f.name not in OUTPUT_FEATURES]
    model = multivariate.fit(_numeric_matrix(frame, numeric), numeric)
    if model is not None:
        multivariate.write(out_dir / multivariate.FILE, model)
    return statistics_path, constraints_path


def write_prediction_baseline(probability: np.ndarray, label: np.ndarray, out_dir: Path) -> Path:
    """Writes prediction_statistics.json: the distribution of the model's output (probability, label)
    that prediction drift is measured against. Returns its path."""
    frame = pandas.DataFrame({"probability": np.asarray(probability, dtype=float), "label": np.asarray(label, dtype=int)})
    if len(frame) == 0:
        raise UserError("no predictions to baseline; a prediction baseline needs at least one")
    statistics = Statistics(len(frame), [feature_statistics(name, frame[name]) for name in OUTPUT_FEATURES])
    return write_statistics(Path(out_dir) / PREDICTION_STATISTICS_FILE, statistics)


def feature_statistics(name: str, column: pandas.Series) -> FeatureStatistics:
    """Integer and boolean columns are Integral, float columns Fractional (as Deequ infers
    from their CSV text: `10.0` is fractional), anything else String."""
    integral = pandas.api.types.is_bool_dtype(column) or pandas.api.types.is_integer_dtype(column)
    if integral or pandas.api.types.is_numeric_dtype(column):
        return _numeric_statistics(name, column.astype("float64").to_numpy(na_value=np.nan), integral)
    return _string_statistics(name, column)


def suggest_constraints(feature: FeatureStatistics) -> FeatureConstraints:
    """Model Monitor's suggestions: observed completeness, non-negativity, the seen categories."""
    total = feature.num_present + feature.num_missing
    completeness = feature.num_present / total if total else 1.0
    if feature.is_numeric:
        non_negative = feature.min is None or feature.min >= 0
        return FeatureConstraints(feature.name, feature.inferred_type, completeness, is_non_negative=non_negative)
    return FeatureConstraints(feature.name, feature.inferred_type, completeness, domains=sorted(feature.categories))


def _numeric_statistics(name: str, values: np.ndarray, integral: bool) -> FeatureStatistics:
    present = values[~np.isnan(values)]
    feature = FeatureStatistics(name, "Integral" if integral else "Fractional", int(len(present)), int(len(values) - len(present)))
    if len(present) == 0:
        feature.sum, feature.buckets, feature.sketch = 0.0, [], to_layout(new_sketch())
        return feature
    sketch = new_sketch()
    sketch.update(present)
    feature.mean, feature.sum = float(present.mean()), float(present.sum())
    feature.std_dev = float(present.std())  # population standard deviation, as Deequ computes it
    feature.min, feature.max = float(present.min()), float(present.max())
    feature.sketch = to_layout(sketch)
    feature.buckets = equal_width_buckets(WeightedCdf.from_sketch(sketch), feature.min, feature.max, len(present))
    return feature


def _string_statistics(name: str, column: pandas.Series) -> FeatureStatistics:
    present = column.dropna().astype(str)
    counts = present.value_counts()
    if len(counts) > MAX_DOMAIN:
        counts = counts.iloc[:MAX_DOMAIN]
    categories = {str(value): float(count) for value, count in sorted(counts.items())}
    return FeatureStatistics(
        name, "String", int(len(present)), int(len(column) - len(present)),
        distinct_count=float(present.nunique()), categories=categories,
    )


def _numeric_matrix(frame: pandas.DataFrame, names: list[str]) -> np.ndarray:
    if not names:
        return np.empty((len(frame), 0))
    lookup = {str(c): c for c in frame.columns}
    return np.column_stack([frame[lookup[n]].astype("float64").to_numpy(na_value=np.nan) for n in names])
