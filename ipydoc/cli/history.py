"""Handlers of ``ipydoc history ...``: versions of users' files."""

from __future__ import annotations

import argparse

from ipydoc.cli.client import Handler, Target, fetch_all, result, with_daemon
from ipydoc.cli.errors import EXIT_OK
from ipydoc.cli.output import emit, table, when


def _history_list(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    items = with_daemon(target, lambda p: fetch_all(p, c.HistoryList, name=args.name,
                                                     path=args.path or ""))
    if args.path:
        human = table([[v["rev"][:12], when(v["time"]), v["change"] or "-", v["message"]]
                       for v in items], ["REV", "TIME", "CHANGE", "MESSAGE"])
    else:
        human = table([[f["path"], f["versions"], when(f["last"]),
                        "yes" if f["present"] else "deleted"] for f in items],
                      ["PATH", "VERSIONS", "LAST CHANGE", "PRESENT"])
    emit(args, items, human if items else "no history yet")
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
    ('history', 'dead-letters'): _history_dead_letters,
}
