"""Drift between a baseline's and a window's distributions, feature by feature.

Numeric features: L-infinity between the two KLL sketches' CDFs (the KS statistic), its
"Robust" form, PSI over the baseline's deciles and the KS p-value. String features:
L-infinity between category frequencies, PSI over categories, chi-squared p-value.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as scipy_stats

from monitoring.formats import DistributionConstraints, FeatureStatistics
from monitoring.multivariate import PcaModel
from monitoring.sketches import WeightedCdf, linf_distance, robust_distance

PSI_FLOOR = 1e-4  # proportions are floored so that an empty bin has a large, finite PSI term


@dataclass
class FeatureDrift:
    name: str
    kind: str  # numeric | categorical
    baseline_count: int
    current_count: int
    linf_simple: float
    linf_robust: float
    psi: float
    p_value: float  # KS for numeric features, chi-squared for categorical ones
    p_value_test: str
    distance: float  # the distance the drift check compares with the threshold
    threshold: float
    drifted: bool

    def to_json(self) -> dict:
        return {key: (round(value, 6) if isinstance(value, float) and math.isfinite(value) else value) for key, value in asdict(self).items()}


def feature_drift(baseline: FeatureStatistics, current: FeatureStatistics, config: DistributionConstraints) -> FeatureDrift | None:
    """None when either side has no values to compare."""
    if baseline.is_numeric != current.is_numeric:
        return None
    if baseline.is_numeric:
        return _numeric(baseline, current, config)
    return _categorical(baseline, current, config)


def _numeric(baseline: FeatureStatistics, current: FeatureStatistics, config: DistributionConstraints) -> FeatureDrift | None:
    if baseline.sketch is None or current.sketch is None:
        return None
    before, after = WeightedCdf.from_layout(baseline.sketch), WeightedCdf.from_layout(current.sketch)
    if before.empty or after.empty:
        return None
    n, m = int(before.total), int(after.total)
    simple = linf_distance(before, after)
    robust = robust_distance(simple, n, m)
    edges = np.unique(before.quantiles(np.linspace(0.1, 0.9, 9)))
    psi = _psi(np.diff(np.concatenate([[0.0], before.at(edges), [1.0]])), np.diff(np.concatenate([[0.0], after.at(edges), [1.0]])))
    p_value = float(scipy_stats.kstwobign.sf(simple * math.sqrt(n * m / (n + m))))
    distance = robust if config.comparison_method == "Robust" else simple
    return FeatureDrift(baseline.name, "numeric", n, m, simple, robust, psi, p_value, "kolmogorov_smirnov", distance, config.comparison_threshold, distance > config.comparison_threshold)


def _categorical(baseline: FeatureStatistics, current: FeatureStatistics, config: DistributionConstraints) -> FeatureDrift | None:
    categories = sorted(set(baseline.categories) | set(current.categories))
    before = np.array([baseline.categories.get(c, 0.0) for c in categories])
    after = np.array([current.categories.get(c, 0.0) for c in categories])
    if before.sum() == 0 or after.sum() == 0:
        return None
    n, m = int(before.sum()), int(after.sum())
    p, q = before / n, after / m
    simple = float(np.max(np.abs(p - q)))
    robust = robust_distance(simple, n, m)
    seen = (before + after) > 0
    try:
        p_value = float(scipy_stats.chi2_contingency(np.vstack([before[seen], after[seen]]))[1]) if seen.sum() > 1 else 1.0
    except ValueError:
        p_value = 1.0
    if config.categorical_drift_method == "ChiSquared":
        distance, drifted = p_value, p_value < config.categorical_comparison_threshold
    else:
        distance, drifted = simple, simple > config.categorical_comparison_threshold
    return FeatureDrift(baseline.name, "categorical", n, m, simple, robust, _psi(p, q), p_value, "chi_squared", distance, config.categorical_comparison_threshold, drifted)


def _psi(expected: np.ndarray, actual: np.ndarray) -> float:
    expected, actual = np.maximum(expected, PSI_FLOOR), np.maximum(actual, PSI_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def multivariate_drift(model: PcaModel, current_errors: FeatureStatistics, threshold: float) -> dict:
    """The window's PCA reconstruction error against the baseline's: a ratio of means and an L-inf distance."""
    before, after = WeightedCdf.from_layout(model.baseline_errors), WeightedCdf.from_layout(current_errors.sketch)
    if after.empty:
        return {"method": "pca_reconstruction_error", "features": model.features, "rows": 0, "drifted": False}
    simple = linf_distance(before, after)
    robust = robust_distance(simple, int(before.total), int(after.total))
    score = current_errors.mean / model.baseline_mean_error if model.baseline_mean_error > 0 else math.inf
    return {
        "method": "pca_reconstruction_error",
        "features": model.features,
        "components": int(model.components.shape[0]),
        "rows": int(after.total),
        "baseline_mean_error": round(model.baseline_mean_error, 6),
        "current_mean_error": round(float(current_errors.mean), 6),
        "score": round(score, 6),
        "linf_simple": round(simple, 6),
        "linf_robust": round(robust, 6),
        "threshold": threshold,
        "drifted": robust > threshold,
    }
