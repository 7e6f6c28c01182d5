"""Semantic versioning of a model's interface: an input or output schema change needs a MAJOR bump.

The interface is what callers depend on: the features in order with their type and dtype, the
target's name and the outputs. Ranges and categories are facts about the training data, not the
interface, so they may change in any release (monitoring watches them).
"""

from __future__ import annotations

from model.settings import Version
from mlship.errors import UserError


def schema_changes(old: dict, new: dict) -> list[str]:
    """What a caller would notice between two manifests' schemas, in words; empty when compatible."""
    changes = []
    old_features = {f["name"]: f for f in old["features"]}
    new_features = {f["name"]: f for f in new["features"]}
    removed = [name for name in old_features if name not in new_features]
    added = [name for name in new_features if name not in old_features]
    if removed:
        changes.append(f"removed features {', '.join(removed)}")
    if added:
        changes.append(f"added features {', '.join(added)}")
    for name in old_features.keys() & new_features.keys():
        was, now = old_features[name], new_features[name]
        if (was["type"], was["dtype"]) != (now["type"], now["dtype"]):
            changes.append(f"feature {name!r} changed from {was['type']}/{was['dtype']} to {now['type']}/{now['dtype']}")
    common_old = [name for name in old_features if name in new_features]
    common_new = [name for name in new_features if name in old_features]
    if common_old != common_new:
        changes.append("feature order changed (CSV callers send columns in schema order)")
    if old["target"] != new["target"]:
        changes.append(f"target changed from {old['target']} to {new['target']}")
    if [o["name"] for o in old["output"]] != [o["name"] for o in new["output"]]:
        changes.append("output changed from " + ",".join(o["name"] for o in old["output"])
                       + " to " + ",".join(o["name"] for o in new["output"]))
    return changes


def check_bump(new: dict, released: dict[str, dict], where: str) -> tuple[str | None, str]:
    """Compare with the highest released version below `new`; refuse a schema change without a MAJOR bump.

    `released` maps version strings to their manifests. Returns (that version or None, a note).
    """
    version = Version.parse(new["version"])
    lower = sorted((Version.parse(v) for v in released if Version.parse(v) < version), reverse=True)
    if not lower:
        return None, "first version"
    previous = lower[0]
    changes = schema_changes(released[str(previous)], new)
    if not changes:
        return str(previous), "same input and output schema"
    if version.major == previous.major:
        raise UserError(
            f"{new['name']} {version} changes the schema of {previous} ({where}): {'; '.join(changes)}; "
            f"a schema change needs a MAJOR version bump, e.g. {previous.major + 1}.0.0"
        )
    return str(previous), f"schema changed ({'; '.join(changes)}), MAJOR bump {previous} -> {version}"
