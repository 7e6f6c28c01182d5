"""Train: data -> feature schema -> scikit-learn Pipeline, saved in the working folder.

The working folder `build/<name>-<version>/` holds what later commands need:
  model.joblib   the fitted Pipeline
  model.json     the model's identity (becomes manifest.json inside model.tar.gz) and training facts
  data.joblib    the training and hold-out frames (evaluate scores the hold-out; package baselines the training part)
  metrics.json   written by evaluate
The pipeline is fitted on an object array in schema order (not a DataFrame), so that inference.py
needs neither pandas nor column names: it hands the handlers' parsed rows straight to predict_proba.
"""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlship.errors import UserError
from model.data import SYNTHETIC, Dataset, load_csv, load_synthetic
from model.files import atomic_dir, sha256_file, write_json
from model.settings import Settings

log = logging.getLogger(__name__)

MODEL_FILE = "model.joblib"
IDENTITY_FILE = "model.json"
DATA_FILE = "data.joblib"
METRICS_FILE = "metrics.json"
OUTPUT_SCHEMA = [{"name": "probability", "type": "numeric"}, {"name": "label", "type": "numeric"}]


@dataclass(frozen=True)
class TrainResult:
    workdir: Path
    identity: dict
    train_rows: int
    holdout_rows: int


def load_dataset(settings: Settings) -> Dataset:
    if settings.data == SYNTHETIC:
        return load_synthetic(settings.rows, settings.seed, settings.target)
    return load_csv(Path(settings.data), settings.target, settings.categorical)


def select_features(dataset: Dataset, settings: Settings) -> pd.DataFrame:
    if not settings.features:
        return dataset.features
    missing = [name for name in settings.features if name not in dataset.features.columns]
    if missing:
        raise UserError(f"feature {missing[0]!r} not in {dataset.source}; its columns are {', '.join(dataset.features.columns)}")
    return dataset.features[list(settings.features)]


def infer_schema(frame: pd.DataFrame, categorical: tuple[str, ...]) -> list[dict]:
    """The feature schema of the contract: name, type, dtype, range or categories, nullable."""
    schema = []
    for name in frame.columns:
        column = frame[name]
        filled = column.dropna()
        entry: dict = {"name": str(name)}
        if name not in categorical and pd.api.types.is_numeric_dtype(column):
            values = filled.astype(float)
            integral = bool((values == values.round()).all())
            entry |= {"type": "numeric", "dtype": "integer" if integral else "float",
                      "min": _plain(values.min()), "max": _plain(values.max())}
        else:
            entry |= {"type": "categorical", "dtype": "string",
                      "categories": sorted({str(value).strip() for value in filled})}
        entry["nullable"] = bool(column.isna().any())
        schema.append(entry)
    return schema


def to_matrix(frame: pd.DataFrame, schema: list[dict]) -> np.ndarray:
    """The same object array inference.input_fn builds: floats for numbers, strings, nan for missing."""
    matrix = np.empty((len(frame), len(schema)), dtype=object)
    for position, feature in enumerate(schema):
        column = frame[feature["name"]]
        if feature["type"] == "numeric":
            matrix[:, position] = column.to_numpy(dtype=float, na_value=np.nan)
        else:
            matrix[:, position] = [np.nan if pd.isna(value) else str(value).strip() for value in column]
    return matrix


def build_pipeline(schema: list[dict], settings: Settings) -> Pipeline:
    numeric = [i for i, feature in enumerate(schema) if feature["type"] == "numeric"]
    categorical = [i for i, feature in enumerate(schema) if feature["type"] == "categorical"]
    columns = ColumnTransformer(
        [
            ("numeric", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), numeric),
            ("categorical", Pipeline([
                ("impute", SimpleImputer(strategy="most_frequent")),
                # Unseen categories encode as all zeros; monitoring's categorical_values_check reports them.
                ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]), categorical),
        ]
    )
    return Pipeline([("features", columns), ("classifier", _classifier(settings))])


def _classifier(settings: Settings) -> HistGradientBoostingClassifier | LogisticRegression:
    if settings.classifier == "logistic_regression":
        return LogisticRegression(max_iter=max(settings.max_iter, 200), random_state=settings.seed)
    return HistGradientBoostingClassifier(
        max_iter=settings.max_iter, learning_rate=settings.learning_rate,
        max_leaf_nodes=settings.max_leaf_nodes, random_state=settings.seed,
    )



def library_versions() -> dict[str, str]:
    return {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
            "numpy": np.__version__, "joblib": joblib.__version__, "pandas": pd.__version__}


def train(settings: Settings) -> TrainResult:
    dataset = load_dataset(settings)
    features = select_features(dataset, settings)
    unknown = [name for name in settings.categorical if name not in features.columns]
    if unknown:
        raise UserError(f"categorical column {unknown[0]!r} is not a feature; features are {', '.join(features.columns)}")
    if dataset.target.value_counts().min() < 5:
        raise UserError(f"{dataset.source} has fewer than 5 rows of one class; a hold-out split needs more")
    x_train, x_holdout, y_train, y_holdout = train_test_split(
        features, dataset.target, test_size=settings.holdout, random_state=settings.seed, stratify=dataset.target
    )
    schema = infer_schema(x_train, settings.categorical)
    log.info("training on %d rows, %d features (%s), holding out %d", len(x_train), len(schema), dataset.source, len(x_holdout))
    pipeline = build_pipeline(schema, settings).fit(to_matrix(x_train, schema), y_train.to_numpy())
    with atomic_dir(settings.workdir) as work:
        joblib.dump(pipeline, work / MODEL_FILE)
        joblib.dump({"train": (x_train, y_train), "holdout": (x_holdout, y_holdout)}, work / DATA_FILE)
        identity = {
            "name": settings.name,
            "version": str(settings.version),
            "sha256": sha256_file(work / MODEL_FILE),
            "features": schema,
            "target": {"name": settings.target, "classes": [0, 1]},
            "output": OUTPUT_SCHEMA,
            "decision_threshold": settings.decision_threshold,
            "training": {
                "source": dataset.source, "fingerprint": dataset.fingerprint, "seed": settings.seed,
                "rows": len(x_train), "holdout_rows": len(x_holdout),
                "positive_rate": round(float(dataset.target.mean()), 4),
                "classifier": {"kind": type(pipeline.named_steps["classifier"]).__name__, "max_iter": settings.max_iter,
                               "learning_rate": settings.learning_rate, "max_leaf_nodes": settings.max_leaf_nodes},
            },
            "libraries": library_versions(),
        }
        write_json(work / IDENTITY_FILE, identity)
    return TrainResult(settings.workdir, identity, len(x_train), len(x_holdout))


def _plain(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)
