"""Handlers that follow the inference.py contract in notes/COMMON.md, for the server's tests.

The model helper's `code/inference.py` (issue 2) is the real one; this copy lets the server be
tested before that lands and keeps the server honest about depending only on the contract:
model_fn / input_fn / predict_fn / output_fn, InvalidInput (400), UnsupportedContentType (415),
ModelIntegrityError (never serve). Only the standard library, numpy, scikit-learn and joblib.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from pathlib import Path

import joblib
import numpy as np


class InvalidInput(ValueError):
    """The request body cannot be read as the model's rows; names row (1-based) and column."""


class UnsupportedContentType(ValueError):
    """A content type or accept type the handlers do not speak."""


class ModelIntegrityError(RuntimeError):
    """model.joblib does not match the sha256 its manifest records."""


# input_fn gets no model argument in SageMaker's contract, so model_fn records the schema here.
_FEATURES: list[dict] = []


def model_fn(model_dir: str):
    root = Path(model_dir)
    manifest = json.loads((root / "manifest.json").read_text())
    digest = hashlib.sha256((root / "model.joblib").read_bytes()).hexdigest()
    if digest != manifest["sha256"]:
        raise ModelIntegrityError(f"model.joblib sha256 {digest} does not match the manifest's {manifest['sha256']}")
    _FEATURES[:] = manifest["features"]
    return joblib.load(root / "model.joblib")


def _cell(value, feature: dict, row: int, column: int):
    name = feature["name"]
    if value is None or value == "":
        if not feature.get("nullable", True):
            raise InvalidInput(f"row {row}, column {column} ({name}): a value is required")
        return math.nan if feature["type"] == "numeric" else "__missing__"
    if feature["type"] == "numeric":
        if isinstance(value, bool):
            raise InvalidInput(f"row {row}, column {column} ({name}): expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InvalidInput(f"row {row}, column {column} ({name}): expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise InvalidInput(f"row {row}, column {column} ({name}): expected a finite number, got {value!r}")
        return number
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise InvalidInput(f"row {row}, column {column} ({name}): expected text, got {value!r}")
    return str(value)


def _rows_from_csv(text: str) -> list[list]:
    rows = [row for row in csv.reader(io.StringIO(text), strict=True) if row]
    if not rows:
        raise InvalidInput("row 1: the CSV body has no rows")
    return rows


def _rows_from_json(text: str, features: list[dict]) -> list[list]:
    try:
        document = json.loads(text)
    except ValueError as error:
        raise InvalidInput(f"row 1: the body is not JSON ({error})") from None
    instances = document.get("instances") if isinstance(document, dict) else None
    if not isinstance(instances, list) or not instances:
        raise InvalidInput('row 1: expected {"instances": [[...], ...]} or {"instances": [{...}, ...]}')
    names = [feature["name"] for feature in features]
    rows = []
    for number, instance in enumerate(instances, start=1):
        if isinstance(instance, dict):
            unknown = sorted(set(instance) - set(names))
            if unknown:
                raise InvalidInput(f"row {number}: unknown feature {unknown[0]!r}; expected {', '.join(names)}")
            rows.append([instance.get(name) for name in names])
        elif isinstance(instance, list):
            rows.append(instance)
        else:
            raise InvalidInput(f"row {number}: an instance is a list of values or an object of features")
    return rows




def _matrix(rows: list[list], features: list[dict]) -> np.ndarray:
    matrix = np.empty((len(rows), len(features)), dtype=object)
    for number, row in enumerate(rows, start=1):
        if len(row) != len(features):
            raise InvalidInput(f"row {number}: {len(row)} columns, expected {len(features)}")
        for column, (value, feature) in enumerate(zip(row, features), start=1):
            matrix[number - 1, column - 1] = _cell(value, feature, number, column)
    return matrix


def input_fn(body, content_type: str) -> np.ndarray:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in ("text/csv", "application/json"):
        raise UnsupportedContentType(f"content type {content_type!r}; allowed: text/csv, application/json")
    try:
        text = body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else body
    except UnicodeDecodeError as error:
        raise InvalidInput(f"row 1: the body is not UTF-8 ({error})") from None
    try:
        rows = _rows_from_csv(text) if media_type == "text/csv" else _rows_from_json(text, _FEATURES)
    except csv.Error as error:
        raise InvalidInput(f"row 1: malformed CSV ({error})") from None
    return _matrix(rows, _FEATURES)


def predict_fn(data: np.ndarray, model) -> dict:
    probability = model.predict_proba(data)[:, 1]
    return {"probability": probability, "label": (probability >= 0.5).astype(int)}


def output_fn(prediction: dict, accept: str):
    media_type = (accept or "").split(";", 1)[0].strip().lower()
    pairs = zip(prediction["probability"].tolist(), prediction["label"].tolist())
    if media_type == "text/csv":
        return "".join(f"{p:.6g},{l}\n" for p, l in pairs), "text/csv"
    if media_type == "application/json":
        return json.dumps({"predictions": [{"probability": p, "label": l} for p, l in pairs]}), "application/json"
    raise UnsupportedContentType(f"accept type {accept!r}; allowed: text/csv, application/json")
