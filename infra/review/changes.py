"""Read what a stack would change: `pulumi preview --json` documents and offline plans.

This is the one place that reads those formats. Both become a list of `Change`s, one per
resource, with secrets already hidden, so that the risk rules and the renderer never see the
raw documents.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from mlship.errors import UserError

# How Pulumi marks a secret inside serialized state (the "signature" key and value).
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG_VALUE = "1b47061264138c4ac30d75fd1eb44270"
SECRET = "[secret]"

# Engine step ops that belong to one replacement; the review shows them as one "replace".
REPLACE_OPS = {"replace", "create-replacement", "delete-replaced", "discard-replaced", "import-replacement",
               "read-replacement"}
# The ops a reviewer reads, most destructive first; anything else (same, read, refresh) is not a change.
OPS_BY_WEIGHT = ("delete", "replace", "update", "create", "import")
IGNORED_OPS = {"same", "read", "refresh", "discard", "remove-pending-replace"}


@dataclass
class Change:
    """One resource's change, as a reviewer reads it."""

    op: str  # one of OPS_BY_WEIGHT
    urn: str
    type: str
    name: str
    old: dict[str, Any] = field(default_factory=dict)  # inputs before, secrets hidden
    new: dict[str, Any] = field(default_factory=dict)  # inputs after, secrets hidden
    diff_reasons: list[str] = field(default_factory=list)
    replace_reasons: list[str] = field(default_factory=list)
    detailed_diff: dict[str, str] = field(default_factory=dict)  # property path -> kind

    @property
    def stack(self) -> str:
        return stack_of(self.urn)

    def changed_paths(self) -> list[str]:
        """Top-level property names that differ, from the engine's diff or from the values."""
        if self.detailed_diff:
            keys = [top_key(path) for path in self.detailed_diff]
        elif self.diff_reasons or self.replace_reasons:
            keys = [top_key(path) for path in [*self.replace_reasons, *self.diff_reasons]]
        else:
            keys = [key for key in sorted(set(self.old) | set(self.new)) if self.old.get(key) != self.new.get(key)]
        return list(dict.fromkeys(keys))


@dataclass
class Diagnostic:
    severity: str
    message: str
    urn: str = ""


@dataclass
class StackChanges:
    stack: str
    changes: list[Change]
    diagnostics: list[Diagnostic] = field(default_factory=list)
    source: str = "preview"  # "preview" or "offline plan"


def stack_of(urn: str) -> str:
    # urn:pulumi:<stack>::<project>::<type path>::<name>
    parts = urn.split("::")
    head = parts[0].split(":")
    return head[2] if len(head) > 2 else ""


def name_of(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def type_of(urn: str) -> str:
    parts = urn.split("::")
    return parts[2].rsplit("$", 1)[-1] if len(parts) > 3 else ""


def top_key(path: str) -> str:
    for index, char in enumerate(path):
        if char in ".[":
            return path[:index]
    return path


def hide_secrets(value: Any) -> Any:
    """Replace every Pulumi secret envelope (and nothing else) with "[secret]"."""
    if isinstance(value, Mapping):
        if value.get(SECRET_SIG_KEY) == SECRET_SIG_VALUE:
            return SECRET
        return {key: hide_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [hide_secrets(item) for item in value]
    return value


def _state_inputs(state: Mapping[str, Any] | None) -> dict[str, Any]:
    if not state:
        return {}
    inputs = state.get("inputs") or state.get("outputs") or {}
    return hide_secrets(inputs)


def _load_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from error
    # `pulumi preview --json` can print plain lines before the document when it fails early.
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start < 0:
        raise UserError(f"{path} holds no JSON document (expected the output of `pulumi preview --json`)")
    try:
        return json.loads(text[start:])
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON: {error.msg} at line {error.lineno}") from error


def read_preview(path: Path, stack: str | None = None) -> StackChanges:
    """Read one `pulumi preview --json` document (the engine's PreviewDigest)."""
    document = _load_json(path)
    if not isinstance(document, dict) or not ({"steps", "changeSummary", "diagnostics"} & set(document)):
        raise UserError(f"{path} is not `pulumi preview --json` output: expected an object with "
                        f"'steps', 'changeSummary' or 'diagnostics'")
    return changes_from_preview(document, stack=stack)


def changes_from_preview(document: Mapping[str, Any], stack: str | None = None) -> StackChanges:
    by_urn: dict[str, Change] = {}
    for step in document.get("steps") or []:
        op = step.get("op", "")
        urn = step.get("urn", "")
        if op in IGNORED_OPS or not urn or type_of(urn).startswith("pulumi:"):
            continue
        op = "replace" if op in REPLACE_OPS else op
        if op not in OPS_BY_WEIGHT:
            continue
        old_state, new_state = step.get("oldState"), step.get("newState")
        change = by_urn.get(urn)
        if change is None:
            change = by_urn[urn] = Change(op=op, urn=urn, type=type_of(urn) or (new_state or old_state or {}).get("type", ""),
                                          name=name_of(urn))
        elif OPS_BY_WEIGHT.index(op) < OPS_BY_WEIGHT.index(change.op):
            change.op = op
        change.old = change.old or _state_inputs(old_state)
        change.new = change.new or _state_inputs(new_state)
        change.diff_reasons = list(dict.fromkeys([*change.diff_reasons, *(step.get("diffReasons") or [])]))
        change.replace_reasons = list(dict.fromkeys([*change.replace_reasons, *(step.get("replaceReasons") or [])]))
        for path, diff in (step.get("detailedDiff") or {}).items():
            change.detailed_diff[path] = diff.get("kind", "update") if isinstance(diff, Mapping) else str(diff)
    diagnostics = [Diagnostic(severity=str(d.get("severity", "")), message=str(d.get("message", "")).strip(),
                              urn=str(d.get("urn", "")))
                   for d in document.get("diagnostics") or [] if d.get("severity") in ("error", "warning")]
    changes = list(by_urn.values())
    name = stack or next((c.stack for c in changes if c.stack), "") or _stack_from_config(document) or "stack"
    return StackChanges(stack=name, changes=changes, diagnostics=diagnostics)


def _stack_from_config(document: Mapping[str, Any]) -> str:
    return str((document.get("config") or {}).get("pulumi:stack", ""))


# --- offline plans -------------------------------------------------------------------------

# Properties whose change makes the provider replace the resource. An offline plan has no
# provider to ask, so the review uses this table to tell a replacement from an update; it
# covers the types mlship creates (pulumi-aws 7 schema, "forceNew" properties).
REPLACE_ON_CHANGE: dict[str, set[str]] = {
    "aws:s3/bucket:Bucket": {"bucket", "bucketPrefix"},
    "aws:s3/bucketV2:BucketV2": {"bucket", "bucketPrefix"},
    "aws:ebs/volume:Volume": {"availabilityZone", "encrypted", "kmsKeyId", "snapshotId"},
    "aws:ec2/instance:Instance": {"ami", "availabilityZone", "subnetId", "keyName", "ebsBlockDevices",
                                  "privateIp", "tenancy"},
    "aws:ec2/securityGroup:SecurityGroup": {"name", "namePrefix", "vpcId", "description"},
    "aws:ec2/keyPair:KeyPair": {"keyName", "keyNamePrefix", "publicKey"},
    "aws:sagemaker/endpoint:Endpoint": {"name"},
    "aws:sagemaker/model:Model": {"*"},
    "aws:sagemaker/endpointConfiguration:EndpointConfiguration": {"*"},
    "aws:kms/key:Key": {"customerMasterKeySpec", "keyUsage", "multiRegion"},
    "aws:sns/topic:Topic": {"name", "namePrefix", "fifoTopic"},
    "aws:iam/role:Role": {"name", "namePrefix", "path"},
}


def read_plan(path: Path) -> list[dict[str, Any]]:
    """Read an offline plan (`mlship plan --json`): resources with urn, type, name, parent, inputs."""
    return plan_resources(_load_json(path), origin=str(path))


def plan_resources(document: Any, origin: str = "plan") -> list[dict[str, Any]]:
    resources = document.get("resources") if isinstance(document, Mapping) else document
    if not isinstance(resources, list) or not all(isinstance(r, Mapping) and "urn" in r for r in resources):
        raise UserError(f"{origin} is not an offline plan: expected a list of resources (or "
                        f"{{\"resources\": [...]}}) each with 'urn', 'type', 'name', 'inputs'")
    return list(resources)


def _plan_inputs(resource: Mapping[str, Any]) -> dict[str, Any]:
    # `mlship plan --json` names them "inputs"; "properties" is accepted from other tools' plans.
    return hide_secrets(resource.get("inputs", resource.get("properties")) or {})


def changes_between_plans(before: Iterable[Mapping[str, Any]], after: Iterable[Mapping[str, Any]],
                          stack: str | None = None) -> StackChanges:
    """Compare two offline plans of one stack, matching resources by URN."""
    old = {r["urn"]: r for r in before}
    new = {r["urn"]: r for r in after}
    changes: list[Change] = []
    for urn in [*new, *(u for u in old if u not in new)]:
        resource = new.get(urn) or old[urn]
        type_ = resource.get("type") or type_of(urn)
        if type_.startswith("pulumi:"):
            continue
        before_props = _plan_inputs(old[urn]) if urn in old else {}
        after_props = _plan_inputs(new[urn]) if urn in new else {}
        if urn not in old:
            op = "create"
        elif urn not in new:
            op = "delete"
        elif before_props == after_props:
            continue
        else:
            op = "update"
        change = Change(op=op, urn=urn, type=type_, name=resource.get("name") or name_of(urn),
                        old=before_props, new=after_props)
        if op == "update":
            change.diff_reasons = change.changed_paths()
            forcing = REPLACE_ON_CHANGE.get(type_, set())
            change.replace_reasons = [key for key in change.diff_reasons if "*" in forcing or key in forcing]
            if change.replace_reasons:
                change.op = "replace"
        changes.append(change)
    name = stack or next((stack_of(u) for u in [*new, *old] if stack_of(u)), "") or "stack"
    return StackChanges(stack=name, changes=changes, source="offline plan")
