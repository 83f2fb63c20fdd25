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
import getpass
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from typing import Any, Awaitable, Callable, Sequence, TypeVar

from ipydoc import __version__

T = TypeVar("T")

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_CONFIG = 0, 1, 2, 3, 4
EXIT_NOT_FOUND, EXIT_NOT_AVAILABLE = 5, 6

EXIT_CODES = """exit codes: 0 done; 1 refused or failed in the daemon; 2 bad input; 3 daemon
unreachable (not running, no permission, TLS refused); 4 configuration error; 5 no such
user, server or session; 6 not available (e.g. no idle culler)"""


class CliError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# -- the command line -----------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog="ipydoc", formatter_class=fmt,
        description="Administer a running ipydoc daemon over its control channel, and build\n"
                    "notebook images. The daemon itself runs as "
                    "`twistd -n ipydoc --config FILE`.",
        epilog="The control socket is found from --control, else $IPYDOC_CONTROL, else the\n"
               "config file (--config, $IPYDOC_CONFIG, /etc/ipydoc/ipydoc.toml, "
               "./etc/ipydoc.toml).\n" + EXIT_CODES + "\n\n"
               "`ipydoc COMMAND --help` and `ipydoc COMMAND ACTION --help` describe each one.")
    p.add_argument("--config", "-c", metavar="FILE", help="the daemon's configuration file")
    p.add_argument("--control", metavar="TARGET",
                   help="the control channel: a socket PATH, or tls:HOST:PORT for "
                        "control.listen_tls (default: from the config, or $IPYDOC_CONTROL)")
    p.add_argument("--tls-cert", metavar="PEM",
                   help="client certificate for tls: (also $IPYDOC_TLS_CERT)")
    p.add_argument("--tls-key", metavar="PEM",
                   help="its private key, if not in --tls-cert's file (also $IPYDOC_TLS_KEY)")
    p.add_argument("--tls-ca", metavar="PEM",
                   help="CA certificate(s) to check the daemon's certificate against "
                        "(also $IPYDOC_TLS_CA)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--version", action="version", version=f"ipydoc {__version__}")

    # ``--json`` is also accepted after the command (``ipydoc user list --json``).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print JSON instead of a table")
    sub = p.add_subparsers(dest="group", metavar="COMMAND", required=True)

    def group(name: str, help: str) -> Any:
        g = sub.add_parser(name, help=help, description=help)
        return g.add_subparsers(dest="action", metavar="ACTION", required=True)

    def cmd(parent: Any, name: str, help: str, description: str = "") -> argparse.ArgumentParser:
        return parent.add_parser(name, help=help, description=description or help,
                                 parents=[common], formatter_class=fmt)

    def name_arg(q: argparse.ArgumentParser) -> None:
        q.add_argument("name", help="user name")

    cmd(sub, "status", "daemon version, uptime, Docker and Redis health, counts",
        "Version, uptime, Docker and Redis health and counts. Exits 1 when the daemon "
        "answers but Docker or Redis does not.")

    user = group("user", "manage accounts")
    q = cmd(user, "add", "create a local account",
            "Create a local account. The password (8 characters or more) is read from "
            "standard input with --password-stdin (its first line), otherwise asked for "
            "twice on the terminal. Names: lower-case letters, digits and single inner "
            "hyphens, starting with a letter, at most 32 characters.")
    q.add_argument("name", help="user name")
    q.add_argument("--admin", action="store_true", help="make the account an admin")
    q.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of standard input")
    q = cmd(user, "remove", "delete an account (files kept and name reserved, unless --purge)",
            "Delete an account: logins are refused at once, its sessions end, its server "
            "stops and its records go. Its files (volume or directory) and history are "
            "kept, and the name stays reserved so that no new account (`user add`, a "
            "GitHub or OIDC login) can get them: `user purge NAME` deletes them and frees "
            "the name, `user restore NAME` brings the account back. --purge --yes deletes "
            "the files and history at once (the name is free afterwards).")
    name_arg(q)
    q.add_argument("--purge", action="store_true",
                   help="also delete the user's files and history repository")
    q.add_argument("--yes", action="store_true", help="confirm --purge (it cannot be undone)")
    q = cmd(user, "purge", "delete a removed account's files and history; free the name",
            "Delete what a removed account kept: its files (volume or directory), its "
            "history repository, queued saves and mirror state, and its login identity "
            "binding; then the name is free and a new account of it starts empty. Also "
            "cleans up leftovers of accounts removed by an older ipydoc. The mirror "
            "repository (history.remote) is on another server and is not deleted. Needs "
            "--yes.")
    name_arg(q)
    q.add_argument("--yes", action="store_true", help="confirm (it cannot be undone)")
    cmd(user, "removed", "removed accounts whose files are kept (their names are reserved)",
        "List the names reserved by `user remove` without --purge: when and by whom, where "
        "the files are, how many versions the history has. `user purge NAME --yes` frees "
        "one, `user restore NAME` brings the account back.")
    name_arg(cmd(user, "restore", "bring a removed account back with its files",
                 "Undo `user remove` without --purge: the same account comes back (its "
                 "password or GitHub/OIDC login, admin flag, files and history)."))
    cmd(user, "list", "list accounts and their server state")
    name_arg(cmd(user, "show", "one account: flags, server, last activity, sessions"))
    name_arg(cmd(user, "disable", "refuse logins, end all sessions, stop the server",
                 "Disable an account: logins are refused, every session ends, the server "
                 "stops. Files and the account stay; `user enable` undoes it."))
    name_arg(cmd(user, "enable", "allow a disabled account to log in again"))
    q = cmd(user, "set-admin", "grant admin rights (or withdraw them with --off)")
    name_arg(q)
    q.add_argument("--off", action="store_true", help="withdraw admin rights instead")
    q = cmd(user, "set-limits", "override a user's memory, CPU and process limits",
            "Give one user other limits than the [spawn] config: memory (e.g. 4G), CPUs "
            "(fractions allowed), processes; 0 means no limit. --reset drops the named "
            "overrides (mem, cpu, pids; or all) so the config applies again. Takes effect "
            "at the user's next server start.")
    name_arg(q)
    q.add_argument("--mem", metavar="SIZE", help="memory limit, binary units (512M, 2G; 0: none)")
    q.add_argument("--cpu", type=float, metavar="CPUS", help="CPU limit (0.5, 2; 0: none)")
    q.add_argument("--pids", type=int, metavar="N", help="process limit (0: none)")
    q.add_argument("--reset", action="append", default=[], metavar="WHICH",
                   choices=["mem", "cpu", "pids", "all"],
                   help="drop an override (repeatable): mem, cpu, pids or all")
    q = cmd(user, "passwd", "set a user's password (ends their sessions)",
            "Set a new password, read like `user add` reads it. Every session of the "
            "user ends, unless --keep-sessions.")
    name_arg(q)
    q.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of standard input")
    q.add_argument("--keep-sessions", action="store_true",
                   help="do not log the user out everywhere")

    server = group("server", "user servers")
    q = cmd(server, "start", "start a user's server and wait until it answers",
            "Start a user's server (as logging in does) and wait until Jupyter answers; "
            "exit 1 with the reason if it fails. --no-wait returns at once.")
    name_arg(q)
    q.add_argument("--no-wait", action="store_true", help="do not wait for it to be ready")
    name_arg(cmd(server, "stop", "stop a user's server (files are kept)",
                 "Stop a user's server: the container is stopped and removed, the files "
                 "stay. Stopping a server that is not running is not an error."))
    cmd(server, "list", "servers: state, image, URL, start time, last activity, error")
    name_arg(cmd(server, "show", "one server: record, container, start progress"))
    q = cmd(server, "logs", "the last lines of a server's output (its container's logs)",
            "Print the last N lines of the container's stdout and stderr, interleaved. A "
            "stopped server's container is removed, and its output with it.")
    name_arg(q)
    q.add_argument("-n", "--tail", type=int, default=100, metavar="N",
                   help="how many lines (default 100; 0: all)")

    route = group("route", "the proxy's routing table")
    cmd(route, "list", "routes: user, backend address, last activity",
        "The proxy's routes: each running user's server and where its traffic goes. "
        "SERVED: in the proxy's table; STORED: in Redis (they agree unless something is "
        "wrong).")

    session = group("session", "login sessions")
    q = cmd(session, "list", "live login sessions (of one user, or everyone's)")
    q.add_argument("name", nargs="?", help="only this user's sessions")
    q = cmd(session, "revoke", "end sessions: all of a user's, or one by its id",
            "End every session of NAME, or the one session whose id (from `session list`) "
            "starts with --id. The browser is logged out at its next request.")
    q.add_argument("name", nargs="?", help="end all of this user's sessions")
    q.add_argument("--id", metavar="SID", help="end the one session with this id (8+ digits)")

    cmd(sub, "cull", "stop idle servers now (runs the idle culler)",
        "Run the idle culler at once and list the servers it stopped. When the daemon has "
        "no idle culler configured this says so and exits 6.")

    q = cmd(sub, "events", "recent events; with -f, follow them live",
            "Print recent events (logins, refused logins, spawns, failed spawns, stops, "
            "admin changes), oldest first; with --follow keep printing new ones as they "
            "happen, until interrupted. With --json, one JSON object per line.")
    q.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    q.add_argument("-n", "--count", type=int, default=20, metavar="N",
                   help="how many past events to print first (default 20; 0: none)")
    q.add_argument("--user", metavar="NAME", help="only this user's events")
    q.add_argument("--kind", metavar="K[,K...]",
                   help="only these kinds, e.g. login,spawn,spawn-failed,stop")
    q.add_argument("--after", metavar="ID",
                   help="print the events after this event id (from an earlier --json "
                        "line) instead of the last N: resume where a script stopped")
    q.add_argument("--max", type=int, metavar="N",
                   help="with --follow: exit after N new events")
    q.add_argument("--for", dest="for_", type=float, metavar="SECONDS",
                   help="with --follow: stop following after SECONDS")

    history = group("history", "versions of users' files (every save is a git commit)")
    q = cmd(history, "list", "a user's versioned files, or the versions of one file",
            "Without PATH: every file in NAME's history with its number of versions, last "
            "change, and whether it still exists. With PATH: that file's versions, newest "
            "first (REV, time, what happened).")
    name_arg(q)
    q.add_argument("path", nargs="?", help="a file path relative to the user's home")
    q = cmd(history, "restore", "write an old version of a file back (as a new save)",
            "Write version REV (from `history list NAME PATH`; 4+ hex digits) of PATH back "
            "to NAME's running server. It is saved as a new version: nothing is lost.")
    name_arg(q)
    q.add_argument("path", help="a file path relative to the user's home")
    q.add_argument("rev", help="the version (commit id or a unique prefix of 4+ digits)")
    q = cmd(history, "dead-letters", "changes of a user that could not be versioned",
            "Changes the history worker gave up on, newest first, with the reason: the "
            "user's server answered beyond a limit (too large, an encoding not asked for, "
            "too slow, not a contents model) or failed history.max_attempts times. The "
            "files themselves are untouched; the next save of a file versions it again.")
    name_arg(q)

    image = group("image", "notebook images")
    q = image.add_parser(
        "build", help="build a Jupyter image locally (no registry needed; needs root)",
        description="Build a Jupyter Docker Stacks-equivalent image (jupyter_server, "
                    "JupyterLab, ipykernel; user jovyan 1000:100) from Debian packages and "
                    "PyPI with debootstrap and `docker import`. For air-gapped sites and "
                    "machines that cannot reach a registry.")
    q.add_argument("--tag", help="image tag (default: spawn.image from the config)")
    q = image.add_parser(
        "ensure", help="make spawn.image available: present, else pull, else build",
        description="Make the configured image usable: nothing if it is there, else "
                    "`docker pull`, else build it locally (see `ipydoc image build`).")
    q.add_argument("--tag", help="image tag (default: spawn.image from the config)")
    return p


# -- finding and reaching the daemon --------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """Where the control channel is: a unix socket ``path``, or TLS to ``host``:``port``."""

    path: str = ""
    host: str = ""
    port: int = 0
    cert: str = ""
    key: str = ""
    ca: str = ""

    def describe(self) -> str:
        return self.path if self.path else f"tls:{self.host}:{self.port}"


def _target(args: argparse.Namespace) -> Target:
    spec = args.control
    if not spec and not args.config:
        spec = os.environ.get("IPYDOC_CONTROL") or None
    if not spec:
        return Target(path=str(_config(args).control_socket))
    if spec.startswith("tls:"):
        hostport = spec[4:]
        host, sep, port = hostport.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit():
            raise CliError(f"bad control target {spec!r}: use tls:HOST:PORT", EXIT_USAGE)
        cert = args.tls_cert or os.environ.get("IPYDOC_TLS_CERT", "")
        key = args.tls_key or os.environ.get("IPYDOC_TLS_KEY", "")
        ca = args.tls_ca or os.environ.get("IPYDOC_TLS_CA", "")
        if not ca:
            raise CliError("tls: needs --tls-ca (or $IPYDOC_TLS_CA) to check the daemon's "
                           "certificate", EXIT_USAGE)
        return Target(host=host, port=int(port), cert=cert, key=key, ca=ca)
    return Target(path=spec[5:] if spec.startswith("unix:") else spec)


def _config(args: argparse.Namespace) -> Any:
    from ipydoc.config.load import ConfigError, find_config, load
    try:
        return load(find_config(args.config))
    except ConfigError as e:
        raise CliError(str(e), EXIT_CONFIG) from None


def _endpoint(reactor: Any, target: Target) -> Any:
    from twisted.internet.endpoints import (
        HostnameEndpoint,
        UNIXClientEndpoint,
        wrapClientTLS,
    )

    if target.path:
        path = target.path
        try:
            os.stat(path)
        except FileNotFoundError:
            raise CliError(f"ipydoc is not running (no control socket at {path})",
                           EXIT_UNREACHABLE) from None
        except PermissionError:
            raise CliError(f"no permission to reach the control socket {path} "
                           "(run as the ipydoc user or root)", EXIT_UNREACHABLE) from None
        if not os.access(path, os.R_OK | os.W_OK):
            raise CliError(f"no permission to use the control socket {path} "
                           "(run as the ipydoc user or root)", EXIT_UNREACHABLE)
        return UNIXClientEndpoint(reactor, path, timeout=5)
    from ipydoc.control.tls import TLSFilesError, client_options
    try:
        options = client_options(target.host, target.cert, target.key, target.ca)
    except TLSFilesError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    return wrapClientTLS(options, HostnameEndpoint(reactor, target.host, target.port, timeout=5))


def _lost(target: Target, failure_or_exc: Any) -> CliError:
    """A clear message for a connection that broke (TLS refusal included)."""
    exc = getattr(failure_or_exc, "value", failure_or_exc)
    reason = str(exc) or exc.__class__.__name__
    details = exc.args[0] if exc.args and isinstance(exc.args[0], list) else None
    if details and all(isinstance(d, tuple) and len(d) == 3 for d in details):
        reason = "; ".join(str(d[2]) for d in details)  # OpenSSL's error queue
    if target.path:
        return CliError(f"lost the connection to ipydoc at {target.path}: {reason}",
                        EXIT_UNREACHABLE)
    return CliError(
        f"the TLS connection to {target.describe()} failed: {reason} (the daemon accepts only "
        "client certificates signed by its control.tls_client_ca, and its own certificate "
        "must be valid for the host name under --tls-ca)", EXIT_UNREACHABLE)


def with_daemon(target: Target | str, work: Callable[[Any], Awaitable[T]]) -> T:
    """Connect to the daemon, run ``await work(amp_protocol)``, disconnect (blocking).

    Runs the reactor once; a CLI invocation does all its calls inside one ``work``.
    """
    from OpenSSL import SSL
    from twisted.internet import defer, error, reactor
    from twisted.internet.endpoints import connectProtocol
    from twisted.protocols import amp

    from ipydoc.control import commands as c

    if isinstance(target, str):
        target = Target(path=target)
    endpoint = _endpoint(reactor, target)
    outcome: list[Any] = []
    broken = (error.ConnectionLost, error.ConnectionDone, error.ConnectionClosed, SSL.Error)

    async def session() -> Any:
        try:
            proto = await connectProtocol(endpoint, amp.AMP())
        except (error.ConnectError, OSError) as e:
            where = target.describe()
            raise CliError(f"ipydoc is not running or not answering at {where}: {e}",
                           EXIT_UNREACHABLE) from None
        try:
            return await work(proto)
        except c.InvalidInput as e:
            raise CliError(str(e), EXIT_USAGE) from None
        except c.NotFound as e:
            raise CliError(str(e), EXIT_NOT_FOUND) from None
        except c.NotAvailable as e:
            raise CliError(str(e), EXIT_NOT_AVAILABLE) from None
        except c.ControlError as e:
            raise CliError(str(e), EXIT_REFUSED) from None
        except amp.UnknownRemoteError as e:
            raise CliError(f"the daemon failed: {e}", EXIT_REFUSED) from None
        except broken as e:
            raise _lost(target, e) from None
        finally:
            if proto.transport is not None:
                proto.transport.loseConnection()

    def start() -> None:
        d = defer.Deferred.fromCoroutine(session())
        d.addBoth(lambda r: (outcome.append(r), reactor.stop()))

    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=False)
    result = outcome[0]
    if hasattr(result, "raiseException"):
        result.raiseException()
    return result


async def fetch_all(proto: Any, command: Any, page_size: int = 500,
                    **args: Any) -> list[dict[str, Any]]:
    """Every item of a paged list command (pages may hold fewer items than asked for)."""
    items: list[dict[str, Any]] = []
    offset = 0
    while True:
        answer = await proto.callRemote(command, offset=offset, limit=page_size, **args)
        batch = json.loads(answer["items"])
        items.extend(batch)
        offset += len(batch)
        if not batch or offset >= answer["total"]:
            return items


# -- output ---------------------------------------------------------------------------------
def _when(ts: Any) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(float(ts), timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _ago(ts: Any) -> str:
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


def _yes(flag: Any) -> str:
    return "yes" if flag else ""


def _print(args: argparse.Namespace, data: Any, human: str) -> None:
    print(json.dumps(data) if args.json else human)


def _read_password(args: argparse.Namespace) -> str:
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


def _check_name(name: str | None) -> None:
    from ipydoc.names import InvalidName, validate_name

    if name is None:
        return
    try:
        validate_name(name)
    except InvalidName as e:
        raise CliError(f"invalid user name {name!r}: {e}", EXIT_USAGE) from None


def _server_rows(servers: list[dict[str, Any]]) -> str:
    return table([[s["name"], s["state"], s["image"] or "-", s.get("link") or s["url"] or "-",
                   _when(s["started"]), _ago(s.get("last_activity")), s["error"]]
                  for s in servers],
                 ["NAME", "STATE", "IMAGE", "URL", "STARTED", "LAST ACTIVITY", "ERROR"])


def _details(item: dict[str, Any], indent: str = "") -> str:
    lines = []
    for k, v in item.items():
        if isinstance(v, dict):
            lines.append(f"{indent}{k}:")
            lines.append(_details(v, indent + "  "))
        else:
            if k in ("created", "started", "updated", "last_activity") and v:
                v = f"{_when(v)} ({_ago(v)})"
            lines.append(f"{indent}{k + ':':16} {'-' if v in (None, '') else v}")
    return "\n".join(lines)


# -- commands -------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    if args.group == "image":
        return _image(args)
    _check_name(getattr(args, "name", None))
    if args.group == "events":
        _check_name(args.user)
    handler = HANDLERS.get((args.group, getattr(args, "action", None)))
    if handler is None:
        raise CliError("unknown command", EXIT_USAGE)
    return handler(args, _target(args))


def _status(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    status = json.loads(with_daemon(target, lambda p: p.callRemote(c.Status))["status"])
    _print(args, status, "\n".join(f"{k:16} {v}" for k, v in status.items()))
    return EXIT_OK if status["backend_ok"] and status["redis_ok"] else EXIT_REFUSED


def _user_add(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    password = _read_password(args)
    with_daemon(target, lambda p: p.callRemote(c.UserAdd, name=args.name, password=password,
                                               admin=args.admin))
    _print(args, {"added": args.name}, f"added user {args.name}")
    return EXIT_OK


def _user_remove(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    if args.purge and not args.yes:
        raise CliError(f"--purge deletes {args.name}'s files for good: add --yes to confirm",
                       EXIT_USAGE)
    r = _result(target, c.UserRemove, name=args.name, purge=args.purge)
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
    _print(args, r, f"{head}; {tail}")
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
    r = _result(target, c.UserPurge, name=args.name)
    _print(args, r, f"purged {args.name}: deleted the files ({r.get('files', 'files')}) and "
                    f"{_versions(r)}{_mirror_note(r)}; the name {args.name} is free")
    return EXIT_OK


def _user_removed(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    items = with_daemon(target, lambda p: fetch_all(p, c.UserRemovedList))
    _print(args, items, table([[i["name"], _when(i["removed"]), i["files"] or "-",
                                i["versions"], i["by"] or "-"] for i in items],
                              ["NAME", "REMOVED", "FILES", "VERSIONS", "BY"])
           if items else "no removed accounts with kept files")
    return EXIT_OK


def _user_restore(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    r = _result(target, c.UserRestore, name=args.name)
    _print(args, r, f"restored {args.name} with the files ({r.get('files', 'files')}) and "
                    f"{_versions(r)}" + (" (still disabled)" if r.get("disabled") else ""))
    return EXIT_OK


def _user_list(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    users = with_daemon(target, lambda p: fetch_all(p, c.UserList))
    _print(args, users, table([[u["name"], _yes(u["admin"]), _yes(u["disabled"]), u["server"],
                                _when(u["created"])] for u in users],
                              ["NAME", "ADMIN", "DISABLED", "SERVER", "CREATED"]))
    return EXIT_OK


def _result(target: Target, command: Any, **kw: Any) -> dict[str, Any]:
    answer = with_daemon(target, lambda p: p.callRemote(command, **kw))
    return json.loads(answer["result"])


def _user_show(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    r = _result(target, c.UserShow, name=args.name)
    _print(args, r, _details(r))
    return EXIT_OK


def _user_disable(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    r = _result(target, c.UserDisable, name=args.name)
    _print(args, r, f"disabled {args.name}: {r['sessions_revoked']} sessions ended, server "
                    f"{'stopped' if r['server_stopped'] else 'was not running'}")
    return EXIT_OK


def _user_enable(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    r = _result(target, c.UserEnable, name=args.name)
    _print(args, r, f"enabled {args.name}" if r["changed"] else f"{args.name} was enabled")
    return EXIT_OK


def _user_set_admin(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    r = _result(target, c.UserSetAdmin, name=args.name, admin=not args.off)
    what = "is an admin" if r["admin"] else "is not an admin"
    _print(args, r, f"{args.name} {what}" + ("" if r["changed"] else " (unchanged)"))
    return EXIT_OK


def _user_set_limits(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.config.load import parse_size
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
    r = _result(target, c.UserSetLimits, name=args.name, limits=json.dumps(limits),
                clear=",".join(reset))
    eff = r["effective"]

    def show(k: str) -> str:
        v = eff[k]
        text = "none" if v is None else (_size(v) if k == "mem" else f"{v:g}")
        return text + ("" if k in r["overrides"] else " (config)")
    _print(args, r, f"limits of {args.name}: memory {show('mem')}, CPUs {show('cpu')}, "
                    f"processes {show('pids')}; applied at the next start")
    return EXIT_OK


def _size(n: int) -> str:
    for unit in ("G", "M", "K"):
        scale = 1024 ** " KMG".index(unit)
        if n >= scale and n % scale == 0:
            return f"{n // scale}{unit}"
    return str(n)


def _user_passwd(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    password = _read_password(args)
    r = _result(target, c.UserPasswd, name=args.name, password=password,
                keep_sessions=args.keep_sessions)
    _print(args, r, f"password of {args.name} changed; {r['sessions_revoked']} sessions ended")
    return EXIT_OK


def _server_start(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    r = _result(target, c.ServerStart, name=args.name, wait=not args.no_wait)
    _print(args, r, f"server of {args.name} is {r['state']}"
                    + (f" at {r['url']}" if r.get("url") and r["state"] == "running" else ""))
    return EXIT_OK


def _server_stop(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    r = _result(target, c.ServerStop, name=args.name)
    _print(args, r, f"stopped the server of {args.name}" if r["stopped"]
           else f"the server of {args.name} was not running")
    return EXIT_OK


def _server_list(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    servers = with_daemon(target, lambda p: fetch_all(p, c.ServerList))
    _print(args, servers, _server_rows(servers))
    return EXIT_OK


def _server_show(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    r = _result(target, c.ServerShow, name=args.name)
    _print(args, r, _details(r))
    return EXIT_OK


def _server_logs(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    if args.tail < 0:
        raise CliError("--tail must be 0 (all) or more", EXIT_USAGE)

    async def work(p: Any) -> str:
        chunks, offset = [], 0
        while True:
            answer = await p.callRemote(c.ServerLogs, name=args.name, tail=args.tail,
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
        print(json.dumps({"name": args.name, "text": text}))
    else:
        sys.stdout.flush()
    return EXIT_OK


def _route_list(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    routes = with_daemon(target, lambda p: fetch_all(p, c.RouteList))
    _print(args, routes, table([[r["name"], r["target"], _yes(r["served"]), _yes(r["stored"]),
                                 _ago(r["last_activity"])] for r in routes],
                               ["NAME", "TARGET", "SERVED", "STORED", "LAST ACTIVITY"]))
    return EXIT_OK


def _session_list(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    sessions = with_daemon(target, lambda p: fetch_all(p, c.SessionList, user=args.name or ""))
    _print(args, sessions, table(
        [[s["sid"][:16], s["user"], _when(s["created"]),
          f"{s['expires_in'] // 86400}d {s['expires_in'] % 86400 // 3600}h"
          if s["expires_in"] >= 0 else "-"] for s in sessions],
        ["SID", "USER", "CREATED", "EXPIRES IN"]))
    return EXIT_OK


def _session_revoke(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    if bool(args.name) == bool(args.id):
        raise CliError("name a user (all their sessions) or give --id SID (one session)",
                       EXIT_USAGE)
    r = _result(target, c.SessionRevoke, user=args.name or "", sid=args.id or "")
    _print(args, r, f"ended {r['revoked']} session{'s' if r['revoked'] != 1 else ''}"
                    + (f" of {r['user']}" if r["user"] else ""))
    return EXIT_OK


def _cull(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    r = _result(target, c.Cull)
    _print(args, r, "stopped: " + (", ".join(r["stopped"]) or "nothing was idle"))
    return EXIT_OK


def _event_line(args: argparse.Namespace, e: dict[str, Any]) -> str:
    if args.json:
        return json.dumps(e)
    return f"{_when(e.get('time'))}  {e.get('kind', ''):16} {e.get('user') or '-':16} " \
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


def _history_list(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    items = with_daemon(target, lambda p: fetch_all(p, c.HistoryList, name=args.name,
                                                     path=args.path or ""))
    if args.path:
        human = table([[v["rev"][:12], _when(v["time"]), v["change"] or "-", v["message"]]
                       for v in items], ["REV", "TIME", "CHANGE", "MESSAGE"])
    else:
        human = table([[f["path"], f["versions"], _when(f["last"]),
                        "yes" if f["present"] else "deleted"] for f in items],
                      ["PATH", "VERSIONS", "LAST CHANGE", "PRESENT"])
    _print(args, items, human if items else "no history yet")
    return EXIT_OK


def _history_restore(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    r = _result(target, c.HistoryRestore, name=args.name, path=args.path, rev=args.rev)
    _print(args, r, f"restored {r['path']} of {r['name']} to version {r['rev'][:12]} "
                    "(saved as a new version)")
    return EXIT_OK


def _history_dead_letters(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import commands as c

    items = with_daemon(target, lambda p: fetch_all(p, c.HistoryDeadLetters, name=args.name))
    human = table([[_when(d["time"]), d["op"], d["path"], d["attempts"], d["reason"]]
                   for d in items], ["TIME", "OP", "PATH", "ATTEMPTS", "REASON"])
    _print(args, items, human if items else "no dead letters")
    return EXIT_OK


HANDLERS: dict[tuple[str, str | None], Callable[[argparse.Namespace, Target], int]] = {
    ("status", None): _status,
    ("user", "add"): _user_add,
    ("user", "remove"): _user_remove,
    ("user", "purge"): _user_purge,
    ("user", "restore"): _user_restore,
    ("user", "removed"): _user_removed,
    ("user", "list"): _user_list,
    ("user", "show"): _user_show,
    ("user", "disable"): _user_disable,
    ("user", "enable"): _user_enable,
    ("user", "set-admin"): _user_set_admin,
    ("user", "set-limits"): _user_set_limits,
    ("user", "passwd"): _user_passwd,
    ("server", "start"): _server_start,
    ("server", "stop"): _server_stop,
    ("server", "list"): _server_list,
    ("server", "show"): _server_show,
    ("server", "logs"): _server_logs,
    ("route", "list"): _route_list,
    ("session", "list"): _session_list,
    ("session", "revoke"): _session_revoke,
    ("cull", None): _cull,
    ("events", None): _events,
    ("history", "list"): _history_list,
    ("history", "restore"): _history_restore,
    ("history", "dead-letters"): _history_dead_letters,
}


def _image(args: argparse.Namespace) -> int:
    tag = args.tag or _config(args).spawn.image
    inspect = ["docker", "image", "inspect", "--format", "{{.Id}}", tag]
    if args.action == "ensure":
        if subprocess.run(inspect, capture_output=True).returncode == 0:
            print(f"image {tag} is present")
            return EXIT_OK
        if subprocess.run(["docker", "pull", tag]).returncode == 0:
            return EXIT_OK
        print(f"could not pull {tag}; building it locally", file=sys.stderr)
    script = resources.files("ipydoc.image") / "build.sh"
    recipe = __import__("hashlib").sha256(script.read_bytes()).hexdigest()[:16]
    return subprocess.run(["bash", str(script), tag, recipe]).returncode


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
