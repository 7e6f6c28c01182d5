"""Model Monitor's JSON files: the one place that reads and writes them.

statistics.json, constraints.json and constraint_violations.json in the layout SageMaker
Model Monitor writes today (shared/DESIGN.md, "File formats"); the model-quality statistics
and constraints; and mlship's own drift detail file. Readers also accept the older
constraints layout (`enable_comparisons`, `min_domain_mass`, overrides inside
`string_constraints`) that AWS's reference files still use. Writers always emit the current one.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from mlship.errors import UserError

STATISTICS_FILE = "statistics.json"
CONSTRAINTS_FILE = "constraints.json"
# The model's output on rows it was not trained on, in statistics.json's layout. Apart from
# statistics.json because AWS's analyzer reads that file against captured input only.
PREDICTION_STATISTICS_FILE = "prediction_statistics.json"
VIOLATIONS_FILE = "constraint_violations.json"
MODEL_QUALITY_STATISTICS_FILE = "model_quality_statistics.json"
MODEL_QUALITY_CONSTRAINTS_FILE = "model_quality_constraints.json"
MODEL_QUALITY_VIOLATIONS_FILE = "model_quality_constraint_violations.json"
DRIFT_FILE = "drift.json"
SUMMARY_FILE = "summary.json"

# The model's output as the feature schema names it: in a baseline, features by these names
# describe the predictions (prediction drift), not the model's input.
OUTPUT_FEATURES = ("probability", "label")
NUMERIC_TYPES = ("Integral", "Fractional")
INFERRED_TYPES = (*NUMERIC_TYPES, "String", "Unknown")
CHECK_TYPES = (
    "data_type_check",
    "completeness_check",
    "baseline_drift_check",
    "missing_column_check",
    "extra_column_check",
    "categorical_values_check",
)
COMPARISON_METHODS = ("Robust", "Simple")
CATEGORICAL_DRIFT_METHODS = ("LInfinity", "ChiSquared")
COMPARISON_OPERATORS = ("LessThanThreshold", "GreaterThanThreshold", "LessThanOrEqualToThreshold", "GreaterThanOrEqualToThreshold")


# ---------------------------------------------------------------- statistics.json


@dataclass
class Sketch:
    """A KLL sketch as Model Monitor serializes it: parameters and the items of each level.

    An item on level i stands for 2**i values of the data it summarizes.
    """

    k: int
    c: float
    levels: list[list[float]]

    def to_json(self) -> dict:
        return {"parameters": {"c": self.c, "k": float(self.k)}, "data": [list(map(float, level)) for level in self.levels]}

    @classmethod
    def from_json(cls, raw: dict) -> Sketch:
        parameters = raw.get("parameters", {})
        return cls(int(parameters.get("k", 2048)), float(parameters.get("c", 0.64)), [[float(x) for x in level] for level in raw.get("data", [])])


@dataclass
class Bucket:
    lower_bound: float
    upper_bound: float
    count: float


@dataclass
class FeatureStatistics:
    name: str
    inferred_type: str
    num_present: int
    num_missing: int
    # numeric features
    mean: float | None = None
    sum: float | None = None
    std_dev: float | None = None
    min: float | None = None
    max: float | None = None
    buckets: list[Bucket] = field(default_factory=list)
    sketch: Sketch | None = None
    # string features
    distinct_count: float | None = None
    categories: dict[str, float] = field(default_factory=dict)

    @property
    def is_numeric(self) -> bool:
        return self.inferred_type in NUMERIC_TYPES

    def to_json(self) -> dict:
        common = {"num_present": self.num_present, "num_missing": self.num_missing}
        out: dict[str, Any] = {"name": self.name, "inferred_type": self.inferred_type}
        if self.is_numeric:
            numeric: dict[str, Any] = {"common": common}
            for key in ("mean", "sum", "std_dev", "min", "max"):
                numeric[key] = _finite(getattr(self, key))
            kll: dict[str, Any] = {"buckets": [vars(bucket).copy() for bucket in self.buckets]}
            if self.sketch is not None:
                kll["sketch"] = self.sketch.to_json()
            numeric["distribution"] = {"kll": kll}
            out["numerical_statistics"] = numeric
        else:
            buckets = [{"value": value, "count": count} for value, count in self.categories.items()]
            out["string_statistics"] = {
                "common": common,
                "distinct_count": float(self.distinct_count if self.distinct_count is not None else len(self.categories)),
                "distribution": {"categorical": {"buckets": buckets}},
            }
        return out

    @classmethod
    def from_json(cls, raw: dict) -> FeatureStatistics:
        name, inferred = str(raw["name"]), str(raw.get("inferred_type", "Unknown"))
        if "numerical_statistics" in raw:
            numeric = raw["numerical_statistics"]
            kll = numeric.get("distribution", {}).get("kll", {})
            return cls(
                name, inferred if inferred in NUMERIC_TYPES else "Fractional",
                int(numeric.get("common", {}).get("num_present", 0)), int(numeric.get("common", {}).get("num_missing", 0)),
                mean=numeric.get("mean"), sum=numeric.get("sum"), std_dev=numeric.get("std_dev"),
                min=numeric.get("min"), max=numeric.get("max"),
                buckets=[Bucket(float(b["lower_bound"]), float(b["upper_bound"]), float(b["count"])) for b in kll.get("buckets", [])],
                sketch=Sketch.from_json(kll["sketch"]) if "sketch" in kll else None,
            )
        strings = raw.get("string_statistics", {})
        buckets = strings.get("distribution", {}).get("categorical", {}).get("buckets", [])
        return cls(
            name, inferred, int(strings.get("common", {}).get("num_present", 0)), int(strings.get("common", {}).get("num_missing", 0)),
            distinct_count=strings.get("distinct_count"),
            categories={str(b["value"]): float(b["count"]) for b in buckets},
        )


@dataclass
class Statistics:
    item_count: int
    features: list[FeatureStatistics]

    def feature(self, name: str) -> FeatureStatistics | None:
        return next((f for f in self.features if f.name == name), None)

    def to_json(self) -> dict:
        return {"version": 0.0, "dataset": {"item_count": self.item_count}, "features": [f.to_json() for f in self.features]}

    @classmethod
    def from_json(cls, raw: dict) -> Statistics:
        return cls(int(raw.get("dataset", {}).get("item_count", 0)), [FeatureStatistics.from_json(f) for f in raw.get("features", [])])


# ---------------------------------------------------------------- constraints.json


@dataclass
class DistributionConstraints:
    perform_comparison: str = "Enabled"
    comparison_threshold: float = 0.1
    comparison_method: str = "Robust"
    categorical_comparison_threshold: float = 0.1
    categorical_drift_method: str = "LInfinity"

    def to_json(self) -> dict:
        return vars(self).copy()

    @classmethod
    def from_json(cls, raw: dict) -> DistributionConstraints:
        defaults = cls()
        perform = raw.get("perform_comparison")
        if perform is None and "enable_comparisons" in raw:  # the old layout
            perform = "Enabled" if raw["enable_comparisons"] else "Disabled"
        constraints = cls(
            perform_comparison=str(perform or defaults.perform_comparison),
            comparison_threshold=float(raw.get("comparison_threshold", defaults.comparison_threshold)),
            comparison_method=str(raw.get("comparison_method", defaults.comparison_method)),
            categorical_comparison_threshold=float(raw.get("categorical_comparison_threshold", defaults.categorical_comparison_threshold)),
            categorical_drift_method=str(raw.get("categorical_drift_method", defaults.categorical_drift_method)),
        )
        _choose("comparison_method", constraints.comparison_method, COMPARISON_METHODS)
        _choose("categorical_drift_method", constraints.categorical_drift_method, CATEGORICAL_DRIFT_METHODS)
        return constraints


@dataclass
class MonitoringConfig:
    evaluate_constraints: str = "Enabled"
    emit_metrics: str = "Enabled"
    datatype_check_threshold: float = 1.0
    domain_content_threshold: float = 1.0
    distribution_constraints: DistributionConstraints = field(default_factory=DistributionConstraints)

    def to_json(self) -> dict:
        out = {k: v for k, v in vars(self).items() if k != "distribution_constraints"}
        out["distribution_constraints"] = self.distribution_constraints.to_json()
        return out

    @classmethod
    def from_json(cls, raw: dict) -> MonitoringConfig:
        defaults = cls()
        return cls(
            evaluate_constraints=str(raw.get("evaluate_constraints", defaults.evaluate_constraints)),
            emit_metrics=str(raw.get("emit_metrics", defaults.emit_metrics)),
            datatype_check_threshold=float(raw.get("datatype_check_threshold", defaults.datatype_check_threshold)),
            domain_content_threshold=float(raw.get("domain_content_threshold", defaults.domain_content_threshold)),
            distribution_constraints=DistributionConstraints.from_json(raw.get("distribution_constraints", {})),
        )


@dataclass
class FeatureConstraints:
    name: str
    inferred_type: str
    completeness: float = 1.0
    is_non_negative: bool | None = None  # numeric features only
    domains: list[str] | None = None  # string features only
    overrides: dict = field(default_factory=dict)  # monitoringConfigOverrides, kept as written

    def to_json(self) -> dict:
        out: dict[str, Any] = {"name": self.name, "inferred_type": self.inferred_type, "completeness": self.completeness}
        if self.is_non_negative is not None:
            out["num_constraints"] = {"is_non_negative": self.is_non_negative}
        if self.domains is not None:
            out["string_constraints"] = {"domains": list(self.domains)}
        out["monitoringConfigOverrides"] = dict(self.overrides)
        return out

    @classmethod
    def from_json(cls, raw: dict) -> FeatureConstraints:
        strings = raw.get("string_constraints") or {}
        overrides = raw.get("monitoringConfigOverrides") or raw.get("monitoring_config_overrides") or strings.get("monitoring_config_overrides") or {}
        numbers = raw.get("num_constraints") or {}
        return cls(
            name=str(raw["name"]),
            inferred_type=str(raw.get("inferred_type", "Unknown")),
            completeness=float(raw.get("completeness", 1.0)),
            is_non_negative=bool(numbers["is_non_negative"]) if "is_non_negative" in numbers else None,
            domains=[str(d) for d in strings["domains"]] if "domains" in strings else None,
            overrides=dict(overrides),
        )


@dataclass
class Constraints:
    features: list[FeatureConstraints]
    monitoring_config: MonitoringConfig = field(default_factory=MonitoringConfig)

    def feature(self, name: str) -> FeatureConstraints | None:
        return next((f for f in self.features if f.name == name), None)

    def to_json(self) -> dict:
        return {"version": 0.0, "features": [f.to_json() for f in self.features], "monitoring_config": self.monitoring_config.to_json()}

    @classmethod
    def from_json(cls, raw: dict) -> Constraints:
        return cls([FeatureConstraints.from_json(f) for f in raw.get("features", [])], MonitoringConfig.from_json(raw.get("monitoring_config", {})))


# ---------------------------------------------------------------- constraint_violations.json


@dataclass(frozen=True)
class Violation:
    feature_name: str
    constraint_check_type: str
    description: str

    def to_json(self) -> dict:
        return {"feature_name": self.feature_name, "constraint_check_type": self.constraint_check_type, "description": self.description}


def violations_to_json(violations: list[Violation]) -> dict:
    return {"violations": [v.to_json() for v in violations]}


def violations_from_json(raw: dict) -> list[Violation]:
    return [Violation(str(v.get("feature_name", "")), str(v["constraint_check_type"]), str(v.get("description", ""))) for v in raw.get("violations", [])]


# ---------------------------------------------------------------- model quality


@dataclass
class ModelQualityConstraint:
    threshold: float
    comparison_operator: str

    def is_violated_by(self, value: float) -> bool:
        """True when the value meets the operator (Model Monitor reports a violation then)."""
        return {
            "LessThanThreshold": value < self.threshold,
            "GreaterThanThreshold": value > self.threshold,
            "LessThanOrEqualToThreshold": value <= self.threshold,
            "GreaterThanOrEqualToThreshold": value >= self.threshold,
        }[self.comparison_operator]


def model_quality_constraints_to_json(constraints: dict[str, ModelQualityConstraint]) -> dict:
    return {"version": 0.0, "binary_classification_constraints": {name: vars(c).copy() for name, c in constraints.items()}}


def model_quality_constraints_from_json(raw: dict) -> dict[str, ModelQualityConstraint]:
    out = {}
    for name, constraint in raw.get("binary_classification_constraints", {}).items():
        operator = str(constraint.get("comparison_operator", ""))
        _choose(f"binary_classification_constraints.{name}.comparison_operator", operator, COMPARISON_OPERATORS)
        out[name] = ModelQualityConstraint(float(constraint["threshold"]), operator)
    return out


def model_quality_statistics_to_json(item_count: int, metrics: dict[str, tuple[float, float]], confusion: dict[str, dict[str, int]], evaluation_time: str) -> dict:
    """Model Monitor's model-quality statistics: each metric as {value, standard_deviation}."""
    body: dict[str, Any] = {"confusion_matrix": confusion}
    for name, (value, std) in metrics.items():
        body[name] = {"value": _finite(value), "standard_deviation": _finite(std)}
    return {"version": 0.0, "dataset": {"item_count": item_count, "evaluation_time": evaluation_time}, "binary_classification_metrics": body}


def model_quality_metrics_from_json(raw: dict) -> dict[str, float]:
    body = raw.get("binary_classification_metrics", {})
    return {k: v["value"] for k, v in body.items() if isinstance(v, dict) and "value" in v}


# ---------------------------------------------------------------- files


def read_json(path: Path, what: str) -> dict:
    """A JSON object from a file; a missing or malformed file is a UserError naming it."""
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except (OSError, ValueError) as error:
        raise UserError(f"{what} {path} is not readable JSON: {error}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{what} {path} is not a JSON object")
    return raw


def write_json(path: Path, document: dict) -> Path:
    """Writes atomically (temp file + rename), so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE))
    os.replace(temporary, path)
    return path


def read_statistics(path: Path) -> Statistics:
    try:
        return Statistics.from_json(read_json(path, "statistics file"))
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"statistics file {path} is not in Model Monitor's layout: {error!r}") from None


def write_statistics(path: Path, statistics: Statistics) -> Path:
    return write_json(path, statistics.to_json())


def read_constraints(path: Path) -> Constraints:
    try:
        return Constraints.from_json(read_json(path, "constraints file"))
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"constraints file {path} is not in Model Monitor's layout: {error!r}") from None


def write_constraints(path: Path, constraints: Constraints) -> Path:
    return write_json(path, constraints.to_json())


def read_violations(path: Path) -> list[Violation]:
    return violations_from_json(read_json(path, "violations file"))


def write_violations(path: Path, violations: list[Violation]) -> Path:
    return write_json(path, violations_to_json(violations))


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity; Model Monitor writes such values as absent (null)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _choose(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{key} is {value!r}; allowed: {', '.join(allowed)}")


def write_model_quality_violations(path: Path, violations: list[Violation]) -> Path:
    """Model-quality violations name the metric (`metric_name`), as Model Monitor's model-quality job writes them."""
    return write_json(path, {"violations": [
        {"constraint_check_type": v.constraint_check_type, "description": v.description, "metric_name": v.feature_name} for v in violations]})
