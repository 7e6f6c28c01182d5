"""`mlship review --offline`: the review fork pull requests get, from offline plans of two commits."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

from conftest import REPO

from infra.review.changes import changes_between_plans
from infra.review.cli import main

SG = "aws:ec2/securityGroup:SecurityGroup"
CONFIG = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"


def resource(type_: str, name: str, properties: dict, stack: str = "dev") -> dict:
    return {"urn": f"urn:pulumi:{stack}::mlship::{type_}::{name}", "type": type_, "name": name,
            "parent": None, "custom": True, "protect": False, "inputs": properties}


BASE = [
    resource(SG, "server-sg", {"ingress": [{"protocol": "tcp", "fromPort": 8080, "toPort": 8080,
                                            "cidrBlocks": ["10.0.0.0/16"]}]}),
    resource(CONFIG, "endpoint-config", {"productionVariants": [
        {"variantName": "primary", "instanceType": "ml.m5.large", "initialInstanceCount": 1,
         "modelName": "churn-1-2-0"}]}),
    resource("aws:s3/bucketV2:BucketV2", "captures", {"bucket": "mlship-captures-dev"}),
]


def test_plans_of_two_commits_make_the_same_review(tmp_path):
    head = json.loads(json.dumps(BASE[:2]))
    head[0]["inputs"]["ingress"].append({"protocol": "tcp", "fromPort": 22, "toPort": 22,
                                             "cidrBlocks": ["0.0.0.0/0"]})
    head[1]["inputs"]["productionVariants"][0]["initialInstanceCount"] = 2
    (tmp_path / "base.json").write_text(json.dumps({"stack": "dev", "resources": BASE}))
    (tmp_path / "head.json").write_text(json.dumps(head))
    out = tmp_path / "review.md"
    assert main(["--offline", "--before", str(tmp_path / "base.json"), "--after", str(tmp_path / "head.json"),
                 "--output", str(out)]) == 0
    markdown = out.read_text()
    assert "(offline plan, no cloud credentials)" in markdown
    assert "**dev** (offline plan): 1 to delete, 1 to replace, 1 to update" in markdown
    section = markdown.split("### Every change", 1)[0]
    assert "Deletes `aws:s3/bucketV2:BucketV2` **captures**" in section
    assert "Opens port 22/tcp from **the whole internet**" in section
    # every property of an endpoint configuration forces a new one: the offline review knows it
    assert f"`{CONFIG}` **endpoint-config**: ml.m5.large ×1 → ml.m5.large ×2, **+$83.95/month**" in section


def test_unchanged_resources_are_not_changes():
    stack = changes_between_plans(BASE, json.loads(json.dumps(BASE)))
    assert stack.changes == [] and stack.stack == "dev"


def _git(cwd, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=cwd, check=True,
                   capture_output=True)


def test_base_ref_is_planned_from_a_clean_export_of_that_commit(tmp_path):
    """--base REF runs each commit's own `mlship plan --json` (here a plan command reading a JSON file)."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "mlship", repo / "mlship", ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "infra").mkdir()
    (repo / "infra" / "plan.py").write_text(textwrap.dedent("""
        import argparse, json, pathlib
        def main(argv):
            parser = argparse.ArgumentParser()
            parser.add_argument("--json", action="store_true")
            parser.add_argument("--stack")
            args = parser.parse_args(argv)
            print(pathlib.Path(f"resources.{args.stack}.json").read_text())
            return 0
    """))
    (repo / "Pulumi.dev.yaml").write_text("config: {}\n")
    (repo / "resources.dev.json").write_text(json.dumps(BASE))
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "base")
    # the working tree (the pull request's head) drops the bucket; uncommitted on purpose
    (repo / "resources.dev.json").write_text(json.dumps(BASE[:2]))
    result = subprocess.run([sys.executable, "-m", "mlship", "review", "--offline", "--base", "main",
                             "--repo", str(repo)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "**dev** (offline plan): 1 to delete" in result.stdout
    assert "Deletes `aws:s3/bucketV2:BucketV2` **captures**" in result.stdout

    result = subprocess.run([sys.executable, "-m", "mlship", "review", "--offline", "--base", "no-such-branch",
                             "--repo", str(repo)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and "--base 'no-such-branch' is not a commit" in result.stderr
