"""Handlers of ``ipydoc status``, ``server ...``, ``route list`` and ``cull``.

``--server SERVER`` names one of the user's named servers (issue 19): the handlers send
its server key ``NAME--SERVER`` to the daemon, after checking the name here (exit 2)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ipydoc.cli.client import Handler, Target, fetch_all, result, with_daemon
from ipydoc.cli.errors import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, CliError
from ipydoc.cli.output import ago, details, emit, server_rows, table, when, yes


def _status(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    status = json.loads(with_daemon(target, lambda p: p.callRemote(c.Status))["status"])
    emit(args, status, "\n".join(f"{k:16} {v}" for k, v in status.items()))
    return EXIT_OK if status["backend_ok"] and status["redis_ok"] else EXIT_REFUSED


def _key(args: argparse.Namespace) -> str:
    """The server key of NAME and ``--server`` (exit 2 for a bad name)."""
    from ipydoc.names import InvalidName, server_key

    try:
        return server_key(args.name, getattr(args, "server", "") or "")
    except InvalidName as e:
        raise CliError(f"invalid server: {e}", EXIT_USAGE) from None


def _what(args: argparse.Namespace) -> str:
    server = getattr(args, "server", "")
    return f"server {server} of {args.name}" if server else f"server of {args.name}"


def _server_start(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    r = result(target, c.ServerStart, name=_key(args), wait=not args.no_wait,
               profile=args.profile or None)
    emit(args, r, f"{_what(args)} is {r['state']}"
                    + (f" at {r['url']}" if r.get("url") and r["state"] == "running" else ""))
    return EXIT_OK


def _server_stop(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    r = result(target, c.ServerStop, name=_key(args))
    emit(args, r, f"stopped the {_what(args)}" if r["stopped"]
           else f"the {_what(args)} was not running")
    return EXIT_OK


def _server_remove(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    r = result(target, c.ServerRemove, name=_key(args))
    emit(args, r, f"removed the {_what(args)} (its files are kept)")
    return EXIT_OK


def _server_pause(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    r = result(target, c.ServerPause, name=_key(args))
    emit(args, r, f"paused the {_what(args)}" if r["paused"]
           else f"the {_what(args)} was not running (or already paused)")
    return EXIT_OK


def _server_resume(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    r = result(target, c.ServerResume, name=_key(args))
    emit(args, r, f"resumed the {_what(args)}" if r["resumed"]
           else f"the {_what(args)} was not paused")
    return EXIT_OK


def _with_paused_since(item: dict[str, Any]) -> dict[str, Any]:
    """For people: ``paused since <time> (<ago>)`` in the state of a paused server."""
    since = item.get("paused_since")
    if item.get("state") != "paused" or not since:
        return item
    return {**item, "state": f"paused since {when(since)} ({ago(since)})",
            "paused_since": f"{when(since)} ({ago(since)})"}


def _server_move(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    r = result(target, c.ServerMove, name=args.name, node=args.node)
    emit(args, r, "\n".join(r["steps"]) + f"\nthe old volume is kept on {r['from']}: remove it "
                  "there (docker volume rm) once you are satisfied")
    return EXIT_OK


def _server_list(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    servers = with_daemon(target, lambda p: fetch_all(p, c.ServerList))
    emit(args, servers, server_rows([_with_paused_since(s) for s in servers]))
    return EXIT_OK


def _server_show(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    r = result(target, c.ServerShow, name=_key(args))
    emit(args, r, details(_with_paused_since(r)))
    return EXIT_OK


def _server_logs(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    if args.tail < 0:
        raise CliError("--tail must be 0 (all) or more", EXIT_USAGE)
    key = _key(args)

    async def work(p: Any) -> str:
        chunks, offset = [], 0
        while True:
            answer = await p.callRemote(c.ServerLogs, name=key, tail=args.tail,
                                        offset=offset)
            if args.json:
                chunks.append(answer["text"])
            else:
                sys.stdout.write(answer["text"])
            offset = answer["next"]
            if offset < 0:
                return "".join(chunks)

    text = with_daemon(target, work)
    if args.json:
        print(json.dumps({"name": key, "text": text}))
    else:
        sys.stdout.flush()
    return EXIT_OK


def _route_list(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    routes = with_daemon(target, lambda p: fetch_all(p, c.RouteList))
    emit(args, routes, table([[r["name"], r["target"], yes(r["served"]), yes(r["stored"]),
                                 ago(r["last_activity"])] for r in routes],
                               ["NAME", "TARGET", "SERVED", "STORED", "LAST ACTIVITY"]))
    return EXIT_OK


def _cull(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    r = result(target, c.Cull)
    emit(args, r, "stopped: " + (", ".join(r["stopped"]) or "nothing was idle"))
    return EXIT_OK


HANDLERS: dict[tuple[str, str | None], Handler] = {
    ('status', None): _status,
    ('server', 'start'): _server_start,
    ('server', 'stop'): _server_stop,
    ('server', 'remove'): _server_remove,
    ('server', 'pause'): _server_pause,
    ('server', 'resume'): _server_resume,
    ('server', 'move'): _server_move,
    ('server', 'list'): _server_list,
    ('server', 'show'): _server_show,
    ('server', 'logs'): _server_logs,
    ('route', 'list'): _route_list,
    ('cull', None): _cull,
}
