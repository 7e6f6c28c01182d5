"""Shared test fixtures: paths to the repository and to AWS's reference files."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# AWS's own Model Monitor files (README.md there says where from), copied from ../shared/fixtures so
# that the tests which check our readers and writers against them run in a clone anywhere.
MONITOR_FIXTURES = REPO / "tests" / "fixtures" / "sagemaker-model-monitor"
SHARED_MONITOR_FIXTURES = REPO.parent / "shared" / "fixtures" / "sagemaker-model-monitor"


@pytest.fixture
def monitor_fixtures() -> Path:
    return MONITOR_FIXTURES
