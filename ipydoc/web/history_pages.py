"""The history pages (``/hub/history/NAME``): a user's versioned files (deleted ones with a
restore button), the versions of one file (followed through renames), a readable diff
between two versions (cells for notebooks), restore, and downloads: any version as the
file itself (``/raw``) and the whole history as a git bundle (``/bundle``).

Downloads are the user's own content: always ``Content-Disposition: attachment`` with
``nosniff`` and a sandboxing CSP, never rendered inline in the hub's origin.  The bundle
is streamed from a temp file (:meth:`ipydoc.history.reader.HistoryReader.bundle`).

Access: only NAME's own session (admins included: there is no admin opt-in for other
users' servers, and history is as private as the files).  Restore is a form POST with the
session's CSRF token and a same-site ``Origin``, like every other hub action.  Paths and
versions come from the query string and are checked (:func:`ipydoc.history.repo.check_path`,
hex revisions) before git sees them; git never reads them as options or globs.
"""

from __future__ import annotations

import mimetypes
import re
from typing import IO, Any, Protocol
from urllib.parse import quote, urlencode

from klein import Klein
from twisted.logger import Logger
from twisted.protocols.basic import FileSender
from twisted.web.iweb import IRequest

from ipydoc.access.sessions import Session
from ipydoc.edge.request_args import arg
from ipydoc.history.errors import HistoryError, NoSuchVersion
from ipydoc.history.repo import GitError, check_path
from ipydoc.web.pages import Pages, RedisDown, redis_down

_REV = re.compile(r"^[0-9a-f]{4,40}$")


class ReadSide(Protocol):
    """The downloads (:class:`ipydoc.history.reader.HistoryReader`)."""

    async def raw(self, name: str, path: str, rev: str) -> tuple[str, bytes]: ...

    async def bundle(self, name: str) -> tuple[IO[bytes], int, str]: ...


class HistoryReader(Protocol):
    """What the pages read and do (:mod:`ipydoc.history`); ``pusher`` is ``None`` without
    a remote."""

    pusher: Any
    reader: ReadSide

    async def files(self, name: str) -> list[Any]: ...

    async def versions(self, name: str, path: str) -> list[Any]: ...

    async def diff(self, name: str, path: str, a: str, b: str) -> dict[str, Any]: ...

    async def restore(self, name: str, path: str, rev: str, *, by: str) -> str: ...

    async def queued(self, name: str) -> Any: ...

    async def dead_letters(self, name: str) -> list[Any]: ...


def _file_url(name: str, path: str, **extra: str) -> str:
    return f"/hub/history/{name}/file?" + urlencode({"path": path, **extra}, quote_via=quote)


def _raw_url(name: str, path: str, rev: str) -> str:
    return f"/hub/history/{name}/raw?" + urlencode({"path": path, "rev": rev}, quote_via=quote)


mimetypes.add_type("application/x-ipynb+json", ".ipynb")

#: Headers of every download: a file to save, never a page of the hub's origin.
DOWNLOAD_HEADERS = {
    b"X-Content-Type-Options": b"nosniff",
    b"Content-Security-Policy": b"sandbox; default-src 'none'",
    b"Cache-Control": b"no-store",
    b"Referrer-Policy": b"same-origin",
    b"X-Frame-Options": b"DENY",
}


def attachment(filename: str) -> bytes:
    """``Content-Disposition: attachment`` naming ``filename`` (RFC 6266: an ASCII
    fallback and the UTF-8 name)."""
    ascii_name = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_"
                         for c in filename) or "download"
    return (f'attachment; filename="{ascii_name}"; '
            f"filename*=UTF-8''{quote(filename, safe='')}").encode()


def content_type(path: str) -> bytes:
    kind, encoding = mimetypes.guess_type(path, strict=False)
    if not kind or encoding:
        return b"application/octet-stream"
    return (kind + ("; charset=utf-8" if kind.startswith("text/") else "")).encode()


class HistoryPages:
    app = Klein()
    log = Logger()
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
        deleted = [f for f in files if not f["present"]]
        files = [f for f in files if f["present"]]
        store = self.pages.store
        push = await store.history_push_state(name) if history.pusher else None
        own = getattr(history, "user_repos", None)  # issue 18: the user's own repository
        own_repo = await own.state(name) if own is not None else None
        return self.pages.render(request, "history.html", user=name, csrf=session.csrf,
                                 own_repo=own_repo, own_repo_url=f"/hub/repository/{name}",
                                 page="history", is_admin=await self.pages.is_admin(name),
                                 files=files, deleted=deleted, push=push,
                                 running=name in self.pages.manager.routes,
                                 queued=await history.queued(name),
                                 dead=(await history.dead_letters(name))[:10],
                                 remote=history.pusher.url(name) if history.pusher else "",
                                 file_url=lambda p: _file_url(name, p),
                                 raw_url=lambda p, r: _raw_url(name, p, r),
                                 bundle_url=f"/hub/history/{name}/bundle")

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
                                 raw_url=lambda p, r: _raw_url(name, p, r),
                                 present=versions[0].change != "D",
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

    @app.route("/history/<name>/raw", methods=["GET"])
    async def raw(self, request: IRequest, name: str) -> bytes:
        """One version as the file itself, to save (never shown inline)."""
        session = await self._access(request, name)
        if not isinstance(session, Session):
            return session
        assert self.history is not None
        path, rev = arg(request, "path"), arg(request, "rev")
        bad = self._check(request, session, path, rev)
        if bad is not None or not rev:
            return bad or self.pages.error(request, 400, "Bad request", "Choose a version.",
                                           session)
        try:
            at, data = await self.history.reader.raw(name, path, rev)
        except NoSuchVersion as e:
            return self.pages.error(request, 404, "Not found", str(e), session)
        for k, v in DOWNLOAD_HEADERS.items():
            request.setHeader(k, v)
        request.setHeader(b"Content-Type", content_type(at))
        request.setHeader(b"Content-Disposition", attachment(at.rsplit("/", 1)[-1]))
        return data

    @app.route("/history/<name>/bundle", methods=["GET"])
    async def bundle(self, request: IRequest, name: str) -> bytes | None:
        """The whole history as a git bundle (``git clone FILE``), streamed from disk."""
        session = await self._access(request, name)
        if not isinstance(session, Session):
            return session
        assert self.history is not None
        try:
            f, size, _sha = await self.history.reader.bundle(name)
        except NoSuchVersion:
            return self.pages.error(request, 404, "Not found", "There is no history yet.",
                                    session)
        try:
            for k, v in DOWNLOAD_HEADERS.items():
                request.setHeader(k, v)
            request.setHeader(b"Content-Type", b"application/x-git-bundle")
            request.setHeader(b"Content-Length", str(size).encode())
            request.setHeader(b"Content-Disposition", attachment(f"{name}-history.bundle"))
            await FileSender().beginFileTransfer(f, request)
        except Exception as e:  # noqa: BLE001 - the client went away mid-transfer
            self.log.info("history: bundle of {name} not sent whole: {e}", name=name, e=e)
        finally:
            f.close()
        return None
