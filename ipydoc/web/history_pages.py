"""The history pages (``/hub/history/NAME``): a user's versioned files, the versions of one
file, a readable diff between two versions (cells for notebooks), and restore.

Access: only NAME's own session (admins included: there is no admin opt-in for other
users' servers, and history is as private as the files).  Restore is a form POST with the
session's CSRF token and a same-site ``Origin``, like every other hub action.  Paths and
versions come from the query string and are checked (:func:`ipydoc.history.repo.check_path`,
hex revisions) before git sees them; git never reads them as options or globs.
"""

from __future__ import annotations

import re
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from klein import Klein
from twisted.web.iweb import IRequest

from ipydoc.access.sessions import Session
from ipydoc.edge.request_args import arg
from ipydoc.history.errors import HistoryError, NoSuchVersion
from ipydoc.history.repo import GitError, check_path
from ipydoc.web.pages import Pages, RedisDown, redis_down

_REV = re.compile(r"^[0-9a-f]{4,40}$")


class HistoryReader(Protocol):
    """What the pages read and do (:mod:`ipydoc.history`); ``pusher`` is ``None`` without
    a remote."""

    pusher: Any

    async def files(self, name: str) -> list[Any]: ...

    async def versions(self, name: str, path: str) -> list[Any]: ...

    async def diff(self, name: str, path: str, a: str, b: str) -> dict[str, Any]: ...

    async def restore(self, name: str, path: str, rev: str, *, by: str) -> str: ...

    async def queued(self, name: str) -> Any: ...

    async def dead_letters(self, name: str) -> list[Any]: ...


def _file_url(name: str, path: str, **extra: str) -> str:
    return f"/hub/history/{name}/file?" + urlencode({"path": path, **extra}, quote_via=quote)


class HistoryPages:
    app = Klein()
    app.handle_errors(RedisDown)(redis_down)

    def __init__(self, pages: Pages, history: HistoryReader | None) -> None:
        self.pages = pages
        self.history = history  # None: versioning is off (history.enabled)

    async def _access(self, request: IRequest, name: str) -> Session | bytes:
        session = await self.pages.owner_session(request, name)
        if not isinstance(session, Session):
            return session
        if self.history is None:
            return self.pages.error(request, 404, "No history", "Versioning is switched off "
                                    "on this site (history.enabled).", session)
        return session

    def _check(self, request: IRequest, session: Session, path: str, *revs: str) -> bytes | None:
        try:
            check_path(path)
        except ValueError:
            return self.pages.error(request, 400, "Bad request", "That is not a file path.",
                                    session)
        if any(r and not _REV.match(r) for r in revs):
            return self.pages.error(request, 400, "Bad request", "That is not a version.",
                                    session)
        return None

    @app.route("/history/<name>", methods=["GET"])
    async def index(self, request: IRequest, name: str) -> bytes:
        session = await self._access(request, name)
        if not isinstance(session, Session):
            return session
        history = self.history
        assert history is not None
        files = await history.files(name)
        store = self.pages.store
        push = await store.history_push_state(name) if history.pusher else None
        return self.pages.render(request, "history.html", user=name, csrf=session.csrf,
                                 page="history", is_admin=await self.pages.is_admin(name),
                                 files=files, queued=await history.queued(name), push=push,
                                 dead=(await history.dead_letters(name))[:10],
                                 remote=history.pusher.url(name) if history.pusher else "",
                                 file_url=lambda p: _file_url(name, p))

    @app.route("/history/<name>/file", methods=["GET"])
    async def file(self, request: IRequest, name: str) -> bytes:
        session = await self._access(request, name)
        if not isinstance(session, Session):
            return session
        assert self.history is not None
        path = arg(request, "path")
        restored = arg(request, "restored")
        bad = self._check(request, session, path, restored)
        if bad is not None:
            return bad
        versions = await self.history.versions(name, path)
        if not versions:
            return self.pages.error(request, 404, "Not found", "That file has no history.",
                                    session)
        return self.pages.render(request, "history_file.html", user=name, csrf=session.csrf,
                                 page="history", is_admin=await self.pages.is_admin(name),
                                 path=path, versions=versions, restored=restored,
                                 running=name in self.pages.manager.routes,
                                 diff_url=f"/hub/history/{name}/diff",
                                 back=f"/hub/history/{name}")

    @app.route("/history/<name>/diff", methods=["GET"])
    async def diff(self, request: IRequest, name: str) -> bytes:
        session = await self._access(request, name)
        if not isinstance(session, Session):
            return session
        assert self.history is not None
        path, a, b = arg(request, "path"), arg(request, "a"), arg(request, "b")
        bad = self._check(request, session, path, a, b)
        if bad is not None:
            return bad
        try:
            result = await self.history.diff(name, path, a, b)
        except NoSuchVersion as e:
            return self.pages.error(request, 404, "Not found", str(e), session)
        return self.pages.render(request, "history_diff.html", user=name, csrf=session.csrf,
                                 page="history", is_admin=await self.pages.is_admin(name),
                                 path=path, a=result["a"], b=result["b"], diff=result["diff"],
                                 file_url=_file_url(name, path), back=f"/hub/history/{name}")

    @app.route("/history/<name>/restore", methods=["POST"])
    async def restore(self, request: IRequest, name: str) -> bytes:
        session = await self._access(request, name)
        if not isinstance(session, Session):
            return session
        assert self.history is not None
        if not self.pages.post_allowed(request, session.csrf):
            return self.pages.expired_form(request, session)
        path, rev = arg(request, "path"), arg(request, "rev")
        bad = self._check(request, session, path, rev)
        if bad is not None or not rev:
            return bad or self.pages.error(request, 400, "Bad request", "Choose a version.",
                                           session)
        try:
            full = await self.history.restore(name, path, rev, by=session.user)
        except NoSuchVersion as e:
            return self.pages.error(request, 404, "Not found", str(e), session)
        except (HistoryError, GitError) as e:
            return self.pages.error(request, 409, "Not restored", str(e), session)
        return self.pages.redirect(request, _file_url(name, path, restored=full[:12]))
