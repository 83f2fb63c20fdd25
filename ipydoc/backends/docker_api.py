"""A small Docker Engine API client over treq.

ipydoc needs a few dozen Engine API calls (containers, images, volumes, networks, logs
and the events stream); the API is a stable, versioned REST interface, so a thin client pinned to
``/v1.41`` (Docker 20.10 and every later engine) is simpler and safer than a dependency
(``txdocker`` does not exist; docker-py is blocking and would need threads).

* ``DockerAPI(reactor, host)``: ``host`` is a ``DOCKER_HOST``-style address,
  ``unix:///var/run/docker.sock`` (the default) or ``tcp://HOST:PORT``; with
  ``DOCKER_TLS_VERIFY`` / ``DOCKER_CERT_PATH`` set, ``tcp://`` uses TLS with the client
  certificate in ``$DOCKER_CERT_PATH/{ca,cert,key}.pem`` (as the docker CLI does).
* Every method is ``async`` and returns parsed JSON.  Failures raise
  :class:`ipydoc.backends.base.BackendError` whose ``message`` can be shown to an
  operator and whose ``kind`` says what went wrong (``unreachable``, ``image_missing``,
  ``conflict``, ``failed``, ``bad_answer``).
* Each request has a timeout (whole request, body included); the events stream has none.
"""

from __future__ import annotations

import json
import os
import re
import struct
from typing import Any, Callable, Iterable
from urllib.parse import quote

import treq
from treq.client import HTTPClient
from twisted.internet import error as ierror
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import client as web_client
from twisted.web._newclient import (
    RequestTransmissionFailed,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.client import Agent
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from ipydoc.backends.base import BackendError
from ipydoc.backends.httppool import quiet_pool

API_VERSION = "1.41"
DEFAULT_HOST = "unix:///var/run/docker.sock"
DEFAULT_TIMEOUT = 30.0
MAX_EVENT_LINE = 1 << 20  # an events line longer than this is garbage, not an event

log = Logger()

_CONNECTION_ERRORS = (
    ierror.ConnectError,
    ierror.ConnectionLost,
    ierror.ConnectionDone,
    ierror.ConnectionClosed,
    ResponseNeverReceived,
    RequestTransmissionFailed,
    ResponseFailed,
    OSError,
)


def _reason(exc: BaseException) -> str:
    """A short human reason for a connection-level failure."""
    if isinstance(exc, (ResponseNeverReceived, RequestTransmissionFailed, ResponseFailed)):
        reasons = getattr(exc, "reasons", None) or []
        for r in reasons:
            if isinstance(r, Failure) and not r.check(CancelledError):
                return _reason(r.value)
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


def _label_filters(label_filter: dict[str, str | None] | Iterable[str]) -> list[str]:
    if isinstance(label_filter, dict):
        return [k if v is None else f"{k}={v}" for k, v in label_filter.items()]
    return list(label_filter)


def _split_image(name: str) -> tuple[str, str | None]:
    """("repo", "tag") for the pull API; a missing tag means latest (never "all tags")."""
    if "@" in name:
        return name, None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, "latest"


def demux_logs(data: bytes) -> str:
    """Docker's multiplexed log stream (8-byte headers) to text; raw (TTY) data as is."""
    out: list[bytes] = []
    i = 0
    n = len(data)
    if n >= 8 and data[0] in (0, 1, 2) and data[1:4] == b"\0\0\0":
        while i + 8 <= n:
            stream, size = struct.unpack(">BxxxL", data[i : i + 8])
            if stream not in (0, 1, 2):
                out.append(data[i:])  # not a header after all: keep the rest verbatim
                i = n
                break
            out.append(data[i + 8 : i + 8 + size])
            i += 8 + size
        out.append(data[i:])
    else:
        out.append(data)
    return b"".join(out).decode("utf-8", "replace")


def summarize_stats(raw: dict) -> dict:
    """``cpu_percent`` (100 = one CPU busy), ``mem_bytes``, ``mem_limit``, ``pids`` of a
    stats document, computed as ``docker stats`` does (memory without the page cache)."""
    def num(d: Any, *path: str) -> float:
        for key in path:
            d = d.get(key) if isinstance(d, dict) else None
        return float(d) if isinstance(d, (int, float)) else 0.0

    cpu, pre = raw.get("cpu_stats") or {}, raw.get("precpu_stats") or {}
    cpu_delta = num(cpu, "cpu_usage", "total_usage") - num(pre, "cpu_usage", "total_usage")
    sys_delta = num(cpu, "system_cpu_usage") - num(pre, "system_cpu_usage")
    online = num(cpu, "online_cpus") or float(
        len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1)
    cpu_percent = cpu_delta / sys_delta * online * 100.0 if cpu_delta > 0 and sys_delta > 0 else 0.0
    mem = raw.get("memory_stats") or {}
    usage = num(mem, "usage")
    # cgroup v1 names the page cache total_inactive_file, v2 inactive_file.
    cache = num(mem, "stats", "total_inactive_file") or num(mem, "stats", "inactive_file")
    if cache < usage:
        usage -= cache
    return {"cpu_percent": round(cpu_percent, 2), "mem_bytes": int(usage),
            "mem_limit": int(num(mem, "limit")), "pids": int(num(raw, "pids_stats", "current"))}


class _EventStream(Protocol):
    """Body protocol for ``GET /events``: newline-delimited JSON objects in chunks."""

    def __init__(self, on_event: Callable[[dict], None], finished: Deferred) -> None:
        self._on_event = on_event
        self._finished = finished
        self._buffer = b""
        self._decoder = json.JSONDecoder()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted API)
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._line(line)
        if len(self._buffer) > MAX_EVENT_LINE:
            log.warn("Docker events: dropping {n} bytes without a newline", n=len(self._buffer))
            self._buffer = b""

    def _line(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").strip()
        pos = 0
        while pos < len(text):
            try:
                obj, end = self._decoder.raw_decode(text, pos)
            except ValueError:
                log.warn("Docker events: skipping a line that is not JSON: {line!r}", line=text[:200])
                return
            pos = end
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if isinstance(obj, dict):
                try:
                    self._on_event(obj)
                except Exception:
                    log.failure("Docker events: the event listener failed")

    def connectionLost(self, reason: Failure = None) -> None:  # noqa: N802 (Twisted API)
        if self._buffer.strip():
            self._line(self._buffer)
            self._buffer = b""
        if self._finished.called:
            return
        # A normal end of body (PotentialDataLoss for an unframed body, or ResponseDone)
        # means the engine closed the stream: fire, so the caller reconnects.
        if reason is None or reason.check(web_client.ResponseDone, web_client.PotentialDataLoss):
            self._finished.callback(None)
        else:
            self._finished.errback(reason)


class DockerAPI:
    """A Docker Engine API client: ``await api.version()`` and friends.

    ``close()`` drops idle pooled connections (call it when shutting down, and in tests).
    """

    def __init__(
        self,
        reactor: Any,
        host: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        pull_timeout: float = 900.0,
    ) -> None:
        self.reactor = reactor
        self.host = host or os.environ.get("DOCKER_HOST") or DEFAULT_HOST
        self.timeout = timeout
        self.pull_timeout = pull_timeout
        self._pool = quiet_pool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = 4
        self._pool.retryAutomatically = False
        if self.host.startswith("unix://"):
            path = self.host[len("unix://") :]
            if not path:
                raise BackendError("failed", f"bad Docker host {self.host!r}: no socket path")
            agent = Agent.usingEndpointFactory(reactor, _UNIXEndpointFactory(reactor, path), pool=self._pool)
            self._base = "http://docker"
        else:
            m = re.fullmatch(r"(tcp|http|https)://\[?([^/\]]+?)\]?(?::(\d+))?/?", self.host)
            if not m:
                raise BackendError(
                    "failed",
                    f"unsupported Docker host {self.host!r}: use unix:///PATH or tcp://HOST:PORT",
                )
            scheme, hostname, port = m.groups()
            cert_path = os.environ.get("DOCKER_CERT_PATH") or ""
            verify = bool(os.environ.get("DOCKER_TLS_VERIFY"))
            tls = scheme == "https" or verify or bool(cert_path)
            if tls:
                cert_path = cert_path or os.path.expanduser("~/.docker")
                agent = Agent(reactor, contextFactory=_DockerTLSPolicy(cert_path, verify), pool=self._pool)
            else:
                agent = Agent(reactor, pool=self._pool)
            port = port or ("2376" if tls else "2375")
            netloc = f"[{hostname}]" if ":" in hostname else hostname
            self._base = f"{'https' if tls else 'http'}://{netloc}:{port}"
        self._http = HTTPClient(agent)

    def __repr__(self) -> str:
        return f"DockerAPI({self.host!r})"

    async def close(self) -> None:
        await self._pool.closeCachedConnections()

    # -- plumbing ---------------------------------------------------------------------

    def _url(self, path: str, versioned: bool = True) -> str:
        return f"{self._base}/v{API_VERSION}{path}" if versioned else f"{self._base}{path}"

    def _unreachable(self, exc: BaseException) -> BackendError:
        return BackendError("unreachable", f"Docker engine unreachable at {self.host}: {_reason(exc)}")

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        timeout: float | None = None,
    ) -> tuple[int, bytes]:
        """(status, body bytes); connection trouble and timeouts raise BackendError."""
        timeout = self.timeout if timeout is None else timeout

        async def go() -> tuple[int, bytes]:
            headers = {}
            data = None
            if body is not None:
                data = json.dumps(body).encode("utf-8")
                headers["Content-Type"] = ["application/json"]
            response = await self._http.request(
                method, self._url(path), params=params, data=data, headers=headers,
                allow_redirects=False,
            )
            content = await treq.content(response)
            return response.code, content

        d = Deferred.fromCoroutine(go())
        timed_out = []
        timer = None
        if timeout:
            def expire() -> None:
                timed_out.append(True)
                d.cancel()

            timer = self.reactor.callLater(timeout, expire)
        try:
            return await d
        except (CancelledError, *_CONNECTION_ERRORS) as e:
            # Cancelling the Agent's request surfaces as ResponseNeverReceived/ResponseFailed
            # wrapping CancelledError, so the timer's own flag says whether it was a timeout.
            if timed_out:
                raise BackendError(
                    "unreachable",
                    f"Docker engine at {self.host} did not answer {method} {path} within {timeout:g} s",
                ) from None
            if isinstance(e, CancelledError):
                raise
            raise self._unreachable(e) from None
        finally:
            if timer is not None and timer.active():
                timer.cancel()

    @staticmethod
    def _message(content: bytes) -> str:
        try:
            obj = json.loads(content)
            if isinstance(obj, dict) and obj.get("message"):
                return str(obj["message"])
        except ValueError:
            pass
        return content.decode("utf-8", "replace").strip()[:500] or "(no message)"

    def _error(self, method: str, path: str, code: int, content: bytes) -> BackendError:
        msg = self._message(content)
        if code == 409:
            kind = "conflict"
        elif code == 404 and ("image" in msg.lower() and "no such" in msg.lower()):
            kind = "image_missing"
        else:
            kind = "failed"
        return BackendError(kind, f"Docker {method} {path.split('?')[0]} failed ({code}): {msg}")

    def _parse(self, method: str, path: str, content: bytes) -> Any:
        if not content.strip():
            return None
        try:
            return json.loads(content)
        except ValueError:
            raise BackendError(
                "bad_answer",
                f"Docker engine at {self.host} answered {method} {path} with something that is not "
                f"JSON: {content[:200]!r}",
            ) from None

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        timeout: float | None = None,
        ok: tuple[int, ...] = (200, 201, 204),
        none_on: tuple[int, ...] = (),
        expect: type | None = None,
    ) -> Any:
        code, content = await self._request(method, path, params=params, body=body, timeout=timeout)
        if code in none_on:
            return None
        if code not in ok:
            raise self._error(method, path, code, content)
        result = self._parse(method, path, content)
        if expect is not None and not isinstance(result, expect):
            raise BackendError(
                "bad_answer",
                f"Docker engine at {self.host} answered {method} {path} with "
                f"{type(result).__name__} where {expect.__name__} was expected",
            )
        return result

    # -- system -----------------------------------------------------------------------

    async def ping(self) -> str:
        code, content = await self._request("GET", "/_ping")
        if code != 200:
            raise self._error("GET", "/_ping", code, content)
        return content.decode("utf-8", "replace").strip()

    async def version(self) -> dict:
        return await self._call("GET", "/version", expect=dict)

    # -- containers -------------------------------------------------------------------

    async def create_container(self, name: str, body: dict) -> str:
        result = await self._call(
            "POST", "/containers/create", params={"name": name}, body=body, expect=dict
        )
        cid = result.get("Id")
        if not isinstance(cid, str) or not cid:
            raise BackendError("bad_answer", f"Docker created container {name} but sent no Id: {result!r}")
        for w in result.get("Warnings") or []:
            log.warn("Docker warning creating {name}: {w}", name=name, w=w)
        return cid

    async def start_container(self, cid: str, timeout: float | None = None) -> None:
        # 304: already started.
        await self._call("POST", f"/containers/{quote(cid)}/start", ok=(204, 304), timeout=timeout)

    async def inspect_container(self, id_or_name: str) -> dict | None:
        return await self._call(
            "GET", f"/containers/{quote(id_or_name)}/json", none_on=(404,), expect=dict
        )

    async def stop_container(self, cid: str, timeout_s: int = 10) -> None:
        """Stop (SIGTERM, then SIGKILL after ``timeout_s``); already stopped or gone is fine."""
        await self._call(
            "POST", f"/containers/{quote(cid)}/stop", params={"t": int(timeout_s)},
            ok=(204, 304), none_on=(404,), timeout=self.timeout + timeout_s,
        )

    async def remove_container(self, cid: str, force: bool = False) -> None:
        """Remove; a container that is gone (404) is fine.  Volumes are never removed."""
        await self._call(
            "DELETE", f"/containers/{quote(cid)}", params={"force": "1" if force else "0", "v": "0"},
            ok=(204,), none_on=(404,),
        )

    async def list_containers(
        self, label_filter: dict[str, str | None] | Iterable[str] = (), all: bool = True
    ) -> list[dict]:
        params: dict[str, Any] = {"all": "1" if all else "0"}
        labels = _label_filters(label_filter)
        if labels:
            params["filters"] = json.dumps({"label": labels})
        return await self._call("GET", "/containers/json", params=params, expect=list)

    async def logs(self, cid: str, tail: int | str = 100) -> str:
        """The container's last ``tail`` lines of stdout and stderr, interleaved, as text."""
        code, content = await self._request(
            "GET", f"/containers/{quote(cid)}/logs",
            params={"stdout": "1", "stderr": "1", "tail": str(tail)},
        )
        if code != 200:
            raise self._error("GET", f"/containers/{cid}/logs", code, content)
        return demux_logs(content)

    async def stats(self, cid: str) -> dict | None:
        """One sample of a running container's CPU and memory use, or None if it is gone.

        ``GET /containers/{id}/stats?stream=false``: the engine samples twice about a
        second apart, so the CPU share is over that second.  Answers
        :func:`summarize_stats` of the engine's document.
        """
        raw = await self._call(
            "GET", f"/containers/{quote(cid)}/stats", params={"stream": "false"},
            none_on=(404,), expect=dict,
        )
        return None if raw is None else summarize_stats(raw)

    # -- images -----------------------------------------------------------------------

    async def inspect_image(self, name: str) -> dict | None:
        return await self._call("GET", f"/images/{quote(name, safe='/:@')}/json", none_on=(404,), expect=dict)

    async def pull_image(self, name: str) -> None:
        """Pull ``name`` (tag ``latest`` if none); errors in the progress stream raise."""
        repo, tag = _split_image(name)
        params = {"fromImage": repo}
        if tag:
            params["tag"] = tag
        code, content = await self._request(
            "POST", "/images/create", params=params, timeout=self.pull_timeout
        )
        if code != 200:
            err = self._error("POST", "/images/create", code, content)
            raise BackendError("image_missing" if code == 404 else err.kind, f"pulling {name}: {self._message(content)}")
        last_error = None
        for line in content.splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and obj.get("error"):
                detail = obj.get("errorDetail") or {}
                last_error = str(detail.get("message") or obj["error"])
        if last_error:
            raise BackendError("failed", f"pulling {name}: {last_error}")

    # -- volumes ----------------------------------------------------------------------

    async def create_volume(self, name: str, labels: dict[str, str] | None = None) -> dict:
        """Create (or return the existing) local volume ``name``."""
        return await self._call(
            "POST", "/volumes/create", body={"Name": name, "Labels": labels or {}, "Driver": "local"},
            expect=dict,
        )

    async def remove_volume(self, name: str) -> None:
        """Remove a volume; gone is fine; in use raises kind "conflict"."""
        await self._call("DELETE", f"/volumes/{quote(name)}", ok=(204,), none_on=(404,))

    # -- networks ---------------------------------------------------------------------

    async def inspect_network(self, name: str) -> dict | None:
        """The network named exactly ``name`` (the engine also matches id prefixes; those
        answers are not it), or None."""
        net = await self._call("GET", f"/networks/{quote(name)}", none_on=(404,), expect=dict)
        if net is not None and net.get("Name") != name and net.get("Id") != name:
            return None
        return net

    async def create_network(
        self,
        name: str,
        *,
        internal: bool = False,
        options: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> str:
        """Create a local bridge network; its id.  A name that exists raises "conflict"."""
        result = await self._call(
            "POST", "/networks/create", expect=dict,
            body={"Name": name, "Driver": "bridge", "CheckDuplicate": True, "Internal": internal,
                  "EnableIPv6": False, "Options": options or {}, "Labels": labels or {}},
        )
        nid = result.get("Id")
        if not isinstance(nid, str) or not nid:
            raise BackendError("bad_answer", f"Docker created network {name} but sent no Id: {result!r}")
        if result.get("Warning"):
            log.warn("Docker warning creating network {name}: {w}", name=name, w=result["Warning"])
        return nid

    async def remove_network(self, id_or_name: str) -> None:
        """Remove a network; gone is fine; one with containers raises "conflict"/"failed"."""
        await self._call("DELETE", f"/networks/{quote(id_or_name)}", ok=(204,), none_on=(404,))

    async def connect_network(self, network: str, cid: str) -> None:
        await self._call("POST", f"/networks/{quote(network)}/connect", body={"Container": cid},
                         ok=(200,))

    async def disconnect_network(self, network: str, cid: str, force: bool = False) -> None:
        await self._call("POST", f"/networks/{quote(network)}/disconnect",
                         body={"Container": cid, "Force": force}, ok=(200,))

    # -- events -----------------------------------------------------------------------

    def events(
        self,
        filters: dict[str, list[str]] | None,
        on_event: Callable[[dict], None],
        *,
        since: str | None = None,
        on_open: Callable[[], None] | None = None,
    ) -> Deferred:
        """Follow ``GET /events``, calling ``on_event(dict)`` for each event.

        Returns a Deferred that fires with None when the engine ends the stream, errbacks
        with BackendError when the connection fails or drops, and stops the stream when
        cancelled (``d.cancel()``; the Deferred then errbacks with CancelledError).
        ``on_open`` is called once the engine accepted the request.  ``since`` (a Docker
        timestamp, "SECONDS.NANOSECONDS") replays the engine's recent events first.
        """
        params: dict[str, Any] = {}
        if filters:
            params["filters"] = json.dumps(filters)
        if since:
            params["since"] = since

        async def go() -> None:
            try:
                response = await self._http.request(
                    "GET", self._url("/events"), params=params, unbuffered=True, allow_redirects=False
                )
            except _CONNECTION_ERRORS as e:
                raise self._unreachable(e) from None
            if response.code != 200:
                content = await treq.content(response)
                raise self._error("GET", "/events", response.code, content)
            if on_open is not None:
                on_open()

            def cancel(_: Deferred) -> None:
                # Documented way to abort a response body: stop its producer.
                if proto.transport is not None:
                    proto.transport.stopProducing()

            finished: Deferred = Deferred(cancel)
            proto = _EventStream(on_event, finished)
            response.deliverBody(proto)
            try:
                await finished
            except CancelledError:
                raise
            except _CONNECTION_ERRORS as e:
                raise BackendError(
                    "unreachable", f"Docker events stream from {self.host} dropped: {_reason(e)}"
                ) from None

        return Deferred.fromCoroutine(go())
