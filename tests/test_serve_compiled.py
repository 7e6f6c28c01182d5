"""The compiled (ONNX Runtime) path gives the joblib model's results, and falls back when it cannot."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from serve_helpers import ServerProcess, csv_rows, features, packaged_model
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from model.server import compiled
from model.server.package import Handlers, resolve_model_dir


@pytest.fixture(scope="module")
def packaged() -> Handlers:
    """The real package's handlers (its inference.py may take its own fast path around predict_proba)."""
    return Handlers.load(resolve_model_dir(packaged_model(), Path(tempfile.mkdtemp())))


@pytest.fixture(scope="module")
def handlers(packaged) -> Handlers:
    """Handlers whose predict_fn calls the estimator's predict_proba, as most inference.py files do."""
    module = SimpleNamespace(input_fn=packaged.module.input_fn, InvalidInput=packaged.module.InvalidInput,
                             predict_fn=lambda data, model: model.predict_proba(data)[:, 1])
    return Handlers(module, packaged.model.pipeline)


def test_onnx_gives_the_joblib_models_predictions_within_tolerance(handlers):
    serving = compiled.compiled_model(handlers, features())
    assert isinstance(serving, compiled.CompiledEstimator)
    rows = handlers.input(csv_rows(2000, seed=11, missing_share=0.2).encode(), "text/csv")
    expected = handlers.predict(rows)
    handlers.serving_model = serving
    try:
        actual = handlers.predict(rows)
    finally:
        handlers.serving_model = handlers.model
    gap = np.abs(expected - actual)
    # float32 trees: nearly every row agrees to 1e-5; a rare branch flip moves one by at most TOLERANCE
    assert (gap <= 1e-5).mean() >= 0.998 and gap.max() <= compiled.TOLERANCE
    assert ((expected >= 0.5) == (actual >= 0.5)).mean() >= 0.999
    assert serving.classes_.tolist() == handlers.model.classes_.tolist()  # the rest is the real estimator's


def test_a_model_onnx_cannot_express_falls_back_to_joblib(handlers, caplog):
    odd = Handlers(handlers.module, make_pipeline(FunctionTransformer(lambda rows: rows), handlers.model))
    with caplog.at_level(logging.WARNING):
        assert compiled.compiled_model(odd, features()) is None
    assert "ONNX conversion failed" in caplog.text


def test_results_that_differ_fall_back_to_joblib(handlers, caplog, monkeypatch):
    real = compiled.CompiledEstimator.predict_proba
    monkeypatch.setattr(compiled.CompiledEstimator, "predict_proba", lambda self, rows: real(self, rows) + 0.1)
    with caplog.at_level(logging.WARNING):
        assert compiled.compiled_model(handlers, features()) is None
    assert "differ" in caplog.text


def test_a_wrapper_model_gets_its_estimator_swapped_or_says_why_not(packaged, caplog):
    with caplog.at_level(logging.INFO):
        serving = compiled.compiled_model(packaged, features())
    if serving is None:  # inference.py predicts without calling predict_proba: nothing to compile
        assert "never calls the estimator" in caplog.text
    else:
        assert isinstance(serving.pipeline, compiled.CompiledEstimator) and serving is not packaged.model


def test_the_server_answers_the_same_with_and_without_onnx():
    answers = []
    for flags in (["--onnx"], []):
        with ServerProcess(["--model", str(packaged_model()), "--host", "127.0.0.1", "--port", "0",
                            "--workers", "1", *flags]) as server:
            answer = server.client.post("/invocations", content=csv_rows(50, seed=4, missing_share=0.2),
                                        headers={"content-type": "text/csv"})
            answers.append([[float(value) for value in line.split(",")] for line in answer.text.splitlines()])
    assert len(answers[0]) == 50
    assert np.abs(np.array(answers[0]) - np.array(answers[1]))[:, 0].max() <= compiled.TOLERANCE
