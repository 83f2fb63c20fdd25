"""Groups in Redis (:mod:`ipydoc.state.groups`) against the embedded redis-server the
daemon runs: properties, memberships and their sources, the login sync rule, the one
admin rule, and removal of an account or a group."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor

from ipydoc.state.groups import NoSuchGroup
from ipydoc.state.redis_service import RedisService


async def embedded(tmp_path) -> RedisService:
    service = RedisService("", tmp_path, reactor)
    await service.startService()
    return service


@pytest_twisted.ensureDeferred
async def test_group_properties_and_members(tmp_path):
    service = await embedded(tmp_path)
    store = service.store
    try:
        assert await store.add_group("course") is True
        assert await store.add_group("course") is False
        g = await store.set_group("course", admin=False, profiles=["default", "gpu"],
                                  limits={"mem": 2 << 30, "cpu": 0.5})
        assert (g.profiles, g.mem, g.cpu, g.pids) == (("default", "gpu"), 2 << 30, 0.5, None)
        g = await store.set_group("course", clear=("cpu",))
        assert g.cpu is None and g.mem == 2 << 30
        with pytest.raises(NoSuchGroup):
            await store.set_group("nope", admin=True)
        with pytest.raises(NoSuchGroup):
            await store.add_member("nope", "alice")
        assert await store.add_member("course", "alice") is True
        assert await store.add_member("course", "alice") is False
        assert await store.group_members("course") == {"alice": "manual"}
        assert await store.user_groups("alice") == {"course": "manual"}
        assert [x.name for x in await store.groups_of("alice")] == ["course"]
        assert [x.name for x in await store.list_groups()] == ["course"]
        assert await store.remove_member("course", "alice") is True
        assert await store.remove_member("course", "alice") is False
        assert await store.user_groups("alice") == {}
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_login_sync_keeps_manual_memberships(tmp_path):
    service = await embedded(tmp_path)
    store = service.store
    try:
        await store.add_group("manual-one")
        await store.add_member("manual-one", "bob")
        joined, left = await store.sync_provider_groups("bob", "github", ["lab", "staff"])
        assert (sorted(joined), left) == (["lab", "staff"], [])
        assert await store.get_group("lab") is not None  # made by the login
        assert await store.user_groups("bob") == {"manual-one": "manual", "lab": "github",
                                                 "staff": "github"}
        # a group the provider reports that is also manual stays manual
        joined, left = await store.sync_provider_groups("bob", "github", ["manual-one", "lab"])
        assert (joined, left) == ([], ["staff"])
        assert await store.user_groups("bob") == {"manual-one": "manual", "lab": "github"}
        # another provider does not touch github's memberships
        await store.sync_provider_groups("bob", "lab-id", [])
        assert "lab" in await store.user_groups("bob")
        # reporting nothing leaves every github membership, never the manual one
        joined, left = await store.sync_provider_groups("bob", "github", [])
        assert (joined, left) == ([], ["lab"])
        assert await store.user_groups("bob") == {"manual-one": "manual"}
        # a manual add turns a provider's membership into a manual one
        await store.sync_provider_groups("bob", "github", ["lab"])
        await store.add_member("lab", "bob")
        await store.sync_provider_groups("bob", "github", [])
        assert await store.user_groups("bob") == {"manual-one": "manual", "lab": "manual"}
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_admin_rule_account_flag_or_admin_group(tmp_path):
    service = await embedded(tmp_path)
    store = service.store
    try:
        await store.add_user("root", "x", admin=True)
        await store.add_user("carol", "x", admin=False)
        await store.add_user("dave", "x", admin=False)
        await store.add_group("staff")
        await store.set_group("staff", admin=True)
        await store.add_group("course")
        await store.add_member("course", "dave")
        assert await store.is_admin("root") and not await store.is_admin("carol")
        assert not await store.is_admin("dave")
        await store.add_member("staff", "carol")
        assert await store.is_admin("carol")
        assert await store.admins_among(["root", "carol", "dave", "ghost"]) == {"root", "carol"}
        await store.update_user("carol", disabled=True)
        assert not await store.is_admin("carol")  # a disabled account is nobody
        await store.update_user("carol", disabled=False)
        await store.set_group("staff", admin=False)
        assert not await store.is_admin("carol")
        assert not await store.is_admin("ghost")
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_removing_a_group_or_an_account_drops_the_memberships(tmp_path):
    service = await embedded(tmp_path)
    store = service.store
    try:
        await store.add_user("erin", "x", admin=False)
        for g in ("a", "b"):
            await store.add_group(g)
            await store.add_member(g, "erin")
        assert await store.remove_group("a") is True
        assert await store.remove_group("a") is False
        assert await store.user_groups("erin") == {"b": "manual"}
        assert "a" not in [g.name for g in await store.list_groups()]
        await store.remove_user("erin")
        assert await store.user_groups("erin") == {}
        assert await store.group_members("b") == {}
    finally:
        await service.stopService()
