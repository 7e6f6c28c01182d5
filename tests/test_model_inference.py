"""code/inference.py driven as AWS's scikit-learn container drives it, from an extracted model.tar.gz."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import tarfile

import joblib
import numpy as np
import pytest
from model_support import build_release

from model.data import synthetic_churn
from model.train import to_matrix


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The release's tarball extracted like /opt/ml/model, and its code/inference.py imported from there."""
    release = build_release(tmp_path_factory.mktemp("release"))
    model_dir = tmp_path_factory.mktemp("opt-ml-model")
    with tarfile.open(release / "model.tar.gz") as tar:
        tar.extractall(model_dir, filter="data")
    sys.path.insert(0, str(model_dir / "code"))
    sys.modules.pop("inference", None)
    try:
        handlers = importlib.import_module("inference")
    finally:
        sys.path.remove(str(model_dir / "code"))
    assert handlers.__file__.startswith(str(model_dir))
    model = handlers.model_fn(str(model_dir))
    yield handlers, model, model_dir
    sys.modules.pop("inference", None)


def rows_as_csv(frame) -> str:
    lines = []
    for record in frame.itertuples(index=False):
        lines.append(",".join("" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value) for value in record))
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def customers(served):
    handlers, model, _ = served
    frame = synthetic_churn(200, seed=11).drop(columns=["churned"])
    return frame[model.names]


def invoke(handlers, model, body, content_type, accept):
    return handlers.output_fn(handlers.predict_fn(handlers.input_fn(body, content_type), model), accept)


def test_csv_one_row_and_many_rows_give_the_pipelines_predictions(served, customers):
    handlers, model, model_dir = served
    pipeline = joblib.load(model_dir / "model.joblib")
    expected = pipeline.predict_proba(to_matrix(customers, model.features))[:, 1]
    body = rows_as_csv(customers).encode()  # the container hands over bytes
    lines = invoke(handlers, model, body, "text/csv", "text/csv").splitlines()
    assert len(lines) == len(customers)
    probabilities = np.array([float(line.split(",")[0]) for line in lines])
    labels = np.array([int(line.split(",")[1]) for line in lines])
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)
    assert model.lean is not None  # the answers above came from the lean path
    np.testing.assert_array_equal(labels, (expected >= 0.5).astype(int))
    assert 0 < labels.sum() < len(labels)
    one = invoke(handlers, model, rows_as_csv(customers.iloc[:1]), "text/csv; charset=utf-8", "text/csv")
    assert one == lines[0] + "\n"


def test_json_lists_and_objects_one_row_and_many(served, customers):
    handlers, model, _ = served
    csv_answer = invoke(handlers, model, rows_as_csv(customers.iloc[:5]), "text/csv", "application/json")
    records = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
               for row in customers.iloc[:5].to_dict(orient="records")]
    as_objects = json.dumps({"instances": records}, default=lambda v: v.item())
    as_lists = json.dumps({"instances": [list(r.values()) for r in records]}, default=lambda v: v.item())
    for body in (as_objects, as_lists):
        answer = json.loads(invoke(handlers, model, body, "application/json", "application/json"))
        assert answer == json.loads(csv_answer)
    predictions = json.loads(csv_answer)["predictions"]
    assert len(predictions) == 5 and set(predictions[0]) == {"probability", "label"}
    single = json.loads(invoke(handlers, model, json.dumps({"instances": records[:1]}, default=lambda v: v.item()), "application/json", "*/*"))
    assert single["predictions"] == predictions[:1]


def test_missing_values_and_omitted_keys_are_imputed_not_refused(served):
    handlers, model, _ = served
    empty_row = "," * (len(model.names) - 1)
    assert len(invoke(handlers, model, empty_row, "text/csv", "text/csv").splitlines()) == 1
    answer = json.loads(invoke(handlers, model, '{"instances": [{"tenure_months": 2, "contract": "month-to-month"}]}', "application/json", "application/json"))
    assert 0 <= answer["predictions"][0]["probability"] <= 1


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        ("12,70.5,x", "text/csv", "row 1: 3 values, expected 16"),
        (None, "text/csv", "row 2, column 2 (monthly_charges): 'abc' is not a number"),
        ('{"instances": [{"tenure_month": 3}]}', "application/json", "row 1: unknown feature 'tenure_month'"),
        ('{"instances": [{"tenure_months": 3}, {"contract": 2.5}]}', "application/json", "row 2, column 13 (contract): 2.5 is not a category"),
        ('{"instances": [{"age": "inf"}]}', "application/json", "row 1, column 4 (age): 'inf' is not a finite number"),
        ('{"rows": []}', "application/json", 'must be {"instances"'),
        ("{not json", "application/json", "body is not valid JSON"),
        ("", "text/csv", "body holds no rows"),
    ],
)
def test_bad_input_names_the_row_and_column(served, customers, body, content_type, message):
    handlers, model, _ = served
    if body is None:  # a good first row, then text in a numeric column
        good = rows_as_csv(customers.iloc[:2]).splitlines()
        fields = good[1].split(",")
        fields[1] = "abc"
        body = good[0] + "\n" + ",".join(fields) + "\n"
    with pytest.raises(handlers.InvalidInput) as error:
        handlers.input_fn(body, content_type)
    assert message in str(error.value)
    assert isinstance(error.value, ValueError)


def test_unknown_content_and_accept_types_are_refused(served, customers):
    handlers, model, _ = served
    with pytest.raises(handlers.UnsupportedContentType, match="'application/x-parquet' is not supported"):
        handlers.input_fn(b"PAR1\xff\x00", "application/x-parquet")
    prediction = handlers.predict_fn(handlers.input_fn(rows_as_csv(customers.iloc[:1]), "text/csv"), model)
    with pytest.raises(handlers.UnsupportedContentType, match="accept 'image/png'"):
        handlers.output_fn(prediction, "image/png")
    assert handlers.output_fn(prediction, "image/png, text/csv").count(",") == 1


def test_model_fn_refuses_a_tampered_model(served, tmp_path):
    handlers, _, model_dir = served
    copy = tmp_path / "model"
    copy.mkdir()
    (copy / "manifest.json").write_bytes((model_dir / "manifest.json").read_bytes())
    (copy / "model.joblib").write_bytes((model_dir / "model.joblib").read_bytes() + b"\0")
    with pytest.raises(handlers.ModelIntegrityError, match="refusing to load"):
        handlers.model_fn(str(copy))
    assert isinstance(handlers.ModelIntegrityError("x"), RuntimeError)


def test_inference_imports_only_what_the_sagemaker_container_has(served):
    _, _, model_dir = served
    script = (
        "import sys, builtins; real = builtins.__import__\n"
        "def guard(name, *a, **k):\n"
        "    if name.split('.')[0] in ('pandas', 'model', 'mlship', 'monitoring', 'yaml'): raise ImportError('forbidden ' + name)\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = guard\n"
        f"sys.path.insert(0, {str(model_dir / 'code')!r})\n"
        "import inference\n"
        f"m = inference.model_fn({str(model_dir)!r})\n"
        "print(inference.output_fn(inference.predict_fn(inference.input_fn(','*15, 'text/csv'), m), 'text/csv'), end='')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=model_dir, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(",") == 1


@pytest.mark.parametrize("classifier", ["logistic_regression", "hist_gradient_boosting"])
def test_lean_path_gives_the_full_pipelines_probabilities(served, classifier, tmp_path):
    handlers, _, _ = served
    from model_support import SMALL, mlship, workspace_args

    options = [*SMALL, *workspace_args(tmp_path), "--set", f"classifier.kind={classifier}"]
    assert mlship("train", *options) == 0
    work = tmp_path / "build/churn-1.0.0"
    manifest = json.loads((work / "model.json").read_text())
    model = handlers.Model(joblib.load(work / "model.joblib"), manifest)
    assert model.lean is not None
    rows = to_matrix(synthetic_churn(500, seed=21)[model.names], model.features)
    rows[::7, 12] = "a-contract-never-seen"  # unseen category
    rows[::5, 0] = np.nan
    np.testing.assert_allclose(model.lean.probability(rows), model.pipeline.predict_proba(rows)[:, 1], rtol=0, atol=1e-12)


def test_an_unusual_pipeline_runs_whole(served):
    handlers, model, _ = served
    from sklearn.pipeline import Pipeline

    other = Pipeline([("features", model.pipeline.named_steps["features"]), ("model", model.pipeline.named_steps["classifier"])])
    unusual = handlers.Model(other, model.manifest)
    assert unusual.lean is None
    data = handlers.input_fn("," * 15, "text/csv", model=unusual)
    assert handlers.predict_fn(data, unusual)[0, 0] == pytest.approx(other.predict_proba(data)[0, 1])
