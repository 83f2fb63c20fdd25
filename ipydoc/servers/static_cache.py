"""JupyterLab's versioned static files, per spawn image, for a cold login (issue 15 §2).

While a user's server starts, the browser can already fetch JupyterLab's bundles: they
are the same for every user of one image.  This cache holds them, read once per image
*id* from the image itself (:mod:`ipydoc.backends.image_static`: a never-started
helper, never a user's container), and the access ladder answers
``static/lab/<versioned name>`` from it while the user's server is not routable yet
(:mod:`ipydoc.access.ladder`, step 5: after the credential, owner and Origin steps).

Why this is safe to share: only names carrying a content hash are held
(``main.efd36b46f3b45eb8.js``), so one name always means the same bytes, whichever image
of the site holds it; no page, no settings, no token, nothing of a user is cached.
An image change is followed: :meth:`StaticCache.refresh` asks the engine for the
image's id (one inspect) and reads the files again when the id is new, dropping the
old id's files.

The prebuilt extensions' versioned files (``lab/extensions/<package>/static/<name>``:
``remoteEntry.<hash>.js`` and its chunks) are held too: JupyterLab loads every extension
the page lists before it starts.  They come from the image like the rest; a user who
installs an extension of the same package and hash in their home gets the image's bytes
for that name while the server starts (the hash is of the content: the same file).

The spawn page asks the browser to prefetch the files JupyterLab loads at start
(:meth:`StaticCache.startup_files`): the names seen requested from running servers
(at most ``MAX_LEARNED``, only names the cache holds), else the entry bundle ``main``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from twisted.internet import defer
from twisted.logger import Logger

from ipydoc.backends.base import BackendError
from ipydoc.backends.image_static import EXTENSION_PREFIX, ImageStatic, versioned_hash

MAX_LEARNED = 400
CONTENT_TYPES = {"js": "application/javascript", "css": "text/css; charset=utf-8",
                 "woff": "font/woff", "woff2": "font/woff2", "ttf": "font/ttf",
                 "eot": "application/vnd.ms-fontobject", "svg": "image/svg+xml"}
#: The headers of every answer from the cache (the names are content-addressed).
IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable",
             "X-Content-Type-Options": "nosniff"}


class StaticReader(Protocol):
    async def image_id(self, image: str) -> str | None: ...

    async def read(self, image: str) -> ImageStatic: ...


class StaticCache:
    log = Logger()

    def __init__(self, reader: StaticReader) -> None:
        self.reader = reader
        self._by_image: dict[str, ImageStatic] = {}   # image name -> its files now
        self._refreshing: dict[str, list[defer.Deferred[None]]] = {}  # image -> waiters
        self._learned: dict[str, None] = {}            # ordered set of file names

    # -- filling ----------------------------------------------------------------------
    def refresh_soon(self, images: Iterable[str]) -> None:
        """Refresh in the background (a failure is logged: the cache is an optimisation)."""
        for image in images:
            if image and image not in self._refreshing:
                self._refreshing[image] = []
                defer.Deferred.fromCoroutine(self._refresh_then_tell(image))

    def refresh(self, image: str) -> defer.Deferred[None]:
        """Fires once ``image``'s files are those of its current id (one read per id)."""
        self.refresh_soon([image])
        waiters = self._refreshing.get(image)
        if waiters is None:  # (finished at once)
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        waiters.append(waiter)
        return waiter

    async def _refresh_then_tell(self, image: str) -> None:
        try:
            await self._refresh(image)
        except Exception:  # noqa: BLE001 - e.g. a tar the engine broke off: logged, no cache
            self.log.failure("static cache: reading {image} failed", image=image)
        finally:
            for waiter in self._refreshing.pop(image, []):
                waiter.callback(None)

    async def _refresh(self, image: str) -> None:
        try:
            image_id = await self.reader.image_id(image)
            held = self._by_image.get(image)
            if image_id is None:
                self._by_image.pop(image, None)
                return
            if held is not None and held.image_id == image_id:
                return
            files = await self.reader.read(image)
            self._by_image[image] = files
            self.log.info("static cache: {n} files ({mb:.1f} MB) of {image} ({id})",
                          n=len(files.files), mb=files.size / 1e6, image=image,
                          id=files.image_id[:19])
        except BackendError as e:
            self.log.warn("static cache: cannot read {image}: {e}", image=image, e=e.message)

    # -- answering --------------------------------------------------------------------
    def get(self, filename: str, version: str | None = None) -> tuple[bytes, str] | None:
        """The bytes and content type of a versioned file, when held (and ``version``,
        the ``?v=`` of the URL, names the same hash).  ``filename``: a bare name of
        JupyterLab's static directory, or an extension's file by
        :func:`~ipydoc.backends.image_static.extension_key`."""
        digest = versioned_hash(filename.rsplit("/", 1)[-1])
        if digest is None or (version is not None and version != digest):
            return None
        for held in self._by_image.values():
            body = held.files.get(filename)
            if body is not None:
                return body, CONTENT_TYPES[filename.rsplit(".", 1)[1]]
        return None

    def saw(self, filename: str) -> None:
        """A running server was asked for ``filename``: JupyterLab loads it at start."""
        if filename in self._learned or len(self._learned) >= MAX_LEARNED:
            return
        if self.get(filename) is not None:
            self._learned[filename] = None

    def startup_files(self) -> list[str]:
        """What the spawn page prefetches: the learned names, else ``main.*.js``."""
        if self._learned:
            return [n for n in self._learned if self.get(n) is not None]
        return sorted(n for held in self._by_image.values() for n in held.files
                      if n.startswith("main.") and n.endswith(".js"))

    def images(self) -> dict[str, str]:
        """Image name -> the id whose files are held (for tests and the CLI)."""
        return {name: held.image_id for name, held in self._by_image.items()}


def url_for(filename: str) -> str:
    """The path under a user's server JupyterLab itself uses for ``filename``."""
    if filename.startswith(EXTENSION_PREFIX):  # extensions/<package>/static/<name>
        return f"lab/{filename}"
    digest = versioned_hash(filename) or ""
    return f"static/lab/{filename}?v={digest}" if filename.endswith(".js") \
        else f"static/lab/{filename}"
