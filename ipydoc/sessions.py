"""Login sessions: a signed cookie naming a Redis record, revocable at any time."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from twisted.web.iweb import IRequest

from ipydoc.cookies import SESSION_COOKIE, Signer, cookie_header, new_id
from ipydoc.store import Store


@dataclass(frozen=True)
class Session:
    id: str
    user: str
    csrf: str


class Sessions:
    def __init__(self, store_source: Any, secret: bytes, lifetime: int) -> None:
        self._store_source = store_source
        self.signer = Signer(secret, "session")
        self.lifetime = lifetime

    @property
    def store(self) -> Store:
        return self._store_source.store

    async def from_request(self, request: IRequest) -> Session | None:
        session_id = self.signer.unsign(request.getCookie(SESSION_COOKIE.encode()))
        if session_id is None:
            return None
        record = await self.store.get_session(session_id)
        if not record or "user" not in record:
            return None
        return Session(session_id, record["user"], record.get("csrf", ""))

    async def create(self, request: IRequest, user: str) -> Session:
        session = Session(new_id(), user, secrets.token_urlsafe(32))
        await self.store.create_session(session.id, user, session.csrf, self.lifetime)
        request.responseHeaders.addRawHeader(
            b"Set-Cookie",
            cookie_header(SESSION_COOKIE, self.signer.sign(session.id),
                          secure=request.isSecure(), max_age=self.lifetime).encode())
        return session

    async def end(self, request: IRequest, session: Session) -> None:
        await self.store.delete_session(session.id)
        request.responseHeaders.addRawHeader(
            b"Set-Cookie",
            cookie_header(SESSION_COOKIE, "", secure=request.isSecure(), max_age=0).encode())
