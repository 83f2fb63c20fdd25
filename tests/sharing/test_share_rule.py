"""The share records (:mod:`ipydoc.state.shares`) against the embedded redis-server, the
rule (:mod:`ipydoc.access.shares`: owner / rw / view / none, groups, its cache emptied on
every change), the cut of one guest's exchanges to one server (:mod:`ipydoc.proxy.live`)
and the hub map of the share forms."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import pytest_twisted
from twisted.internet import reactor

from ipydoc.access.shares import (
    OWNER,
    RW,
    VIEW,
    ShareError,
    ShareRule,
    add_share,
    remove_all_shares,
    remove_share,
)
from ipydoc.proxy.live import OpenExchanges
from ipydoc.state.keys import shares_key
from ipydoc.state.redis_service import RedisService
from ipydoc.web.hub import URL_MAP
from ipydoc.web.share_pages import SharePages


async def embedded(tmp_path) -> RedisService:
    service = RedisService("", tmp_path, reactor)
    await service.startService()
    return service


@pytest_twisted.ensureDeferred
async def test_records_indexes_and_removal(tmp_path):
    service = await embedded(tmp_path)
    store = service.store
    try:
        assert await store.add_share("alice", "user", "bob", "rw", "test") is True
        assert await store.add_share("alice", "user", "bob", "rw", "test") is False
        assert await store.add_share("alice", "user", "bob", "view", "test") is True
        assert await store.add_share("alice--gpu", "group", "course", "rw", "test") is True
        await store.add_group("course")
        await store.add_member("course", "bob")
        assert await store.share_table("alice") == {"user:bob": "view"}
        assert [(s.server, s.kind, s.guest, s.mode) for s in await store.owner_shares("alice")] \
            == [("alice", "user", "bob", "view"), ("alice--gpu", "group", "course", "rw")]
        assert [(s.server, s.kind) for s in await store.shared_with("bob")] == \
            [("alice", "user"), ("alice--gpu", "group")]
        assert [s.server for s in await store.all_shares()] == ["alice", "alice--gpu"]
        assert (await store.owner_shares("alice"))[0].owner == "alice"
        # an account removed: its shares and the shares to it go
        await store.add_share("carol", "user", "alice", "rw", "test")
        await store.forget_user_shares("alice")
        assert await store.owner_shares("alice") == []
        assert await store.server_shares("carol") == []
        assert await store.shared_with("bob") == []
        assert await store.all_shares() == []
        with pytest.raises(ValueError):
            await store.add_share("alice", "user", "bob", "admin", "test")
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_the_rule_and_its_cache(tmp_path):
    service = await embedded(tmp_path)
    store = service.store
    rule = ShareRule(service)
    heard: list[str] = []
    rule.on_change(heard.append)
    try:
        assert await rule.access("alice", "alice") == OWNER
        assert await rule.access("alice", "alice--gpu") == OWNER
        assert await rule.access("bob", "alice") is None
        assert await rule.access("bob", "Not A Key") is None
        await store.add_share("alice", "user", "bob", "view", "t")
        assert heard == ["alice"]  # the change emptied the cache: seen at once
        assert await rule.access("bob", "alice") == VIEW
        assert await rule.access("bob", "alice--gpu") is None  # per server
        # a group share: the larger mode wins, membership is read each time
        await store.add_group("course")
        await store.add_share("alice", "group", "course", "rw", "t")
        assert await rule.access("bob", "alice") == VIEW
        await store.add_member("course", "bob")
        assert await rule.access("bob", "alice") == RW
        await store.remove_member("course", "bob")
        assert await rule.access("bob", "alice") == VIEW
        await store.remove_share("alice", "user", "bob")
        assert await rule.access("bob", "alice") is None
        # another daemon's change reaches this one as a bus message: the same effect
        await store.redis.hset(shares_key("alice"), "user:carol", '{"mode": "rw"}')
        assert await rule.access("carol", "alice") is None   # cached table, no message yet
        rule._told("shares-changed", "alice")
        assert await rule.access("carol", "alice") == RW
        assert heard[-1] == "alice"
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_share_changes_are_checked_and_recorded(tmp_path):
    service = await embedded(tmp_path)
    store = service.store
    try:
        for name in ("alice", "bob"):
            await store.add_user(name, "hash", False)
        await store.add_group("course")
        share, changed = await add_share(store, "alice", "user", "bob", "rw", "me")
        assert changed and share.mode == "rw"
        _, changed = await add_share(store, "alice", "user", "bob", "rw", "me")
        assert not changed
        for args, status in ((("alice", "user", "nobody", "rw"), 404),
                             (("alice", "group", "nogroup", "rw"), 404),
                             (("alice", "user", "alice", "rw"), 400),
                             (("alice", "user", "bob", "write"), 400),
                             (("alice", "team", "bob", "rw"), 400),
                             (("alice--gpu", "user", "bob", "rw"), 404),
                             (("nobody", "user", "bob", "rw"), 404)):
            with pytest.raises(ShareError) as e:
                await add_share(store, *args, by="me")
            assert e.value.status == status, args
        await add_share(store, "alice", "group", "course", "view", "me")
        assert await remove_share(store, "alice", "user", "bob", "me") is True
        assert await remove_share(store, "alice", "user", "bob", "me") is False
        gone = await remove_all_shares(store, "alice", "me")
        assert [(s.kind, s.guest) for s in gone] == [("group", "course")]
        kinds = [(e["kind"], e["user"], e["detail"]) for e in await store.recent_events(10)]
        assert ("unshare", "alice", "server=alice guest=group:course mode=view by=me") in kinds
        assert ("share", "alice", "server=alice guest=user:bob mode=rw by=me") in kinds
        assert sum(k == "share" for k, _, _ in kinds) == 2  # the unchanged one is not
    finally:
        await service.stopService()


@dataclass(eq=False)
class FakeExchange:
    user: str
    credential: str
    websocket: bool
    revoked: bool = False

    def revoke(self) -> None:
        self.revoked = True


def test_close_on_cuts_one_credential_on_one_server():
    live = OpenExchanges()
    guest_ws = FakeExchange("alice", "cred-bob", True)
    guest_get = FakeExchange("alice", "cred-bob", False)
    guest_own = FakeExchange("bob", "cred-bob", True)
    owner = FakeExchange("alice", "cred-alice", True)
    for e in (guest_ws, guest_get, guest_own, owner):
        live.add(e)
    assert live.credentials_on("alice") == {"cred-bob", "cred-alice"}
    assert live.close_on("cred-bob", "alice", websockets_only=True) == 1
    assert guest_ws.revoked and not guest_get.revoked
    assert live.close_on("cred-bob", "alice") == 1
    assert guest_get.revoked and not guest_own.revoked and not owner.revoked
    assert live.credentials_on("alice") == {"cred-alice"}
    assert live.count("bob") == 1


def test_share_forms_are_on_the_hub_map():
    prefixes = {p: g for p, g in URL_MAP}
    for rule in SharePages.app.url_map.iter_rules():
        prefix = "/" + rule.rule.strip("/").split("/")[0]
        assert prefixes.get(prefix) == "shares", rule.rule
