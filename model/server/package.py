"""Finds and loads a packaged model: `model.tar.gz`, a `dist/<name>-<version>/` folder, or an
extracted model directory. The package's own `code/inference.py` handlers stay the semantic source
of truth; this module only locates them and wraps them for the server."""

from __future__ import annotations

import importlib.util
import json
import logging
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from mlship.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelIdentity:
    """What /health and /metrics report: the inner manifest.json of model.tar.gz."""

    name: str
    version: str
    sha256: str
    features: tuple = ()

    @classmethod
    def read(cls, model_dir: Path) -> ModelIdentity:
        path = model_dir / "manifest.json"
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls("unknown", "unknown", "unknown")
        features = manifest.get("features")
        return cls(str(manifest.get("name", "unknown")), str(manifest.get("version", "unknown")),
                   str(manifest.get("sha256", "unknown")), tuple(features) if isinstance(features, list) else ())


def resolve_model_dir(model: Path, scratch: Path) -> Path:
    """The directory holding model.joblib and code/inference.py, extracting a tarball into `scratch`."""
    if model.is_dir() and (model / "model.tar.gz").is_file():
        model = model / "model.tar.gz"
    if model.is_dir():
        if not (model / "code" / "inference.py").is_file():
            raise UserError(f"--model {model}: no code/inference.py there; give a model.tar.gz, "
                            "a dist/<name>-<version>/ folder or an extracted model directory")
        return model
    if model.is_file() and model.name.endswith((".tar.gz", ".tgz")):
        try:
            with tarfile.open(model, "r:gz") as archive:
                archive.extractall(scratch, filter="data")
        except (tarfile.TarError, OSError, EOFError) as error:
            raise UserError(f"--model {model}: not a readable model.tar.gz ({error})") from None
        return resolve_model_dir(scratch, scratch)
    raise UserError(f"--model {model}: not found; give a model.tar.gz, a dist/<name>-<version>/ folder "
                    "or an extracted model directory")


def extraction_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="mlship-model-"))


def import_handlers(model_dir: Path) -> ModuleType:
    path = model_dir / "code" / "inference.py"
    spec = importlib.util.spec_from_file_location("mlship_packaged_inference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    missing = [name for name in ("model_fn", "input_fn", "predict_fn", "output_fn") if not hasattr(module, name)]
    if missing:
        raise RuntimeError(f"{path} lacks the handler(s) {', '.join(missing)}")
    return module


class Handlers:
    """The package's handlers plus the exception classes the server maps to status codes."""

    def __init__(self, module: ModuleType, model: Any):
        self.module = module
        self.model = model
        self.serving_model = model  # what predict_fn is given: the model, or its verified compiled twin
        self.invalid_input = getattr(module, "InvalidInput", ValueError)
        self.unsupported = getattr(module, "UnsupportedContentType", ())

    @classmethod
    def load(cls, model_dir: Path) -> Handlers:
        """Runs model_fn; a ModelIntegrityError (or any failure) propagates: the model is not served."""
        module = import_handlers(model_dir)
        return cls(module, module.model_fn(str(model_dir)))

    def input(self, body: bytes, content_type: str) -> Any:
        return self.module.input_fn(body, content_type)

    def predict(self, data: Any) -> Any:
        return self.module.predict_fn(data, self.serving_model)

    def output(self, prediction: Any, accept: str) -> tuple[bytes, str]:
        result = self.module.output_fn(prediction, accept)
        body, content_type = result if isinstance(result, tuple) else (result, accept)
        if isinstance(body, str):
            body = body.encode("utf-8")
        return bytes(body), content_type
