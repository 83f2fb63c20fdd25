"""Host firewall chains of bridges that are gone are removed; those of bridges that exist
stay.  Real ``iptables`` and ``ip6tables`` on this host (root), a real bridge interface as
the bridge that exists; only chains these tests made are asserted on.  Like the isolation
tests, these need root and the firewall tools (.ci/run has both): without them they fail,
they do not skip."""

from __future__ import annotations

import subprocess

import pytest
import pytest_twisted

from ipydoc.backends.docker_network import FAMILIES, HostFirewall, chain_name, teardown_commands

from support import plant_firewall_chain

KEPT = "ipyd-kept0"   # a bridge interface these tests make: its rules must stay
GONE = "ipyd-gone0"   # no such interface: its rules are stale


def rules(family_index: int) -> str:
    return subprocess.run([FAMILIES[family_index].iptables, "-w", "-S"], capture_output=True,
                          text=True, check=True).stdout


@pytest.fixture
def bridges():
    subprocess.run(["ip", "link", "add", KEPT, "type", "bridge"], check=True)
    try:
        plant_firewall_chain(KEPT)
        plant_firewall_chain(GONE)
        yield
    finally:
        subprocess.run(["ip", "link", "del", KEPT], capture_output=True)
        for bridge in (KEPT, GONE):
            for argv in teardown_commands(bridge):
                subprocess.run(argv, capture_output=True)


@pytest_twisted.ensureDeferred
async def test_only_the_chains_of_bridges_that_are_gone_are_removed(bridges) -> None:
    from twisted.internet import reactor

    for i in range(len(FAMILIES)):
        assert f"-N {chain_name(GONE)}" in rules(i)  # planted, as a daemon leaves them
    removed = await HostFirewall(reactor).sweep()
    assert {f"{f.name} {GONE}" for f in FAMILIES} <= set(removed)
    assert not any(KEPT in r for r in removed)
    for i in range(len(FAMILIES)):
        text = rules(i)
        assert chain_name(GONE) not in text  # the chain and the jump to it
        assert f"-N {chain_name(KEPT)}" in text
        assert f"-A INPUT -i {KEPT} -j {chain_name(KEPT)}" in text
    again = await HostFirewall(reactor).sweep()
    assert not any(GONE in r for r in again)  # gone with the first sweep


@pytest_twisted.ensureDeferred
async def test_a_host_without_the_right_to_list_rules_is_left_alone() -> None:
    from twisted.internet import reactor

    calls: list[list[str]] = []

    def refused(argv: list[str], stdin: str | None = None) -> tuple[int, str]:
        calls.append(argv)
        return 4, "Permission denied (you must be root)"

    assert await HostFirewall(reactor, runner=refused).sweep() == []
    assert [c[-1] for c in calls] == ["-S"] * len(FAMILIES)  # listed only, nothing removed
