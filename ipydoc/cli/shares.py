"""``ipydoc share add|list|remove``: who may use a server besides its owner (issue 19 §3).

A share is on one server of its owner (the default one, or ``--server NAME``), with a
user or a group (``--group``), read-write (``rw``: the same JupyterLab, running code) or
``--mode view`` (reading only, enforced by the proxy).  Revoking is immediate: the
guest's next request is refused and their open kernels and terminals are closed.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

from ipydoc.cli.client import Handler, Target, fetch_all, result, with_daemon
from ipydoc.cli.errors import EXIT_OK, EXIT_USAGE, CliError
from ipydoc.cli.output import ago, emit, table


def add_parsers(group: Callable[..., Any], cmd: Callable[..., Any]) -> None:
    """The ``share`` commands (called by :func:`ipydoc.cli.parser.build_parser`)."""
    s = group("share", "share a server with other users or a group (rw or view-only)")

    def target(q: argparse.ArgumentParser, removing: bool) -> None:
        q.add_argument("owner", help="the user whose server is shared")
        q.add_argument("guest", nargs="?", help="the user to share with (or --group)")
        q.add_argument("--server", default="", metavar="NAME",
                       help="one of the owner's named servers (default: the default server)")
        q.add_argument("--group", metavar="GROUP", dest="guest_group",
                       help="share with every member of GROUP (membership followed at "
                            "each request)")
        if removing:
            q.add_argument("--all", action="store_true",
                           help="revoke every share of the server")
        else:
            q.add_argument("--mode", choices=("rw", "view"), default="rw",
                           help="rw: the same JupyterLab, running code (default); view: "
                                "read files and notebooks only (the proxy refuses every "
                                "change, kernel and terminal)")

    target(cmd(s, "add", "share a server with a user or a group (or change its mode)",
               "Share OWNER's server (the default one, or --server NAME) with the user "
               "GUEST or every member of --group. The guest opens it at the owner's URL "
               "(/user/OWNER/...), with their own login or a personal token with the "
               "servers scope; they never see the owner's token. Adding an existing share "
               "with another --mode changes its mode. Recorded as a `share` event."), False)
    q = cmd(s, "list", "shares of a user's servers, of the servers shared with a user, "
                       "or all",
            "Without arguments every share of the site; with OWNER the shares of OWNER's "
            "servers; with --guest NAME the servers shared with NAME (directly or through "
            "a group).")
    q.add_argument("owner", nargs="?", help="only the shares of this user's servers")
    q.add_argument("--guest", metavar="NAME", help="only the servers shared with NAME")
    target(cmd(s, "remove", "revoke a share (the guest is cut off at once)",
               "Revoke the share of OWNER's server with GUEST (or --group), or every share "
               "of the server with --all. The guest's next request is refused and their "
               "open WebSockets (kernels, terminals) and streams to it are closed on every "
               "daemon. Recorded as an `unshare` event."), True)


def _checked(*names: str | None) -> None:
    from ipydoc.names import InvalidName, validate_name

    for name in names:
        if name:
            try:
                validate_name(name)
            except InvalidName as e:
                raise CliError(f"invalid name {name!r}: {e}", EXIT_USAGE) from None


def _guest(args: argparse.Namespace, optional: bool = False) -> tuple[str, str]:
    if args.guest and args.guest_group:
        raise CliError("name a user or --group, not both", EXIT_USAGE)
    if not (args.guest or args.guest_group) and not optional:
        raise CliError("name the user to share with, or --group", EXIT_USAGE)
    _checked(args.owner, args.guest, args.guest_group)
    return ("group", args.guest_group) if args.guest_group else ("user", args.guest or "")


def _who(share: dict[str, Any]) -> str:
    return share["guest"] if share["kind"] == "user" else f"group {share['guest']}"


def _rows(items: list[dict[str, Any]]) -> str:
    return table([[i["server"], i["owner"], _who(i), i["mode"], i["by"] or "-",
                   ago(i["created"])] for i in items],
                 ["SERVER", "OWNER", "GUEST", "MODE", "BY", "CREATED"])


def _share_add(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    kind, guest = _guest(args)
    r = result(target, c.ShareAdd, owner=args.owner, server=args.server, kind=kind,
               guest=guest, mode=args.mode)
    emit(args, r, f"{r['server']} shared with {_who(r)} ({r['mode']})" if r["changed"]
         else f"{r['server']} was already shared with {_who(r)} ({r['mode']})")
    return EXIT_OK


def _share_list(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    _checked(args.owner, args.guest)
    items = with_daemon(target, lambda p: fetch_all(
        p, c.ShareList, owner=args.owner or None, guest=args.guest or None))
    emit(args, items, _rows(items) if items else "no shares")
    return EXIT_OK


def _share_remove(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    if args.all and (args.guest or args.guest_group):
        raise CliError("--all revokes every share of the server: name no guest", EXIT_USAGE)
    kind, guest = _guest(args, optional=args.all)
    r = result(target, c.ShareRemove, owner=args.owner, server=args.server, kind=kind,
               guest=guest)
    gone = r["removed"]
    emit(args, r, "\n".join(f"revoked: {s['server']} for {_who(s)} ({s['mode']})"
                            for s in gone) or "no shares")
    return EXIT_OK


HANDLERS: dict[tuple[str, str | None], Handler] = {
    ("share", "add"): _share_add,
    ("share", "list"): _share_list,
    ("share", "remove"): _share_remove,
}
