"""Render a review as GitHub Markdown: attention first, then every change, then collapsed diffs.

GitHub refuses comments longer than 65,536 characters. The renderer keeps the whole under a
budget by leaving out the least important parts first (diffs of created resources before diffs
of updates before diffs of replacements and deletions; then table rows in the same order; the
attention list last) and says what it left out.
"""

from __future__ import annotations

import json
from html import escape
from collections import Counter
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, Iterator

from infra.review.changes import OPS_BY_WEIGHT, Change, StackChanges
from infra.review.risks import CATEGORIES, Finding, find_risks, short

GITHUB_COMMENT_LIMIT = 65_536
MARKER = "<!-- mlship-review -->"
OP_SYMBOL = {"delete": "🗑️ delete", "replace": "♻️ replace", "update": "✏️ update", "create": "➕ create",
             "import": "📥 import"}
DIFF_LINES_PER_RESOURCE = 40
NOTE_RESERVE = 700  # room kept for the "what was left out" note
OMITTED_ROW_RESERVE = 700  # room kept for the row summing up the rows left out


@dataclass
class Review:
    stacks: list[StackChanges]
    findings: list[Finding] = field(default_factory=list)

    @classmethod
    def of(cls, stacks: list[StackChanges]) -> "Review":
        return cls(stacks, [f for stack in stacks for f in find_risks(stack)])

    def changes(self) -> list[Change]:
        """Every change, most important first (deletions, replacements, updates, creations)."""
        everything = [c for stack in self.stacks for c in stack.changes]
        return sorted(everything, key=lambda c: (OPS_BY_WEIGHT.index(c.op), c.stack, c.type, c.name))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return text.replace("```", "`\u200b``")


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(value, list) and value:
        flat = {}
        for index, item in enumerate(value):
            flat.update(_flatten(item, f"{prefix}[{index}]"))
        return flat
    return {prefix: value} if prefix else {}


def _value(value: Any) -> str:
    return short(json.dumps(value, sort_keys=True, default=str, ensure_ascii=False), 160)


def diff_lines(change: Change) -> list[str]:
    before = _flatten(change.old) if change.op != "create" else {}
    after = _flatten(change.new) if change.op != "delete" else {}
    forcing = set(change.replace_reasons)
    lines: list[str] = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path, None), after.get(path, None)
        if path in before and path in after and old == new:
            continue
        mark = "  # forces replacement" if path.split(".")[0].split("[")[0] in forcing else ""
        if path in before:
            lines.append(f"- {path}: {_value(old)}{mark if path not in after else ''}")
        if path in after:
            lines.append(f"+ {path}: {_value(new)}{mark}")
    if len(lines) > DIFF_LINES_PER_RESOURCE:
        hidden = len(lines) - DIFF_LINES_PER_RESOURCE
        lines = lines[:DIFF_LINES_PER_RESOURCE] + [f"  … {hidden} more lines"]
    return lines


def _summary_line(stack: StackChanges) -> str:
    counts = Counter(c.op for c in stack.changes)
    if not counts:
        return f"**{stack.stack}**: no changes"
    parts = [f"{counts[op]} to {op}" for op in OPS_BY_WEIGHT if counts[op]]
    return f"**{stack.stack}** ({stack.source}): " + ", ".join(parts)


def _attention_blocks(review: Review) -> Iterator[str]:
    current = None
    for finding in review.findings:
        if finding.category != current:
            current = finding.category
            yield f"\n#### {CATEGORIES[current]}\n"
        lines = [f"- [{finding.stack}] {finding.title}"] + [f"  - {detail}" for detail in finding.details]
        yield "\n".join(lines) + "\n"


def _table_row(change: Change) -> str:
    keys = change.changed_paths() if change.op in ("update", "replace") else []
    forcing = set(change.replace_reasons)
    shown = [f"**{k}**" if k in forcing else k for k in keys[:6]] + (["…"] if len(keys) > 6 else [])
    return (f"| {change.stack} | {OP_SYMBOL[change.op]} | `{_cell(change.type)}` | {_cell(change.name)} | "
            f"{_cell(', '.join(shown)) or '—'} |\n")


def _details_block(change: Change) -> str:
    body = "\n".join(_code(line) for line in diff_lines(change)) or "(no property values in the document)"
    return (f"<details><summary>{escape(change.stack)} · {change.op} · <code>{escape(change.type)}</code> · "
            f"{escape(change.name)}</summary>\n\n"
            f"```diff\n{body}\n```\n</details>\n")


def _omitted_rows(changes: list[Change]) -> str:
    by_op = Counter(c.op for c in changes)
    by_type = Counter(c.type for c in changes).most_common(5)
    ops = ", ".join(f"{n} {op}" for op, n in by_op.items())
    types = ", ".join(f"`{t}` ×{n}" for t, n in by_type)
    return f"| … | | {len(changes)} more rows ({ops}) | most common: {types} | |\n"


def render(review: Review, *, limit: int = GITHUB_COMMENT_LIMIT - 536, title: str = "Infrastructure review",
           full_report_hint: str = "") -> str:
    """The review as Markdown of at most `limit` characters."""
    changes = review.changes()
    head = [f"{MARKER}\n## {title}\n\n", " · ".join(_summary_line(s) for s in review.stacks) + "\n"]
    attention = list(_attention_blocks(review))
    attention_head = (f"\n### Needs attention ({len(review.findings)})\n" if review.findings else
                      "\n### Needs attention (0)\nNothing here: no deletion or replacement of stateful or serving "
                      "resources, no widened access, no model, instance or cost change.\n")
    table_head = (f"\n### Every change ({len(changes)})\n\n| Stack | Op | Type | Name | Changed properties |\n"
                  "|---|---|---|---|---|\n") if changes else ""
    rows = [_table_row(c) for c in changes]
    details_head = "\n### Diffs\n\n" if changes else ""
    details = [_details_block(c) for c in changes]

    attention_size, row_size, detail_size = (list(accumulate(map(len, part), initial=0))
                                             for part in (attention, rows, details))

    def total(rows_kept: int, details_kept: int, attention_kept: int) -> int:
        return (sum(map(len, head)) + len(attention_head) + attention_size[attention_kept]
                + len(table_head) + row_size[rows_kept] + (OMITTED_ROW_RESERVE if rows_kept < len(rows) else 0)
                + (len(details_head) if details_kept else 0) + detail_size[details_kept])

    budget = limit - NOTE_RESERVE
    rows_kept, details_kept, attention_kept = len(rows), len(details), len(attention)
    # Least important first: for creations, then updates, then replacements and deletions, first
    # their diffs, then their table rows (changes are sorted by importance, so each op is a range).
    for op in reversed(OPS_BY_WEIGHT):
        first = sum(1 for c in changes if OPS_BY_WEIGHT.index(c.op) < OPS_BY_WEIGHT.index(op))
        while details_kept > first and total(rows_kept, details_kept, attention_kept) > budget:
            details_kept -= 1
        while rows_kept > first and total(rows_kept, details_kept, attention_kept) > budget:
            rows_kept -= 1
    while attention_kept and total(rows_kept, details_kept, attention_kept) > budget:
        attention_kept -= 1

    cuts = []
    if details_kept < len(details):
        cuts.append(f"{len(details) - details_kept} of {len(details)} resource diffs")
    if rows_kept < len(rows):
        cuts.append(f"{len(rows) - rows_kept} of {len(rows)} table rows")
    if attention_kept < len(attention):
        cuts.append(f"{len(attention) - attention_kept} attention items")
    parts = list(head)
    if cuts:
        parts.append(f"\n> ✂️ Cut to fit GitHub's {GITHUB_COMMENT_LIMIT:,}-character comment limit: left out "
                     + "; ".join(cuts) + " (least important first: diffs, then rows, of creations, then of updates, "
                     "then of replacements and deletions)." + (f" {full_report_hint}" if full_report_hint else "") + "\n")
    parts += [attention_head, *attention[:attention_kept]]
    if table_head:
        parts += [table_head, *rows[:rows_kept]]
        if rows_kept < len(rows):
            parts.append(_omitted_rows(changes[rows_kept:]))
    if details_kept:
        parts += [details_head, *details[:details_kept]]
    return "".join(parts)
