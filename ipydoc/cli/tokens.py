"""``ipydoc token list|create|revoke``: users' personal API tokens (issue 19).

The token ``create`` makes is printed once, on stdout, and exists nowhere else: the daemon
keeps its SHA-256, its log and events name only the id.  A listing shows ids, notes,
scopes and dates, never a token.  The operator acts on any user's tokens (``--user``).
"""

from __future__ import annotations

import argparse
import re
from typing import Any, Callable

from ipydoc.cli.client import Handler, Target, fetch_all, result, with_daemon
from ipydoc.cli.errors import EXIT_OK, EXIT_USAGE, CliError
from ipydoc.cli.output import ago, emit, table, when

SCOPES = ("read", "servers", "admin")  # as ipydoc.access.tokens.SCOPES (no import: speed)
DEFAULT_SCOPES = ["read", "servers"]
DEFAULT_EXPIRY = "30d"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def expiry_seconds(text: str) -> float:
    """``30d``, ``12h``, ``1y``, ``3600`` (seconds) or ``never`` (0)."""
    text = text.strip().lower()
    if text in ("never", "0"):
        return 0.0
    m = re.fullmatch(r"(\d+)([smhdwy]?)", text)
    if m is None or int(m.group(1)) == 0:
        raise CliError(f"--expires: {text!r} is not a duration like 30d, 12h, 1y or never",
                       EXIT_USAGE)
    return float(int(m.group(1)) * _UNITS[m.group(2) or "s"])


def add_parsers(group: Callable[..., Any], cmd: Callable[..., Any]) -> None:
    """The ``token`` commands (called by :func:`ipydoc.cli.parser.build_parser`)."""
    t = group("token", "users' personal API tokens (for /hub/api/ and their servers)")

    def user(q: argparse.ArgumentParser) -> None:
        q.add_argument("--user", required=True, metavar="NAME", help="whose tokens")

    user(cmd(t, "list", "a user's tokens: id, scopes, note, dates (never the tokens)"))
    q = cmd(t, "create", "make a token for a user and print it once",
            "Make a personal API token for --user and print it once (stdout; with --json "
            "as \"token\"). Only its hash is kept: it cannot be shown again. Scopes: read "
            "(the user's own things through /hub/api/), servers (read, plus starting and "
            "using the user's own server), admin (servers, plus what an admin can do; only "
            "for an admin, and only while they are one).")
    user(q)
    q.add_argument("--scope", action="append", choices=SCOPES, metavar="SCOPE",
                   help="read, servers or admin; repeat for several (default: read servers)")
    q.add_argument("--note", default="", help="what the token is for (one line)")
    q.add_argument("--expires", default=DEFAULT_EXPIRY, metavar="DURATION",
                   help="lifetime: 30d, 12h, 1y (at most), a number of seconds, or never "
                        f"(default {DEFAULT_EXPIRY})")
    q = cmd(t, "revoke", "revoke a user's token by its id (what it has open is closed)")
    user(q)
    q.add_argument("id", help="the token's id (16 hex digits, from `ipydoc token list`)")


def _check_user(args: argparse.Namespace) -> str:
    from ipydoc.names import InvalidName, validate_name

    try:
        return validate_name(args.user)
    except InvalidName as e:
        raise CliError(f"invalid user name {args.user!r}: {e}", EXIT_USAGE) from None


def _token_list(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import tokens as t

    name = _check_user(args)
    items = with_daemon(target, lambda p: fetch_all(p, t.TokenList, user=name))
    emit(args, items, table([[i["id"], " ".join(i["scopes"]), i["note"] or "-",
                              when(i["created"]),
                              when(i["expires"]) if i["expires"] else "never",
                              ago(i["last_used"])] for i in items],
                            ["ID", "SCOPES", "NOTE", "CREATED", "EXPIRES", "LAST USED"]))
    return EXIT_OK


def _token_create(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import tokens as t

    r = result(target, t.TokenCreate, user=_check_user(args),
               scopes=" ".join(args.scope or DEFAULT_SCOPES), note=args.note,
               expires_in=expiry_seconds(args.expires))
    info = r["info"]
    expires = when(info["expires"]) if info["expires"] else "never"
    emit(args, {"user": args.user, **r},
         f"{r['token']}\n\nThe token above is shown once: store it now.\n"
         f"id {info['id']}, user {args.user}, scopes {' '.join(info['scopes'])}, "
         f"expires {expires}")
    return EXIT_OK


def _token_revoke(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import tokens as t

    r = result(target, t.TokenRevoke, user=_check_user(args), id=args.id)
    emit(args, r, f"revoked {args.user}'s token {args.id}")
    return EXIT_OK


HANDLERS: dict[tuple[str, str | None], Handler] = {
    ("token", "list"): _token_list,
    ("token", "create"): _token_create,
    ("token", "revoke"): _token_revoke,
}
