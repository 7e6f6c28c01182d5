"""Offline plans of two commits, for reviews where no cloud credentials exist (fork pull requests).

A plan is what `mlship plan --json --stack STACK` prints: the resources the Pulumi program
declares, computed with Pulumi's mocks and no cloud call. The plan of the base commit is made
from a clean export of that commit (`git archive`), so that nothing in the working tree leaks
into it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from mlship.errors import UserError
from infra.review.changes import StackChanges, changes_between_plans, plan_resources

log = logging.getLogger(__name__)


def stacks_in(tree: Path) -> list[str]:
    """The stacks a checkout defines (one Pulumi.<stack>.yaml each)."""
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in tree.glob("Pulumi.*.yaml"))


def plan_of_tree(tree: Path, stack: str) -> list[dict[str, Any]]:
    """Run the tree's own `mlship plan --json` and return its resources."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "mlship", "plan", "--json", "--stack", stack]
    log.info("computing the offline plan of stack %s in %s", stack, tree)
    result = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"`mlship plan --json --stack {stack}` failed in {tree}: {last}")
    try:
        return plan_resources(json.loads(result.stdout), origin=f"the plan of stack {stack} in {tree}")
    except json.JSONDecodeError as error:
        raise UserError(f"`mlship plan --json --stack {stack}` in {tree} printed no JSON: {error.msg}") from error


def export_commit(repo: Path, ref: str, into: Path) -> None:
    """Write the files of commit `ref` into `into` (no .git, no untracked files)."""
    resolved = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=repo,
                              capture_output=True, text=True)
    if resolved.returncode != 0:
        raise UserError(f"--base {ref!r} is not a commit in {repo}; give a branch, tag or commit "
                        "(in CI, fetch it first: git fetch origin main)")
    archive = into / "base.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "archive", "--format=tar", resolved.stdout.strip()], cwd=repo, stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "tree", filter="data")
    archive.unlink()


def review_offline(repo: Path, base: str, stacks: list[str] | None = None) -> list[StackChanges]:
    """Changes from the plans of commit `base` to the plans of the working tree, per stack."""
    with tempfile.TemporaryDirectory(prefix="mlship-base-") as scratch:
        export_commit(repo, base, Path(scratch))
        base_tree = Path(scratch) / "tree"
        names = stacks or stacks_in(repo)
        if not names:
            raise UserError(f"no Pulumi.<stack>.yaml in {repo}; name the stacks with --stack")
        result = []
        for stack in names:
            before = plan_of_tree(base_tree, stack) if (base_tree / f"Pulumi.{stack}.yaml").exists() else []
            after = plan_of_tree(repo, stack)
            result.append(changes_between_plans(before, after, stack=stack))
        return result
