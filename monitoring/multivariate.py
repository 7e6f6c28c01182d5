"""Multivariate drift: the reconstruction error of a PCA fitted on the baseline.

Drift in how features move together (not in any one feature's distribution) raises the
error with which the baseline's principal components reconstruct a row. The baseline
keeps the PCA and the distribution of its own rows' errors; a window's score is its mean
error over the baseline's mean error (1.0 = as in training).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monitoring.formats import Sketch, read_json, write_json
from monitoring.sketches import new_sketch, to_layout

FILE = "multivariate.json"
EXPLAINED_VARIANCE = 0.9
MAX_FIT_ROWS = 200_000


@dataclass
class PcaModel:
    features: list[str]
    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray  # (n_components, n_features), rows orthonormal
    baseline_mean_error: float
    baseline_errors: Sketch

    def errors(self, rows: np.ndarray) -> np.ndarray:
        """Squared reconstruction error per row; missing values count as the baseline's mean."""
        standardized = (rows - self.mean) / self.scale
        standardized = np.where(np.isnan(standardized), 0.0, standardized)
        projected = standardized @ self.components.T
        residual = standardized - projected @ self.components
        return np.einsum("ij,ij->i", residual, residual)


def fit(rows: np.ndarray, features: list[str], seed: int = 0) -> PcaModel | None:
    """A PCA keeping 90% of the variance (at most all but one component); None if fewer than 2 features."""
    if rows.shape[1] < 2 or rows.shape[0] < 3:
        return None
    if rows.shape[0] > MAX_FIT_ROWS:
        rows = rows[np.random.default_rng(seed).choice(rows.shape[0], MAX_FIT_ROWS, replace=False)]
    mean = np.nanmean(rows, axis=0)
    scale = np.nanstd(rows, axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    standardized = np.nan_to_num((rows - mean) / scale)
    _, singular, vt = np.linalg.svd(standardized, full_matrices=False)
    explained = np.cumsum(singular**2) / max(float(np.sum(singular**2)), 1e-12)
    keep = int(min(np.searchsorted(explained, EXPLAINED_VARIANCE) + 1, rows.shape[1] - 1))
    model = PcaModel(list(features), mean, scale, vt[:keep], 0.0, Sketch(0, 0.0, []))
    errors = model.errors(rows)
    sketch = new_sketch()
    sketch.update(errors)
    model.baseline_mean_error = float(errors.mean())
    model.baseline_errors = to_layout(sketch)
    return model


def write(path: Path, model: PcaModel) -> Path:
    return write_json(path, {
        "version": 1,
        "method": "pca_reconstruction_error",
        "features": model.features,
        "mean": model.mean.tolist(),
        "scale": model.scale.tolist(),
        "components": model.components.tolist(),
        "baseline_mean_error": model.baseline_mean_error,
        "baseline_errors": model.baseline_errors.to_json(),
    })


def read(path: Path) -> PcaModel | None:
    """The baseline's PCA, or None when the baseline has none (fewer than two numeric features)."""
    if not Path(path).is_file():
        return None
    raw = read_json(path, "multivariate baseline")
    try:
        return PcaModel(
            [str(f) for f in raw["features"]], np.asarray(raw["mean"], float), np.asarray(raw["scale"], float),
            np.asarray(raw["components"], float).reshape(-1, len(raw["features"])), float(raw["baseline_mean_error"]),
            Sketch.from_json(raw["baseline_errors"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path} is not a multivariate baseline: {error!r}") from None


__all__ = ["FILE", "PcaModel", "fit", "read", "write"]
