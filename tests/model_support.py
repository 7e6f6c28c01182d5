"""Helpers for the model tests: run `mlship model ...` in-process and build a release once per worker."""

from __future__ import annotations

from pathlib import Path

from mlship.cli import main

SMALL = ["--set", "data.rows=3000", "--set", "classifier.max_iter=80"]


def workspace_args(root: Path) -> list[str]:
    return ["--set", f"build_dir={root / 'build'}", "--set", f"dist_dir={root / 'dist'}"]


def mlship(*args: str) -> int:
    return main(["model", *args])


def build_release(root: Path, *extra: str) -> Path:
    """train + evaluate + package into root/dist/churn-<version>/; returns that folder."""
    options = [*SMALL, *workspace_args(root), *extra]
    for command in ("train", "evaluate", "package"):
        assert mlship(command, *options) == 0, f"mlship model {command} failed"
    version = next((extra[i + 1] for i, arg in enumerate(extra) if arg == "--version"), "1.0.0")
    return root / "dist" / f"churn-{version}"
