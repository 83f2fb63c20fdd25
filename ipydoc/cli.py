"""The ``ipydoc`` command: administer a running daemon over its control socket.

Exit codes scripts can rely on: 0 done, 1 the daemon refused (e.g. the user exists),
2 bad input or usage, 3 the daemon cannot be reached, 4 configuration problem.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from importlib import resources
from typing import Any, Awaitable, Callable, Sequence, TypeVar

from ipydoc import __version__

T = TypeVar("T")

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_CONFIG = 0, 1, 2, 3, 4


class CliError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ipydoc",
        description="Administer a running ipydoc daemon over its control socket, "
                    "and build notebook images. The daemon itself runs as "
                    "`twistd -n ipydoc --config FILE`.",
        epilog="The control socket is found from the config file (--config, $IPYDOC_CONFIG, "
               "/etc/ipydoc/ipydoc.toml or ./etc/ipydoc.toml) or $IPYDOC_CONTROL. Exit codes: "
               "0 ok, 1 refused by the daemon, 2 bad input, 3 daemon unreachable, 4 config error.")
    p.add_argument("--config", "-c", metavar="FILE", help="the daemon's configuration file")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--version", action="version", version=f"ipydoc {__version__}")
    sub = p.add_subparsers(dest="group", metavar="COMMAND", required=True)

    sub.add_parser("status", help="daemon version, uptime, backend and Redis health")

    user = sub.add_parser("user", help="manage accounts").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    add = user.add_parser("add", help="create a local account",
                          description="Create a local account. The password is read from "
                                      "standard input with --password-stdin (one line), "
                                      "otherwise asked for twice on the terminal.")
    add.add_argument("name", help="user name: lower-case letters, digits, single hyphens")
    add.add_argument("--admin", action="store_true", help="make the account an admin")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of standard input")
    user.add_parser("list", help="list accounts and their server state")

    server = sub.add_parser("server", help="user servers").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    server.add_parser("list", help="list servers: state, image, URL, last activity")

    image = sub.add_parser("image", help="notebook images").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    build = image.add_parser(
        "build", help="build a Jupyter image locally (no registry needed; needs root)",
        description="Build a Jupyter Docker Stacks-equivalent image (jupyter_server, "
                    "JupyterLab, ipykernel; user jovyan 1000:100) from Debian packages and "
                    "PyPI with debootstrap and `docker import`. For air-gapped sites and "
                    "machines that cannot reach a registry.")
    build.add_argument("--tag", help="image tag (default: spawn.image from the config)")
    ensure = image.add_parser(
        "ensure", help="make spawn.image available: present, else pull, else build",
        description="Make the configured image usable: nothing if it is there, else "
                    "`docker pull`, else build it locally (see `ipydoc image build`).")
    ensure.add_argument("--tag", help="image tag (default: spawn.image from the config)")
    return p


# -- control channel ------------------------------------------------------------------------
def _socket_path(args: argparse.Namespace) -> str:
    if os.environ.get("IPYDOC_CONTROL") and not args.config:
        return os.environ["IPYDOC_CONTROL"]
    return str(_config(args).control_socket)


def _config(args: argparse.Namespace) -> Any:
    from ipydoc.config import ConfigError, find_config, load
    try:
        return load(find_config(args.config))
    except ConfigError as e:
        raise CliError(str(e), EXIT_CONFIG) from None


def with_daemon(socket_path: str, work: Callable[[Any], Awaitable[T]]) -> T:
    """Connect to the daemon, run ``await work(amp_protocol)``, disconnect (blocking).

    Runs the reactor once; a CLI invocation does all its calls inside one ``work``.
    """
    from twisted.internet import defer, reactor
    from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
    from twisted.internet.error import ConnectError
    from twisted.protocols import amp

    from ipydoc.control.commands import ControlError, InvalidInput

    if not os.path.exists(socket_path):
        raise CliError(f"ipydoc is not running (no control socket at {socket_path})",
                       EXIT_UNREACHABLE)
    if not os.access(socket_path, os.R_OK | os.W_OK):
        raise CliError(f"no permission to use the control socket {socket_path} "
                       "(run as the ipydoc user or root)", EXIT_UNREACHABLE)
    outcome: list[Any] = []

    async def session() -> Any:
        try:
            proto = await connectProtocol(UNIXClientEndpoint(reactor, socket_path, timeout=5),
                                          amp.AMP())
        except (ConnectError, OSError) as e:
            raise CliError(f"ipydoc is not running or not answering at {socket_path}: {e}",
                           EXIT_UNREACHABLE) from None
        try:
            return await work(proto)
        except InvalidInput as e:
            raise CliError(str(e), EXIT_USAGE) from None
        except ControlError as e:
            raise CliError(str(e), EXIT_REFUSED) from None
        finally:
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


async def fetch_all(proto: Any, command: Any, page_size: int = 500) -> list[dict[str, Any]]:
    """Every item of a paged list command."""
    items: list[dict[str, Any]] = []
    offset = 0
    while True:
        answer = await proto.callRemote(command, offset=offset, limit=page_size)
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


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip()
             for r in [header, *rows]]
    return "\n".join(lines)


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


# -- commands -------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    from ipydoc.control import commands as c
    from ipydoc.names import InvalidName, validate_name

    if args.group == "image":
        return _image(args)
    sock = _socket_path(args)
    if args.group == "status":
        status = json.loads(with_daemon(sock, lambda p: p.callRemote(c.Status))["status"])
        if args.json:
            print(json.dumps(status))
        else:
            for k, v in status.items():
                print(f"{k:16} {v}")
        return EXIT_OK if status["backend_ok"] and status["redis_ok"] else EXIT_REFUSED
    if args.group == "user" and args.action == "add":
        try:
            validate_name(args.name)
        except InvalidName as e:
            raise CliError(f"invalid user name {args.name!r}: {e}", EXIT_USAGE) from None
        password = _read_password(args)
        with_daemon(sock, lambda p: p.callRemote(c.UserAdd, name=args.name, password=password,
                                                 admin=args.admin))
        print(json.dumps({"added": args.name}) if args.json else f"added user {args.name}")
        return EXIT_OK
    if args.group == "user" and args.action == "list":
        users = with_daemon(sock, lambda p: fetch_all(p, c.UserList))
        if args.json:
            print(json.dumps(users))
        else:
            print(table([[u["name"], "yes" if u["admin"] else "", "yes" if u["disabled"] else "",
                          u["server"], _when(u["created"])] for u in users],
                        ["NAME", "ADMIN", "DISABLED", "SERVER", "CREATED"]))
        return EXIT_OK
    if args.group == "server" and args.action == "list":
        servers = with_daemon(sock, lambda p: fetch_all(p, c.ServerList))
        if args.json:
            print(json.dumps(servers))
        else:
            print(table([[s["name"], s["state"], s["image"], s["url"] or "-", _when(s["started"]),
                          _when(s["last_activity"]), s["error"]] for s in servers],
                        ["NAME", "STATE", "IMAGE", "URL", "STARTED", "LAST ACTIVITY", "ERROR"]))
        return EXIT_OK
    raise CliError("unknown command", EXIT_USAGE)


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


if __name__ == "__main__":
    sys.exit(main())
