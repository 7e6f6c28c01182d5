"""A compiled inference path: the model's estimator converted to ONNX and run by ONNX Runtime.

Why: a one-row predict_proba of a ColumnTransformer pipeline costs ~6-12 ms here, nearly all of it
scikit-learn's per-call validation; the same pipeline in ONNX Runtime costs ~0.1 ms. That is what
brings one-request latency under a few milliseconds; micro-batching alone only amortizes the cost.

It is opt-in (`mlship serve --onnx`) because it is not bit-exact: ONNX's tree ensembles compute in
float32, so a value within float32 rounding of a split threshold can take the other branch. Measured
on the churn model with 20,000 random rows: 19,994 probabilities within 1e-7, 6 off by up to 0.045,
1 label different. The default path (joblib + micro-batching) gives the handlers' exact answers.

The handlers stay the semantic source of truth: input_fn still reads and validates every body,
predict_fn still runs (its thresholding and result shape are its own), and output_fn still writes
the answer. Only the estimator that predict_fn calls is swapped for `CompiledEstimator`, which
answers predict_proba/predict from ONNX Runtime and delegates every other attribute to the real
estimator. Before it is used, it must give predict_fn's results within `TOLERANCE` of the joblib
model (labels equal) on rows built from the feature schema (every category, the range ends, missing values);
if conversion or that check fails, the server says why in its log and uses the joblib model.
"""

from __future__ import annotations

import copy
import csv
import io
import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

TOLERANCE = 0.05  # the most a float32 branch flip moved a probability in the measurement above
# ONNX has no NaN for strings: a missing category reaches the ONNX graph as this text instead, and
# the graph's copies of text imputers treat it as their missing value (the fitted fill is unchanged).
MISSING_TEXT = "__mlship_missing__"


class CompiledEstimator:
    """predict_proba/predict from an ONNX Runtime session; everything else from the real estimator."""

    def __init__(self, estimator: Any, session: Any, features: list[dict]):
        self._estimator = estimator
        self._session = session
        self._features = features
        self._names = [feature["name"] for feature in features]
        outputs = [output.name for output in session.get_outputs()]
        self._label_output, self._probability_output = outputs[0], outputs[1]
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._estimator, name)

    def _feed(self, rows: Any) -> dict[str, np.ndarray]:
        if hasattr(rows, "columns"):  # a pandas frame: columns by name
            columns = [rows[name].to_numpy() for name in self._names]
        else:
            matrix = np.asarray(rows, dtype=object)
            columns = [matrix[:, index] for index in range(len(self._names))]
        feed = {}
        for name, feature, column in zip(self._names, self._features, columns):
            if feature["type"] == "numeric":
                column = column.astype(np.float32)
            else:
                column = np.array([MISSING_TEXT if value is None or value != value else str(value) for value in column])
            feed[name] = column.reshape(-1, 1)
        return feed

    def predict_proba(self, rows: Any) -> np.ndarray:
        self.calls += 1
        return self._session.run([self._probability_output], self._feed(rows))[0].astype(np.float64)

    def predict(self, rows: Any) -> np.ndarray:
        self.calls += 1
        return self._session.run([self._label_output], self._feed(rows))[0]


def _parts(estimator: Any):
    """The estimator and every fitted estimator inside it (pipeline steps, column transformers)."""
    yield estimator
    for _, step in getattr(estimator, "steps", ()):
        yield from _parts(step)
    for _, transformer, _ in getattr(estimator, "transformers_", ()):
        if not isinstance(transformer, str):
            yield from _parts(transformer)


def _text_missing_as_marker(estimator: Any) -> Any:
    """A copy whose text imputers take MISSING_TEXT as missing (skl2onnx cannot express NaN in text)."""
    from sklearn.impute import SimpleImputer

    copied = copy.deepcopy(estimator)
    for part in _parts(copied):
        statistics = getattr(part, "statistics_", None)
        if isinstance(part, SimpleImputer) and statistics is not None and statistics.dtype == object:
            part.missing_values = MISSING_TEXT
    return copied


def _convert(estimator: Any, features: list[dict]) -> Any:
    import onnxruntime
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    inputs = [(feature["name"], FloatTensorType([None, 1]) if feature["type"] == "numeric"
               else StringTensorType([None, 1])) for feature in features]
    onnx_model = convert_sklearn(_text_missing_as_marker(estimator), initial_types=inputs, options={"zipmap": False},
                                 target_opset={"": 17, "ai.onnx.ml": 3})
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # one worker process per core: no thread pools fighting over them
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(onnx_model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def schema_sample(features: list[dict], unseen: bool = True, missing: bool = True) -> str:
    """CSV rows covering each feature's range ends, middle, every category and, if allowed, a missing
    value and a category the model never saw."""
    def values(feature: dict) -> list[str]:
        if feature["type"] == "numeric":
            low, high = float(feature.get("min", 0)), float(feature.get("max", 1))
            points = [low, high, (low + high) / 2, low + (high - low) / 3, low + (high - low) * 0.8]
            found = [str(round(p)) if feature.get("dtype") == "integer" else repr(p) for p in points]
        else:
            found = list(feature.get("categories") or ["unseen"]) + (["unseen-category"] if unseen else [])
        return found + ([""] if missing and feature.get("nullable") else [])

    columns = [values(feature) for feature in features]
    length = max(len(column) for column in columns) * 3
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in range(length):
        writer.writerow([column[(row * (index + 1) + row // len(column)) % len(column)]
                         for index, column in enumerate(columns)])
    return buffer.getvalue()


def same_results(expected: Any, actual: Any) -> bool:
    """predict_fn's results compared: floats within TOLERANCE, everything else exactly."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and expected.keys() == actual.keys() and all(
            same_results(expected[key], actual[key]) for key in expected)
    if isinstance(expected, (tuple, list)) and not hasattr(expected, "shape"):
        return type(actual) is type(expected) and len(actual) == len(expected) and all(
            same_results(a, b) for a, b in zip(expected, actual))
    left, right = np.asarray(expected), np.asarray(actual)
    if left.shape != right.shape:
        return False
    if left.dtype.kind == "f" or right.dtype.kind == "f":
        return bool(np.allclose(left.astype(float), right.astype(float), rtol=0, atol=TOLERANCE, equal_nan=True))
    return bool(np.array_equal(left, right))


def _sample_rows(handlers: Any, features: list[dict]) -> Any:
    """The richest schema sample that input_fn accepts (it may refuse unseen categories or missing values)."""
    attempts = ((True, True), (False, True), (False, False))
    for number, (unseen, missing) in enumerate(attempts, start=1):
        try:
            return handlers.input(schema_sample(features, unseen, missing).encode(), "text/csv")
        except handlers.invalid_input:
            if number == len(attempts):
                raise
    raise AssertionError("unreachable")


def _estimator_slot(model: Any) -> str | None:
    """Where the estimator is: None when model_fn returned the estimator itself, else the attribute
    of model_fn's wrapper object that holds it (e.g. `pipeline`)."""
    if hasattr(model, "predict_proba"):
        return None
    for name, value in vars(model).items() if hasattr(model, "__dict__") else ():
        if hasattr(value, "predict_proba"):
            return name
    raise LookupError("model_fn's result holds no scikit-learn classifier (nothing with predict_proba)")


def compiled_model(handlers: Any, features: list[dict]) -> Any | None:
    """model_fn's result with its estimator replaced by a verified ONNX Runtime twin, or None (and a
    log line saying why) when conversion fails or the twin's results differ."""
    model = handlers.model
    try:
        slot = _estimator_slot(model)
        estimator = model if slot is None else getattr(model, slot)
        if not features:
            raise LookupError("the manifest has no feature schema")
        twin = CompiledEstimator(estimator, _convert(estimator, features), features)
        serving = twin
        if slot is not None:
            serving = copy.copy(model)
            setattr(serving, slot, twin)
        data = _sample_rows(handlers, features)
        expected = handlers.module.predict_fn(data, model)
        actual = handlers.module.predict_fn(data, serving)
    except Exception as error:  # noqa: BLE001 - any failure: keep the joblib model
        log.warning("compiled path off: ONNX conversion failed (%s: %s); serving the joblib model",
                    type(error).__name__, str(error).splitlines()[0] if str(error) else "")
        return None
    if twin.calls == 0:
        log.info("compiled path off: predict_fn never calls the estimator's predict_proba or predict "
                 "(inference.py has its own fast path); serving the joblib model")
        return None
    if not same_results(expected, actual):
        log.warning("compiled path off: ONNX results differ from the joblib model's by more than %g; "
                    "serving the joblib model", TOLERANCE)
        return None
    log.info("compiled path on: ONNX Runtime gives the joblib model's results within %g", TOLERANCE)
    return serving
