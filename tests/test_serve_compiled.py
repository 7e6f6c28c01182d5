"""The compiled (ONNX Runtime) path gives the joblib model's results, and falls back when it cannot."""

from __future__ import annotations

import copy
import logging
import tempfile
from pathlib import Path

import numpy as np
import pytest
from serve_helpers import ServerProcess, csv_rows, features, packaged_model
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from model.server import compiled
from model.server.package import Handlers, resolve_model_dir


@pytest.fixture(scope="module")
def handlers() -> Handlers:
    return Handlers.load(resolve_model_dir(packaged_model(), Path(tempfile.mkdtemp())))


def test_onnx_gives_the_joblib_models_predictions_within_tolerance(handlers):
    serving = compiled.compiled_model(handlers, features())
    assert serving is not None and isinstance(serving.pipeline, compiled.CompiledEstimator)
    rows = handlers.input(csv_rows(2000, seed=11, missing_share=0.2).encode(), "text/csv")
    expected = handlers.module.predict_fn(rows, handlers.model)
    actual = handlers.module.predict_fn(rows, serving)
    probability, label = 0, 1
    gap = np.abs(expected[:, probability] - actual[:, probability])
    # float32 trees: nearly every row agrees to 1e-5; a rare branch flip moves one by at most TOLERANCE
    assert (gap <= 1e-5).mean() >= 0.998 and gap.max() <= compiled.TOLERANCE
    assert (expected[:, label] == actual[:, label]).mean() >= 0.999
    # everything but predict_proba/predict comes from the real estimator
    assert serving.pipeline.classes_.tolist() == handlers.model.pipeline.classes_.tolist()


def test_a_model_onnx_cannot_express_falls_back_to_joblib(handlers, caplog):
    odd = copy.copy(handlers.model)
    odd.pipeline = make_pipeline(FunctionTransformer(lambda rows: rows), handlers.model.pipeline)
    with caplog.at_level(logging.WARNING):
        assert compiled.compiled_model(Handlers(handlers.module, odd), features()) is None
    assert "ONNX conversion failed" in caplog.text


def test_results_that_differ_fall_back_to_joblib(handlers, caplog, monkeypatch):
    real = compiled.CompiledEstimator.predict_proba
    monkeypatch.setattr(compiled.CompiledEstimator, "predict_proba", lambda self, rows: real(self, rows) + 0.1)
    with caplog.at_level(logging.WARNING):
        assert compiled.compiled_model(handlers, features()) is None
    assert "differ" in caplog.text


def test_the_server_answers_the_same_with_and_without_the_compiled_path():
    answers = {}
    for flags in (["--onnx"], []):
        with ServerProcess(["--model", str(packaged_model()), "--host", "127.0.0.1", "--port", "0",
                            "--workers", "1", *flags]) as server:
            path = server.client.get("/health").json()["inference_path"]
            answer = server.client.post("/invocations", content=csv_rows(50, seed=4, missing_share=0.2),
                                        headers={"content-type": "text/csv"})
            answers[path] = [line.split(",") for line in answer.text.splitlines()]
    assert set(answers) == {"onnxruntime", "joblib"}
    for (p1, l1), (p2, l2) in zip(answers["onnxruntime"], answers["joblib"]):
        assert float(p1) == pytest.approx(float(p2), abs=compiled.TOLERANCE)
