"""The model's settings: model/settings.yaml plus command-line overrides, read once and validated."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlship.errors import UserError

DEFAULT_SETTINGS = Path(__file__).with_name("settings.yaml")
CLASSIFIERS = ("hist_gradient_boosting", "logistic_regression")
GATE_METRICS = ("auc_roc", "precision", "recall", "f1", "accuracy")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> Version:
        match = SEMVER.match(str(text))
        if not match:
            raise UserError(f"version {text!r} is not a semantic version MAJOR.MINOR.PATCH such as 1.0.0")
        return cls(*map(int, match.groups()))

    def __lt__(self, other: Version) -> bool:
        return (self.major, self.minor, self.patch) < (other.major, other.minor, other.patch)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


@dataclass(frozen=True)
class Settings:
    name: str
    version: Version
    data: str  # "synthetic" or a CSV path
    rows: int
    target: str
    features: tuple[str, ...]
    categorical: tuple[str, ...]
    seed: int
    holdout: float
    classifier: str
    max_iter: int
    learning_rate: float
    max_leaf_nodes: int
    decision_threshold: float
    gates: dict[str, float]
    build_dir: Path
    dist_dir: Path

    @property
    def release(self) -> str:
        return f"{self.name}-{self.version}"

    @property
    def workdir(self) -> Path:
        """Where train and evaluate keep their outputs between commands."""
        return self.build_dir / self.release

    @property
    def distdir(self) -> Path:
        return self.dist_dir / self.release


def load_settings(path: Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Read the YAML file, apply dotted-key overrides (`gates.auc_roc`), validate every value."""
    path = path or DEFAULT_SETTINGS
    if not path.is_file():
        raise UserError(f"settings file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise UserError(f"settings file {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise UserError(f"settings file {path} must hold a mapping of keys to values")
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value)
    return _validate(raw, path)


def parse_assignment(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` from --set; the value is read as YAML, so numbers and lists keep their types."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UserError(f"--set expects KEY=VALUE (e.g. gates.auc_roc=0.9), got {text!r}")
    return key.strip(), yaml.safe_load(value) if value.strip() else ""


def _set_dotted(raw: dict, key: str, value: Any) -> None:
    node = raw
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"setting {key!r}: {part!r} is not a section")
    node[leaf] = value


def _get(raw: dict, key: str, kind: type, path: Path) -> Any:
    node: Any = raw
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise UserError(f"setting {key!r} is missing from {path}")
        node = node[part]
    if kind is float and isinstance(node, int) and not isinstance(node, bool):
        node = float(node)
    if kind is tuple:
        node = tuple(node or ())
        if not all(isinstance(item, str) for item in node):
            raise UserError(f"setting {key!r} must be a list of column names, got {node!r}")
        return node
    if not isinstance(node, kind) or isinstance(node, bool) and kind is not bool:
        raise UserError(f"setting {key!r} must be {kind.__name__}, got {node!r}")
    return node


def _validate(raw: dict, path: Path) -> Settings:
    known = {"name", "version", "data", "target", "features", "categorical", "seed", "holdout",
             "classifier", "decision_threshold", "gates", "build_dir", "dist_dir"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UserError(f"unknown setting {unknown[0]!r} in {path}; known settings: {', '.join(sorted(known))}")
    name = _get(raw, "name", str, path)
    if not NAME_PATTERN.match(name):
        raise UserError(f"setting 'name' {name!r} must be lowercase letters, digits and dashes, starting with a letter")
    gates = _get(raw, "gates", dict, path)
    for metric, threshold in gates.items():
        if metric not in GATE_METRICS:
            raise UserError(f"gate {metric!r} is not a metric; choose from {', '.join(GATE_METRICS)}")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise UserError(f"gate {metric!r} must be a number between 0 and 1, got {threshold!r}")
    settings = Settings(
        name=name,
        version=Version.parse(str(_get(raw, "version", object, path))),
        data=str(_get(raw, "data.source", str, path)),
        rows=_get(raw, "data.rows", int, path),
        target=_get(raw, "target", str, path),
        features=_get(raw, "features", tuple, path),
        categorical=_get(raw, "categorical", tuple, path),
        seed=_get(raw, "seed", int, path),
        holdout=_get(raw, "holdout", float, path),
        classifier=_get(raw, "classifier.kind", str, path),
        max_iter=_get(raw, "classifier.max_iter", int, path),
        learning_rate=_get(raw, "classifier.learning_rate", float, path),
        max_leaf_nodes=_get(raw, "classifier.max_leaf_nodes", int, path),
        decision_threshold=_get(raw, "decision_threshold", float, path),
        gates={metric: float(value) for metric, value in gates.items()},
        build_dir=Path(_get(raw, "build_dir", str, path)),
        dist_dir=Path(_get(raw, "dist_dir", str, path)),
    )
    if not 0.05 <= settings.holdout <= 0.5:
        raise UserError(f"setting 'holdout' must be between 0.05 and 0.5, got {settings.holdout}")
    if not 0 < settings.decision_threshold < 1:
        raise UserError(f"setting 'decision_threshold' must be between 0 and 1, got {settings.decision_threshold}")
    if settings.classifier not in CLASSIFIERS:
        raise UserError(f"setting 'classifier.kind' {settings.classifier!r} is not one of {', '.join(CLASSIFIERS)}")
    if settings.max_iter < 1 or settings.max_leaf_nodes < 2 or not 0 < settings.learning_rate <= 1:
        raise UserError("classifier settings: max_iter >= 1, max_leaf_nodes >= 2, 0 < learning_rate <= 1")
    return settings
