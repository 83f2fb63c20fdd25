"""Redis state, the one source of truth: :class:`Store`, every part over one connection.

Each concern has its module (the key schema is in :mod:`ipydoc.state.keys`):

==================================  ======================================================
:mod:`ipydoc.state.users`           accounts (:class:`~ipydoc.state.users.User`)
:mod:`ipydoc.state.reservations`    names held by removed accounts whose files are kept
:mod:`ipydoc.state.identities`      which provider identity owns which account
:mod:`ipydoc.state.sessions`        hub sessions
:mod:`ipydoc.state.tokens`          personal API tokens
:mod:`ipydoc.state.servers`         server records, routes and activity
:mod:`ipydoc.state.events`          the event log
:mod:`ipydoc.state.spawn_settings`  per-user limit overrides and image choice
:mod:`ipydoc.state.groups`          groups: members, admin rights, profiles, default limits
:mod:`ipydoc.state.shares`          shares of a server with users and groups (issue 19 §3)
:mod:`ipydoc.state.history_queue`   saves waiting for a commit, dead letters, mirror state
:mod:`ipydoc.state.user_repos`      users' own history repositories (link, sealed credential)
:mod:`ipydoc.state.login_states`    logins at a provider in progress
:mod:`ipydoc.state.login_limits`    failed-login counters
:mod:`ipydoc.state.handoff`         subdomain handoff tokens and host sessions
:mod:`ipydoc.state.placements`      swarm: the node holding each user's files
:mod:`ipydoc.state.prestarts`       starts from a returning browser's login page
==================================  ======================================================

Callers hold one :class:`Store` and call its operations by name (``store.get_user``,
``store.set_server``...); the few that span several concerns (removing an account,
forgetting a purged one) are here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # txredisapi (which the bus imports) installs the reactor
    from ipydoc.state.bus import Bus
from ipydoc.names import split_server_key
from ipydoc.state.events import Events
from ipydoc.state.fenced import FencedServers
from ipydoc.state.groups import Groups
from ipydoc.state.handoff import Handoffs
from ipydoc.state.history_queue import HistoryQueue
from ipydoc.state.identities import IdentityBindings
from ipydoc.state.keys import (
    ACTIVITY,
    HISTORY_REPOS,
    ROUTES,
    SERVERS,
    USERS,
    fence_key,
    history_keys_pattern,
    history_push_key,
    history_queue_key,
    history_repo_key,
    lease_key,
    limits_key,
    removed_key,
    server_key,
    user_key,
    user_options_key,
    user_servers_key,
)
from ipydoc.state.leases import Leases, history_lease, start_lease
from ipydoc.state.login_limits import LoginFailures
from ipydoc.state.login_states import LoginStates
from ipydoc.state.placements import Placements
from ipydoc.state.prestarts import Prestarts
from ipydoc.state.reservations import Reservations
from ipydoc.state.servers import Servers
from ipydoc.state.sessions import Sessions
from ipydoc.state.shares import Shares
from ipydoc.state.spawn_settings import SpawnSettings
from ipydoc.state.tokens import Tokens
from ipydoc.state.user_repos import UserRepos
from ipydoc.state.users import Users


class Store(Users, Reservations, IdentityBindings, Sessions, Tokens, Servers, Events,
            SpawnSettings, HistoryQueue, UserRepos, LoginStates, LoginFailures, Handoffs,
            Placements, Leases, FencedServers, Groups, Shares, Prestarts):
    """Typed operations on the key schema, over a txredisapi connection pool."""

    def __init__(self, redis: Any, clock: Any = None, bus: Bus | None = None) -> None:
        super().__init__(redis, clock)
        #: Pub/sub to the other daemons of the site (None: a store used alone, in tests).
        self.bus = bus

    def _sessions_ended(self) -> None:
        super()._sessions_ended()
        if self.bus is not None:
            self.bus.tell("sessions-ended")

    def _shares_changed(self, key: str) -> None:
        super()._shares_changed(key)
        if self.bus is not None:
            self.bus.tell("shares-changed", key)

    async def remove_member(self, group: str, name: str) -> bool:
        """Leaving a group ends the shares it gave: the servers shared with the group are
        told changed, so the gate cuts what ``name`` has open there."""
        removed = await super().remove_member(group, name)
        if removed:
            await self._group_shares_changed([group])
        return removed

    async def leave_all_groups(self, name: str) -> None:
        groups = list(await self.user_groups(name))
        await super().leave_all_groups(name)
        await self._group_shares_changed(groups)

    async def remove_group(self, group: str) -> bool:
        """A group removed: the shares with it go too (a group made later under the same
        name does not inherit them)."""
        keys = await self.servers_shared_with_group(group)
        removed = await super().remove_group(group)
        for key in sorted(keys):
            if await self.remove_share(key, "group", group):
                await self.add_event("unshare", split_server_key(key)[0],
                                     f"server={key} guest=group:{group} by=group-remove")
        return removed

    async def _group_shares_changed(self, groups: list[str]) -> None:
        for key in sorted({k for g in groups for k in await self.servers_shared_with_group(g)}):
            self._shares_changed(key)

    async def remove_server_record(self, name: str) -> None:
        """A named server removed: its shares go with it (a server made later under the
        same name is not shared by surprise)."""
        await super().remove_server_record(name)
        for s in await self.remove_server_shares(name):
            await self.add_event("unshare", s.owner, f"server={name} guest={s.kind}:{s.guest} "
                                                     f"mode={s.mode} by=server-remove")

    def sessions_ended_elsewhere(self) -> None:
        """Another daemon ended sessions: empty this daemon's caches (not told again)."""
        super()._sessions_ended()

    async def remove_user(self, name: str, reservation: dict[str, str] | None = None) -> bool:
        """Delete the account, its sessions, tokens, server records (the default and every
        named one), routes and activity.

        The caller stops the server first; user files are not touched here.  With
        ``reservation`` (files are kept) the name's ``removed:{name}`` record is written in
        the same transaction, so the name is never free while the old files exist.
        False if there was no such user (records of a server are still cleaned up).
        """
        existed = await self.user_exists(name)
        await self.leave_all_groups(name)
        await self.forget_user_shares(name)
        await self.revoke_sessions(name)
        await self.revoke_tokens(name)
        named = await self.named_server_keys(name)
        t = await self.redis.multi()
        if reservation is not None:
            t.hmset(removed_key(name), reservation)
        t.delete(user_key(name))
        t.zrem(USERS, name)
        t.delete(server_key(name))
        t.srem(SERVERS, name)
        t.hdel(ROUTES, name)
        t.hdel(ACTIVITY, name)
        for key in named:  # the user's named servers (issue 19)
            t.delete(server_key(key))
            t.srem(SERVERS, key)
            t.hdel(ROUTES, key)
            t.hdel(ACTIVITY, key)
        t.delete(user_servers_key(name))
        t.delete(limits_key(name))
        t.delete(user_options_key(name))
        t.delete(history_repo_key(name))  # the user's own repository link and credential
        t.srem(HISTORY_REPOS, name)
        await t.commit()
        return existed

    async def forget_removed(self, name: str) -> None:
        """After a purge: drop the name's reservation, its history queue and mirror state,
        every other ``history-*:{name}`` key (dead letters and the like), and the identity
        binding; the name is free afterwards."""
        leased = [start_lease(name), history_lease(name)]  # leases and fences of the name
        keys = {removed_key(name), history_queue_key(name), history_push_key(name),
                *(lease_key(w) for w in leased), *(fence_key(w) for w in leased),
                *await self.binding_keys(name), *await self._scan(history_keys_pattern(name))}
        await self.redis.delete(sorted(keys))
        await self.redis.srem(HISTORY_REPOS, name)  # history-repo:{name} went with the pattern

    async def ping(self) -> bool:
        return (await self.redis.ping()) in ("PONG", b"PONG", True)
