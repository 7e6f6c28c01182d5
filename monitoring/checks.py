"""Data-quality constraint checks, as Model Monitor evaluates constraints.json.

Six check types (shared/DESIGN.md): data_type_check, completeness_check,
baseline_drift_check, missing_column_check, extra_column_check, categorical_values_check.
The descriptions read like the prebuilt analyzer's.
"""

from __future__ import annotations

from monitoring.drift import FeatureDrift
from monitoring.formats import Constraints, FeatureConstraints, Violation
from monitoring.window import FrameSide, NumericState, StringState


def _requirement(value: float) -> str:
    return f"Value: {value} does not meet the constraint requirement! "


def _enabled(feature: FeatureConstraints, constraints: Constraints, key: str = "evaluate_constraints") -> bool:
    setting = feature.overrides.get(key, getattr(constraints.monitoring_config, key))
    return str(setting) != "Disabled"


def side_violations(side: FrameSide, constraints: Constraints, drift: dict[str, FeatureDrift]) -> list[Violation]:
    """The violations of one side of the traffic (input features, or the model's output)."""
    if constraints.monitoring_config.evaluate_constraints == "Disabled" or side.columns.rows == 0:
        return []
    config = constraints.monitoring_config
    violations: list[Violation] = []
    rows = side.columns.rows
    for name, state in zip(side.names, side.states):
        feature = constraints.feature(name)
        if feature is None or not _enabled(feature, constraints):
            continue
        present = state.present + (state.wrong_type if isinstance(state, NumericState) else 0)
        if isinstance(state, NumericState) and present:
            right_type = (present - state.wrong_type) / present
            if right_type < config.datatype_check_threshold:
                violations.append(Violation(name, "data_type_check", _requirement(right_type)))
        completeness = present / rows
        if completeness < feature.completeness:
            violations.append(Violation(name, "completeness_check", _requirement(completeness)))
        if isinstance(state, StringState) and feature.domains is not None and state.present:
            domain = set(feature.domains)
            inside = sum(count for value, count in state.counts.items() if value in domain) / state.present
            if inside < config.domain_content_threshold:
                violations.append(Violation(name, "categorical_values_check", _requirement(inside)))
        result = drift.get(name)
        if result is not None and result.drifted and config.distribution_constraints.perform_comparison != "Disabled":
            violations.append(Violation(name, "baseline_drift_check", f"Baseline drift distance: {result.distance:.6g} exceeds threshold: {result.threshold}"))
        if side.columns.absent.get(name):
            violations.append(Violation(name, "missing_column_check", f"There are missing columns in current dataset: {side.columns.absent[name]} of {rows} rows had no value for {name}"))
    if side.columns.extra_columns:
        violations.append(Violation("Extra columns", "extra_column_check", f"There are extra columns in current dataset: {side.columns.extra_columns} of {rows} rows had more than the baseline's {len(side.names)} columns"))
    return violations
