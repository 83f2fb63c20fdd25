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

Reaching the engine (socket, TLS) is :mod:`ipydoc.backends.docker_transport`; decoding
what it sends (logs, stats, events) is :mod:`ipydoc.backends.docker_formats`.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterable
from urllib.parse import quote

import treq
from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger

from ipydoc.backends.base import BackendError
from ipydoc.backends.docker_formats import (
    EventStream,
    demux_logs,
    label_filters,
    progress_messages,
    split_image,
    summarize_stats,
)
from ipydoc.backends.docker_transport import CONNECTION_ERRORS, engine_agent, reason
from ipydoc.backends.httppool import quiet_pool

API_VERSION = "1.41"
DEFAULT_HOST = "unix:///var/run/docker.sock"
DEFAULT_TIMEOUT = 30.0

log = Logger()


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
        agent, self._base = engine_agent(reactor, self.host, self._pool)
        self._http = HTTPClient(agent)

    def __repr__(self) -> str:
        return f"DockerAPI({self.host!r})"

    async def close(self) -> None:
        await self._pool.closeCachedConnections()

    # -- plumbing ---------------------------------------------------------------------

    def _url(self, path: str, versioned: bool = True) -> str:
        return f"{self._base}/v{API_VERSION}{path}" if versioned else f"{self._base}{path}"

    def _unreachable(self, exc: BaseException) -> BackendError:
        return BackendError("unreachable", f"Docker engine unreachable at {self.host}: {reason(exc)}")

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
        except (CancelledError, *CONNECTION_ERRORS) as e:
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

    async def pause_container(self, cid: str) -> None:
        """Freeze every process of the container (the cgroup freezer)."""
        await self._call("POST", f"/containers/{quote(cid)}/pause", ok=(204,))

    async def unpause_container(self, cid: str) -> None:
        await self._call("POST", f"/containers/{quote(cid)}/unpause", ok=(204,))

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
        labels = label_filters(label_filter)
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
        repo, tag = split_image(name)
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
        for kind, message in progress_messages(content):
            if kind == "error":
                last_error = message
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
            except CONNECTION_ERRORS as e:
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
            proto = EventStream(on_event, finished)
            response.deliverBody(proto)
            try:
                await finished
            except CancelledError:
                raise
            except CONNECTION_ERRORS as e:
                raise BackendError(
                    "unreachable", f"Docker events stream from {self.host} dropped: {reason(e)}"
                ) from None

        return Deferred.fromCoroutine(go())
