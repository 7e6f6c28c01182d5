"""Shared test fixtures: paths to the repository and to AWS's reference files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# shared/ sits beside the checkout (../shared) on developer machines and in CI.
SHARED = Path(os.environ.get("MLSHIP_SHARED", REPO.parent / "shared"))
MONITOR_FIXTURES = SHARED / "fixtures" / "sagemaker-model-monitor"


@pytest.fixture
def monitor_fixtures() -> Path:
    if not MONITOR_FIXTURES.is_dir():
        pytest.skip(f"AWS reference files not found at {MONITOR_FIXTURES} (set MLSHIP_SHARED)")
    return MONITOR_FIXTURES
