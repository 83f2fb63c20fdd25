"""The daemon's side of the control channel: answers the AMP commands of
:mod:`ipydoc.control.commands` on the 0600 unix socket (and the optional TLS listener).

Every state-changing command is logged with who asked (the peer's uid on the unix
socket, the certificate's CN over TLS) and most add an event to ``ipydoc:events``.
Names are validated here, where they enter; passwords are hashed in a thread.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from typing import Any, Awaitable, Callable

from twisted.internet import defer
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp

from ipydoc import __version__
from ipydoc.access.login_limits import clear_account
from ipydoc.access.passwords import WeakPassword, check_strength, hash_password_async
from ipydoc.backends.base import BackendError
from ipydoc.control import commands as c
from ipydoc.control.tls import peer_name
from ipydoc.names import InvalidName, validate_name
from ipydoc.state.store import NameReserved

MAX_FIELD = 8 * 1024      # any one string in an answer is clipped to this many characters
MAX_LOG_TAIL = 100_000    # lines


def _clip(item: dict[str, Any]) -> dict[str, Any]:
    return {k: (v[:MAX_FIELD] + "…" if isinstance(v, str) and len(v) > MAX_FIELD else v)
            for k, v in item.items()}


def page_json(items: list[dict[str, Any]]) -> tuple[str, int]:
    """JSON of the longest prefix of ``items`` that fits one page; (json, items taken)."""
    out: list[str] = []
    size = 2
    for item in items:
        text = json.dumps(_clip(item))
        if out and size + len(text) + 1 > c.PAGE_BYTES:
            break
        out.append(text)
        size += len(text) + 1
    return "[" + ",".join(out) + "]", len(out)


def page(items: list[dict[str, Any]], offset: int, limit: int) -> str:
    """JSON of ``items[offset:offset+limit]``, cut short to fit one AMP value."""
    return page_json(items[max(0, offset):max(0, offset) + _limit(limit)])[0]


def _limit(limit: int) -> int:
    return max(1, min(limit, c.MAX_PAGE))


def log_chunk(text: str, offset: int) -> tuple[str, int]:
    """A piece of ``text`` from ``offset`` that encodes to at most PAGE_BYTES; (piece, next)."""
    piece = text[offset:offset + c.PAGE_BYTES]
    while len(piece.encode("utf-8")) > c.PAGE_BYTES:
        piece = piece[:len(piece) * 3 // 4]
    end = offset + len(piece)
    return piece, (end if end < len(text) else -1)


def _name(value: str) -> str:
    try:
        return validate_name(value)
    except InvalidName as e:
        raise c.InvalidInput(f"invalid user name {value!r}: {e}") from None


def _password(value: str) -> str:
    try:
        check_strength(value)
    except WeakPassword as e:
        raise c.InvalidInput(str(e)) from None
    return value


def responder(command: type[amp.Command]) -> Callable[..., Any]:
    """``@responder(Cmd)`` on an ``async def``: run it as a Deferred; backend errors become
    clear control errors instead of AMP's generic "unknown error"."""
    def wrap(fn: Callable[..., Awaitable[dict]]) -> Callable[..., Any]:
        def run(self: ControlProtocol, **kw: Any) -> defer.Deferred[dict]:
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


class ControlProtocol(amp.AMP):
    log = Logger()

    def __init__(self, daemon: Any) -> None:
        super().__init__()
        self.daemon = daemon
        self._logs: dict[str, str] = {}        # ServerLogs snapshots of this connection
        self._wakers: set[defer.Deferred[None]] = set()
        self._closed = False
        self._peer = ""

    # -- plumbing -------------------------------------------------------------------------
    @property
    def store(self) -> Any:
        return self.daemon.redis.store

    @property
    def manager(self) -> Any:
        return self.daemon.manager

    def makeConnection(self, transport: Any) -> None:
        # AMP's own makeConnection logs every connection; one per CLI call is noise.
        self._transportPeer = transport.getPeer()
        self._transportHost = transport.getHost()
        amp.BinaryBoxProtocol.makeConnection(self, transport)

    def connectionLost(self, reason: Any) -> None:
        from OpenSSL import SSL

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
        user = await self.store.get_user(_name(name))
        if user is None:
            reservation = await self.store.get_reservation(name)
            if reservation is not None:
                from ipydoc.control.removal import reserved_message
                raise c.NotFound(f"no user {name}: {reserved_message(name, reservation)}")
            raise c.NotFound(f"no user {name}")
        return user

    async def _server_item(self, name: str, activity: dict[str, float] | None = None) -> dict:
        record = await self.store.get_server(name)
        item = record.public() if record else {
            "name": name, "state": "stopped", "id": "", "url": "", "image": "",
            "started": None, "error": "", "updated": None}
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

    async def _stop_if_running(self, name: str, reason: str) -> bool:
        record = await self.store.get_server(name)
        if not self.manager.is_busy(name) and name not in self.manager.routes and \
                (record is None or record.state in ("stopped", "failed")):
            return False
        await self.manager.stop(name, reason)
        return True

    # -- status ---------------------------------------------------------------------------
    @responder(c.Status)
    async def status(self) -> dict:
        d = self.daemon
        try:
            backend = await d.backend.check()
            backend_ok = True
        except Exception as e:  # noqa: BLE001 - reported, not raised
            backend, backend_ok = str(getattr(e, "message", e)), False
        try:
            redis_ok = await self.store.ping()
            _, users = await self.store.list_users(0, 0)
            servers = await self.store.list_servers()
        except Exception:  # noqa: BLE001
            redis_ok, users, servers = False, None, []
        states: dict[str, int] = {}
        for s in servers:
            states[s.state] = states.get(s.state, 0) + 1
        return {"status": json.dumps({
            "version": __version__, "uptime": round(time.time() - d.started_at, 1),
            "config": d.cfg.path,
            "backend": backend, "backend_ok": backend_ok,
            "redis": d.redis.describe(), "redis_ok": redis_ok,
            "users": users, "running_servers": len(self.manager.routes),
            "servers": states,
            "culler": _culler(d) is not None,
        })}

    # -- users ----------------------------------------------------------------------------
    @responder(c.UserAdd)
    async def user_add(self, name: str, password: str, admin: bool) -> dict:
        _name(name)
        hashed = await hash_password_async(_password(password))
        try:
            added = await self.store.add_user(name, hashed, admin)
        except NameReserved:
            from ipydoc.control.removal import reserved_message
            reservation = await self.store.get_reservation(name) or {}
            raise c.Conflict(reserved_message(name, reservation)) from None
        if not added:
            raise c.Conflict(f"user {name} already exists")
        await self._audit("user-added", name, "admin" if admin else "")
        return {}

    @responder(c.UserRemove)
    async def user_remove(self, name: str, purge: bool) -> dict:
        from ipydoc.control.removal import Removal, kept_text

        user = await self._user(name)
        # Lock the account first, so no login slips in while the rest is undone.
        await self.store.update_user(name, disabled=True)
        revoked = await self.store.revoke_sessions(name)
        stopped = await self._stop_if_running(name, "user removed")
        removal = Removal(self.daemon)
        if purge:
            try:
                data = await removal.purge_data(name)
            except (BackendError, OSError) as e:
                raise c.ControlError(
                    f"user {name} is disabled and the server stopped, but the files could "
                    f"not be deleted: {getattr(e, 'message', e)}; the account is kept, "
                    "try again") from None
            await self._audit("files-purged", name, kept_text(data))
            await self.store.remove_user(name)
            await self._audit("user-removed", name, "files and history deleted")
        else:
            # The name stays reserved while the files exist (ipydoc.control.removal).
            data = await removal.reserve(user, self.peer())
            await self._audit("user-removed", name,
                              f"kept {kept_text(data)}; name reserved until `user purge`")
        return {"result": json.dumps({"removed": name, "sessions_revoked": revoked,
                                      "server_stopped": stopped, "purged": purge,
                                      "reserved": not purge, **data})}

    @responder(c.UserPurge)
    async def user_purge(self, name: str) -> dict:
        from ipydoc.control.removal import AccountExists, Removal, kept_text

        _name(name)
        try:
            data = await Removal(self.daemon).purge_removed(name, self.peer())
        except AccountExists:
            raise c.Conflict(f"{name} is an account, not a removed one: "
                             f"`ipydoc user remove {name} --purge --yes` deletes it with its "
                             "files") from None
        except (BackendError, OSError) as e:
            raise c.ControlError(
                f"the files of {name} could not be deleted: {getattr(e, 'message', e)}; the "
                "name stays reserved, try again") from None
        await self._audit("files-purged", name, kept_text(data))
        return {"result": json.dumps({"purged": name, **data})}

    @responder(c.UserRemovedList)
    async def user_removed_list(self, offset: int, limit: int) -> dict:
        items = await self.store.list_reservations()
        return {"items": page(items, offset, limit), "total": len(items)}

    @responder(c.UserRestore)
    async def user_restore(self, name: str) -> dict:
        from ipydoc.control.removal import AccountExists, NotRestorable, Removal, kept_text

        _name(name)
        try:
            data = await Removal(self.daemon).restore(name)
        except AccountExists:
            raise c.Conflict(f"user {name} exists") from None
        except NotRestorable:
            raise c.Conflict(f"the files of {name} were found without an account (removed by "
                             "an older ipydoc), so there is no account to restore; `ipydoc "
                             f"user purge {name} --yes` deletes them") from None
        if data is None:
            raise c.NotFound(f"{name} is not a removed account whose files are kept "
                             "(nothing to restore)")
        await self._audit("user-restored", name, kept_text(data))
        return {"result": json.dumps(data)}

    @responder(c.UserList)
    async def user_list(self, offset: int, limit: int) -> dict:
        users, total = await self.store.list_users(max(0, offset), _limit(limit))
        servers = {s.name: s for s in await self.store.list_servers()}
        items = []
        for u in users:
            item = u.public()
            s = servers.get(u.name)
            state = s.state if s else "stopped"
            if self.manager.is_starting(u.name):
                state = "starting"
            item["server"] = state
            items.append(item)
        return {"items": page_json(items)[0], "total": total}

    @responder(c.UserShow)
    async def user_show(self, name: str) -> dict:
        user = await self._user(name)
        item = user.public()
        item["server"] = await self._server_item(name)
        item["sessions"] = len(await self.store.list_sessions(name))
        return {"result": json.dumps(item)}

    @responder(c.UserDisable)
    async def user_disable(self, name: str) -> dict:
        user = await self._user(name)
        await self.store.update_user(name, disabled=True)
        revoked = await self.store.revoke_sessions(name)
        stopped = await self._stop_if_running(name, "user disabled")
        if not user.disabled:
            await self._audit("user-disabled", name, f"{revoked} sessions revoked")
        return {"result": json.dumps({"name": name, "disabled": True,
                                      "sessions_revoked": revoked, "server_stopped": stopped})}

    @responder(c.UserEnable)
    async def user_enable(self, name: str) -> dict:
        user = await self._user(name)
        await self.store.update_user(name, disabled=False)
        if user.disabled:
            await self._audit("user-enabled", name)
        return {"result": json.dumps({"name": name, "disabled": False,
                                      "changed": user.disabled})}

    @responder(c.UserSetAdmin)
    async def user_set_admin(self, name: str, admin: bool) -> dict:
        user = await self._user(name)
        await self.store.update_user(name, admin=admin)
        if user.admin != admin:
            await self._audit("user-admin", name, "granted" if admin else "withdrawn")
        return {"result": json.dumps({"name": name, "admin": admin,
                                      "changed": user.admin != admin})}

    @responder(c.UserSetLimits)
    async def user_set_limits(self, name: str, limits: str, clear: str) -> dict:
        from ipydoc.state.store import LIMIT_FIELDS

        await self._user(name)
        try:
            raw = json.loads(limits or "{}")
        except ValueError:
            raise c.InvalidInput("limits must be a JSON object") from None
        if not isinstance(raw, dict):
            raise c.InvalidInput("limits must be a JSON object")
        dropped = tuple(k for k in (clear or "").split(",") if k)
        unknown = (set(raw) | set(dropped)) - set(LIMIT_FIELDS)
        if unknown:
            raise c.InvalidInput(f"unknown limits {', '.join(sorted(unknown))} "
                                 f"(known: {', '.join(LIMIT_FIELDS)})")
        values = {}
        for k, v in raw.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise c.InvalidInput(f"limit {k} must be a number >= 0 (0: no limit)")
            if k == "mem" and 0 < v < 6 * 1024 * 1024:
                raise c.InvalidInput("a memory limit below 6 MiB cannot run a server")
            values[k] = LIMIT_FIELDS[k](v)
        own = await self.store.set_limits(name, values, dropped)
        base = self.manager.limits
        default = {"mem": base.mem_limit, "cpu": base.cpu_limit, "pids": base.pids_limit}
        effective = {k: own.get(k, default[k]) for k in LIMIT_FIELDS}
        await self._audit("user-limits", name, ", ".join(
            f"{k}={'none' if effective[k] is None else effective[k]}" for k in LIMIT_FIELDS))
        return {"result": json.dumps({"name": name, "overrides": own, "effective": effective,
                                      "applies": "at the next start of the server"})}

    @responder(c.UserPasswd)
    async def user_passwd(self, name: str, password: str, keep_sessions: bool) -> dict:
        await self._user(name)
        hashed = await hash_password_async(_password(password))
        await self.store.update_user(name, password=hashed)
        await clear_account(self.store.redis, name)  # the new password works at once
        # A new password shuts out whoever had the old one: their tokens too (issue 12).
        tokens = 0 if keep_sessions else await self.store.revoke_tokens(name)
        revoked = 0 if keep_sessions else await self.store.revoke_sessions(name)
        if tokens:
            await self.daemon.gate.recheck_exchanges()  # what the tokens have open
        await self._audit("user-password", name,
                          f"{revoked} sessions and {tokens} API tokens revoked")
        return {"result": json.dumps({"name": name, "sessions_revoked": revoked,
                                      "tokens_revoked": tokens})}

    # -- servers --------------------------------------------------------------------------
    @responder(c.ServerStart)
    async def server_start(self, name: str, wait: bool) -> dict:
        from ipydoc.servers.manager import StartFailed

        user = await self._user(name)
        if user.disabled:
            raise c.Conflict(f"user {name} is disabled; `ipydoc user enable {name}` first")
        await self._audit("start-requested", name)
        d = defer.Deferred.fromCoroutine(self.manager.start(name))
        if not wait:
            d.addErrback(lambda f: f.trap(StartFailed))
            d.addErrback(lambda f: self.log.failure("start of {name}", f, name=name))
            return {"result": json.dumps(await self._server_item(name))}
        try:
            await d
        except StartFailed as e:
            raise c.ControlError(f"the server of {name} did not start ({e.kind}): "
                                 f"{e.message}"[:4000]) from None
        return {"result": json.dumps(await self._server_item(name))}

    @responder(c.ServerStop)
    async def server_stop(self, name: str) -> dict:
        await self._user(name)
        stopped = await self._stop_if_running(name, "stopped by an admin")
        if stopped:
            self.log.info("control: stopped the server of {name} (by {peer})", name=name,
                          peer=self.peer())
        return {"result": json.dumps({"name": name, "stopped": stopped})}

    @responder(c.ServerList)
    async def server_list(self, offset: int, limit: int) -> dict:
        servers = await self.store.list_servers()
        activity = await self.store.activity()
        chosen = servers[max(0, offset):max(0, offset) + _limit(limit)]
        items = [await self._server_item(s.name, activity) for s in chosen]
        return {"items": page_json(items)[0], "total": len(servers)}

    @responder(c.ServerShow)
    async def server_show(self, name: str) -> dict:
        _name(name)
        record = await self.store.get_server(name)
        user = await self.store.get_user(name)
        if record is None and user is None:
            raise c.NotFound(f"no user or server {name}")
        item = await self._server_item(name)
        try:
            info = await self.daemon.backend.status(name)
        except BackendError as e:
            item["backend"] = {"error": e.message}
        else:
            item["backend"] = None if info is None else {
                "id": info.id[:12], "running": info.running, "url": info.url,
                "image": info.image, "started": info.started_at}
        item["busy"] = self.manager.is_busy(name)
        progress = self.manager.progress.get(name)
        steps = getattr(progress, "steps", None) or []
        if steps:
            last = steps[-1]
            item["progress"] = {"phase": last.phase, "message": last.message}
        return {"result": json.dumps(item)}

    @responder(c.ServerLogs)
    async def server_logs(self, name: str, tail: int, offset: int) -> dict:
        _name(name)
        if offset <= 0 or name not in self._logs:
            info = await self.daemon.backend.status(name)
            if info is None:
                raise c.NotFound(f"{name} has no container (a stopped server's container is "
                                 "removed, and its output with it)")
            lines: int | str = "all" if tail <= 0 else min(tail, MAX_LOG_TAIL)
            # The backend interface has no logs call yet; the Docker backend's API client does.
            self._logs[name] = await self.daemon.backend.api.logs(info.id, tail=lines)
            offset = 0
        text, nxt = log_chunk(self._logs[name], offset)
        if nxt < 0:
            self._logs.pop(name, None)
        return {"text": text, "next": nxt}

    # -- routes and sessions --------------------------------------------------------------
    @responder(c.RouteList)
    async def route_list(self, offset: int, limit: int) -> dict:
        served = {n: r.url for n, r in self.manager.routes.items()}
        stored = await self.store.routes()
        activity = await self.store.activity()
        names = sorted(set(served) | set(stored))
        items = [{"name": n, "target": served.get(n) or stored.get(n),
                  "served": n in served, "stored": n in stored,
                  "last_activity": activity.get(n)} for n in names]
        return {"items": page(items, offset, limit), "total": len(items)}

    @responder(c.SessionList)
    async def session_list(self, user: str, offset: int, limit: int) -> dict:
        sessions = await self.store.list_sessions(_name(user) if user else None)
        return {"items": page(sessions, offset, limit), "total": len(sessions)}

    @responder(c.SessionRevoke)
    async def session_revoke(self, user: str, sid: str) -> dict:
        if bool(user) == bool(sid):
            raise c.InvalidInput("name a user (all their sessions) or one session id")
        if user:
            await self._user(user)
            revoked = await self.store.revoke_sessions(user)
            await self._audit("sessions-revoked", user, f"{revoked} sessions")
            return {"result": json.dumps({"revoked": revoked, "user": user})}
        keys = await self.store.find_sessions(sid.lower())
        if not keys:
            raise c.NotFound(f"no session {sid} (give 8 or more hex digits of its id, as "
                             "`ipydoc session list` shows)")
        if len(keys) > 1:
            raise c.InvalidInput(f"session id {sid} is ambiguous: give more digits")
        owner = await self.store.revoke_session(keys[0]) or ""
        await self._audit("sessions-revoked", owner, f"session {sid[:16]}")
        return {"result": json.dumps({"revoked": 1, "user": owner})}

    # -- culling --------------------------------------------------------------------------
    @responder(c.Cull)
    async def cull(self) -> dict:
        culler = _culler(self.daemon)
        if culler is None:
            raise c.NotAvailable("no idle culler configured: this ipydoc does not stop idle "
                                 "servers yet, so there is nothing to run")
        stopped = await defer.maybeDeferred(culler)
        self.log.info("control: culler run (by {peer})", peer=self.peer())
        return {"result": json.dumps({"stopped": sorted(stopped or [])})}

    # -- events ---------------------------------------------------------------------------
    @responder(c.Events)
    async def events(self, after: str, wait: float, limit: int, user: str, kinds: str) -> dict:
        limit = max(1, min(limit, 500))
        wanted = {k for k in kinds.split(",") if k}

        def keep(e: dict[str, Any]) -> bool:
            return (not user or e.get("user") == user) and (not wanted or e.get("kind") in wanted)

        if not after:
            recent = [e for e in reversed(await self.store.recent_events(limit)) if keep(e)]
            last = await self.store.last_event_id()
            return {"items": page_json(recent[-limit:])[0], "last": last}
        if after == "$":
            after = await self.store.last_event_id()
        if not _is_stream_id(after):
            raise c.InvalidInput(f"not an event id: {after!r}")
        deadline = time.monotonic() + max(0.0, min(wait, c.MAX_WAIT))
        while True:
            batch = await self.store.events_after(after, limit)
            if batch:
                chosen = [e for e in batch if keep(e)]
                text, taken = page_json(chosen)
                if taken < len(chosen):  # cut by size: resume after the last one sent
                    return {"items": text, "last": chosen[taken - 1]["id"]}
                after = batch[-1]["id"]
                if chosen or len(batch) == limit:
                    return {"items": text, "last": after}
            left = deadline - time.monotonic()
            if left <= 0 or self._closed:
                return {"items": "[]", "last": after}
            await self._nap(min(left, 1.0))

    def _nap(self, seconds: float) -> defer.Deferred[None]:
        """Until an event is added in this process, the connection closes, or ``seconds``."""
        d: defer.Deferred[None] = defer.Deferred()
        reactor = self.daemon.reactor

        def wake() -> None:
            if not d.called:
                d.callback(None)
        timer = reactor.callLater(seconds, wake)
        unsubscribe = self.store.on_event_added(wake)
        self._wakers.add(d)

        def done(result: Any) -> Any:
            self._wakers.discard(d)
            unsubscribe()
            if timer.active():
                timer.cancel()
            return result
        return d.addBoth(done)


    # -- history --------------------------------------------------------------------------
    def _history(self) -> Any:
        history = getattr(self.daemon, "history", None)
        if history is None:
            raise c.NotAvailable("history is switched off (history.enabled = false)")
        return history

    @responder(c.HistoryList)
    async def history_list(self, name: str, path: str, offset: int, limit: int) -> dict:
        from ipydoc.history.repo import check_path

        history = self._history()
        await self._user(name)
        if not path:
            items = await history.files(name)
        else:
            try:
                check_path(path)
            except ValueError as e:
                raise c.InvalidInput(str(e)) from None
            items = [v.as_dict() for v in await history.versions(name, path)]
            if not items:
                raise c.NotFound(f"{path} has no history for {name}")
        return {"items": page(items, offset, limit), "total": len(items)}

    @responder(c.HistoryRestore)
    async def history_restore(self, name: str, path: str, rev: str) -> dict:
        from ipydoc.history.repo import check_path
        from ipydoc.history.service import HistoryError, NoSuchVersion

        history = self._history()
        await self._user(name)
        try:
            check_path(path)
        except ValueError as e:
            raise c.InvalidInput(str(e)) from None
        try:
            full = await history.restore(name, path, rev.lower(), by=f"admin ({self.peer()})")
        except NoSuchVersion as e:
            raise c.NotFound(str(e)) from None
        except HistoryError as e:
            raise c.ControlError(str(e)) from None
        self.log.info("control: restored {path} of {name} to {rev} (by {peer})", path=path,
                      name=name, rev=full[:8], peer=self.peer())
        return {"result": json.dumps({"name": name, "path": path, "rev": full})}

    @responder(c.HistoryDeadLetters)
    async def history_dead_letters(self, name: str, offset: int, limit: int) -> dict:
        history = self._history()
        await self._user(name)
        items = [{"op": str((d.get("entry") or {}).get("op", "")),
                  "path": str((d.get("entry") or {}).get("path", "")),
                  "reason": str(d.get("reason", "")), "time": d.get("time"),
                  "attempts": d.get("attempts", 0)}
                 for d in await history.dead_letters(name)]
        return {"items": page(items, offset, limit), "total": len(items)}


def _is_stream_id(text: str) -> bool:
    ms, _, seq = text.partition("-")
    return ms.isdigit() and (seq == "" or seq.isdigit())


def _culler(daemon: Any) -> Callable[[], Any] | None:
    """The idle culler's "run now", if the daemon has one.

    Looked up as ``daemon.culler.cull()`` or ``daemon.manager.cull()``; either returns
    (or fires with) the names whose servers it stopped.
    """
    for owner in (getattr(daemon, "culler", None), getattr(daemon, "manager", None)):
        fn = getattr(owner, "cull", None)
        if callable(fn):
            return fn
    return None


class ControlFactory(Factory):
    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon

    def buildProtocol(self, addr: Any) -> ControlProtocol:
        return ControlProtocol(self.daemon)
