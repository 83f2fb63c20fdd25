"""Servers and routes: ``server:{key}``, ``servers``, ``user-servers:{name}``, ``routes``;
and ``activity``.

A server is named by its server key (:func:`ipydoc.names.server_key`: the user name for
the default server, ``NAME--SERVER`` for a named one).  A server's record and its route
change together in one MULTI/EXEC, so a reader never sees a route without a running
server or the other way round; a named server's key joins its owner's index
``user-servers:{name}`` in the same step, so :meth:`Servers.servers_of` is one script
call, not a scan.  ``activity`` (last proxied traffic per server) is what the culler reads
to stop idle servers.

Reads of many records (:meth:`Servers.list_servers`, :meth:`Servers.get_servers`: the
reconcile at start-up, the metrics snapshot every few seconds, admin listings) go in one
pipeline per ``PIPELINE_BATCH`` names: one round trip, not one per server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet import defer

from ipydoc.names import split_server_key
from ipydoc.state.connection import StoreBase, as_float
from ipydoc.state.keys import ACTIVITY, ROUTES, SERVERS, server_key, user_servers_key

SERVER_STATES = ("starting", "running", "paused", "stopping", "stopped", "failed")
#: States in which the server has a route (``paused``: frozen, resumed by its first request).
ROUTED_STATES = ("running", "paused")
#: Records read per pipeline (one write, one round trip) in the many-record reads.
PIPELINE_BATCH = 500
#: name, state, name, state, ... of every record in ``servers`` (ARGV[1]: the key prefix).
STATES_SCRIPT = """
local out = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local state = redis.call('HGET', ARGV[1] .. name, 'state')
  if state then out[#out + 1] = name; out[#out + 1] = state end
end
return out
"""
#: key, fields, key, fields, ... of a user's servers: the default (KEYS[2]) first, then
#: the named ones of the index KEYS[1], sorted (ARGV[1]: the record prefix).
SERVERS_OF_SCRIPT = """
local out = {}
local function add(key)
  local h = redis.call('HGETALL', ARGV[1] .. key)
  if #h > 0 then out[#out + 1] = key; out[#out + 1] = h end
end
add(KEYS[2])
local named = redis.call('SMEMBERS', KEYS[1])
table.sort(named)
for _, key in ipairs(named) do add(key) end
return out
"""


@dataclass(frozen=True)
class Server:
    name: str
    state: str
    id: str = ""
    url: str = ""
    token: str = ""
    image: str = ""
    started: float | None = None
    error: str = ""
    updated: float | None = None
    paused_since: float | None = None   # set while ``paused`` (issue 15)
    idle_since: float | None = None     # while paused: the last activity before the pause
    profile: str = ""                   # the profile it was started with (issue 19)

    @property
    def owner(self) -> str:
        """The user this server belongs to (``name`` is its server key)."""
        return split_server_key(self.name)[0]

    @property
    def server(self) -> str:
        """The server's name: "" for the user's default server."""
        return split_server_key(self.name)[1]

    def public(self) -> dict[str, Any]:
        """What may be shown to people: everything but the token."""
        return {"name": self.name, "owner": self.owner, "server": self.server,
                "state": self.state, "id": self.id[:12], "url": self.url,
                "image": self.image, "started": self.started, "error": self.error,
                "updated": self.updated, "paused_since": self.paused_since,
                "profile": self.profile}


class Servers(StoreBase):
    async def get_server(self, name: str) -> Server | None:
        return _server(name, await self.redis.hgetall(server_key(name)))

    async def _read_many(self, names: list[str]) -> list[Server]:
        """The records of ``names`` that have one, in order, read in pipelines."""
        found: list[Server] = []
        for start in range(0, len(names), PIPELINE_BATCH):
            batch = names[start:start + PIPELINE_BATCH]
            pipe = await self.redis.pipeline()
            for name in batch:
                pipe.hgetall(server_key(name))
            try:
                answers = await pipe.execute_pipeline()
            except defer.FirstError as e:
                raise e.subFailure.value from None
            found.extend(s for s in map(_server, batch, answers) if s is not None)
        return found

    async def set_server(self, name: str, state: str, *, route: bool = False,
                         **fields_: Any) -> None:
        """Write a server's state (and fields) and add or drop its route, atomically.

        ``route=True`` publishes ``fields_['url']`` as the route; any other state drops it.
        Fields not given keep their stored value, except that leaving ``running`` clears
        the token, so a stale token is never injected.
        """
        if state not in SERVER_STATES:
            raise ValueError(f"unknown server state {state!r}")
        values = {k: ("" if v is None else (repr(v) if isinstance(v, float) else str(v)))
                  for k, v in fields_.items()}
        values["state"] = state
        values["updated"] = repr(self._now())
        key = server_key(name)
        owner, server = split_server_key(name)
        t = await self.redis.multi()
        t.hmset(key, values)
        t.sadd(SERVERS, name)
        if server:
            t.sadd(user_servers_key(owner), name)
        if route:
            t.hset(ROUTES, name, values["url"])
        else:
            t.hdel(ROUTES, name)
        if state in ("stopped", "failed"):
            t.hdel(key, "token")
            t.hdel(key, "url")
        if state != "paused":
            t.hdel(key, ["paused_since", "idle_since"])
        await t.commit()

    async def servers_of(self, user: str) -> list[Server]:
        """Every server record of ``user``: the default one first, then the named ones by
        name (one script call)."""
        flat = await self._eval(SERVERS_OF_SCRIPT, [user_servers_key(user), user],
                                server_key(""))
        found = (_server(k, dict(zip(h[::2], h[1::2]))) for k, h in zip(flat[::2], flat[1::2]))
        return [s for s in found if s is not None]

    async def named_server_keys(self, user: str) -> list[str]:
        """The keys in ``user``'s index of named servers (sorted)."""
        return sorted(await self.redis.smembers(user_servers_key(user)))

    async def remove_server_record(self, name: str) -> None:
        """Forget the server ``name``: its record, route, activity and index entries, in
        one MULTI (the caller made sure it does not run; files are not touched)."""
        owner, _ = split_server_key(name)
        t = await self.redis.multi()
        t.delete(server_key(name))
        t.srem(SERVERS, name)
        t.srem(user_servers_key(owner), name)
        t.hdel(ROUTES, name)
        t.hdel(ACTIVITY, name)
        await t.commit()

    async def add_server_event(self, kind: str, name: str, detail: str = "") -> None:
        """An event about the server ``name`` (a server key): ``user`` is its owner; the
        detail of a named server's event starts with ``server NAME:``."""
        owner, server = split_server_key(name)
        if server:
            detail = f"server {server}: {detail}" if detail else f"server {server}"
        await self.add_event(kind, owner, detail)  # type: ignore[attr-defined]

    async def list_servers(self) -> list[Server]:
        return await self._read_many(sorted(await self.redis.smembers(SERVERS)))

    async def server_states(self) -> dict[str, str]:
        """Every server record's state, in one Lua call (one reply, not one per record:
        the metrics snapshot every few seconds and the reconcile's sweep need no more)."""
        flat = await self._eval(STATES_SCRIPT, [SERVERS], server_key(""))
        return dict(zip(flat[::2], flat[1::2]))

    async def get_servers(self, names: list[str]) -> dict[str, Server]:
        """The server records of ``names`` that have one (pipelined)."""
        return {s.name: s for s in await self._read_many(list(names))}

    async def routes(self) -> dict[str, str]:
        return dict(await self.redis.hgetall(ROUTES))

    # -- activity (the culler's input) -------------------------------------------------
    async def record_activity(self, stamps: dict[str, float]) -> None:
        if stamps:
            await self.redis.hmset(ACTIVITY, {k: repr(v) for k, v in stamps.items()})

    async def activity(self) -> dict[str, float]:
        return {k: float(v) for k, v in (await self.redis.hgetall(ACTIVITY)).items()}

    async def last_activity(self, name: str) -> float | None:
        return as_float(await self.redis.hget(ACTIVITY, name))


def _server(name: str, h: dict[str, str] | None) -> Server | None:
    """A record from its stored hash (None when there is none)."""
    if not h:
        return None
    return Server(name, h.get("state", "stopped"), h.get("id", ""), h.get("url", ""),
                  h.get("token", ""), h.get("image", ""), as_float(h.get("started")),
                  h.get("error", ""), as_float(h.get("updated")),
                  as_float(h.get("paused_since")), as_float(h.get("idle_since")),
                  h.get("profile", ""))
