"""The control channel's common ground: the AMP protocol base every command group builds
on (who is asking, the audit log, looking up users and servers), the ``@responder``
decorator, input checks, and the paging that keeps every answer under AMP's 64 KiB.

Every state-changing command is logged with who asked (the peer's uid on the unix
socket, the certificate's CN over TLS) and most add an event to ``ipydoc:events``.
Names are validated here, where they enter; passwords are hashed in a thread.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any, Awaitable, Callable, Iterable

from OpenSSL import SSL
from twisted.internet import defer
from twisted.logger import Logger
from twisted.protocols import amp

from ipydoc.access.passwords import WeakPassword, check_strength
from ipydoc.backends.base import BackendError
from ipydoc.control import commands as c
from ipydoc.control.context import ControlContext
from ipydoc.control.removal import reserved_message
from ipydoc.control.tls import peer_name
from ipydoc.names import InvalidName, split_server_key, validate_name
from ipydoc.servers.manager import ServerManager
from ipydoc.state.store import Store

MAX_FIELD = 8 * 1024      # any one string in an answer is clipped to this many characters


def _clip(item: dict[str, Any]) -> dict[str, Any]:
    return {k: (v[:MAX_FIELD] + "…" if isinstance(v, str) and len(v) > MAX_FIELD else v)
            for k, v in item.items()}


def _fit(items: Iterable[dict[str, Any]]) -> list[str]:
    """The JSON texts of the first ``items`` whose array fits one page (at least one)."""
    out: list[str] = []
    size = 2
    for item in items:
        text = json.dumps(_clip(item))
        if out and size + len(text) + 1 > c.PAGE_BYTES:
            break
        out.append(text)
        size += len(text) + 1
    return out


def page_json(items: list[dict[str, Any]]) -> tuple[str, int]:
    """JSON of the longest prefix of ``items`` that fits one page; (json, items taken)."""
    out = _fit(items)
    return "[" + ",".join(out) + "]", len(out)


def newest_json(items: list[dict[str, Any]]) -> tuple[str, int]:
    """JSON of the longest suffix of ``items`` (oldest first) that fits one page, so the
    newest are the ones kept; (json, items taken)."""
    out = _fit(reversed(items))
    return "[" + ",".join(reversed(out)) + "]", len(out)


def page(items: list[dict[str, Any]], offset: int, limit: int) -> str:
    """JSON of ``items[offset:offset+limit]``, cut short to fit one AMP value."""
    return page_json(items[max(0, offset):max(0, offset) + page_limit(limit)])[0]


def page_limit(limit: int) -> int:
    return max(1, min(limit, c.MAX_PAGE))


def log_chunk(text: str, offset: int) -> tuple[str, int]:
    """A piece of ``text`` from ``offset`` that encodes to at most PAGE_BYTES; (piece, next)."""
    piece = text[offset:offset + c.PAGE_BYTES]
    while len(piece.encode("utf-8")) > c.PAGE_BYTES:
        piece = piece[:len(piece) * 3 // 4]
    end = offset + len(piece)
    return piece, (end if end < len(text) else -1)


def checked_name(value: str) -> str:
    try:
        return validate_name(value)
    except InvalidName as e:
        raise c.InvalidInput(f"invalid user name {value!r}: {e}") from None


def checked_key(value: str) -> tuple[str, str, str]:
    """``(key, owner, server)`` of a server key (``USER`` or ``USER--SERVER``, issue 19);
    InvalidInput naming what is wrong otherwise."""
    try:
        owner, server = split_server_key(value)
    except InvalidName as e:
        raise c.InvalidInput(f"invalid server {value!r}: {e}") from None
    return value, owner, server


def checked_password(value: str) -> str:
    try:
        check_strength(value)
    except WeakPassword as e:
        raise c.InvalidInput(str(e)) from None
    return value


def responder(command: type[amp.Command]) -> Callable[..., Any]:
    """``@responder(Cmd)`` on an ``async def``: run it as a Deferred; backend errors become
    clear control errors instead of AMP's generic "unknown error"."""
    def wrap(fn: Callable[..., Awaitable[dict]]) -> Callable[..., Any]:
        def run(self: ControlBase, **kw: Any) -> defer.Deferred[dict]:
            async def go() -> dict:
                try:
                    return await fn(self, **kw)
                except c.ControlError:
                    raise
                except BackendError as e:
                    raise c.ControlError(e.message[:4000]) from None
                except Exception as e:
                    self.log.failure("control command {cmd} failed", cmd=command.__name__)
                    raise c.ControlError(f"{command.__name__} failed in the daemon: {e}"[:4000]) \
                        from None
            return defer.Deferred.fromCoroutine(go())
        return command.responder(run)
    return wrap


class ControlBase(amp.AMP):
    """One control connection: what every command group shares.  The groups
    (:mod:`~ipydoc.control.users`, :mod:`~ipydoc.control.servers`, ...) subclass it, and
    :class:`~ipydoc.control.server.ControlProtocol` combines them (AMP collects the
    responders of every base class)."""

    log = Logger()

    def __init__(self, context: ControlContext) -> None:
        super().__init__()
        self.context = context
        self._logs: dict[str, str] = {}        # ServerLogs snapshots of this connection
        self._wakers: set[defer.Deferred[None]] = set()
        self._closed = False
        self._peer = ""

    # -- plumbing -------------------------------------------------------------------------
    @property
    def store(self) -> Store:
        return self.context.store

    @property
    def manager(self) -> ServerManager:
        return self.context.manager

    def makeConnection(self, transport: Any) -> None:
        # AMP's own makeConnection logs every connection; one per CLI call is noise.
        self._transportPeer = transport.getPeer()
        self._transportHost = transport.getHost()
        amp.BinaryBoxProtocol.makeConnection(self, transport)

    def connectionLost(self, reason: Any) -> None:
        self._closed = True
        for d in list(self._wakers):
            if not d.called:
                d.callback(None)
        self._logs.clear()
        if reason is not None and reason.check(SSL.Error):
            self.log.warn("control: TLS connection from {peer} refused: {why}",
                          peer=self._transportPeer, why=reason.getErrorMessage())
        amp.BinaryBoxProtocol.connectionLost(self, reason)
        self.transport = None

    def peer(self) -> str:
        """Who sent the commands on this connection, for the log."""
        if not self._peer:
            self._peer = peer_name(self.transport) or self._unix_peer() or "unknown peer"
        return self._peer

    def _unix_peer(self) -> str:
        try:
            sock = self.transport.getHandle()
            if sock.family != socket.AF_UNIX:
                return ""
            pid, uid, _ = struct.unpack("3i", sock.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
            return f"uid {uid} (pid {pid})"
        except (AttributeError, OSError):
            return ""

    async def _audit(self, kind: str, user: str, detail: str = "") -> None:
        self.log.info("control: {kind} {user} {detail}(by {peer})", kind=kind, user=user,
                      detail=f"{detail} " if detail else "", peer=self.peer())
        await self.store.add_event(kind, user, detail)

    async def _user(self, name: str) -> Any:
        user = await self.store.get_user(checked_name(name))
        if user is None:
            reservation = await self.store.get_reservation(name)
            if reservation is not None:
                raise c.NotFound(f"no user {name}: {reserved_message(name, reservation)}")
            raise c.NotFound(f"no user {name}")
        return user

    async def _server_item(self, name: str, activity: dict[str, float] | None = None) -> dict:
        record = await self.store.get_server(name)
        owner, server = split_server_key(name)
        item = record.public() if record else {
            "name": name, "owner": owner, "server": server, "state": "stopped", "id": "",
            "url": "", "image": "", "started": None, "error": "", "updated": None}
        if self.manager.is_starting(name):
            item["state"] = "starting"
        elif item["state"] == "running" and name not in self.manager.routes:
            item["state"] = "stopped"
        if activity is None:
            activity = await self.store.activity()
        item["last_activity"] = activity.get(name)
        if self.manager.routing.subdomain:  # where people open it (``url`` is the backend's)
            item["link"] = self.manager.routing.user_url(name, "lab")
        return item

    async def _stop_all(self, user: str, reason: str) -> bool:
        """Stop every server of ``user`` (the default and the named ones); any stopped?"""
        return bool(await self.manager.stop_all(user, reason))

