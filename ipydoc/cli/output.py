"""How answers are shown: tables and details for people, JSON with ``--json``."""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from typing import Any


def when(ts: Any) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(float(ts), timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def ago(ts: Any) -> str:
    if not ts:
        return "-"
    s = max(0, int(time.time() - float(ts)))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit} ago"
    return f"{s}s ago"


def table(rows: list[list[Any]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip()
             for r in [header, *rows]]
    return "\n".join(lines)


def yes(flag: Any) -> str:
    return "yes" if flag else ""


def emit(args: argparse.Namespace, data: Any, human: str) -> None:
    print(json.dumps(data) if args.json else human)


def server_rows(servers: list[dict[str, Any]]) -> str:
    """Servers as a table: USER is the owner, SERVER the named server's name ("-": the
    user's default server)."""
    return table([[s.get("owner") or s["name"], s["state"], s.get("server") or "-",
                   s.get("profile") or "-", s["image"] or "-",
                   s.get("link") or s["url"] or "-",
                   when(s["started"]), ago(s.get("last_activity")), s["error"]]
                  for s in servers],
                 ["USER", "STATE", "SERVER", "PROFILE", "IMAGE", "URL", "STARTED",
                  "LAST ACTIVITY", "ERROR"])


def details(item: dict[str, Any], indent: str = "") -> str:
    lines = []
    for k, v in item.items():
        if isinstance(v, dict):
            lines.append(f"{indent}{k}:")
            lines.append(details(v, indent + "  "))
        else:
            if k in ("created", "started", "updated", "last_activity") and v:
                v = f"{when(v)} ({ago(v)})"
            lines.append(f"{indent}{k + ':':16} {'-' if v in (None, '') else v}")
    return "\n".join(lines)


def binary_size(n: int) -> str:
    for unit in ("G", "M", "K"):
        scale = 1024 ** " KMG".index(unit)
        if n >= scale and n % scale == 0:
            return f"{n // scale}{unit}"
    return str(n)

