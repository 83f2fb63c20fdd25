"""Each user's own JupyterLab page, kept to be sent while their server starts (issue 15 §2).

A cold login waits for the container and Jupyter to start (about a second) and only then
can JupyterLab's front end boot (about two).  The front end needs the lab page (its HTML
with ``page_config``) first, and that page is the user's server's own: base URL, the
extensions in their home, their settings paths.  So it is learned per *server* from the
server itself, never shared: when a browser opens ``lab`` of a running server, the daemon
fetches the same page a few seconds later with the server's token (bounded in bytes and
time: the server is hostile) and keeps it, token scrubbed, in memory.  The next time that
server starts, the access ladder (step 5) sends this copy at once and JupyterLab boots
while the container starts; its API calls wait for the start (``spawn.start_wait``).

A kept page is sent only when nothing it depends on has changed: the same account (its
``created`` time: a new user of a recycled name gets nothing of the old one) and the
same image *id* (:mod:`ipydoc.servers.static_cache` knows the current id), and only for
the page ``lab`` itself (no ``tree/...`` path, no query).  Changes inside the user's home
made since the last page view (an extension installed, then the server stopped without a
reload) show at the next reload; after every start that used a kept page it is fetched
again, and a difference is logged and counted (``ipydoc_early_lab_pages_total``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import Counter
from twisted.internet import defer
from twisted.logger import Logger

from ipydoc.backends.base import BackendError
from ipydoc.proxy.gate import Reply
from ipydoc.servers.routes import Route
from ipydoc.servers.static_cache import StaticCache
from ipydoc.servers.wait_start import wait_for_phase, wait_for_start

#: A lab page larger than this is not kept (JupyterLab's is about 4 KiB).
MAX_PAGE = 256 * 1024
#: The server's page is fetched this long after a browser opened it (off its boot path).
LEARN_DELAY = 5.0
FETCH_TIMEOUT = 10.0
#: How long a browser's navigation waits for the start to leave the queue (else: the
#: start page, which shows the queue).
PAGE_WAIT = 5.0
#: The entry bundle the page names (it must be in the image's static cache).
MAIN_BUNDLE = re.compile(rb'src="[^"]*/static/lab/(main\.[0-9a-f]{16,40}\.js)(?:\?v=[0-9a-f]+)?"')

STORE_ID = re.compile(rb'"store_id": \d+')

EARLY = Counter("ipydoc_early_lab_pages_total",
                "Kept lab pages: sent while a server started, and how the page the server "
                "gave afterwards compared", ["outcome"])


@dataclass(frozen=True)
class LabPage:
    """A server's lab page as the browser would get it (token removed)."""

    body: bytes
    csp: str            # the server's Content-Security-Policy header ("" if none)
    image_id: str       # the image the server ran
    created: float      # the account's creation time
    learned: float


class Store(Protocol):
    """What learning and sending need: the server's record and the account."""

    async def get_server(self, name: str) -> Any: ...

    async def get_user(self, name: str) -> Any: ...


class LabPages:
    """The kept lab page of each server (in memory, one per server key)."""

    log = Logger()

    def __init__(self, reactor: Any, fetcher: Any, static: StaticCache) -> None:
        """``fetcher``: the bounded client for users' servers (:mod:`ipydoc.proxy.fetch`);
        ``static``: the image cache (it knows each image's current id and bundles)."""
        self.reactor = reactor
        self.fetcher = fetcher
        self.static = static
        self._pages: dict[str, LabPage] = {}
        self._learning: set[str] = set()

    def page(self, name: str, image_id: str, created: float) -> LabPage | None:
        """``name``'s kept page, when it was learned for this image id and account."""
        held = self._pages.get(name)
        if held is None or held.image_id != image_id or held.created != created:
            return None
        return held

    async def image_id(self, image: str) -> str | None:
        """``image``'s current id, when the image cache holds its files (one inspect; a
        new id's files are read in the background, and until then: None)."""
        try:
            current = await self.static.reader.image_id(image)
        except BackendError:  # the engine is away: no kept page (the start will say why)
            return None
        if current is None or self.static.images().get(image) != current:
            self.static.refresh_soon([image])
            return None
        return current

    # -- learning -----------------------------------------------------------------------
    def learn_soon(self, store: Store, name: str, owner: str,
                   route_of: Callable[[], Route | None], base_url: str,
                   delay: float = LEARN_DELAY, served: LabPage | None = None) -> None:
        """Fetch ``name``'s lab page from its server in ``delay`` seconds (one fetch per
        server at a time).  ``served``: the kept page a browser just got, to compare."""
        if name in self._learning:
            return
        self._learning.add(name)
        d = defer.Deferred.fromCoroutine(
            self._learn(store, name, owner, route_of, base_url, delay, served))
        d.addErrback(lambda f: self.log.failure("learning {name}'s lab page", f, name=name))
        d.addBoth(lambda _: self._learning.discard(name))

    async def _learn(self, store: Store, name: str, owner: str,
                     route_of: Callable[[], Route | None], base_url: str, delay: float,
                     served: LabPage | None) -> None:
        if delay > 0:
            await _sleep(self.reactor, delay)
        route = route_of()
        server = await store.get_server(name)
        user = await store.get_user(owner)
        if route is None or route.paused or server is None or user is None \
                or not server.image:
            return  # stopped meanwhile
        image_id = await self.image_id(server.image)
        if not image_id:
            return
        try:
            r = await self.fetcher.get(f"{route.url}{base_url}lab", max_body=MAX_PAGE,
                                       timeout=FETCH_TIMEOUT,
                                       headers={"Authorization": f"token {route.token}",
                                                "Accept": "text/html"})
        except Exception as e:  # noqa: BLE001 - a hostile or slow answer: nothing kept
            self.log.info("lab page of {name} not kept: {e}", name=name, e=e)
            return
        ctype = (r.header(b"content-type") or b"").lower()
        body = r.body.replace(route.token.encode(), b"") if route.token else r.body
        if r.code != 200 or not ctype.startswith(b"text/html") or b"</head>" not in body \
                or MAIN_BUNDLE.search(body) is None:
            self._pages.pop(name, None)
            return
        csp = (r.header(b"content-security-policy") or b"").decode("latin-1")
        if "\r" in csp or "\n" in csp:
            csp = ""
        held = self._pages.get(name)
        self._pages[name] = LabPage(body, csp, image_id, user.created, time.time())
        if held is None or comparable(held.body) != comparable(body) \
                or held.image_id != image_id:
            self.log.info("kept the lab page of {name} ({n} bytes)", name=name, n=len(body))
        if served is not None:
            same = comparable(served.body) == comparable(body) and served.csp == csp
            EARLY.labels("same" if same else "changed").inc()
            if not same:
                self.log.info("the kept lab page of {name} had changed; kept the new one",
                              name=name)

    # -- sending ------------------------------------------------------------------------
    async def early_reply(self, manager: Any, name: str, owner: str, start_page: str,
                          progress_url: str, give_up: float) -> Reply | None:
        """The kept page for a browser opening ``lab`` of ``name``'s starting server, or
        None (nothing kept, kept for another image or account, or the start did not
        leave the queue within :data:`PAGE_WAIT`).  The page gets a small script that
        follows the start and goes to ``start_page`` when it fails (or after
        ``give_up`` seconds without getting ready): the start page says why."""
        step = await wait_for_phase(manager, name, ("creating", "starting", "waiting"),
                                    PAGE_WAIT)
        if step is None or step.final:
            return None
        server = await manager.store.get_server(name)
        user = await manager.store.get_user(owner)
        if server is None or not server.image or user is None:
            return None
        image_id = await self.image_id(server.image)
        page = self.page(name, image_id, user.created) if image_id else None
        bundle = main_bundle(page) if page is not None else None
        if page is None or bundle is None or self.static.get(bundle) is None:
            return None
        EARLY.labels("sent").inc()
        headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
        if page.csp:
            headers["Content-Security-Policy"] = page.csp
        body = with_start_watch(page.body, progress_url, start_page, give_up)
        base_url = manager.base_url(name)
        d = defer.Deferred.fromCoroutine(wait_for_start(manager, name, FETCH_TIMEOUT * 30))
        d.addCallback(lambda _: self.learn_soon(
            manager.store, name, owner, lambda: manager.routes.get(name), base_url,
            served=page))
        return Reply(200, body, "text/html; charset=UTF-8", headers)


#: Follows the start (the hub's progress stream) from the kept page: on failure, or
#: when the start is not ready in time, the browser goes to the start page.
WATCH = """<script>(function(){var c=%s;var s=new EventSource(c.progress);function go(){s.close();window.location.replace(c.start);}var t=setTimeout(go,c.ms);s.onmessage=function(e){var st=JSON.parse(e.data);if(st.ready){clearTimeout(t);s.close();}else if(st.failed||st.phase==="stopped"){clearTimeout(t);go();}};})();</script>"""


def with_start_watch(body: bytes, progress_url: str, start_page: str, give_up: float) -> bytes:
    """``body`` with :data:`WATCH` just before ``</head>``."""
    config = json.dumps({"progress": progress_url, "start": start_page,
                         "ms": int(give_up * 1000)})
    for raw, safe in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        config = config.replace(raw, safe)
    script = (WATCH % config).encode()
    at = body.index(b"</head>")
    return body[:at] + script + body[at:]


def comparable(body: bytes) -> bytes:
    """``body`` without ``store_id``: Jupyter counts the pages its process rendered."""
    return STORE_ID.sub(b'"store_id": 0', body)


def main_bundle(page: LabPage) -> str | None:
    """The entry bundle's file name the page loads."""
    m = MAIN_BUNDLE.search(page.body)
    return m.group(1).decode("ascii") if m else None


async def _sleep(reactor: Any, seconds: float) -> None:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    await d
