"""The compiled (ONNX Runtime) path gives the joblib model's results, and falls back when it cannot."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import pytest
from serve_helpers import CSV_ROWS, FEATURES, ServerProcess, _synthetic_rows, packaged_model
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from model.server import compiled
from model.server.package import Handlers, resolve_model_dir


@pytest.fixture(scope="module")
def handlers() -> Handlers:
    return Handlers.load(resolve_model_dir(packaged_model(), Path(tempfile.mkdtemp())))


def test_onnx_gives_the_joblib_models_predictions_within_tolerance(handlers):
    twin = compiled.compile_handlers_model(handlers, FEATURES)
    assert twin is not None
    rows, _ = _synthetic_rows(2000, seed=11)
    rows[::7, 1] = np.nan  # missing monthly charges
    rows[::5, 3] = "__missing__"
    expected = handlers.module.predict_fn(rows, handlers.model)
    actual = handlers.module.predict_fn(rows, twin)
    assert np.abs(expected["probability"] - actual["probability"]).max() <= compiled.TOLERANCE
    assert np.array_equal(expected["label"], actual["label"])
    assert twin.classes_.tolist() == [0, 1]  # other attributes come from the real estimator


def test_a_model_onnx_cannot_express_falls_back_to_joblib(handlers, caplog):
    odd = Handlers(handlers.module, make_pipeline(FunctionTransformer(lambda x: x), handlers.model))
    with caplog.at_level(logging.WARNING):
        assert compiled.compile_handlers_model(odd, FEATURES) is None
    assert "ONNX conversion failed" in caplog.text


def test_results_that_differ_fall_back_to_joblib(handlers, caplog, monkeypatch):
    real = compiled.CompiledEstimator.predict_proba
    monkeypatch.setattr(compiled.CompiledEstimator, "predict_proba", lambda self, rows: real(self, rows) + 1e-3)
    with caplog.at_level(logging.WARNING):
        assert compiled.compile_handlers_model(handlers, FEATURES) is None
    assert "differ" in caplog.text


def test_the_server_answers_the_same_with_and_without_the_compiled_path():
    answers = {}
    for flags in ([], ["--no-compile"]):
        with ServerProcess(["--model", str(packaged_model()), "--host", "127.0.0.1", "--port", "0",
                            "--workers", "1", *flags]) as server:
            path = server.client.get("/health").json()["inference_path"]
            answer = server.client.post("/invocations", content=CSV_ROWS, headers={"content-type": "text/csv"})
            answers[path] = [line.split(",") for line in answer.text.splitlines()]
    assert set(answers) == {"onnxruntime", "joblib"}
    for (p1, l1), (p2, l2) in zip(answers["onnxruntime"], answers["joblib"]):
        assert float(p1) == pytest.approx(float(p2), abs=compiled.TOLERANCE) and l1 == l2
