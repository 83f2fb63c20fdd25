"""Reaching the daemon: where its control channel is (a unix socket, or TLS with a client
certificate), one connection per CLI call with the daemon's errors mapped to exit codes,
and reading paged answers.  Twisted is imported only when a command needs the daemon."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar

from ipydoc.cli.errors import (
    EXIT_CONFIG,
    EXIT_NOT_AVAILABLE,
    EXIT_NOT_FOUND,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CliError,
)

T = TypeVar("T")

#: A command's handler: the parsed arguments and where the daemon is → the exit code.
Handler = Callable[[argparse.Namespace, "Target"], int]


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


def find_target(args: argparse.Namespace) -> Target:
    spec = args.control
    if not spec and not args.config:
        spec = os.environ.get("IPYDOC_CONTROL") or None
    if not spec:
        return Target(path=str(load_config(args).control_socket))
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


def load_config(args: argparse.Namespace) -> Any:
    from ipydoc.config.errors import ConfigError
    from ipydoc.config.load import find_config, load
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


def result(target: Target, command: Any, **kw: Any) -> dict[str, Any]:
    answer = with_daemon(target, lambda p: p.callRemote(command, **kw))
    return json.loads(answer["result"])

