"""Shared by the infrastructure tests: the offline plans of every stack file, run once per session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from infra import offline

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "model" / "server" / "docker-compose.yml"
# Until the serving part's compose file is in this checkout, the program embeds this one.
STAND_IN_COMPOSE = """services:
  model:
    image: ghcr.io/example/mlship-server:test
    ports: ["8080:8080"]
"""


def compose_overrides(stack: str, tmp_dir: Path) -> dict[str, Any]:
    if COMPOSE.is_file():
        return {}
    stand_in = tmp_dir / "docker-compose.yml"
    stand_in.write_text(STAND_IN_COMPOSE)
    ec2 = offline.stack_config(stack).get("mlship:ec2")
    return {} if ec2 is None else {"mlship:ec2": {**ec2, "composeFile": str(stand_in)}}


def compose_text(config: dict[str, Any]) -> str:
    path = Path(config.get("mlship:ec2", {}).get("composeFile", COMPOSE))
    return (path if path.is_absolute() else REPO / path).read_text()


def policy(value: Any) -> dict:
    return json.loads(value) if isinstance(value, str) else value
