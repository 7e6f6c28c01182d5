"""SageMaker scikit-learn container handlers for an mlship model (shipped as code/inference.py).

Self-contained on purpose: it imports only the standard library, numpy, scikit-learn and joblib,
because it runs unchanged inside AWS's prebuilt scikit-learn container and inside mlship's server.

  model_fn(model_dir)            -> Model (checks model.joblib against manifest.json's sha256)
  input_fn(body, content_type)   -> 2-D object array, columns in schema order, missing = nan
  predict_fn(data, model)        -> float array (rows, 2): probability of class 1, label (0.0 or 1.0)
  output_fn(prediction, accept)  -> str: CSV lines "<probability>,<label>" or JSON {"predictions": [...]}

Bad input raises InvalidInput naming the 1-based row and the column; a server answers 400.
An unsupported content type or accept raises UnsupportedContentType; a server answers 415.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os

import joblib
import numpy as np

CSV = "text/csv"
JSON = "application/json"
MODEL_FILE = "model.joblib"
MANIFEST_FILE = "manifest.json"


class InvalidInput(ValueError):
    """The request body cannot be read as rows of this model's features."""


class UnsupportedContentType(ValueError):
    """The content type (or accept type) is not text/csv or application/json."""


class ModelIntegrityError(RuntimeError):
    """model.joblib does not match the sha256 recorded in manifest.json."""


class Model:
    """The fitted pipeline with its feature schema and decision threshold.

    `probability(data)` takes a lean path when the pipeline is mlship's usual shape: the fitted
    imputers', scaler's and encoder's numbers applied with numpy, without scikit-learn's per-call
    validation (most of a one-row prediction's cost). It is used only after it gave the full
    pipeline's answers on probe rows built from the schema; otherwise the full pipeline runs.
    """

    def __init__(self, pipeline, manifest: dict):
        self.pipeline = pipeline
        self.manifest = manifest
        self.features = manifest["features"]
        self.names = [feature["name"] for feature in self.features]
        self.numeric = [feature["type"] == "numeric" for feature in self.features]
        self.index = {name: position for position, name in enumerate(self.names)}
        self.threshold = float(manifest.get("decision_threshold", 0.5))
        self.lean = _LeanPipeline.verified(pipeline, _probe_rows(self.features, self.numeric))

    def probability(self, data: np.ndarray) -> np.ndarray:
        if self.lean is not None:
            return self.lean.probability(data)
        return self.pipeline.predict_proba(data)[:, 1]


# The container calls input_fn(body, content_type) without the model, but parsing needs its schema:
# the model that model_fn loaded last is kept here (one model per process, as in SageMaker).
_loaded: list[Model] = []


def model_fn(model_dir: str) -> Model:
    manifest_path = os.path.join(model_dir, MANIFEST_FILE)
    model_path = os.path.join(model_dir, MODEL_FILE)
    with open(manifest_path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    digest = hashlib.sha256()
    with open(model_path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != manifest["sha256"]:
        raise ModelIntegrityError(
            f"{model_path} has sha256 {digest.hexdigest()}, but {manifest_path} expects {manifest['sha256']}; "
            "refusing to load a model that is not the one that was packaged"
        )
    model = Model(joblib.load(model_path), manifest)
    _loaded[:] = [model]
    return model



def _current_model() -> Model:
    if not _loaded:
        raise RuntimeError("input_fn called before model_fn")
    return _loaded[-1]


def input_fn(body, content_type: str, model: Model | None = None) -> np.ndarray:
    """Parse a request body into rows; `model` defaults to the one model_fn loaded last."""
    model = model or _current_model()
    media = _media_type(content_type)
    if media not in (CSV, JSON):
        raise UnsupportedContentType(f"content type {content_type!r} is not supported; send {CSV} or {JSON}")
    if isinstance(body, (bytes, bytearray, memoryview)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("body is not UTF-8 text") from None
    rows = _csv_rows(body) if media == CSV else _json_rows(body, model)
    if not rows:
        raise InvalidInput("body holds no rows; send at least one row of features")
    return _to_matrix(rows, model)


def predict_fn(data: np.ndarray, model: Model) -> np.ndarray:
    probability = model.probability(data)
    return np.column_stack([probability, (probability >= model.threshold).astype(float)])


def output_fn(prediction: np.ndarray, accept: str | None) -> str:
    media = _accept_type(accept)
    if media == CSV:
        return "".join(f"{probability:.6f},{int(label)}\n" for probability, label in prediction)
    return json.dumps({"predictions": [{"probability": round(float(p), 6), "label": int(l)} for p, l in prediction]})


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _accept_type(accept: str | None) -> str:
    """First supported type in an Accept header; anything-goes means JSON, SageMaker's default."""
    for part in (accept or "*/*").split(","):
        media = _media_type(part)
        if media in (CSV, JSON):
            return media
        if media in ("*/*", "application/*", ""):
            return JSON
        if media == "text/*":
            return CSV
    raise UnsupportedContentType(f"accept {accept!r} is not supported; ask for {CSV} or {JSON}")


def _csv_rows(text: str) -> list[list]:
    if "\n" not in text.rstrip("\r\n") and '"' not in text:
        return [text.rstrip("\r\n").split(",")] if text.strip() else []  # one plain row: skip the csv module
    return [row for row in csv.reader(io.StringIO(text)) if row]


def _json_rows(text: str, model: Model) -> list:
    try:
        document = json.loads(text)
    except ValueError as error:
        raise InvalidInput(f"body is not valid JSON: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("instances"), list):
        raise InvalidInput('JSON body must be {"instances": [[...], ...]} or {"instances": [{"feature": value}, ...]}')
    rows = []
    for number, instance in enumerate(document["instances"], start=1):
        if isinstance(instance, dict):
            unknown = [key for key in instance if key not in model.index]
            if unknown:
                raise InvalidInput(f"row {number}: unknown feature {unknown[0]!r}; features are {', '.join(model.names)}")
            instance = [instance.get(name) for name in model.names]
        elif not isinstance(instance, list):
            raise InvalidInput(f"row {number}: expected a list of values or an object of feature: value")
        rows.append(instance)
    return rows


def _to_matrix(rows: list, model: Model) -> np.ndarray:
    width = len(model.features)
    matrix = np.empty((len(rows), width), dtype=object)
    for row_number, row in enumerate(rows, start=1):
        if len(row) != width:
            raise InvalidInput(f"row {row_number}: {len(row)} values, expected {width} ({', '.join(model.names)})")
        for column, (value, numeric) in enumerate(zip(row, model.numeric)):
            matrix[row_number - 1, column] = _cell(value, numeric, row_number, column, model)
    return matrix


def _cell(value, numeric: bool, row: int, column: int, model: Model):
    if value is None or (isinstance(value, str) and not value.strip()):
        return np.nan
    if numeric:
        if isinstance(value, bool):
            return _bad(row, column, model, f"{value!r} is not a number")
        try:
            number = float(value)
        except (TypeError, ValueError):
            return _bad(row, column, model, f"{value!r} is not a number")
        if not math.isfinite(number):
            return _bad(row, column, model, f"{value!r} is not a finite number")
        return number
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _bad(row, column, model, f"{value!r} is not a category (send a string)")


def _bad(row: int, column: int, model: Model, problem: str):
    raise InvalidInput(f"row {row}, column {column + 1} ({model.names[column]}): {problem}")


class _LeanPipeline:
    """ColumnTransformer[numeric: median imputer + scaler, categorical: imputer + one-hot] + classifier, in numpy."""

    def __init__(self, pipeline):
        columns, classifier = pipeline.named_steps["features"], pipeline.named_steps["classifier"]
        (_, numeric, self.numeric_columns), (_, categorical, self.categorical_columns) = columns.transformers_[:2]
        self.numeric_fill = numeric.named_steps["impute"].statistics_.astype(float)
        scaler = numeric.named_steps["scale"]
        self.mean = scaler.mean_ if scaler.with_mean else np.zeros(len(self.numeric_columns))
        self.scale = scaler.scale_ if scaler.with_std else np.ones(len(self.numeric_columns))
        self.category_fill = list(categorical.named_steps["impute"].statistics_)
        self.lookups, offset = [], len(self.numeric_columns)
        for categories in categorical.named_steps["onehot"].categories_:
            self.lookups.append({value: offset + position for position, value in enumerate(categories)})
            offset += len(categories)
        self.width = offset
        self.classifier = classifier
        self.linear = None
        if type(classifier).__name__ == "LogisticRegression" and len(classifier.classes_) == 2:
            self.linear = (classifier.coef_.ravel().astype(float), float(classifier.intercept_[0]))

    @classmethod
    def verified(cls, pipeline, probe: np.ndarray):
        """A lean pipeline that matches the full one on the probe rows, or None."""
        try:
            if not cls._usual_shape(pipeline):
                return None
            lean = cls(pipeline)
            if np.allclose(lean.probability(probe), pipeline.predict_proba(probe)[:, 1], rtol=0, atol=1e-9):
                return lean
        except (AttributeError, KeyError, TypeError, ValueError, IndexError):
            pass
        return None

    @staticmethod
    def _usual_shape(pipeline) -> bool:
        steps = getattr(pipeline, "named_steps", {})
        columns, classifier = steps.get("features"), steps.get("classifier")
        if columns is None or classifier is None or list(steps) != ["features", "classifier"]:
            return False
        fitted = [t for t in columns.transformers_ if t[0] != "remainder"]
        remainder = [t for t in columns.transformers_ if t[0] == "remainder"]
        if [name for name, _, _ in fitted] != ["numeric", "categorical"] or any(t[1] != "drop" for t in remainder):
            return False
        numeric, categorical = fitted[0][1], fitted[1][1]
        impute, onehot = numeric.named_steps["impute"], categorical.named_steps["onehot"]
        return (
            list(numeric.named_steps) == ["impute", "scale"] and list(categorical.named_steps) == ["impute", "onehot"]
            and type(numeric.named_steps["scale"]).__name__ == "StandardScaler"
            and type(onehot).__name__ == "OneHotEncoder" and onehot.drop is None and onehot.handle_unknown == "ignore"
            and getattr(onehot, "infrequent_categories_", None) in (None, [None] * len(onehot.categories_))
            and not impute.add_indicator and not categorical.named_steps["impute"].add_indicator
            and type(classifier).__name__ in ("LogisticRegression", "HistGradientBoostingClassifier")
        )

    def transform(self, data: np.ndarray) -> np.ndarray:
        out = np.zeros((len(data), self.width))
        numbers = data[:, self.numeric_columns].astype(float)
        holes = np.isnan(numbers)
        numbers[holes] = np.broadcast_to(self.numeric_fill, numbers.shape)[holes]
        out[:, : len(self.numeric_columns)] = (numbers - self.mean) / self.scale
        for row, values in enumerate(data[:, self.categorical_columns]):
            for value, fill, lookup in zip(values, self.category_fill, self.lookups):
                position = lookup.get(fill if isinstance(value, float) else value)
                if position is not None:  # an unseen category encodes as all zeros, as OneHotEncoder(handle_unknown="ignore")
                    out[row, position] = 1.0
        return out

    def probability(self, data: np.ndarray) -> np.ndarray:
        features = self.transform(data)
        if self.linear is not None:
            coefficients, intercept = self.linear
            return 1.0 / (1.0 + np.exp(-(features @ coefficients + intercept)))
        return self.classifier.predict_proba(features)[:, 1]


def _probe_rows(features: list[dict], numeric: list[bool]) -> np.ndarray:
    """Rows that visit every category, an unseen one, each numeric range's ends and middle, and holes."""
    count = max([len(f.get("categories", [])) for f in features] + [3]) + 2
    probe = np.empty((count, len(features)), dtype=object)
    for column, (feature, is_numeric) in enumerate(zip(features, numeric)):
        for row in range(count):
            if is_numeric:
                low, high = float(feature["min"]), float(feature["max"])
                values = [low, high, (low + high) / 2, low - 1, np.nan]
            else:
                values = [*feature["categories"], "mlship-unseen-category", np.nan]
            probe[row, column] = values[(row + column) % len(values)]
    return probe
