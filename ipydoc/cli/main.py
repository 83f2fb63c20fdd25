"""The ``ipydoc`` command: administer a running daemon over its control channel.

It speaks AMP (:mod:`ipydoc.control.commands`) to the daemon's unix socket, found from
``--control``, else ``$IPYDOC_CONTROL`` (unless ``--config`` is given), else the config
file (``--config``, ``$IPYDOC_CONFIG``, ``/etc/ipydoc/ipydoc.toml``, ``./etc/ipydoc.toml``).
``--control tls:HOST:PORT`` talks to ``control.listen_tls`` instead, with a client
certificate (``--tls-cert``/``--tls-key``, checking the daemon against ``--tls-ca``; or
``$IPYDOC_TLS_CERT``, ``$IPYDOC_TLS_KEY``, ``$IPYDOC_TLS_CA``).

Output is a table for people, or JSON with ``--json`` (``events --json`` prints one
JSON object per line).  Exit codes scripts can rely on:

== ==========================================================================
0  done
1  refused or failed in the daemon (the user exists, a start failed, ...);
   ``status``: the daemon answers but Docker or Redis is unhealthy
2  bad input or usage (invalid name, weak password, unknown option)
3  the daemon cannot be reached (not running, no permission, TLS refused)
4  configuration problem (no or bad config file)
5  no such user, server or session
6  not available in this daemon (``cull`` with no idle culler configured)
== ==========================================================================
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from ipydoc.cli import (
    backup,
    events,
    groups,
    history,
    image,
    lifecycle,
    servers,
    shares,
    tokens,
    users,
)
from ipydoc.cli.client import Handler, find_target
from ipydoc.cli.errors import EXIT_OK, EXIT_USAGE, CliError
from ipydoc.cli.parser import build_parser

HANDLERS: dict[tuple[str, str | None], Handler] = {
    **servers.HANDLERS, **users.HANDLERS, **events.HANDLERS, **history.HANDLERS,
    **groups.HANDLERS, **shares.HANDLERS, **tokens.HANDLERS,
    ("restart", None): lifecycle.restart}


def _check_name(name: str | None) -> None:
    from ipydoc.names import InvalidName, validate_name

    if name is None:
        return
    try:
        validate_name(name)
    except InvalidName as e:
        raise CliError(f"invalid user name {name!r}: {e}", EXIT_USAGE) from None


def run(args: argparse.Namespace) -> int:
    if args.group == "image":
        return image.image(args)
    if args.group in ("backup", "restore"):
        return getattr(backup, args.group)(args)
    if args.group == "serve":
        return lifecycle.serve(args)
    _check_name(getattr(args, "name", None))
    if args.group == "events":
        _check_name(args.user)
    handler = HANDLERS.get((args.group, getattr(args, "action", None)))
    if handler is None:
        raise CliError("unknown command", EXIT_USAGE)
    return handler(args, find_target(args))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except CliError as e:
        print(f"ipydoc: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `ipydoc events -f | head`: the reader left; that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
