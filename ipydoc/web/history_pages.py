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
from typing import Any
from urllib.parse import quote, urlencode

from twisted.web.iweb import IRequest

from ipydoc.access.sessions import Session
from ipydoc.history.repo import GitError
from ipydoc.history.service import HistoryError, NoSuchVersion

_REV = re.compile(r"^[0-9a-f]{4,40}$")


def _arg(request: IRequest, key: str) -> str:
    values = request.args.get(key.encode()) or [b""]
    return values[0].decode("utf-8", errors="replace")


def _file_url(name: str, path: str, **extra: str) -> str:
    return f"/hub/history/{name}/file?" + urlencode({"path": path, **extra}, quote_via=quote)


async def _access(hub: Any, request: IRequest, name: str) -> Session | bytes:
    session = await hub.owner_session(request, name)
    if not isinstance(session, Session):
        return session
    if hub.gate.history is None:
        return hub.error(request, 404, "No history", "Versioning is switched off on this site "
                         "(history.enabled).", session)
    return session


def _check(hub: Any, request: IRequest, session: Session, path: str, *revs: str) -> bytes | None:
    from ipydoc.history.repo import check_path
    try:
        check_path(path)
    except ValueError:
        return hub.error(request, 400, "Bad request", "That is not a file path.", session)
    if any(r and not _REV.match(r) for r in revs):
        return hub.error(request, 400, "Bad request", "That is not a version.", session)
    return None


async def history_index(self: Any, request: IRequest, name: str) -> bytes:
    session = await _access(self, request, name)
    if not isinstance(session, Session):
        return session
    history = self.gate.history
    files = await history.files(name)
    push = await self.store.history_push_state(name) if history.pusher else None
    return self.render(request, "history.html", user=name, csrf=session.csrf, page="history",
                       is_admin=await self.is_admin(name), files=files,
                       queued=await history.queued(name), push=push,
                       dead=(await history.dead_letters(name))[:10],
                       remote=history.pusher.url(name) if history.pusher else "",
                       file_url=lambda p: _file_url(name, p))


async def history_file(self: Any, request: IRequest, name: str) -> bytes:
    session = await _access(self, request, name)
    if not isinstance(session, Session):
        return session
    path = _arg(request, "path")
    restored = _arg(request, "restored")
    bad = _check(self, request, session, path, restored)
    if bad is not None:
        return bad
    versions = await self.gate.history.versions(name, path)
    if not versions:
        return self.error(request, 404, "Not found", "That file has no history.", session)
    return self.render(request, "history_file.html", user=name, csrf=session.csrf,
                       page="history", is_admin=await self.is_admin(name), path=path,
                       versions=versions, restored=restored,
                       running=name in self.manager.routes,
                       diff_url=f"/hub/history/{name}/diff", back=f"/hub/history/{name}")


async def history_diff(self: Any, request: IRequest, name: str) -> bytes:
    session = await _access(self, request, name)
    if not isinstance(session, Session):
        return session
    path, a, b = _arg(request, "path"), _arg(request, "a"), _arg(request, "b")
    bad = _check(self, request, session, path, a, b)
    if bad is not None:
        return bad
    try:
        result = await self.gate.history.diff(name, path, a, b)
    except NoSuchVersion as e:
        return self.error(request, 404, "Not found", str(e), session)
    return self.render(request, "history_diff.html", user=name, csrf=session.csrf,
                       page="history", is_admin=await self.is_admin(name), path=path,
                       a=result["a"], b=result["b"], diff=result["diff"],
                       file_url=_file_url(name, path), back=f"/hub/history/{name}")


async def history_restore(self: Any, request: IRequest, name: str) -> bytes:
    session = await _access(self, request, name)
    if not isinstance(session, Session):
        return session
    if not self.post_allowed(request, session.csrf):
        return self.expired_form(request, session)
    path, rev = _arg(request, "path"), _arg(request, "rev")
    bad = _check(self, request, session, path, rev)
    if bad is not None or not rev:
        return bad or self.error(request, 400, "Bad request", "Choose a version.", session)
    try:
        full = await self.gate.history.restore(name, path, rev, by=session.user)
    except NoSuchVersion as e:
        return self.error(request, 404, "Not found", str(e), session)
    except (HistoryError, GitError) as e:
        return self.error(request, 409, "Not restored", str(e), session)
    return self.redirect(request, _file_url(name, path, restored=full[:12]))


def install(hub_class: Any) -> None:
    """Add the history routes to the hub's Klein app."""
    app = hub_class.app
    app.route("/history/<name>", methods=["GET"])(history_index)
    app.route("/history/<name>/file", methods=["GET"])(history_file)
    app.route("/history/<name>/diff", methods=["GET"])(history_diff)
    app.route("/history/<name>/restore", methods=["POST"])(history_restore)
