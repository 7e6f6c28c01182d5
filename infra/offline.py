"""Run the Pulumi program offline, under Pulumi's own mocks, with a stack's real Pulumi.<stack>.yaml.

No cloud and no Pulumi CLI: every resource the program registers is recorded with its type, name,
parent, options and inputs. `mlship plan`, the tests, the policy tests and the offline review use this.
"""

from __future__ import annotations

import json
import logging
import os
import re
import runpy
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlship.errors import UserError

REPO = Path(__file__).resolve().parents[1]
PROGRAM = REPO / "infra" / "__main__.py"
PROJECT = "mlship"
OFFLINE_ACCOUNT = "123456789012"


@dataclass
class PlannedResource:
    urn: str
    type: str
    name: str
    parent: str | None  # the parent's URN; None for children of the stack
    custom: bool
    inputs: dict[str, Any]
    protect: bool = False
    ignore_changes: list[str] = field(default_factory=list)
    retain_on_delete: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"urn": self.urn, "type": self.type, "name": self.name, "parent": self.parent,
                "custom": self.custom, "protect": self.protect, "ignoreChanges": self.ignore_changes,
                "retainOnDelete": self.retain_on_delete, "inputs": self.inputs}


@dataclass
class Plan:
    stack: str
    resources: list[PlannedResource]
    outputs: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # what the plan answered from local files

    def of_type(self, type_: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str | None = None) -> PlannedResource:
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        if len(found) != 1:
            raise LookupError(f"expected one {type_} {name or ''}, found {[r.name for r in found]}")
        return found[0]

    def by_urn(self, urn: str) -> PlannedResource:
        return next(r for r in self.resources if r.urn == urn)

    def to_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "resources": [r.to_json() for r in self.resources], "outputs": self.outputs,
                "notes": self.notes}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Plan:
        resources = [PlannedResource(
            urn=r["urn"], type=r["type"], name=r["name"], parent=r["parent"], custom=r["custom"], inputs=r["inputs"],
            protect=r["protect"], ignore_changes=r["ignoreChanges"], retain_on_delete=r["retainOnDelete"])
            for r in document["resources"]]
        return cls(stack=document["stack"], resources=resources, outputs=dict(document["outputs"]),
                   notes=list(document.get("notes", [])))


def stack_files(repo: Path = REPO) -> dict[str, Path]:
    """Every stack of the project: Pulumi.<stack>.yaml beside Pulumi.yaml."""
    return {p.name[len("Pulumi."):-len(".yaml")]: p for p in sorted(repo.glob("Pulumi.*.yaml"))}


def stack_config(stack: str, repo: Path = REPO) -> dict[str, Any]:
    files = stack_files(repo)
    if stack not in files:
        raise UserError(f"stack {stack!r} has no Pulumi.{stack}.yaml; stacks here: {', '.join(files) or 'none'}")
    document = yaml.safe_load(files[stack].read_text()) or {}
    config = document.get("config") or {}
    # Keys without a namespace belong to the project, as in the Pulumi CLI.
    return {key if ":" in key else f"{PROJECT}:{key}": value for key, value in config.items()}


class _Mocks:
    """Answers for what a real engine would learn from AWS: ids, ARNs, names, lookups."""

    def __init__(self, region: str, repo: Path):
        self.region = region
        self.repo = repo
        self.notes: list[str] = []
        self.inputs: dict[tuple[str, str], dict] = {}

    def artifact(self, bucket: str, key: str) -> dict:
        """A published file of the artifacts bucket, answered from this checkout (see `local_artifact`)."""
        path = local_artifact(self.repo, key)
        self.notes.append(f"s3://{bucket}/{key} read offline from {path.relative_to(self.repo)}")
        return {"bucket": bucket, "key": key, "body": path.read_text(), "contentType": "application/json",
                "id": f"{bucket}/{key}"}

    def new_resource(self, args) -> tuple[str, dict]:
        name, inputs = args.name, dict(args.inputs)
        self.inputs[(args.typ, name)] = inputs
        service = args.typ.split(":")[1].split("/")[0].lower()
        state = {**inputs, "arn": inputs.get("arn") or f"arn:aws:{service}:{self.region}:{OFFLINE_ACCOUNT}:{name}"}
        for key in ("name", "bucket", "keyId", "keyName", "endpointName", "modelPackageGroupName", "pipelineName",
                    "jobDefinitionName", "dashboardName"):
            state.setdefault(key, name)
        if args.typ == "aws:ec2/instance:Instance":
            state.update(publicIp="198.51.100.10", privateIp="10.0.0.10")
        if args.typ == "aws:ec2/eip:Eip":
            state["publicIp"] = "198.51.100.20"
        return f"{name}-id", state

    def call(self, args) -> tuple[dict, list]:
        token = args.token
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": OFFLINE_ACCOUNT, "arn": f"arn:aws:iam::{OFFLINE_ACCOUNT}:user/offline",
                    "userId": "OFFLINE", "id": OFFLINE_ACCOUNT}, []
        if token == "aws:ec2/getAmi:getAmi":
            return {"id": "ami-0offline0ubuntu24", "imageId": "ami-0offline0ubuntu24",
                    "name": "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-offline"}, []
        if token == "aws:ec2/getVpc:getVpc":
            return {"id": "vpc-0offline0default", "cidrBlock": "172.31.0.0/16", "default": True}, []
        if token == "aws:s3/getObjects:getObjects":
            key = args.args["prefix"]
            known = local_artifact(self.repo, key, required=False) is not None
            return {"bucket": args.args["bucket"], "prefix": key, "keys": [key] if known else [],
                    "id": args.args["bucket"]}, []
        if token == "aws:s3/getObject:getObject":
            return self.artifact(args.args["bucket"], args.args["key"]), []
        raise RuntimeError(f"the offline plan does not know how to answer {token}")


def local_artifact(repo: Path, key: str, required: bool = True) -> Path | None:
    """Where the offline plan finds a file the artifacts bucket holds at `models/<name>/<version>/<file>`.

    The release folder `dist/<name>-<version>/` when that version was packaged in this checkout,
    else the committed example for the model (infra/examples/<name>/, made by
    `python -m infra.examples.make_baseline`), so a fresh clone plans without a build.
    """
    match = re.fullmatch(r"models/(?P<name>[^/]+)/(?P<version>[^/]+)/(?P<file>.+)", key)
    if not match:
        raise UserError(f"the offline plan only knows published model files (models/<name>/<version>/...), not {key}")
    candidates = [repo / "dist" / f"{match['name']}-{match['version']}" / match["file"],
                  repo / "infra" / "examples" / match["name"] / match["file"]]
    found = next((path for path in candidates if path.is_file()), None)
    if found is None and required:
        raise UserError(f"the offline plan needs {key}: package {match['name']}@{match['version']} "
                        f"(mlship model package) or add {candidates[1].relative_to(repo)}")
    return found


def _error_collector() -> tuple[logging.Logger, list[str]]:
    errors: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR:
                errors.append(record.getMessage())

    logger = logging.getLogger("mlship.offline.engine")
    logger.handlers[:] = [Collect()]
    logger.propagate = False
    return logger, errors


def run(stack: str, repo: Path = REPO, overrides: Mapping[str, Any] | None = None) -> Plan:
    """Run the program for one stack under mocks and return what it registered.

    `overrides` replaces whole configuration keys (e.g. a test's wrong value). Settings errors
    surface as `infra.settings.SettingsError` (a UserError) before any resource is registered.
    """
    import pulumi
    import pulumi.runtime.mocks as mocks_module
    from pulumi.runtime import settings as runtime_settings
    from pulumi.runtime.config import set_all_config
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    config = {**stack_config(stack, repo), **(overrides or {})}
    region = str(config.get("aws:region", "us-east-1"))
    mocks = _Mocks(region, repo)
    recorded: list[PlannedResource] = []

    class Monitor(mocks_module.MockMonitor):
        def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
            response = super().RegisterResource(request)
            if request.type != "pulumi:pulumi:Stack":
                recorded.append(PlannedResource(
                    urn=response.urn, type=request.type, name=request.name,
                    parent=request.parent if request.parent and not request.parent.endswith(f"::{PROJECT}-{stack}") else None,
                    custom=bool(request.custom), inputs=_plain(mocks.inputs.get((request.type, request.name), {})),
                    protect=bool(request.protect), ignore_changes=list(request.ignoreChanges),
                    retain_on_delete=bool(request.retainOnDelete)))
            return response

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args):
            return mocks.new_resource(args)

        def call(self, args):
            return mocks.call(args)

    logger, errors = _error_collector()
    runtime_settings.ROOT.set(None)  # a new root stack resource for this run
    pulumi.runtime.set_mocks(Mocks(), project=PROJECT, stack=stack, preview=False, logger=logger,
                             monitor=Monitor(Mocks()))
    secret_keys = [k for k, v in config.items() if isinstance(v, Mapping) and set(v) == {"secure"}]
    set_all_config({k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}, secret_keys)
    root = runtime_settings.get_root_resource()
    _sync_await(run_pulumi_func(lambda: runpy.run_path(str(repo / "infra" / "__main__.py"), run_name="__main__")))
    if errors:
        raise RuntimeError(f"the program failed offline for stack {stack!r}: {errors[0]}")
    outputs = {name: _sync_await(pulumi.Output.from_input(value).future()) for name, value in root.outputs.items()}
    return Plan(stack=stack, resources=_in_tree_order(recorded), outputs=outputs, notes=sorted(set(mocks.notes)))


def _in_tree_order(resources: list[PlannedResource]) -> list[PlannedResource]:
    """Each component followed by its children, by name: the same order on every run."""
    by_urn = {r.urn: r for r in resources}

    def path(r: PlannedResource) -> tuple:
        parent = by_urn.get(r.parent) if r.parent else None
        return (path(parent) if parent else ()) + ((r.name, r.type),)
    return sorted(resources, key=path)


def _plain(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The program's inputs as JSON values (what a reviewer reads), not the mock's additions."""
    return json.loads(json.dumps(inputs, default=str))


def run_checkout(stack: str, checkout: Path, python: str = sys.executable) -> Plan:
    """The offline plan of another checkout of the repository (e.g. the base of a pull request).

    Runs `mlship plan --json` in a fresh interpreter with that checkout's code first on the path,
    so its program and its components are the ones planned, not this checkout's.
    """
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run([python, "-m", "mlship", "plan", "--stack", stack, "--json"], cwd=checkout, env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"the offline plan of stack {stack!r} in {checkout} failed: {last}")
    return Plan.from_json(json.loads(done.stdout))
