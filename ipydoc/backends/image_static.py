"""JupyterLab's static files, read from a spawn *image* (never from a user's container).

For the cold-login cache (:mod:`ipydoc.servers.static_cache`): the files under
``share/jupyter/lab/static`` are the same for every user of one image, so the daemon
reads them once per image id.  A helper container of the image is created but never
started (nothing runs, no user volume is mounted: a user owns their container and could
plant content there, the image they cannot touch), its archive of the static directory
is fetched through the Engine API (``GET /containers/{id}/archive``) and the helper is
removed.  The archive is bounded (``max_bytes``) and the whole read has a deadline.

Only regular files whose name carries a content hash (``main.efd36b46f3b45eb8.js``,
``1014.073326ef5d98db5e.js``, ``0031b1860ea4ad75.woff``) are kept: those names are
versioned, so the bytes behind one name never change and may be cached for good.
"""

from __future__ import annotations

import io
import re
import secrets
import tarfile
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.web.http_headers import Headers

from ipydoc.backends.base import BackendError
from ipydoc.backends.capped_body import BodyTooLarge, read_capped
from ipydoc.backends.docker_api import API_VERSION, DockerAPI
from ipydoc.backends.docker_transport import CONNECTION_ERRORS, engine_agent, reason
from ipydoc.backends.httppool import quiet_pool

#: Where images commonly install JupyterLab's app directory (conda, pip into /usr/local).
STATIC_DIRS = ("/opt/conda/share/jupyter/lab/static",
               "/usr/local/share/jupyter/lab/static",
               "/usr/share/jupyter/lab/static")
HELPER_LABEL = "ipydoc.helper"
#: A versioned name: a hex hash of at least 16 digits as its last-but-one dotted part.
VERSIONED = re.compile(r"^(?:[A-Za-z0-9_-]+\.)?([0-9a-f]{16,40})\.(js|css|woff2?|ttf|eot|svg)$")


def versioned_hash(filename: str) -> str | None:
    """The content hash in a versioned file name, or None for names that are not."""
    m = VERSIONED.match(filename)
    return m.group(1) if m else None


@dataclass(frozen=True)
class ImageStatic:
    """The versioned static files of one image, by bare file name."""

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
        body = {"Image": image_id, "Entrypoint": ["true"], "Cmd": [], "NetworkDisabled": True,
                "Labels": {"ipydoc.instance": self.instance, HELPER_LABEL: "static"},
                "HostConfig": {"NetworkMode": "none"}}
        cid = await self.api.create_container(
            f"{self.instance}-static-{secrets.token_hex(4)}", body)
        self._helpers.add(cid)
        try:
            for path in STATIC_DIRS:
                tar = await self._archive(cid, path)
                if tar is not None:
                    return ImageStatic(image_id, untar_versioned(tar, self.max_bytes))
            return ImageStatic(image_id)
        finally:
            self._helpers.discard(cid)
            await self.api.remove_container(cid, force=True)

    async def _archive(self, cid: str, path: str) -> bytes | None:
        url = f"{self._base}/v{API_VERSION}/containers/{cid}/archive?path={path}".encode()
        d = self._agent.request(b"GET", url, Headers({b"Accept-Encoding": [b"identity"]}))
        timer = self.reactor.callLater(self.timeout, d.cancel)
        try:
            response = await d
            if response.code == 404:
                await read_capped(response, 65536)  # the engine's short error message
                return None
            if response.code != 200:
                raise BackendError("failed", f"reading {path} from the image failed "
                                             f"({response.code})")
            return await read_capped(response, self.max_bytes)  # the cap holds while it streams
        except BodyTooLarge:
            raise BackendError("failed", f"{path} in the image is over "
                                         f"{self.max_bytes} bytes") from None
        except defer.CancelledError:
            raise BackendError("unreachable", f"reading {path} from the image took over "
                                              f"{self.timeout:g} s") from None
        except CONNECTION_ERRORS as e:
            raise BackendError("unreachable", f"Docker engine: {reason(e)}") from None
        finally:
            if timer.active():
                timer.cancel()

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
    files: dict[str, bytes] = {}
    total = 0
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as archive:
        for member in archive:
            parts = member.name.split("/")
            if not member.isreg() or len(parts) != 2 or versioned_hash(parts[1]) is None:
                continue
            total += member.size
            if total > max_bytes:
                raise BackendError("failed", f"the image's static files are over "
                                             f"{max_bytes} bytes")
            extracted = archive.extractfile(member)
            if extracted is not None:
                files[parts[1]] = extracted.read()
    return files
