"""Handler of ``ipydoc events``: the last N events, then (``--follow``) new ones live."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ipydoc.cli.client import Handler, Target, with_daemon
from ipydoc.cli.errors import EXIT_OK, EXIT_USAGE, CliError
from ipydoc.cli.output import when


def _event_line(args: argparse.Namespace, e: dict[str, Any]) -> str:
    if args.json:
        return json.dumps(e)
    return f"{when(e.get('time'))}  {e.get('kind', ''):16} {e.get('user') or '-':16} " \
           f"{e.get('detail', '')}".rstrip()


def _events(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    if args.count < 0 or (args.max is not None and args.max < 1):
        raise CliError("--count must be 0 or more, --max 1 or more", EXIT_USAGE)
    deadline = time.monotonic() + args.for_ if args.for_ else None
    filters = {"user": args.user or "", "kinds": args.kind or ""}

    async def work(p: Any) -> None:
        if args.after:
            last = args.after
            while True:  # catch up on everything after the given id, then follow
                answer = await p.callRemote(c.Events, after=last, wait=0.0, limit=200,
                                            **filters)
                items = json.loads(answer["items"])
                for e in items:
                    print(_event_line(args, e), flush=True)
                if answer["last"] == last:
                    break
                last = answer["last"]
        elif args.count:
            first = await p.callRemote(c.Events, after="", wait=0.0, limit=min(args.count, 500),
                                       **filters)
            omitted = first.get("omitted") or 0
            if omitted:  # only the newest fit one answer; say so where scripts do not read
                print(f"ipydoc: {omitted} older event{'s' if omitted != 1 else ''} of the last "
                      f"{min(args.count, 500)} left out (too large for one answer); --after "
                      "ID reads every event after an id", file=sys.stderr, flush=True)
            for e in json.loads(first["items"]):
                print(_event_line(args, e), flush=True)
            last = first["last"]
        else:
            last = "$"
        if not args.follow:
            return
        seen = 0
        while deadline is None or time.monotonic() < deadline:
            wait = c.MAX_WAIT if deadline is None else \
                max(0.0, min(c.MAX_WAIT, deadline - time.monotonic()))
            answer = await p.callRemote(c.Events, after=last, wait=wait, limit=200, **filters)
            last = answer["last"]
            for e in json.loads(answer["items"]):
                print(_event_line(args, e), flush=True)
                seen += 1
                if args.max is not None and seen >= args.max:
                    return

    with_daemon(target, work)
    return EXIT_OK


HANDLERS: dict[tuple[str, str | None], Handler] = {
    ('events', None): _events,
}
