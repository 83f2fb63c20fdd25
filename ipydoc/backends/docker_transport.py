"""How ipydoc reaches a Docker engine: the ``DOCKER_HOST`` address to an HTTP agent (a
unix socket, plain TCP, or TLS with the docker CLI's client certificate in
``DOCKER_CERT_PATH``), and connection failures to a reason fit for an operator.

Kept apart from the endpoints in :mod:`ipydoc.backends.docker_api`: this is the only
place that knows about sockets and certificates.
"""

from __future__ import annotations

import os
import re
from typing import Any

from twisted.internet import error as ierror
from twisted.internet.defer import CancelledError
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.python.failure import Failure
from twisted.web import client as web_client
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    RequestTransmissionFailed,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from ipydoc.backends.base import BackendError

CONNECTION_ERRORS = (
    ierror.ConnectError,
    ierror.ConnectionLost,
    ierror.ConnectionDone,
    ierror.ConnectionClosed,
    ResponseNeverReceived,
    RequestTransmissionFailed,
    ResponseFailed,
    OSError,
)


def reason(exc: BaseException) -> str:
    """A short human reason for a connection-level failure."""
    if isinstance(exc, (ResponseNeverReceived, RequestTransmissionFailed, ResponseFailed)):
        reasons = getattr(exc, "reasons", None) or []
        for r in reasons:
            if isinstance(r, Failure) and not r.check(CancelledError):
                return reason(r.value)
        return "the connection was closed before an answer arrived"
    if isinstance(exc, ierror.ConnectError):
        os_error = exc.osError
        text = exc.args[0] if exc.args else ""
        if isinstance(text, str) and text:
            # UNIX connect failures carry "No such file or directory" etc. as the string.
            return text.strip().rstrip(".")
        if os_error:
            return str(os_error).strip().rstrip(".")
        return str(exc).strip().rstrip(".")
    if isinstance(exc, (ierror.ConnectionLost, ierror.ConnectionDone)):
        return "the connection was closed before an answer arrived"
    return str(exc) or exc.__class__.__name__


@implementer(web_client.IAgentEndpointFactory)
class _UNIXEndpointFactory:
    """Every URL goes to the one unix socket (the URL's host is ignored)."""

    def __init__(self, reactor: Any, path: str) -> None:
        self._reactor = reactor
        self._path = path

    def endpointForURI(self, uri: Any) -> UNIXClientEndpoint:  # noqa: N802 (Twisted API)
        return UNIXClientEndpoint(self._reactor, self._path, timeout=10)


@implementer(IPolicyForHTTPS)
class _DockerTLSPolicy:
    """Client certificate from DOCKER_CERT_PATH; verify against its ca.pem if asked."""

    def __init__(self, cert_path: str, verify: bool) -> None:
        from twisted.internet import ssl

        def read(name: str) -> bytes:
            p = os.path.join(cert_path, name)
            try:
                with open(p, "rb") as f:
                    return f.read()
            except OSError as e:
                raise BackendError(
                    "failed", f"Docker TLS: cannot read {p}: {e.strerror or e}"
                ) from None

        try:
            self._client = ssl.PrivateCertificate.loadPEM(read("cert.pem") + b"\n" + read("key.pem"))
            self._ca = ssl.Certificate.loadPEM(read("ca.pem")) if verify else None
        except BackendError:
            raise
        except Exception as e:  # pyOpenSSL raises assorted errors for bad PEM files
            raise BackendError("failed", f"Docker TLS: bad certificate files in {cert_path}: {e}") from None
        self._verify = verify

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:  # noqa: N802 (Twisted API)
        from twisted.internet import ssl

        if self._verify:
            return ssl.optionsForClientTLS(
                hostname.decode("ascii"), trustRoot=self._ca, clientCertificate=self._client
            )
        # DOCKER_CERT_PATH without DOCKER_TLS_VERIFY: TLS with a client certificate, server
        # not verified (the docker CLI's behaviour for that combination).
        return _NoVerifyCreator(self._client)


@implementer(IOpenSSLClientConnectionCreator)
class _NoVerifyCreator:
    """A TLS client connection with a client certificate and no server check."""

    def __init__(self, client: Any) -> None:
        from twisted.internet import ssl

        self._options = ssl.CertificateOptions(
            privateKey=client.privateKey.original, certificate=client.original, verify=False
        )

    def clientConnectionForTLS(self, tlsProtocol: Any) -> Any:  # noqa: N802 (Twisted API)
        from OpenSSL import SSL

        conn = SSL.Connection(self._options.getContext(), None)
        conn.set_app_data(tlsProtocol)
        conn.set_connect_state()
        return conn



def engine_agent(reactor: Any, host: str, pool: HTTPConnectionPool) -> tuple[Agent, str]:
    """The agent that reaches the engine at ``host`` (``unix:///PATH``, ``tcp://HOST:PORT``;
    TLS when ``DOCKER_TLS_VERIFY`` or ``DOCKER_CERT_PATH`` is set, as the docker CLI does)
    and the base URL to put before API paths."""
    if host.startswith("unix://"):
        path = host[len("unix://") :]
        if not path:
            raise BackendError("failed", f"bad Docker host {host!r}: no socket path")
        agent = Agent.usingEndpointFactory(reactor, _UNIXEndpointFactory(reactor, path), pool=pool)
        return agent, "http://docker"
    m = re.fullmatch(r"(tcp|http|https)://\[?([^/\]]+?)\]?(?::(\d+))?/?", host)
    if not m:
        raise BackendError(
            "failed",
            f"unsupported Docker host {host!r}: use unix:///PATH or tcp://HOST:PORT",
        )
    scheme, hostname, port = m.groups()
    cert_path = os.environ.get("DOCKER_CERT_PATH") or ""
    verify = bool(os.environ.get("DOCKER_TLS_VERIFY"))
    tls = scheme == "https" or verify or bool(cert_path)
    if tls:
        cert_path = cert_path or os.path.expanduser("~/.docker")
        agent = Agent(reactor, contextFactory=_DockerTLSPolicy(cert_path, verify), pool=pool)
    else:
        agent = Agent(reactor, pool=pool)
    port = port or ("2376" if tls else "2375")
    netloc = f"[{hostname}]" if ":" in hostname else hostname
    return agent, f"{'https' if tls else 'http'}://{netloc}:{port}"
