"""Model Monitor's files: AWS's reference files read back, ours written in the same structure."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from mlship.errors import UserError
from monitoring import formats
from monitoring.baseline import write_baseline
from monitoring.sketches import SKETCH_K, WeightedCdf, linf_distance


def _shape(value):
    """The structure of a JSON document: keys and value types, not values."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__


def test_reads_and_rewrites_aws_statistics_with_the_same_structure(monitor_fixtures, tmp_path):
    path = monitor_fixtures / "statistics.json"
    statistics = formats.read_statistics(path)
    assert statistics.item_count == 418
    [message] = statistics.features
    assert (message.inferred_type, message.num_present, message.categories) == ("String", 418, {"preproc-not-YET-supported-for-csv-json": 418})
    written = formats.write_statistics(tmp_path / "statistics.json", statistics)
    assert _shape(json.loads(written.read_text())) == _shape(json.loads(path.read_text()))


def test_reads_old_constraints_layout_and_writes_the_current_one(monitor_fixtures, tmp_path):
    constraints = formats.read_constraints(monitor_fixtures / "constraints.json")
    assert [f.name for f in constraints.features] == ["message", "second_message"]
    assert constraints.features[0].domains == ["preproc-not-YET-supported-for-csv-json"]
    assert constraints.features[0].overrides == {"evaluate_constraints": "Enabled", "emit_metrics": "Enabled"}
    distribution = constraints.monitoring_config.distribution_constraints
    assert (distribution.perform_comparison, distribution.comparison_threshold) == ("Enabled", 1.0)
    written = json.loads(formats.write_constraints(tmp_path / "c.json", constraints).read_text())
    assert set(written["monitoring_config"]["distribution_constraints"]) == {
        "perform_comparison", "comparison_threshold", "comparison_method", "categorical_comparison_threshold", "categorical_drift_method"}
    assert written["features"][0]["monitoringConfigOverrides"] == {"evaluate_constraints": "Enabled", "emit_metrics": "Enabled"}
    assert formats.read_constraints(tmp_path / "c.json") == constraints


def test_reads_and_rewrites_aws_violations_with_the_same_structure(monitor_fixtures, tmp_path):
    path = monitor_fixtures / "constraint_violations.json"
    violations = formats.read_violations(path)
    assert len(violations) == 7
    assert {v.constraint_check_type for v in violations} <= set(formats.CHECK_TYPES)
    written = formats.write_violations(tmp_path / "v.json", violations)
    assert json.loads(written.read_text()) == json.loads(path.read_text())


def test_malformed_files_are_user_errors_naming_the_file(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="bad.json"):
        formats.read_statistics(tmp_path / "bad.json")
    (tmp_path / "c.json").write_text(json.dumps({"monitoring_config": {"distribution_constraints": {"comparison_method": "Fancy"}}}))
    with pytest.raises(UserError, match="Robust, Simple"):
        formats.read_constraints(tmp_path / "c.json")


@pytest.fixture
def training():
    rng = np.random.default_rng(7)
    n = 20_000
    frame = pd.DataFrame({
        "tenure": rng.integers(0, 72, n),
        "charges": rng.gamma(2.0, 30.0, n),
        "delta": rng.normal(0, 1, n),
        "plan": rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2]),
        "churned": rng.integers(0, 2, n),
    })
    frame.loc[:99, "charges"] = np.nan
    return frame


def test_baseline_has_model_monitor_layout_and_defaults(training, tmp_path):
    statistics_path, constraints_path = write_baseline(training, tmp_path, exclude=["churned"])
    statistics = json.loads(statistics_path.read_text())
    assert statistics["dataset"] == {"item_count": 20_000}
    by_name = {f["name"]: f for f in statistics["features"]}
    assert list(by_name) == ["tenure", "charges", "delta", "plan"]
    assert by_name["tenure"]["inferred_type"] == "Integral" and by_name["charges"]["inferred_type"] == "Fractional"
    charges = by_name["charges"]["numerical_statistics"]
    assert charges["common"] == {"num_present": 19_900, "num_missing": 100}
    assert charges["mean"] == pytest.approx(training["charges"].mean())
    assert charges["std_dev"] == pytest.approx(training["charges"].std(ddof=0))
    kll = charges["distribution"]["kll"]
    assert len(kll["buckets"]) == 10 and sum(b["count"] for b in kll["buckets"]) == 19_900
    assert kll["buckets"][0]["lower_bound"] == charges["min"] and kll["buckets"][-1]["upper_bound"] == charges["max"]
    assert kll["sketch"]["parameters"]["k"] == SKETCH_K
    assert sum(len(level) * 2**i for i, level in enumerate(kll["sketch"]["data"])) == 19_900  # weights add up to n
    plan = by_name["plan"]["string_statistics"]
    assert plan["distinct_count"] == 3 and sum(b["count"] for b in plan["distribution"]["categorical"]["buckets"]) == 20_000

    constraints = json.loads(constraints_path.read_text())
    features = {f["name"]: f for f in constraints["features"]}
    assert features["charges"]["completeness"] == pytest.approx(0.995)
    assert features["delta"]["num_constraints"] == {"is_non_negative": False}
    assert features["tenure"]["num_constraints"] == {"is_non_negative": True}
    assert features["plan"]["string_constraints"]["domains"] == ["basic", "plus", "pro"]
    distribution = constraints["monitoring_config"]["distribution_constraints"]
    assert (distribution["comparison_method"], distribution["comparison_threshold"], distribution["categorical_drift_method"]) == ("Robust", 0.1, "LInfinity")
    assert (tmp_path / "multivariate.json").is_file()


def test_baseline_sketch_cdf_matches_the_data_within_the_sketch_error(training, tmp_path):
    write_baseline(training, tmp_path, exclude=["churned"])
    sketch = formats.read_statistics(tmp_path / "statistics.json").feature("delta").sketch
    shifted = training["delta"].to_numpy() + 0.3
    exact = ks_2samp(training["delta"], shifted).statistic
    other = WeightedCdf(np.sort(shifted), np.ones(len(shifted)))
    assert linf_distance(WeightedCdf.from_layout(sketch), other) == pytest.approx(exact, abs=0.01)


def test_baseline_refuses_unknown_excluded_column_and_empty_data(training, tmp_path):
    with pytest.raises(UserError, match="cannot exclude label"):
        write_baseline(training, tmp_path, exclude=["label"])
    with pytest.raises(UserError, match="no rows"):
        write_baseline(training.iloc[:0], tmp_path)
    assert not (tmp_path / "statistics.json").exists()


def test_sketch_layout_of_a_merged_sketch_keeps_every_weight():
    # DataSketches' iterator reports weight 1 after such a merge; the layout must not.
    from monitoring.sketches import new_sketch, to_layout

    rng = np.random.default_rng(3)
    merged, other = new_sketch(), new_sketch()
    merged.update(rng.random(10_000))
    other.update(rng.random(10_000) ** 2)
    merged.merge(other)
    layout = to_layout(merged)
    assert sum(len(level) * 2**i for i, level in enumerate(layout.levels)) == 20_000
    points = np.linspace(0, 1, 21)
    assert np.allclose(WeightedCdf.from_layout(layout).at(points), merged.get_cdf(points.tolist())[:-1])


def test_p_values_match_scipy():
    from scipy import stats

    from monitoring.drift import chi_squared_p_value, kolmogorov_sf

    for x in (0.05, 0.3, 0.8, 1.0, 1.2, 2.0, 4.0):
        assert kolmogorov_sf(x) == pytest.approx(stats.kstwobign.sf(x), abs=1e-10)
    for before, after in (([50, 30, 20], [48, 33, 19]), ([500, 300, 200], [400, 300, 300]), ([10, 0, 5, 7], [3, 4, 0, 9]), ([1000, 1], [900, 100])):
        expected = stats.chi2_contingency(np.array([before, after])[:, np.array(before) + np.array(after) > 0], correction=False)[1]
        assert chi_squared_p_value(np.array(before, float), np.array(after, float)) == pytest.approx(expected, rel=1e-6, abs=1e-300)
