"""Readable differences between two versions of a file: notebooks by cell, text by line.

A notebook diff pairs the cells of the two versions — by cell ``id`` when both have ids
(nbformat ≥ 4.5), else by aligning their sources (``difflib.SequenceMatcher``) — and says
for each cell whether it was added, removed, changed (source line diff; "outputs changed"
when only outputs differ) or unchanged.  Cells are named as people see them: "Cell 3
(code)", numbered in the newer version; a removed cell is "Old cell 3 (code)", numbered
in the older one.  Outputs are summarised, not diffed: they are large and mostly not
written by hand.

Anything that is not valid notebook JSON is diffed as text (unified diff), and anything
that is not UTF-8 as binary (sizes only).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any

MAX_TEXT_DIFF = 2_000_000  # bytes per side beyond which a text diff only reports sizes


@dataclass
class CellDiff:
    status: str                  # added / removed / changed / unchanged
    label: str                   # "Cell 3 (code)"
    cell_type: str
    lines: list[tuple[str, str]] = field(default_factory=list)  # (" "|"+"|"-"|"@", text)
    outputs_changed: bool = False
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "label": self.label, "cell_type": self.cell_type,
                "lines": [list(x) for x in self.lines], "outputs_changed": self.outputs_changed,
                "note": self.note}


@dataclass
class FileDiff:
    kind: str                    # notebook / text / binary / same
    cells: list[CellDiff] = field(default_factory=list)
    lines: list[tuple[str, str]] = field(default_factory=list)
    summary: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "summary": self.summary,
                "cells": [c.as_dict() for c in self.cells],
                "lines": [list(x) for x in self.lines]}


def _source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _outputs(cell: dict[str, Any]) -> str:
    outs = cell.get("outputs") or []
    # execution counts change on every run; they do not make an output "changed"
    clean = [{k: v for k, v in o.items() if k != "execution_count"} for o in outs
             if isinstance(o, dict)]
    return json.dumps(clean, sort_keys=True)


def _cells(raw: bytes) -> list[dict[str, Any]] | None:
    try:
        nb = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        return None
    return [c for c in nb["cells"] if isinstance(c, dict)]


def _line_diff(a: str, b: str, context: int = 3) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for line in difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=context):
        if line.startswith(("---", "+++")):
            continue
        out.append((line[0], line[1:]) if line[:1] in "+- @" else (" ", line))
    return [("@", t[1:].strip("@ ").strip()) if s == "@" else (s, t) for s, t in out]


def _pairs(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[tuple[int | None, int | None]]:
    ids_old = [c.get("id") for c in old]
    ids_new = [c.get("id") for c in new]
    if all(ids_old) and all(ids_new) and len(set(ids_old)) == len(old) \
            and len(set(ids_new)) == len(new):
        where = {i: n for n, i in enumerate(ids_old)}
        pairs: list[tuple[int | None, int | None]] = []
        used = set()
        for j, cid in enumerate(ids_new):
            i = where.get(cid)
            if i is not None:
                used.add(i)
            pairs.append((i, j))
        removed = [(i, None) for i in range(len(old)) if i not in used]
        # removed cells go where they were: before the first new cell that followed them
        result: list[tuple[int | None, int | None]] = []
        for i, j in pairs:
            while removed and i is not None and removed[0][0] < i:  # type: ignore[operator]
                result.append(removed.pop(0))
            result.append((i, j))
        return result + removed
    matcher = difflib.SequenceMatcher(a=[_source(c) for c in old], b=[_source(c) for c in new],
                                      autojunk=False)
    result = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            result += [(i1 + k, j1 + k) for k in range(i2 - i1)]
        elif tag == "replace":
            n = min(i2 - i1, j2 - j1)
            result += [(i1 + k, j1 + k) for k in range(n)]
            result += [(i, None) for i in range(i1 + n, i2)]
            result += [(None, j) for j in range(j1 + n, j2)]
        elif tag == "delete":
            result += [(i, None) for i in range(i1, i2)]
        else:
            result += [(None, j) for j in range(j1, j2)]
    return result


def notebook_diff(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> FileDiff:
    cells = []
    counts = {"added": 0, "removed": 0, "changed": 0}
    for i, j in _pairs(old, new):
        a = old[i] if i is not None else None
        b = new[j] if j is not None else None
        cell = b if b is not None else a
        assert cell is not None
        ctype = str(cell.get("cell_type", "cell"))
        label = (f"Cell {j + 1} ({ctype})" if j is not None
                 else f"Old cell {i + 1} ({ctype})")  # type: ignore[operator]
        if a is None:
            d = CellDiff("added", label, ctype, [("+", x) for x in _source(b).splitlines()])
        elif b is None:
            d = CellDiff("removed", label, ctype, [("-", x) for x in _source(a).splitlines()])
        else:
            src_a, src_b = _source(a), _source(b)
            outs = _outputs(a) != _outputs(b)
            type_changed = a.get("cell_type") != b.get("cell_type")
            if src_a == src_b and not outs and not type_changed:
                cells.append(CellDiff("unchanged", label, ctype))
                continue
            d = CellDiff("changed", label, ctype, _line_diff(src_a, src_b), outs)
            if type_changed:
                d.note = f"type changed from {a.get('cell_type')} to {b.get('cell_type')}"
            elif src_a == src_b:
                d.note = "outputs changed"
        counts[d.status] += 1
        cells.append(d)
    parts = [f"{n} cell{'s' if n != 1 else ''} {what}" for what, n in counts.items() if n]
    return FileDiff("notebook", cells=cells, summary=", ".join(parts) or "no cell changed")


def file_diff(path: str, old: bytes | None, new: bytes | None) -> FileDiff:
    """The difference from ``old`` to ``new`` (None: the file did not exist)."""
    if old == new:
        return FileDiff("same", summary="the two versions are identical")
    if path.endswith(".ipynb"):
        a = _cells(old) if old is not None else []
        b = _cells(new) if new is not None else []
        if a is not None and b is not None:
            return notebook_diff(a, b)
    sizes = f"{len(old or b'')} → {len(new or b'')} bytes"
    if len(old or b"") > MAX_TEXT_DIFF or len(new or b"") > MAX_TEXT_DIFF:
        return FileDiff("binary", summary=f"too large to show line by line ({sizes})")
    try:
        ta = (old or b"").decode("utf-8")
        tb = (new or b"").decode("utf-8")
    except UnicodeDecodeError:
        return FileDiff("binary", summary=f"binary file ({sizes})")
    lines = _line_diff(ta, tb)
    added = sum(1 for s, _ in lines if s == "+")
    removed = sum(1 for s, _ in lines if s == "-")
    return FileDiff("text", lines=lines, summary=f"{added} lines added, {removed} removed")


def render_text(diff: FileDiff) -> str:
    """The diff as plain text (for the CLI and logs)."""
    out = [diff.summary]
    for c in diff.cells:
        if c.status == "unchanged":
            continue
        out.append(f"{c.label}: {c.status}" + (f" ({c.note})" if c.note else "")
                   + (" (outputs changed)" if c.outputs_changed and not c.note else ""))
        out += [f"  {s}{t}" for s, t in c.lines]
    out += [f"{s}{t}" for s, t in diff.lines]
    return "\n".join(out)
