"""KLL sketches: building them (Apache DataSketches) and reading their distributions.

Model Monitor stores a feature's distribution as a KLL sketch's retained items, level by
level (an item on level i stands for 2**i values). DataSketches' KLL sketch has the same
structure, so a sketch built here serializes to that layout exactly and any such sketch,
ours or AWS's, reads back as a weighted sample whose CDF is the sketch's CDF.
"""

from __future__ import annotations

import math

import numpy as np
from datasketches import kll_doubles_sketch

from monitoring.formats import Bucket, Sketch

SKETCH_K = 2048  # Deequ's (and so Model Monitor's) sketch size
# DataSketches compacts with a fixed shrinking factor of 2/3; c records what the sketch really used.
SKETCH_C = 2.0 / 3.0
BUCKET_COUNT = 10


def new_sketch() -> kll_doubles_sketch:
    return kll_doubles_sketch(SKETCH_K)


def levels(sketch: kll_doubles_sketch) -> list[np.ndarray]:
    """The sketch's retained items, level by level, read from its serialized form.

    DataSketches' Python iterator reports weight 1 for every item after a merge that
    leaves level 0 empty, so the levels come from the serialization (KLL format, serial
    version 2: an 8-byte preamble; then n, min_k, the level count and the level offsets;
    then min, max and the retained items).
    """
    blob = sketch.serialize()
    flags = blob[3]
    if flags & 1:  # empty
        return []
    if flags & 4:  # a single item: no level offsets, no min and max
        return [np.frombuffer(blob, dtype="<f8", count=1, offset=8).copy()]
    num_levels = blob[18]
    offsets = np.frombuffer(blob, dtype="<u4", count=num_levels, offset=20).astype(np.int64)
    items_at = 20 + 4 * num_levels + 16  # after the level offsets, min and max
    retained = sketch.num_retained
    items = np.frombuffer(blob, dtype="<f8", count=retained, offset=items_at)
    bounds = np.append(offsets - offsets[0], retained)
    return [items[bounds[i]:bounds[i + 1]].copy() for i in range(num_levels)]


def to_layout(sketch: kll_doubles_sketch) -> Sketch:
    """Model Monitor's layout: the items of level 0, level 1, ... (an item on level i weighs 2**i)."""
    return Sketch(SKETCH_K, SKETCH_C, [sorted(level.tolist()) for level in levels(sketch)])


class WeightedCdf:
    """The step CDF of a sketch's retained items and their weights."""

    def __init__(self, items: np.ndarray, weights: np.ndarray):
        order = np.argsort(items, kind="stable")
        self.items = items[order]
        cumulative = np.cumsum(weights[order])
        self.total = float(cumulative[-1]) if len(cumulative) else 0.0
        self.cumulative = cumulative / self.total if self.total else cumulative

    @classmethod
    def from_layout(cls, sketch: Sketch) -> WeightedCdf:
        items = [np.asarray(level, dtype=float) for level in sketch.levels]
        weights = [np.full(len(level), 2.0**i) for i, level in enumerate(sketch.levels)]
        return cls(np.concatenate(items or [np.empty(0)]), np.concatenate(weights or [np.empty(0)]))

    @classmethod
    def from_sketch(cls, sketch: kll_doubles_sketch) -> WeightedCdf:
        return cls.from_layout(to_layout(sketch))

    @property
    def empty(self) -> bool:
        return self.total == 0

    def at(self, points: np.ndarray) -> np.ndarray:
        """P(X <= point) for each point."""
        index = np.searchsorted(self.items, points, side="right")
        padded = np.concatenate([[0.0], self.cumulative])
        return padded[index]

    def quantiles(self, ranks: np.ndarray) -> np.ndarray:
        index = np.searchsorted(self.cumulative, ranks, side="left").clip(0, len(self.items) - 1)
        return self.items[index]


def linf_distance(a: WeightedCdf, b: WeightedCdf) -> float:
    """The largest gap between two CDFs (the two-sample Kolmogorov-Smirnov statistic)."""
    if a.empty or b.empty:
        return 0.0
    points = np.concatenate([a.items, b.items])
    return float(np.max(np.abs(a.at(points) - b.at(points))))


def robust_distance(distance: float, n: int, m: int, c: float = 1.8) -> float:
    """Model Monitor's "Robust" distance: L-inf minus the KS critical value c*sqrt((n+m)/(n*m)), floored at 0."""
    if n <= 0 or m <= 0:
        return 0.0
    return max(0.0, distance - c * math.sqrt((n + m) / (n * m)))


def equal_width_buckets(cdf: WeightedCdf, low: float, high: float, count: int) -> list[Bucket]:
    """BUCKET_COUNT equal-width buckets between min and max with the sketch's counts."""
    if cdf.empty:
        return []
    if high <= low:
        return [Bucket(low, high, count)]
    edges = np.linspace(low, high, BUCKET_COUNT + 1)
    below = cdf.at(edges) * count
    below[0] = 0.0  # the first bucket includes its lower bound
    below[-1] = count
    counts = np.diff(below)
    return [Bucket(float(edges[i]), float(edges[i + 1]), float(round(counts[i]))) for i in range(BUCKET_COUNT)]
