"""Drift between a baseline's and a window's distributions, feature by feature.

Numeric features: L-infinity between the two KLL sketches' CDFs (the KS statistic), its
"Robust" form, PSI over the baseline's deciles and the KS p-value. String features:
L-infinity between category frequencies, PSI over categories, chi-squared p-value.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

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
    p_value = kolmogorov_sf(simple * math.sqrt(n * m / (n + m)))
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
    p_value = chi_squared_p_value(before, after)
    if config.categorical_drift_method == "ChiSquared":
        distance, drifted = p_value, p_value < config.categorical_comparison_threshold
    else:
        distance, drifted = simple, simple > config.categorical_comparison_threshold
    return FeatureDrift(baseline.name, "categorical", n, m, simple, robust, _psi(p, q), p_value, "chi_squared", distance, config.categorical_comparison_threshold, drifted)


# scipy.stats costs over a second of CPU to import, more than a monitoring window of
# 100,000 records; these two distributions are all the monitor needs from it.


def kolmogorov_sf(x: float) -> float:
    """P(K > x) for the Kolmogorov distribution: the asymptotic two-sample KS p-value."""
    if x <= 0:
        return 1.0
    if x < 1.0:
        tail = sum(math.exp(-((2 * k - 1) ** 2) * math.pi**2 / (8 * x * x)) for k in range(1, 50))
        return min(1.0, max(0.0, 1.0 - math.sqrt(2 * math.pi) / x * tail))
    return min(1.0, max(0.0, 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * x * x) for k in range(1, 100))))


def chi_squared_p_value(before: np.ndarray, after: np.ndarray) -> float:
    """Pearson's chi-squared test of a 2 x K table of counts (no continuity correction)."""
    table = np.vstack([before, after])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    return _gamma_q((table.shape[1] - 1) / 2.0, statistic / 2.0)


def _gamma_q(a: float, x: float) -> float:
    """The regularized upper incomplete gamma function Q(a, x) (series below a+1, continued fraction above)."""
    if x <= 0:
        return 1.0
    scale = math.exp(-x + a * math.log(x) - math.lgamma(a))
    if x < a + 1:
        term = total = 1.0 / a
        denominator = a
        for _ in range(10_000):
            denominator += 1
            term *= x / denominator
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * scale)
    tiny = 1e-300
    b, c, d = x + 1 - a, 1.0 / tiny, 1.0 / (x + 1 - a)
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return min(1.0, scale * h)


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
