"""JupyterLab's static files, read from a spawn *image* (never from a user's container).

For the cold-login cache (:mod:`ipydoc.servers.static_cache`): the files under
``share/jupyter/lab/static`` (JupyterLab's own bundles) and the ``static/`` directories of
the prebuilt extensions in ``share/jupyter/labextensions`` are the same for every user of
one image, so the daemon reads them once per image id.  A helper container of the image
is created but never started (nothing runs, no user volume is mounted: a user owns their
container and could plant content there, the image they cannot touch), its archives of
those directories are fetched through the Engine API (``GET /containers/{id}/archive``)
and the helper is removed.  The archives are bounded (``max_bytes``) and one deadline
(``timeout``) covers every archive read whole, headers and body: an engine (or a proxy in
front of it) trickling bytes cannot hold the read past it.

Only regular files whose name carries a content hash (``main.efd36b46f3b45eb8.js``,
``1014.073326ef5d98db5e.js``, ``remoteEntry.5cbb9d2323598fbda535.js``) are kept: those
names are versioned, so the bytes behind one name never change and may be cached for
good.  Lab files are keyed by their bare name, extension files by
``extensions/<package>/static/<name>`` (``<package>`` may be scoped: ``@org/name``).
"""

from __future__ import annotations

import io
import re
import secrets
import tarfile
import time
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers

from ipydoc.backends.base import BackendError
from ipydoc.backends.capped_body import BodyTooLarge
from ipydoc.backends.docker_api import API_VERSION, DockerAPI
from ipydoc.backends.docker_transport import CONNECTION_ERRORS, engine_agent, reason
from ipydoc.backends.httppool import quiet_pool

log = Logger()

#: Where images commonly install JupyterLab (conda, pip into /usr/local, distributions).
PREFIXES = ("/opt/conda", "/usr/local", "/usr")
LAB_STATIC = "share/jupyter/lab/static"
LAB_EXTENSIONS = "share/jupyter/labextensions"
#: (kept for callers that list where JupyterLab's own files are looked for)
STATIC_DIRS = tuple(f"{p}/{LAB_STATIC}" for p in PREFIXES)
HELPER_LABEL = "ipydoc.helper"
#: A helper older than the archive deadline plus this (seconds) is nobody's read any more.
STALE_MARGIN = 60.0
EXTENSION_PREFIX = "extensions/"
#: A versioned name: a hex hash of at least 16 digits as its last-but-one dotted part.
VERSIONED = re.compile(r"^(?:[A-Za-z0-9_-]+\.)?([0-9a-f]{16,40})\.(js|css|woff2?|ttf|eot|svg)$")
#: An extension's package directory: ``name`` or ``@scope/name``.
PACKAGE = re.compile(r"^(?:@[A-Za-z0-9._-]+/)?[A-Za-z0-9._-]+$")


def versioned_hash(filename: str) -> str | None:
    """The content hash in a versioned file name, or None for names that are not."""
    m = VERSIONED.match(filename)
    return m.group(1) if m else None


def extension_key(package: str, filename: str) -> str | None:
    """The cache key of an extension's static file, or None when it may not be held."""
    if PACKAGE.match(package) is None or ".." in package or versioned_hash(filename) is None:
        return None
    return f"{EXTENSION_PREFIX}{package}/static/{filename}"


@dataclass(frozen=True)
class ImageStatic:
    """The versioned static files of one image (lab files by bare name, extension
    files by :func:`extension_key`)."""

    image_id: str
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(len(b) for b in self.files.values())


class ImageStaticReader:
    """Reads an image's JupyterLab static files through a never-started helper."""

    def __init__(self, reactor: Any, api: DockerAPI, *, instance: str,
                 max_bytes: int = 128 * 1024 * 1024, timeout: float = 120.0) -> None:
        self.reactor = reactor
        self.api = api
        self.instance = instance
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._pool = quiet_pool(reactor, persistent=False)
        # The plain Agent: treq would ask for gzip and the engine compress on the fly.
        self._agent, self._base = engine_agent(reactor, api.host, self._pool)
        self._helpers: set[str] = set()  # created and not yet removed (close() removes them)

    async def image_id(self, image: str) -> str | None:
        """The id ``image`` (a name) has now, or None when the engine does not have it."""
        info = await self.api.inspect_image(image)
        return str(info["Id"]) if info and info.get("Id") else None

    async def read(self, image: str) -> ImageStatic:
        """The versioned static files of ``image`` as it is now (raises BackendError)."""
        image_id = await self.image_id(image)
        if image_id is None:
            raise BackendError("image_missing", f"image {image} is not on the engine")
        await self.remove_stale_helpers(self.timeout + STALE_MARGIN)
        body = {"Image": image_id, "Entrypoint": ["true"], "Cmd": [], "NetworkDisabled": True,
                "Labels": {"ipydoc.instance": self.instance, HELPER_LABEL: "static"},
                "HostConfig": {"NetworkMode": "none"}}
        cid = await self.api.create_container(
            f"{self.instance}-static-{secrets.token_hex(4)}", body)
        self._helpers.add(cid)
        deadline = self.reactor.seconds() + self.timeout  # one for every archive read
        try:
            for prefix in PREFIXES:
                tar = await self._archive(cid, f"{prefix}/{LAB_STATIC}", deadline)
                if tar is None:
                    continue
                files = untar_versioned(tar, self.max_bytes)
                left = self.max_bytes - sum(len(b) for b in files.values())
                extensions = await self._archive(cid, f"{prefix}/{LAB_EXTENSIONS}", deadline)
                if extensions is not None:
                    files.update(untar_extensions(extensions, left))
                return ImageStatic(image_id, files)
            return ImageStatic(image_id)
        finally:
            self._helpers.discard(cid)
            await self.api.remove_container(cid, force=True)

    async def remove_stale_helpers(self, older_than: float) -> int:
        """Remove this instance's helpers created over ``older_than`` seconds ago, none
        of them this reader's: left by a daemon that was killed while it read (a live
        reader removes its own, and no read outlasts its deadline).  How many went."""
        try:
            found = await self.api.list_containers(
                {"ipydoc.instance": self.instance, HELPER_LABEL: "static"})
        except BackendError as e:
            log.warn("static cache: cannot list old helpers: {e}", e=e.message)
            return 0
        cutoff = time.time() - older_than
        removed = 0
        for c in found:
            cid = c.get("Id", "")
            created = c.get("Created")
            if cid and cid not in self._helpers and isinstance(created, int) \
                    and created < cutoff:
                try:
                    await self.api.remove_container(cid, force=True)
                    removed += 1
                except BackendError as e:
                    log.warn("static cache: cannot remove old helper {cid}: {e}",
                             cid=cid[:12], e=e.message)
        if removed:
            log.info("static cache: removed {n} helper container(s) a stopped daemon had "
                     "left", n=removed)
        return removed

    async def _archive(self, cid: str, path: str, deadline: float) -> bytes | None:
        """The engine's tar of ``path`` (None when the image has no such directory),
        read whole before ``deadline``."""
        d = defer.Deferred.fromCoroutine(self._fetch_archive(cid, path))
        timer = self.reactor.callLater(max(0.0, deadline - self.reactor.seconds()), d.cancel)
        try:
            return await d
        except defer.CancelledError:
            raise BackendError("unreachable", f"reading {path} from the image took over "
                                              f"{self.timeout:g} s") from None
        finally:
            if timer.active():
                timer.cancel()

    async def _fetch_archive(self, cid: str, path: str) -> bytes | None:
        url = f"{self._base}/v{API_VERSION}/containers/{cid}/archive?path={path}".encode()
        try:
            response = await self._agent.request(
                b"GET", url, Headers({b"Accept-Encoding": [b"identity"]}))
            if response.code == 404:
                await read_body(response, 65536)  # the engine's short error message
                return None
            if response.code != 200:
                raise BackendError("failed", f"reading {path} from the image failed "
                                             f"({response.code})")
            return await read_body(response, self.max_bytes)  # the cap holds as it streams
        except BodyTooLarge:
            raise BackendError("failed", f"{path} in the image is over "
                                         f"{self.max_bytes} bytes") from None
        except CONNECTION_ERRORS as e:
            raise BackendError("unreachable", f"Docker engine: {reason(e)}") from None

    async def close(self) -> None:
        """Remove a helper of a read still under way (the daemon stopping), then idle
        connections."""
        for cid in list(self._helpers):
            try:
                await self.api.remove_container(cid, force=True)
            except BackendError:
                pass
        await self._pool.closeCachedConnections()


def untar_versioned(tar: bytes, max_bytes: int) -> dict[str, bytes]:
    """The regular files with versioned names directly in the archive's one directory."""
    return _untar(tar, max_bytes, lambda parts: parts[1] if len(parts) == 2
                  and versioned_hash(parts[1]) is not None else None)


def untar_extensions(tar: bytes, max_bytes: int) -> dict[str, bytes]:
    """The versioned files of every extension's ``static/`` directory
    (``labextensions/<package>/static/<name>``), by :func:`extension_key`."""
    def key(parts: list[str]) -> str | None:
        if len(parts) not in (4, 5) or parts[-2] != "static":
            return None
        return extension_key("/".join(parts[1:-2]), parts[-1])
    return _untar(tar, max_bytes, key)


def _untar(tar: bytes, max_bytes: int, key_of: Any) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    total = 0
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as archive:
        for member in archive:
            key = key_of(member.name.split("/")) if member.isreg() else None
            if key is None:
                continue
            total += member.size
            if total > max_bytes:
                raise BackendError("failed", f"the image's static files are over "
                                             f"{max_bytes} bytes")
            extracted = archive.extractfile(member)
            if extracted is not None:
                files[key] = extracted.read()
    return files


def read_body(response: Any, limit: int) -> defer.Deferred[bytes]:
    """The whole body of an Agent ``response``, or :class:`BodyTooLarge` past ``limit``
    bytes; cancelling the Deferred drops the connection (the read's deadline)."""
    declared = response.length if isinstance(response.length, int) else None
    reader = _CappedBody(limit)
    response.deliverBody(reader)
    if declared is not None and declared > limit:
        reader.refuse(BodyTooLarge(f"answer of {declared} bytes is over {limit}"))
    return reader.done


class _CappedBody(Protocol):
    """Collects a body up to a cap; stops the transport on overflow or cancel."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.parts: list[bytes] = []
        self.done: defer.Deferred[bytes] = defer.Deferred(lambda _: self._stop())

    def _stop(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()

    def refuse(self, error: Exception) -> None:
        if not self.done.called:
            self.done.errback(Failure(error))
        self.parts = []
        self._stop()

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        self.size += len(data)
        if self.size > self.limit:
            self.refuse(BodyTooLarge(f"answer longer than {self.limit} bytes"))
            return
        self.parts.append(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self.done.called:
            return
        if reason is None or reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.parts))
        else:
            self.done.errback(reason)
