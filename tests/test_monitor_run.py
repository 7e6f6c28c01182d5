"""`mlship monitor run`: drift, data quality checks, bad input, model quality, exit codes."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from datasketches import kll_doubles_sketch
from scipy.stats import ks_2samp
from sklearn import metrics as skm

from mlship.cli import main as mlship
from monitoring import formats, quality, synthetic
from monitoring.baseline import write_baseline, write_prediction_baseline
from monitoring.capture import CapturedPayload, CaptureRecord
from monitoring.run import RunOptions, run
from monitoring.sketches import SKETCH_K

START = datetime(2026, 1, 2, 3, 0, tzinfo=timezone.utc)
DRIFTED = ["f2", "f4", "region"]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("baseline")
    training = synthetic.frame(20_000, seed=1)
    probability, label = synthetic.predict(training)
    write_baseline(training.assign(probability=probability, label=label), folder)
    return folder


@pytest.fixture(scope="module")
def drifted_run(baseline, tmp_path_factory):
    root = tmp_path_factory.mktemp("capture")
    window = synthetic.frame(20_000, seed=2, drift=DRIFTED)
    synthetic.write_capture(root, window, START, records_per_file=5_000)
    result = run(RunOptions(capture=str(root), baseline=baseline, out=root / "out", workers=2))
    return result, window


def test_exactly_the_drifted_features_get_drift_violations(drifted_run):
    result, _ = drifted_run
    flagged = sorted(v.feature_name for v in result.violations if v.constraint_check_type == "baseline_drift_check")
    input_flagged = [name for name in flagged if name in synthetic.FEATURES]
    assert input_flagged == sorted(DRIFTED)
    assert result.summary["retrain_recommended"] is True
    assert result.exit_status == 3
    written = formats.read_violations(result.out / "constraint_violations.json")
    assert written == result.violations
    assert result.summary["records"] == 20_000 and result.summary["skipped"] == {}


def test_linf_agrees_with_scipy_ks_within_the_sketch_error(drifted_run):
    result, window = drifted_run
    training = synthetic.frame(20_000, seed=1)
    bound = 2 * kll_doubles_sketch.get_normalized_rank_error(SKETCH_K, False)
    details = {d["name"]: d for d in json.loads((result.out / "drift.json").read_text())["features"]}
    for name in synthetic.NUMERIC:
        exact = ks_2samp(training[name], window[name]).statistic
        assert details[name]["linf_simple"] == pytest.approx(exact, abs=bound + 1e-6), name
        assert details[name]["p_value_test"] == "kolmogorov_smirnov"
    assert details["region"]["p_value"] < 1e-6 and details["plan"]["p_value"] > 1e-3
    assert details["f2"]["psi"] > 0.1 > details["f1"]["psi"]


def test_drift_file_covers_predictions_and_multivariate_score(drifted_run):
    result, _ = drifted_run
    detail = json.loads((result.out / "drift.json").read_text())
    assert [d["name"] for d in detail["prediction"]] == ["probability", "label"]
    assert detail["multivariate"]["method"] == "pca_reconstruction_error"
    assert detail["multivariate"]["rows"] == 20_000 and detail["multivariate"]["score"] > 1.0


def test_an_undrifted_window_has_no_violations(baseline, tmp_path):
    synthetic.write_capture(tmp_path / "cap", synthetic.frame(5_000, seed=3), START)
    result = run(RunOptions(capture=str(tmp_path / "cap"), baseline=baseline, out=tmp_path / "out", workers=1))
    assert result.violations == [] and result.exit_status == 0
    assert result.summary["retrain_recommended"] is False
    statistics = formats.read_statistics(tmp_path / "out" / "statistics.json")
    assert statistics.item_count == 5_000 and [f.name for f in statistics.features] == synthetic.FEATURES + ["probability", "label"]


def _record(input_text: str | None, output_text: str | None = "0.7,1", content_type="text/csv", encoding="CSV", at=START) -> bytes:
    payload = CapturedPayload(content_type, input_text, encoding) if input_text is not None else None
    output = CapturedPayload("text/csv", output_text, "CSV") if output_text is not None else None
    return CaptureRecord.new(payload, output, at=at).to_line()


def test_bad_and_odd_input_is_counted_and_checked_never_fatal(baseline, tmp_path):
    good = synthetic.csv_rows(synthetic.frame(200, seed=4))
    names = synthetic.FEATURES
    lines = [_record(row) for row in good]
    lines += [b"{not json\n", b"[1, 2]\n", b'{"captureData": {}}\n', b"\n"]
    lines.append(_record(None))  # output only
    lines.append(_record(good[0], None))  # input only
    lines.append(_record(",".join(good[1].split(",")[:-1])))  # a column missing
    lines.append(_record(good[2] + ",extra"))  # an extra column
    lines.append(_record("x," + ",".join(good[3].split(",")[1:])))  # a string where a number belongs
    lines.append(_record(orjson.dumps({"instances": [dict(zip(names, good[4].split(",")))]}).decode(), content_type="application/json", encoding="JSON"))
    lines.append(_record(base64.b64encode(good[5].encode()).decode(), content_type="text/csv", encoding="BASE64"))
    lines.append(_record("1,2", content_type="image/png", encoding="BASE64"))  # not CSV/JSON, and not even base64 text
    fixture_like = json.loads(_record(good[6]))
    fixture_like["eventMetadata"]["inferenceTime"] = "{%s}"
    lines.append(orjson.dumps(fixture_like) + b"\n")
    (tmp_path / "capture.jsonl").write_bytes(b"".join(lines))

    result = run(RunOptions(capture=str(tmp_path / "capture.jsonl"), baseline=baseline, out=tmp_path / "out", workers=1))
    summary = result.summary
    assert summary["records"] == 200 + 7 + 1  # good rows, 7 odd but usable records, the unparseable time
    assert summary["skipped"]["unparseable_time"] == 1
    assert summary["skipped"]["without_input"] == 1 and summary["skipped"]["without_output"] == 1
    bad_lines = sum(v for k, v in summary["skipped"].items() if k.startswith("bad line"))
    assert bad_lines == 3 + 1  # three malformed lines and the image payload
    checks = {(v.feature_name, v.constraint_check_type) for v in result.violations}
    assert ("region", "missing_column_check") in checks
    assert ("Extra columns", "extra_column_check") in checks
    assert ("f0", "data_type_check") in checks
    assert summary["rows_with_missing_columns"] == 1 and summary["rows_with_extra_columns"] == 1
    statistics = formats.read_statistics(tmp_path / "out" / "statistics.json")
    assert statistics.feature("f1").num_present == 200 + 7  # every record with an input, JSON and BASE64 ones too


def test_aws_fixture_capture_runs_and_a_window_excludes_unparseable_times(monitor_fixtures, tmp_path):
    rows = [line.split(",") for line in (json.loads(l)["captureData"]["endpointInput"]["data"] for l in (monitor_fixtures / "capture.jsonl").read_text().splitlines())]
    frame = pd.DataFrame(np.array(rows, dtype=float), columns=[f"c{i}" for i in range(7)])
    write_baseline(frame, tmp_path / "base")
    capture = str(monitor_fixtures / "capture.jsonl")
    everything = run(RunOptions(capture=capture, baseline=tmp_path / "base", out=tmp_path / "all", workers=1))
    assert everything.summary["records"] == 44 and everything.summary["skipped"]["unparseable_time"] == 44
    assert everything.violations == []
    windowed = run(RunOptions(capture=capture, baseline=tmp_path / "base", out=tmp_path / "window", start=START, end=datetime(2026, 1, 3, tzinfo=timezone.utc), workers=1))
    assert windowed.summary["records"] == 0 and windowed.summary["empty_window"] is True and windowed.exit_status == 0


def test_time_window_selects_records_by_inference_time(baseline, tmp_path):
    synthetic.write_capture(tmp_path / "cap", synthetic.frame(3_000, seed=5), START, seconds_apart=2.4)  # two hours
    result = run(RunOptions(capture=str(tmp_path / "cap"), baseline=baseline, out=tmp_path / "out",
                            start=START.replace(hour=4), end=START.replace(hour=5), workers=1))
    assert result.summary["records"] == 1_500
    assert result.summary["skipped"].get("outside_window", 0) == 0  # the other hour's folder was never opened


def test_ground_truth_metrics_match_scikit_learn(baseline, tmp_path):
    window = synthetic.frame(2_000, seed=6)
    records = synthetic.write_capture(tmp_path / "cap", window, START)
    probability, label = synthetic.predict(window)
    rng = np.random.default_rng(0)
    truth = np.where(rng.random(len(label)) < 0.7, label, 1 - label)  # a model that is right about 70% of the time
    lines = [orjson.dumps({"groundTruthData": {"data": str(int(t)), "encoding": "CSV"}, "eventMetadata": {"eventId": r.event_id}, "eventVersion": "0"})
             for r, t in zip(records[:1_500], truth[:1_500])]
    (tmp_path / "truth.jsonl").write_bytes(b"\n".join(lines) + b"\n{broken\n")
    result = run(RunOptions(capture=str(tmp_path / "cap"), baseline=baseline, out=tmp_path / "out", ground_truth=str(tmp_path / "truth.jsonl"), workers=1))
    written = json.loads((tmp_path / "out" / "model_quality_statistics.json").read_text())
    assert written["dataset"]["item_count"] == 1_500
    got = formats.model_quality_metrics_from_json(written)
    y, predicted, p = truth[:1_500], label[:1_500], probability[:1_500]
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted))
    assert got["precision"] == pytest.approx(skm.precision_score(y, predicted))
    assert got["recall"] == pytest.approx(skm.recall_score(y, predicted))
    assert got["f1"] == pytest.approx(skm.f1_score(y, predicted))
    assert got["auc"] == pytest.approx(skm.roc_auc_score(y, p))
    matrix = skm.confusion_matrix(y, predicted)
    assert written["binary_classification_metrics"]["confusion_matrix"] == {"0": {"0": int(matrix[0, 0]), "1": int(matrix[0, 1])}, "1": {"0": int(matrix[1, 0]), "1": int(matrix[1, 1])}}
    assert result.quality_violations == []  # 0.7 is above the default threshold 0.6
    assert result.summary["skipped"]["ground truth line unusable"] == 1


def test_command_line_exit_codes(baseline, tmp_path, capsys):
    synthetic.write_capture(tmp_path / "calm", synthetic.frame(2_000, seed=7), START)
    synthetic.write_capture(tmp_path / "drift", synthetic.frame(2_000, seed=7, drift=["f1"]), START)
    assert mlship(["monitor", "run", "--capture", str(tmp_path / "calm"), "--baseline", str(baseline), "--out", str(tmp_path / "o1"), "--workers", "1"]) == 0
    assert "2,000 records; 0 violations" in capsys.readouterr().out
    assert mlship(["monitor", "run", "--capture", str(tmp_path / "drift"), "--baseline", str(baseline), "--out", str(tmp_path / "o2"), "--workers", "1"]) == 3
    out = capsys.readouterr().out
    assert "drift in f1" in out and "retrain recommended" in out
    assert mlship(["monitor", "run", "--capture", str(tmp_path / "nowhere"), "--baseline", str(baseline), "--out", str(tmp_path / "o3")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert mlship(["monitor", "run", "--capture", str(tmp_path / "calm"), "--baseline", str(tmp_path), "--out", str(tmp_path / "o4")]) == 2
    assert mlship(["monitor", "run", "--capture", str(tmp_path / "calm"), "--baseline", str(baseline), "--out", str(tmp_path / "o5"), "--start", "yesterday"]) == 2
    assert not (tmp_path / "o3").exists() and not (tmp_path / "o5").exists()


def test_multi_row_payloads_and_inference_ids_match_ground_truth(baseline, tmp_path):
    rows = synthetic.csv_rows(synthetic.frame(6, seed=8))
    lines = [
        CaptureRecord.new(CapturedPayload("text/csv", rows[0], "CSV"), CapturedPayload("text/csv", "0.9,1", "CSV"), inference_id="a", at=START).to_line(),
        CaptureRecord.new(CapturedPayload("text/csv", rows[1], "CSV"), CapturedPayload("text/csv", "0.2,0", "CSV"), at=START).to_line(),
        # two rows in one request: JSON escapes the newline, so this record takes the general path
        CaptureRecord.new(CapturedPayload("text/csv", rows[2] + "\n" + rows[3] + "\n", "CSV"), CapturedPayload("text/csv", "0.8,1\n0.1,0\n", "CSV"), inference_id="b", at=START).to_line(),
    ]
    (tmp_path / "capture.jsonl").write_bytes(b"".join(lines))
    second = json.loads(lines[1])["eventMetadata"]["eventId"]
    truth = [{"groundTruthData": {"data": "0", "encoding": "CSV"}, "eventMetadata": {"eventId": "a"}},  # inferenceId a: wrong
             {"groundTruthData": {"data": "0", "encoding": "CSV"}, "eventMetadata": {"eventId": second}},  # right
             {"groundTruthData": {"data": "1,0", "encoding": "CSV"}, "eventMetadata": {"eventId": "b"}}]  # both right
    (tmp_path / "truth.jsonl").write_bytes(b"\n".join(orjson.dumps(t) for t in truth))
    result = run(RunOptions(capture=str(tmp_path / "capture.jsonl"), baseline=baseline, out=tmp_path / "out",
                            ground_truth=str(tmp_path / "truth.jsonl"), workers=1))
    assert result.summary["records"] == 3 and result.summary["rows"] == 4
    assert result.summary["model_quality"]["rows_with_ground_truth"] == 4
    assert result.summary["model_quality"]["accuracy"] == pytest.approx(0.75)


def test_a_window_reads_ground_truth_from_its_start_hour_on(baseline, tmp_path):
    # Labels arrive after their predictions: hourly folders before the window cannot hold them.
    lines = [CaptureRecord.new(CapturedPayload("text/csv", row, "CSV"), CapturedPayload("text/csv", "0.9,1", "CSV"),
                               inference_id=f"r{i}", at=START).to_line()
             for i, row in enumerate(synthetic.csv_rows(synthetic.frame(4, seed=11)))]
    (tmp_path / "capture.jsonl").write_bytes(b"".join(lines))
    truth = tmp_path / "truth"
    for hour, ids in (("2026/01/02/02", ["r0", "r1"]), ("2026/01/02/05", ["r2", "r3"])):  # before, after the window
        (truth / hour).mkdir(parents=True)
        (truth / hour / "labels.jsonl").write_bytes(b"".join(quality.ground_truth_line(i, [1]) for i in ids))
    windowed = run(RunOptions(capture=str(tmp_path / "capture.jsonl"), baseline=baseline, out=tmp_path / "w",
                              start=START, ground_truth=str(truth), workers=1))
    assert windowed.summary["model_quality"]["rows_with_ground_truth"] == 2
    everything = run(RunOptions(capture=str(tmp_path / "capture.jsonl"), baseline=baseline, out=tmp_path / "all",
                                ground_truth=str(truth), workers=1))
    assert everything.summary["model_quality"]["rows_with_ground_truth"] == 4


def test_stray_quotes_and_non_utf8_bytes_lose_no_rows(baseline, tmp_path):
    rows = synthetic.csv_rows(synthetic.frame(5, seed=10))
    quoted = 'x"' + rows[0][rows[0].index(","):]  # an unbalanced quote in a numeric column
    lines = [_record(quoted)] + [_record(row) for row in rows[1:]]
    lines.append(_record(base64.b64encode(b"\xff\xfe,1,2").decode(), encoding="BASE64"))  # not UTF-8: a bad line
    (tmp_path / "capture.jsonl").write_bytes(b"".join(lines))
    result = run(RunOptions(capture=str(tmp_path / "capture.jsonl"), baseline=baseline, out=tmp_path / "out", workers=1))
    assert result.summary["rows"] == 5
    assert result.summary["skipped"] == {"bad line: BASE64 payload is not UTF-8 text": 1}
    assert ("f0", "data_type_check") in {(v.feature_name, v.constraint_check_type) for v in result.violations}


def test_completeness_allows_sampling_noise_but_not_a_real_drop(tmp_path):
    training = synthetic.frame(10_000, seed=11)
    training.loc[training.sample(frac=0.1, random_state=0).index, "f1"] = np.nan
    write_baseline(training, tmp_path / "base")
    results = {}
    for name, missing in (("same", 0.1), ("worse", 0.3)):
        window = synthetic.frame(2_000, seed=12)
        window.loc[window.sample(frac=missing, random_state=1).index, "f1"] = np.nan
        synthetic.write_capture(tmp_path / name, window, START)
        result = run(RunOptions(capture=str(tmp_path / name), baseline=tmp_path / "base", out=tmp_path / f"out-{name}", workers=1))
        results[name] = {(v.feature_name, v.constraint_check_type) for v in result.violations}
    assert ("f1", "completeness_check") not in results["same"]
    assert ("f1", "completeness_check") in results["worse"]


def test_rows_in_memory_flag_the_same_features_as_the_same_rows_captured(baseline, drifted_run, tmp_path):
    from monitoring.run import Baseline, evaluate
    from monitoring.window import Window

    captured, window_rows = drifted_run
    loaded = Baseline.read(baseline)
    window = Window(loaded.input_features, loaded.output_features, loaded.pca)
    for first in range(0, len(window_rows), 7_000):
        window.add_input_frame(window_rows[synthetic.FEATURES].iloc[first:first + 7_000])
    result = evaluate(RunOptions(capture="memory", baseline=baseline, out=tmp_path), loaded, window)

    def drifted(outcome):
        return sorted(v.feature_name for v in outcome.violations
                      if v.constraint_check_type == "baseline_drift_check" and v.feature_name in synthetic.FEATURES)

    assert drifted(result) == drifted(captured) == sorted(DRIFTED)
    assert result.summary["records"] == len(window_rows)


def test_a_packaged_baseline_measures_prediction_drift_from_its_own_file(tmp_path):
    # `mlship model package` keeps statistics.json input-only (AWS's analyzer reads it against captured
    # input) and writes the output distribution to prediction_statistics.json beside it.
    training = synthetic.frame(20_000, seed=1)
    write_baseline(training, tmp_path / "baseline")
    write_prediction_baseline(*synthetic.predict(training), tmp_path / "baseline")
    heaviest = synthetic.NUMERIC[-1]  # the largest weight in synthetic.predict's model
    shifted = synthetic.frame(10_000, seed=2)
    shifted[heaviest] += 2 * training[heaviest].std()
    outcomes = {}
    for name, window in (("calm", synthetic.frame(10_000, seed=3)), ("shifted", shifted)):
        synthetic.write_capture(tmp_path / name, window, START)
        outcomes[name] = run(RunOptions(capture=str(tmp_path / name), baseline=tmp_path / "baseline", out=tmp_path / f"{name}-out", workers=1))
    calm, drifted = outcomes["calm"], outcomes["shifted"]
    detail = {d["name"]: d for d in json.loads((drifted.out / "drift.json").read_text())["prediction"]}
    assert list(detail) == ["probability", "label"]
    exact = ks_2samp(synthetic.predict(training)[0], synthetic.predict(shifted)[0]).statistic
    bound = 2 * kll_doubles_sketch.get_normalized_rank_error(SKETCH_K, False)
    assert detail["probability"]["linf_simple"] == pytest.approx(exact, abs=bound + 1e-6)
    assert drifted.summary["prediction_drift"] == ["probability", "label"] and drifted.summary["retrain_recommended"]
    assert drifted.summary["drifted_features"] == [heaviest]
    assert calm.summary["prediction_drift"] == [] and calm.violations == []
    # A packaged baseline has no constraints on the outputs: their drift is reported, not a violation.
    assert {v.feature_name for v in drifted.violations} == {heaviest}
