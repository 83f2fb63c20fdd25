"""Handlers of ``ipydoc history ...``: versions of users' files, deleted files, export."""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path
from typing import IO, Any

from ipydoc.cli.client import Handler, Target, fetch_all, result, with_daemon
from ipydoc.cli.errors import EXIT_OK, EXIT_REFUSED, CliError
from ipydoc.cli.output import emit, table, when


def _history_list(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    extra = {"deleted": True} if args.deleted and not args.path else {}
    items = with_daemon(target, lambda p: fetch_all(p, c.HistoryList, name=args.name,
                                                     path=args.path or "", **extra))
    if args.path:
        human = table([[v["rev"][:12], when(v["time"]), v["change"] or "-",
                        v.get("path") or args.path, v["message"]]
                       for v in items], ["REV", "TIME", "CHANGE", "PATH THEN", "MESSAGE"])
    elif args.deleted:
        human = table([[f["path"], f["rev"][:12], when(f["deleted"]), f["versions"]]
                       for f in items], ["PATH", "LAST VERSION", "DELETED", "VERSIONS"])
    else:
        human = table([[f["path"], f["versions"], when(f["last"]),
                        "yes" if f["present"] else "deleted"] for f in items],
                      ["PATH", "VERSIONS", "LAST CHANGE", "PRESENT"])
    empty = "no deleted files" if args.deleted and not args.path else "no history yet"
    emit(args, items, human if items else empty)
    return EXIT_OK


def _history_export(args: argparse.Namespace, target: Target) -> int:
    """Fetch the bundle chunk by chunk into FILE.part; check size and sha256; rename."""
    from ipydoc.control import commands as c

    dest = None if args.file == "-" else Path(args.file)
    part = dest.with_name(dest.name + ".part") if dest else None
    out: IO[bytes] = (os.fdopen(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                                "wb") if part else sys.stdout.buffer)

    async def work(p: Any) -> dict[str, Any]:
        digest, offset, written = hashlib.sha256(), 0, 0
        while True:
            answer = await p.callRemote(c.HistoryExport, name=args.name, offset=offset)
            out.write(answer["data"])
            digest.update(answer["data"])
            written += len(answer["data"])
            offset = answer["next"]
            if offset < 0:
                return {"size": answer["size"], "sha256": answer["sha256"],
                        "written": written, "got": digest.hexdigest()}

    try:
        try:
            got = with_daemon(target, work)
        finally:
            out.close() if part else out.flush()
        if (got["written"], got["got"]) != (got["size"], got["sha256"]):
            raise CliError(f"the bundle arrived damaged ({got['written']} of {got['size']} "
                           "bytes, or another sha256): nothing written", EXIT_REFUSED)
        if part and dest:
            part.replace(dest)
    finally:
        if part and part.exists():
            part.unlink()
    info = {"name": args.name, "file": args.file, "size": got["size"], "sha256": got["sha256"]}
    if dest:
        emit(args, info, f"wrote the history of {args.name} to {dest} ({got['size']} bytes, "
                         f"sha256 {got['sha256'][:16]}…): `git clone {dest}` to read it")
    return EXIT_OK


def _history_restore(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    r = result(target, c.HistoryRestore, name=args.name, path=args.path, rev=args.rev)
    emit(args, r, f"restored {r['path']} of {r['name']} to version {r['rev'][:12]} "
                    "(saved as a new version)")
    return EXIT_OK


def _history_dead_letters(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    items = with_daemon(target, lambda p: fetch_all(p, c.HistoryDeadLetters, name=args.name))
    human = table([[when(d["time"]), d["op"], d["path"], d["attempts"], d["reason"]]
                   for d in items], ["TIME", "OP", "PATH", "ATTEMPTS", "REASON"])
    emit(args, items, human if items else "no dead letters")
    return EXIT_OK


HANDLERS: dict[tuple[str, str | None], Handler] = {
    ('history', 'list'): _history_list,
    ('history', 'restore'): _history_restore,
    ('history', 'export'): _history_export,
    ('history', 'dead-letters'): _history_dead_letters,
}
