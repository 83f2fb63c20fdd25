"""Users' volumes to and from tar files, streamed through the Docker Engine API.

For ``ipydoc backup --volumes`` / ``ipydoc restore --volumes`` (the Docker backend).  A
volume (``docker.volume_prefix + NAME``, or the directory ``docker.bind_root/NAME``) is
mounted into a short-lived helper container of the spawn image that is created but never
started (nothing of the user's runs), and copied with the archive endpoints:
``GET /containers/{id}/archive`` (read-only mount) into a file, ``PUT
/containers/{id}/archive`` from a file into a fresh volume.  Both stream in chunks (a
volume is never held in memory), every helper is removed afterwards, and a transfer that
stalls for ``idle_timeout`` seconds fails.  Owners and modes travel in the tar.

Docker Swarm (volumes on other nodes) is not covered.
"""

from __future__ import annotations

import json
import os
import secrets
import tarfile
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlencode

from twisted.internet import defer, protocol
from twisted.web.client import FileBodyProducer, ResponseDone, readBody
from twisted.web.http_headers import Headers

from ipydoc.backends.base import BackendError
from ipydoc.backends.docker_api import API_VERSION, DockerAPI
from ipydoc.backends.docker_body import MANAGED_LABEL, USER_LABEL
from ipydoc.backends.docker_transport import CONNECTION_ERRORS, engine_agent, reason
from ipydoc.backends.httppool import quiet_pool
from ipydoc.names import InvalidName, validate_name

MOUNT = "/ipydoc-volume"
HELPER_LABEL = "ipydoc.helper"


class BadVolumeTar(ValueError):
    """A volume's tar that restore will not hand to the engine; the message says why."""


def check_volume_tar(path: Path) -> int:
    """Check a volume's tar before it is unpacked (its headers only, one pass): every
    entry under ``MOUNT``'s directory, no ``..``, no device, hard links inside; symbolic
    links may point anywhere (they are the user's, resolved in their container).  The
    number of entries."""
    top = MOUNT.strip("/")
    count = 0
    try:
        with tarfile.open(path, mode="r|") as tar:
            for info in tar:
                count += 1
                for name in (info.name, info.linkname if info.islnk() else top):
                    parts = name.rstrip("/").split("/")
                    if name.startswith("/") or parts[0] != top or ".." in parts:
                        raise BadVolumeTar(f"entry {name[:120]!r} is outside the volume")
                if info.ischr() or info.isblk():
                    raise BadVolumeTar(f"entry {info.name[:120]!r} is a device file")
                if not (info.isreg() or info.isdir() or info.issym() or info.islnk()
                        or info.isfifo()):
                    raise BadVolumeTar(f"entry {info.name[:120]!r} has an unknown type")
    except (tarfile.TarError, EOFError) as e:
        raise BadVolumeTar(f"not a tar file: {e}") from None
    return count


class _ToFile(protocol.Protocol):
    """A response body written to a file as it arrives; idle for too long: aborted."""

    def __init__(self, out: Any, progress: Callable[[int], None], reactor: Any,
                 idle_timeout: float) -> None:
        self.out = out
        self.progress = progress
        self.done: defer.Deferred[int] = defer.Deferred()
        self.size = 0
        self._reactor = reactor
        self._idle = idle_timeout
        self._timer: Any = None

    def connectionMade(self) -> None:  # noqa: N802 (Twisted API)
        self._timer = self._reactor.callLater(self._idle, self._stalled)

    def _stalled(self) -> None:
        self.transport.stopProducing()
        if not self.done.called:
            self.done.errback(BackendError("failed", f"the volume stream stalled for "
                                                     f"{self._idle:g} s"))

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self._timer.reset(self._idle)
        self.out.write(data)
        self.size += len(data)
        self.progress(len(data))

    def connectionLost(self, reason: Any) -> None:  # noqa: N802
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self.done.called:
            return
        if reason.check(ResponseDone):
            self.done.callback(self.size)
        else:
            self.done.errback(BackendError("failed", f"the volume stream broke: "
                                                     f"{reason.getErrorMessage()}"))


class VolumeArchive:
    """Copies users' files between their storage and tar files on this machine."""

    def __init__(self, reactor: Any, api: DockerAPI, *, image: str, instance: str,
                 storage: str, volume_prefix: str, bind_root: str = "",
                 idle_timeout: float = 300.0) -> None:
        self.reactor = reactor
        self.api = api
        self.image = image
        self.instance = instance
        self.storage = storage
        self.volume_prefix = volume_prefix
        self.bind_root = os.path.abspath(bind_root) if bind_root else ""
        self.idle_timeout = idle_timeout
        self._pool = quiet_pool(reactor, persistent=False)
        # The plain Agent, not treq: treq asks for gzip, and the engine would then
        # compress every archive on the fly (about 40 MB/s instead of the disk's speed).
        self._agent, self._base = engine_agent(reactor, api.host, self._pool)

    def _url(self, path: str, params: dict[str, str] | None = None) -> bytes:
        query = f"?{urlencode(params)}" if params else ""
        return f"{self._base}/v{API_VERSION}{path}{query}".encode()

    async def _send(self, method: str, path: str, params: dict[str, str] | None = None,
                    body: Any = None, content_type: str = "") -> Any:
        headers = Headers({b"Accept-Encoding": [b"identity"]})
        if content_type:
            headers.setRawHeaders(b"Content-Type", [content_type.encode()])
        try:
            return await self._agent.request(method.encode(), self._url(path, params),
                                             headers, body)
        except CONNECTION_ERRORS as e:
            raise BackendError("unreachable", f"Docker engine: {reason(e)}") from None

    async def close(self) -> None:
        await self._pool.closeCachedConnections()

    # -- which users -------------------------------------------------------------------------
    async def users(self) -> list[str]:
        """The users who have files (volumes or directories whose name is a user name)."""
        if self.storage == "bind":
            root = Path(self.bind_root)
            found = [p.name for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
        else:
            filters = json.dumps({"name": [self.volume_prefix]})
            answer = await self._get_json("/volumes", {"filters": filters})
            found = [v["Name"][len(self.volume_prefix):]
                     for v in (answer.get("Volumes") or [])
                     if v.get("Name", "").startswith(self.volume_prefix)]
        names = []
        for n in found:
            try:
                names.append(validate_name(n))
            except InvalidName:
                continue
        return sorted(names)

    async def exists(self, name: str) -> bool:
        """Whether ``name`` already has files (restore refuses to mix)."""
        if self.storage == "bind":
            path = Path(self.bind_root) / validate_name(name)
            return path.exists() and any(path.iterdir())
        code, _ = await self._raw("GET", f"/volumes/{self.volume_prefix}{validate_name(name)}")
        return code == 200

    def _mount(self, name: str, read_only: bool) -> dict[str, Any]:
        if self.storage == "bind":
            source = os.path.join(self.bind_root, validate_name(name))
            return {"Type": "bind", "Source": source, "Target": MOUNT, "ReadOnly": read_only}
        return {"Type": "volume", "Source": self.volume_prefix + validate_name(name),
                "Target": MOUNT, "ReadOnly": read_only}

    # -- export / import ---------------------------------------------------------------------
    async def export(self, name: str, dest: Path, progress: Callable[[int], None]) -> int:
        """Write ``name``'s files as a tar to ``dest``; the number of bytes."""
        cid = await self._helper(name, read_only=True)
        try:
            response = await self._send("GET", f"/containers/{cid}/archive", {"path": MOUNT})
            if response.code != 200:
                body = await readBody(response)
                raise BackendError("failed", f"reading {name}'s files failed "
                                             f"({response.code}): {body[:300]!r}")
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                sink = _ToFile(out, progress, self.reactor, self.idle_timeout)
                response.deliverBody(sink)
                return await sink.done
        finally:
            await self.api.remove_container(cid, force=True)

    async def restore(self, name: str, src: Path, progress: Callable[[int], None]) -> None:
        """Make ``name``'s storage (it must not exist) and unpack ``src`` into it."""
        if self.storage == "bind":
            path = Path(self.bind_root) / validate_name(name)
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        else:
            await self.api.create_volume(self.volume_prefix + validate_name(name), {
                "ipydoc.instance": self.instance, USER_LABEL: name, MANAGED_LABEL: "1"})
        cid = await self._helper(name, read_only=False)
        try:
            with open(src, "rb") as f:
                timer: Any = None

                def sent(n: int) -> None:  # the engine takes data: not stalled
                    timer.reset(self.idle_timeout)
                    progress(n)

                body = FileBodyProducer(_Reporting(f, sent))
                d = defer.Deferred.fromCoroutine(self._put_archive(cid, body))
                timer = self.reactor.callLater(self.idle_timeout, d.cancel)
                try:
                    response, answer = await d
                except (defer.CancelledError, BackendError, *CONNECTION_ERRORS) as e:
                    why = (e.message if isinstance(e, BackendError) else
                           f"stalled for {self.idle_timeout:g} s"
                           if isinstance(e, defer.CancelledError) else reason(e))
                    raise BackendError("failed", f"writing {name}'s files failed: "
                                                 f"{why}") from None
                finally:
                    if timer.active():
                        timer.cancel()
            if response.code != 200:
                raise BackendError("failed", f"writing {name}'s files failed "
                                             f"({response.code}): {answer[:300]!r}")
        finally:
            await self.api.remove_container(cid, force=True)

    # -- plumbing ----------------------------------------------------------------------------
    async def _helper(self, name: str, read_only: bool) -> str:
        """A created (never started) container with ``name``'s storage at MOUNT."""
        body = {"Image": self.image, "Entrypoint": ["true"], "Cmd": [],
                "NetworkDisabled": True,
                "Labels": {"ipydoc.instance": self.instance, HELPER_LABEL: "backup"},
                "HostConfig": {"Mounts": [self._mount(name, read_only)],
                               "NetworkMode": "none"}}
        return await self.api.create_container(
            f"{self.instance}-backup-{name}-{secrets.token_hex(3)}", body)

    async def _put_archive(self, cid: str, body: Any) -> tuple[Any, bytes]:
        response = await self._send("PUT", f"/containers/{cid}/archive", {"path": "/"},
                                    body, "application/x-tar")
        return response, await readBody(response)

    async def _raw(self, method: str, path: str, params: Any = None) -> tuple[int, bytes]:
        response = await self._send(method, path, params)
        try:
            return response.code, await readBody(response)
        except CONNECTION_ERRORS as e:
            raise BackendError("unreachable", f"Docker engine: {reason(e)}") from None

    async def _get_json(self, path: str, params: Any = None) -> Any:
        code, body = await self._raw("GET", path, params)
        if code != 200:
            raise BackendError("failed", f"Docker GET {path} failed ({code}): {body[:300]!r}")
        return json.loads(body)


class _Reporting:
    """A file whose reads are reported (for the progress bar of an upload)."""

    def __init__(self, f: Any, progress: Callable[[int], None]) -> None:
        self._f = f
        self._progress = progress

    def read(self, n: int) -> bytes:
        data = self._f.read(n)
        self._progress(len(data))
        return data

    def seek(self, *args: Any) -> int:
        return self._f.seek(*args)

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        self._f.close()
