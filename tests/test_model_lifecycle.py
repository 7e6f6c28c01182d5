"""train -> evaluate -> package: the release layout, its hashes, the gate and semantic versioning."""

from __future__ import annotations

import hashlib
import json
import tarfile

import numpy as np
import pandas as pd
import pytest
from model_support import SMALL, build_release, mlship, workspace_args

from model.data import synthetic_churn
from monitoring import formats


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return build_release(tmp_path_factory.mktemp("lifecycle"))


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_release_has_the_sagemaker_layout_and_every_sha256_matches(release):
    manifest = json.loads((release / "manifest.json").read_text())
    assert set(manifest["files"]) >= {"model.tar.gz", "baseline/statistics.json", "baseline/constraints.json"}
    on_disk = {p.relative_to(release).as_posix() for p in release.rglob("*") if p.is_file()} - {"manifest.json"}
    assert on_disk == set(manifest["files"])
    for path, digest in manifest["files"].items():
        assert sha256(release / path) == digest, path
    with tarfile.open(release / "model.tar.gz") as tar:
        names = set(tar.getnames())
        inner = json.load(tar.extractfile("manifest.json"))
        model_bytes = tar.extractfile("model.joblib").read()
    assert {"model.joblib", "manifest.json", "code/inference.py", "code/requirements.txt"} <= names
    assert inner["sha256"] == hashlib.sha256(model_bytes).hexdigest() == manifest["model_sha256"]
    for key in ("name", "version", "created", "git", "metrics", "features", "target", "output", "training_data", "libraries"):
        assert key in manifest, key
    assert manifest["metrics"]["auc_roc"] >= 0.85 and manifest["metrics"]["precision"] >= 0.80


def test_schema_follows_the_contract(release):
    manifest = json.loads((release / "manifest.json").read_text())
    features = manifest["features"]
    kinds = [f["type"] for f in features]
    assert kinds.count("numeric") >= 10 and kinds.count("categorical") >= 3
    for feature in features:
        if feature["type"] == "numeric":
            assert feature["dtype"] in ("integer", "float") and feature["min"] <= feature["max"]
        else:
            assert feature["dtype"] == "string" and feature["categories"]
    assert any(f["nullable"] for f in features)  # the synthetic data has missing values
    assert manifest["target"] == {"name": "churned", "classes": [0, 1]}
    assert [o["name"] for o in manifest["output"]] == ["probability", "label"]
    statistics = json.loads((release / "baseline/statistics.json").read_text())
    assert {f["name"] for f in statistics["features"]} == {f["name"] for f in features}


def test_prediction_baseline_is_the_models_output_on_the_holdout_rows(release):
    manifest = json.loads((release / "manifest.json").read_text())
    predictions = formats.read_statistics(release / "baseline/prediction_statistics.json")
    assert [(f.name, f.inferred_type) for f in predictions.features] == [("probability", "Fractional"), ("label", "Integral")]
    assert predictions.item_count == manifest["training_data"]["holdout_rows"]
    probability, label = predictions.features
    assert 0 <= probability.min < probability.max <= 1
    # The share of positive answers is close to the churn rate for a model that passed the gates.
    assert label.mean == pytest.approx(manifest["training_data"]["positive_rate"], abs=0.1)


def test_same_seed_gives_the_same_model_bytes(tmp_path, release):
    again = build_release(tmp_path)
    assert sha256(again / "model.tar.gz") == sha256(release / "model.tar.gz")
    other = tmp_path / "other"
    assert mlship("train", *SMALL, *workspace_args(other), "--seed", "7") == 0
    assert sha256(other / "build/churn-1.0.0/model.joblib") != sha256(tmp_path / "build/churn-1.0.0/model.joblib")


def test_synthetic_signal_passes_the_gate_comfortably_for_other_seeds(tmp_path):
    for seed in (1, 2):
        assert mlship("train", *workspace_args(tmp_path), "--seed", str(seed)) == 0
        assert mlship("evaluate", *workspace_args(tmp_path), "--seed", str(seed), "--set", "gates.auc_roc=0.93",
                      "--set", "gates.precision=0.84") == 0


def test_shuffled_labels_are_stopped_by_the_gate_and_nothing_is_packaged(tmp_path, capsys):
    frame = synthetic_churn(3000, seed=3)
    frame["churned"] = np.random.default_rng(0).permutation(frame["churned"].to_numpy())
    data = tmp_path / "shuffled.csv"
    frame.to_csv(data, index=False)
    options = [*workspace_args(tmp_path), "--data", str(data), "--target", "churned"]
    assert mlship("train", *options) == 0
    capsys.readouterr()
    assert mlship("evaluate", *options) == 1
    error = capsys.readouterr().err
    assert "quality gate failed: auc_roc 0.4" in error or "quality gate failed: auc_roc 0.5" in error
    assert "below the gate's threshold 0.8500" in error
    assert mlship("package", *options) == 2
    assert "failed the quality gate" in capsys.readouterr().err
    assert not (tmp_path / "dist").exists() or not any((tmp_path / "dist").iterdir())


def test_any_csv_with_its_target_trains(tmp_path):
    frame = synthetic_churn(2000, seed=5).rename(columns={"churned": "left"})
    frame["left"] = frame["left"].map({1: "yes", 0: "no"})
    data = tmp_path / "customers.csv"
    frame.to_csv(data, index=False)
    options = [*workspace_args(tmp_path), "--data", str(data), "--target", "left", "--set", "categorical=[num_products]"]
    assert mlship("train", *options) == 0
    identity = json.loads((tmp_path / "build/churn-1.0.0/model.json").read_text())
    products = next(f for f in identity["features"] if f["name"] == "num_products")
    assert products["type"] == "categorical" and products["categories"] == ["1", "2", "3", "4", "5"]
    assert identity["target"]["name"] == "left"


def test_schema_change_needs_a_major_bump(tmp_path, capsys):
    build_release(tmp_path)
    fewer = ["--set", "features=[tenure_months,monthly_charges,contract,payment_method,support_calls_90d,satisfaction_score]"]
    for command in ("train", "evaluate"):
        assert mlship(command, *SMALL, *workspace_args(tmp_path), "--version", "1.1.0", *fewer) == 0
    capsys.readouterr()
    assert mlship("package", *SMALL, *workspace_args(tmp_path), "--version", "1.1.0", *fewer) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "changes the schema of 1.0.0" in error and "removed features total_charges, age, " in error and "e.g. 2.0.0" in error
    assert not (tmp_path / "dist/churn-1.1.0").exists()
    # A compatible minor release packages; the schema change packages as 2.0.0.
    build_release(tmp_path, "--version", "1.1.0")
    release = build_release(tmp_path, "--version", "2.0.0", *fewer)
    assert len(json.loads((release / "manifest.json").read_text())["features"]) == 6


def test_package_refuses_a_model_retrained_after_its_evaluation(tmp_path, capsys):
    options = [*SMALL, *workspace_args(tmp_path)]
    assert mlship("train", *options) == 0 and mlship("evaluate", *options) == 0
    assert mlship("train", *options, "--seed", "9") == 0
    capsys.readouterr()
    assert mlship("package", *options, "--seed", "9") == 2
    assert "has not been evaluated" in capsys.readouterr().err  # training replaced the working folder


def test_evaluation_files_are_model_monitor_model_quality(release):
    statistics = json.loads((release / "evaluation/model_quality_statistics.json").read_text())
    metrics = statistics["binary_classification_metrics"]
    assert {"auc", "precision", "recall", "f1", "accuracy", "confusion_matrix"} <= set(metrics)
    assert 0 < metrics["auc"]["standard_deviation"] < 0.05
    constraints = json.loads((release / "evaluation/model_quality_constraints.json").read_text())
    assert constraints["binary_classification_constraints"]["auc"] == {"threshold": 0.85, "comparison_operator": "LessThanThreshold"}
    assert pd.notna(metrics["auc"]["value"])


def test_logistic_regression_is_a_choice_of_classifier(tmp_path):
    options = [*SMALL, *workspace_args(tmp_path), "--set", "classifier.kind=logistic_regression"]
    assert mlship("train", *options) == 0 and mlship("evaluate", *options) == 0
    identity = json.loads((tmp_path / "build/churn-1.0.0/model.json").read_text())
    assert identity["training"]["classifier"]["kind"] == "LogisticRegression"
