"""Handlers of ``ipydoc user ...`` and ``ipydoc session ...``: accounts and logins."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from ipydoc.cli.client import Handler, Target, fetch_all, result, with_daemon
from ipydoc.cli.errors import EXIT_OK, EXIT_USAGE, CliError
from ipydoc.cli.output import binary_size, details, emit, table, when, yes


def read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise CliError("no password on standard input", EXIT_USAGE)
        return password
    if not sys.stdin.isatty():
        raise CliError("no terminal to ask for a password: use --password-stdin", EXIT_USAGE)
    first = getpass.getpass(f"Password for {args.name}: ")
    if first != getpass.getpass("Again: "):
        raise CliError("the passwords do not match", EXIT_USAGE)
    return first


def _user_add(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    password = read_password(args)
    with_daemon(target, lambda p: p.callRemote(c.UserAdd, name=args.name, password=password,
                                               admin=args.admin))
    emit(args, {"added": args.name}, f"added user {args.name}")
    return EXIT_OK


def _user_remove(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    if args.purge and not args.yes:
        raise CliError(f"--purge deletes {args.name}'s files for good: add --yes to confirm",
                       EXIT_USAGE)
    r = result(target, c.UserRemove, name=args.name, purge=args.purge)
    head = (f"removed user {args.name}: {r['sessions_revoked']} sessions ended, server "
            f"{'stopped' if r['server_stopped'] else 'was not running'}")
    if r["purged"]:
        tail = f"deleted the files ({r.get('files', 'files')}) and {_versions(r)}" + \
            _mirror_note(r) + f"; the name {args.name} is free"
    else:
        tail = (f"kept the files ({r.get('files', 'files')}) and {_versions(r)}"
                + (f" (mirrored to {r['mirror']})" if r.get("mirror") else "")
                + f": the name stays reserved until `ipydoc user purge {args.name} --yes` "
                  f"(or `ipydoc user restore {args.name}`)")
    emit(args, r, f"{head}; {tail}")
    return EXIT_OK


def _versions(r: dict[str, Any]) -> str:
    n = int(r.get("versions") or 0)
    return f"history ({n} version{'s' if n != 1 else ''})" if n else "history (none)"


def _mirror_note(r: dict[str, Any]) -> str:
    return (f"; the mirror {r['mirror']} is on another server and was not deleted"
            if r.get("mirror") else "")


def _user_purge(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    if not args.yes:
        raise CliError(f"purge deletes the files and history {args.name} left for good: add "
                       "--yes to confirm", EXIT_USAGE)
    r = result(target, c.UserPurge, name=args.name)
    emit(args, r, f"purged {args.name}: deleted the files ({r.get('files', 'files')}) and "
                    f"{_versions(r)}{_mirror_note(r)}; the name {args.name} is free")
    return EXIT_OK


def _user_removed(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    items = with_daemon(target, lambda p: fetch_all(p, c.UserRemovedList))
    emit(args, items, table([[i["name"], when(i["removed"]), i["files"] or "-",
                                i["versions"], i["by"] or "-"] for i in items],
                              ["NAME", "REMOVED", "FILES", "VERSIONS", "BY"])
           if items else "no removed accounts with kept files")
    return EXIT_OK


def _user_restore(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    r = result(target, c.UserRestore, name=args.name)
    emit(args, r, f"restored {args.name} with the files ({r.get('files', 'files')}) and "
                    f"{_versions(r)}" + (" (still disabled)" if r.get("disabled") else ""))
    return EXIT_OK


def _user_list(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    users = with_daemon(target, lambda p: fetch_all(p, c.UserList))
    emit(args, users, table([[u["name"], yes(u["admin"]), yes(u["disabled"]), u["server"],
                                when(u["created"])] for u in users],
                              ["NAME", "ADMIN", "DISABLED", "SERVER", "CREATED"]))
    return EXIT_OK


def _user_show(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    r = result(target, c.UserShow, name=args.name)
    named = [f"{s['server']} ({s['state']})" for s in r.get("servers", []) if s.get("server")]
    shown = {k: v for k, v in r.items() if k != "servers"}
    shown["named_servers"] = ", ".join(named) or "-"  # issue 19: `server list` has more
    emit(args, r, details(shown))
    return EXIT_OK


def _user_disable(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    r = result(target, c.UserDisable, name=args.name)
    emit(args, r, f"disabled {args.name}: {r['sessions_revoked']} sessions ended, server "
                    f"{'stopped' if r['server_stopped'] else 'was not running'}")
    return EXIT_OK


def _user_enable(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    r = result(target, c.UserEnable, name=args.name)
    emit(args, r, f"enabled {args.name}" if r["changed"] else f"{args.name} was enabled")
    return EXIT_OK


def _user_set_admin(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    r = result(target, c.UserSetAdmin, name=args.name, admin=not args.off)
    what = "is an admin" if r["admin"] else "is not an admin"
    emit(args, r, f"{args.name} {what}" + ("" if r["changed"] else " (unchanged)"))
    return EXIT_OK


def _user_set_limits(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.config.types import parse_size
    from ipydoc.control import commands as c

    limits: dict[str, Any] = {}
    if args.mem is not None:
        try:
            limits["mem"] = 0 if args.mem.strip() == "0" else parse_size(args.mem)
        except ValueError as e:
            print(f"ipydoc: --mem: {e}", file=sys.stderr)
            return EXIT_USAGE
    if args.cpu is not None:
        limits["cpu"] = args.cpu
    if args.pids is not None:
        limits["pids"] = args.pids
    reset = ["mem", "cpu", "pids"] if "all" in args.reset else args.reset
    if not limits and not reset:
        print("ipydoc: give --mem, --cpu, --pids or --reset", file=sys.stderr)
        return EXIT_USAGE
    r = result(target, c.UserSetLimits, name=args.name, limits=json.dumps(limits),
                clear=",".join(reset))
    eff = r["effective"]

    def show(k: str) -> str:
        v = eff[k]
        text = "none" if v is None else (binary_size(v) if k == "mem" else f"{v:g}")
        return text + ("" if k in r["overrides"] else " (config)")
    emit(args, r, f"limits of {args.name}: memory {show('mem')}, CPUs {show('cpu')}, "
                    f"processes {show('pids')}; applied at the next start")
    return EXIT_OK


def _user_passwd(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    password = read_password(args)
    r = result(target, c.UserPasswd, name=args.name, password=password,
                keep_sessions=args.keep_sessions)
    tokens = int(r.get("tokens_revoked") or 0)
    emit(args, r, f"password of {args.name} changed; {r['sessions_revoked']} sessions ended, "
                  f"{tokens} API token{'s' if tokens != 1 else ''} revoked")
    return EXIT_OK


def _session_list(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    sessions = with_daemon(target, lambda p: fetch_all(p, c.SessionList, user=args.name or ""))
    emit(args, sessions, table(
        [[s["sid"][:16], s["user"], when(s["created"]),
          f"{s['expires_in'] // 86400}d {s['expires_in'] % 86400 // 3600}h"
          if s["expires_in"] >= 0 else "-"] for s in sessions],
        ["SID", "USER", "CREATED", "EXPIRES IN"]))
    return EXIT_OK


def _session_revoke(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    if bool(args.name) == bool(args.id):
        raise CliError("name a user (all their sessions) or give --id SID (one session)",
                       EXIT_USAGE)
    r = result(target, c.SessionRevoke, user=args.name or "", sid=args.id or "")
    emit(args, r, f"ended {r['revoked']} session{'s' if r['revoked'] != 1 else ''}"
                    + (f" of {r['user']}" if r["user"] else ""))
    return EXIT_OK


HANDLERS: dict[tuple[str, str | None], Handler] = {
    ('user', 'add'): _user_add,
    ('user', 'remove'): _user_remove,
    ('user', 'purge'): _user_purge,
    ('user', 'restore'): _user_restore,
    ('user', 'removed'): _user_removed,
    ('user', 'list'): _user_list,
    ('user', 'show'): _user_show,
    ('user', 'disable'): _user_disable,
    ('user', 'enable'): _user_enable,
    ('user', 'set-admin'): _user_set_admin,
    ('user', 'set-limits'): _user_set_limits,
    ('user', 'passwd'): _user_passwd,
    ('session', 'list'): _session_list,
    ('session', 'revoke'): _session_revoke,
}
