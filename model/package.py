"""Package: a gated, trained model -> the release folder dist/<name>-<version>/.

  model.tar.gz            SageMaker scikit-learn layout: model.joblib, manifest.json (the model's
                          identity), code/inference.py, code/requirements.txt; byte-for-byte
                          reproducible (sorted members, fixed times and owners)
  baseline/               statistics.json, constraints.json (monitoring.baseline, training features),
                          prediction_statistics.json (the model's output on the hold-out rows)
  evaluation/             model_quality_statistics.json, model_quality_constraints.json (hold-out)
  manifest.json           the release manifest: sha256 of every other file, metrics, schema, ...

The folder is built beside its final place and renamed at the end, so it is whole or absent.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np

from model.evaluate import holdout_predictions, passed_evaluation, read_workdir
from model.files import atomic_dir, sha256_file, write_json
from model.settings import Settings
from model.train import DATA_FILE, MODEL_FILE
from model.versioning import check_bump
from monitoring import formats
from monitoring.baseline import write_baseline, write_prediction_baseline

INFERENCE_SOURCE = Path(__file__).with_name("inference.py")
TARBALL = "model.tar.gz"
MANIFEST = "manifest.json"
FIXED_MTIME = 1_700_000_000  # tar member times: fixed, so the same model gives the same bytes
MONITOR_METRIC_NAMES = {"auc_roc": "auc", "precision": "precision", "recall": "recall", "f1": "f1", "accuracy": "accuracy"}


@dataclass(frozen=True)
class Release:
    directory: Path
    manifest: dict
    previous: str | None
    schema_note: str


def package(settings: Settings) -> Release:
    work, identity = read_workdir(settings)
    evaluation = passed_evaluation(settings, work)
    previous, note = check_bump(identity, packaged_versions(settings), f"packaged in {settings.dist_dir}")
    x_train, _ = joblib.load(work / DATA_FILE)["train"]
    with atomic_dir(settings.distdir) as out:
        write_tarball(out / TARBALL, work / MODEL_FILE, _model_manifest(identity))
        write_baseline(x_train, out / "baseline")
        write_prediction_baseline(*_predicted_outputs(work, identity), out / "baseline")
        _write_evaluation(out / "evaluation", evaluation, settings)
        files = {path.relative_to(out).as_posix(): sha256_file(path)
                 for path in sorted(out.rglob("*")) if path.is_file()}
        manifest = {
            "name": identity["name"],
            "version": identity["version"],
            "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "git": git_state(),
            "files": files,
            "model_sha256": identity["sha256"],
            "metrics": evaluation["metrics"],
            "gates": settings.gates,
            "decision_threshold": identity["decision_threshold"],
            "features": identity["features"],
            "target": identity["target"],
            "output": identity["output"],
            "training_data": {key: identity["training"][key] for key in ("source", "fingerprint", "rows", "holdout_rows", "positive_rate", "seed")},
            "classifier": identity["training"]["classifier"],
            "libraries": identity["libraries"],
        }
        write_json(out / MANIFEST, manifest)
    return Release(settings.distdir, manifest, previous, note)


def _predicted_outputs(work: Path, identity: dict) -> tuple[np.ndarray, np.ndarray]:
    """The model's probabilities and labels on the hold-out rows: what live predictions look like
    when nothing drifted (on its own training rows a model is more confident than it ever is live)."""
    probability, _ = holdout_predictions(work, identity)
    return probability, (probability >= identity["decision_threshold"]).astype(int)


def packaged_versions(settings: Settings) -> dict[str, dict]:
    """Manifests of the versions of this model already in the dist folder, by version."""
    found = {}
    for path in settings.dist_dir.glob(f"{settings.name}-*/{MANIFEST}"):
        manifest = json.loads(path.read_text())
        if manifest.get("name") == settings.name:
            found[manifest["version"]] = manifest
    return found


def _model_manifest(identity: dict) -> dict:
    """The identity inside the tarball: what model_fn checks and input_fn parses by."""
    keys = ("name", "version", "sha256", "features", "target", "output", "decision_threshold", "libraries")
    return {key: identity[key] for key in keys}


def write_tarball(path: Path, model_file: Path, model_manifest: dict) -> None:
    libraries = model_manifest["libraries"]
    requirements = "".join(f"{name}=={libraries[name]}\n" for name in ("scikit-learn", "numpy", "joblib"))
    members = [
        (MODEL_FILE, model_file.read_bytes()),
        (MANIFEST, (json.dumps(model_manifest, indent=2) + "\n").encode()),
        ("code/inference.py", INFERENCE_SOURCE.read_bytes()),
        ("code/requirements.txt", requirements.encode()),
    ]
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped:
        with tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for directory in ("code",):
                tar.addfile(_entry(directory, 0, tarfile.DIRTYPE, 0o755))
            for name, data in members:
                tar.addfile(_entry(name, len(data), tarfile.REGTYPE, 0o644), io.BytesIO(data))


def _entry(name: str, size: int, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode, info.mtime = size, kind, mode, FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _write_evaluation(directory: Path, evaluation: dict, settings: Settings) -> None:
    """The hold-out metrics and gates in Model Monitor's model-quality formats (for the model registry)."""
    deviations = evaluation.get("standard_deviations", {})
    metrics = {MONITOR_METRIC_NAMES[name]: (value, deviations.get(name, 0.0)) for name, value in evaluation["metrics"].items()}
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    formats.write_json(directory / formats.MODEL_QUALITY_STATISTICS_FILE, formats.model_quality_statistics_to_json(
        evaluation["holdout_rows"], metrics, evaluation["confusion_matrix"], now))
    constraints = {MONITOR_METRIC_NAMES[name]: formats.ModelQualityConstraint(threshold, "LessThanThreshold")
                   for name, threshold in settings.gates.items()}
    formats.write_json(directory / formats.MODEL_QUALITY_CONSTRAINTS_FILE, formats.model_quality_constraints_to_json(constraints))


def git_state() -> dict:
    """The commit the release was built from, and whether the checkout had uncommitted changes."""
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, check=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    commit = git("rev-parse", "HEAD")
    return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no")) if commit else False}
