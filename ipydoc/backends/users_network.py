"""The users' network (``isolate=True``): ensured, recreated when its settings changed, and
the running servers moved onto it at daemon start.

It is a bridge where containers cannot reach each other, the host only on the ports
allowed (:mod:`ipydoc.backends.docker_network`), and the outside only with
``egress="allow"``.  Servers an older ipydoc started elsewhere (the default bridge, with a
published port) are moved onto it without stopping them; one that cannot be moved is
stopped (files kept), never left reachable.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredLock
from twisted.logger import Logger

from ipydoc.backends.base import BackendError
from ipydoc.backends.docker_api import DockerAPI
from ipydoc.backends.docker_body import MANAGED_LABEL, ContainerBody, key_from_labels
from ipydoc.backends.docker_network import ICC_OPTION, NETWORK_LABEL, HostFirewall, bridge_interface

log = Logger()


class UsersNetwork:
    """The Docker network ``network`` as the configuration wants it, with its host
    firewall (``firewall``: None when the engine is on another machine).  ``stop(user)``
    stops a server that could not be moved onto it."""

    def __init__(self, api: DockerAPI, network: str, egress: str, firewall: HostFirewall | None,
                 body: ContainerBody, stop: Callable[[str], Awaitable[None]]) -> None:
        self.api = api
        self.network = network
        self.egress = egress
        self.firewall = firewall
        self.body = body
        self._stop = stop
        self._lock = DeferredLock()
        self._firewalled: str | None = None  # the bridge whose host rules are in place
        self._swept = False  # rules of bridges gone before this daemon started removed

    def _labels(self) -> dict[str, str]:
        return {**self.body.extra_labels, MANAGED_LABEL: "1", NETWORK_LABEL: "users"}

    def _owns(self, net: dict) -> bool:
        labels = net.get("Labels") or {}
        return all(labels.get(k) == v for k, v in self._labels().items())

    def _problem(self, net: dict) -> str | None:
        """Why ``net`` does not keep users apart as configured, or None."""
        if net.get("Driver") != "bridge":
            return f"is a {net.get('Driver')!r} network, not a bridge"
        if (net.get("Options") or {}).get(ICC_OPTION) != "false":
            return f"lets its containers reach each other ({ICC_OPTION} is not false)"
        if bool(net.get("Internal")) != (self.egress == "deny"):
            return ('is internal (no way out) but docker.egress = "allow"' if net.get("Internal")
                    else 'routes to the outside but docker.egress = "deny"')
        return None

    async def ensure(self) -> dict:
        """The users' network as configured: created if missing, recreated if it is ours
        and set up differently (e.g. ``egress`` changed), refused if it is someone else's
        and does not isolate; its host firewall installed.  One inspect when all is in
        place, so every start calls it (a network removed under us comes back)."""
        async with self._lock:
            net = await self.api.inspect_network(self.network)
            if net is None:
                return await self._create()
            problem = self._problem(net)
            if problem and not self._owns(net):
                raise BackendError(
                    "failed", f"the Docker network {self.network} {problem}; ipydoc did not "
                    f"create it and leaves it alone: remove it, or set docker.network to "
                    f"another name")
            if problem:
                return await self._recreate(net, problem)
            await self._install_firewall(net)
            return net

    async def _install_firewall(self, net: dict) -> None:
        bridge = bridge_interface(net)
        if self.firewall is None or bridge == self._firewalled:
            return
        if self._firewalled is not None:  # our network was removed and made again
            await self.firewall.remove(self._firewalled)
            self._firewalled = None
        elif not self._swept:  # the first install of this daemon: older bridges' leftovers
            self._swept = True
            await self.firewall.sweep()
        if await self.firewall.install(bridge):
            self._firewalled = bridge

    async def _create(self) -> dict:
        try:
            await self.api.create_network(
                self.network, internal=self.egress == "deny", options={ICC_OPTION: "false"},
                labels=self._labels())
        except BackendError as e:
            if e.kind != "conflict":  # conflict: made meanwhile; checked below
                raise BackendError(
                    e.kind, f"could not create the users' network {self.network}: {e.message}"
                ) from None
        net = await self.api.inspect_network(self.network)
        if net is None:
            raise BackendError("failed", f"the users' network {self.network} vanished as it was made")
        problem = self._problem(net)
        if problem:
            raise BackendError("failed", f"the Docker network {self.network} {problem}")
        # Before any server joins, so none is ever on the bridge without the host rules.
        await self._install_firewall(net)
        log.info("created the users' network {net} (bridge {bridge}, {subnet}): servers "
                 "cannot reach each other; egress {egress}", net=self.network,
                 bridge=bridge_interface(net), egress=self.egress,
                 subnet=", ".join(c.get("Subnet", "?") for c in
                                  (net.get("IPAM") or {}).get("Config") or []))
        return net

    async def _recreate(self, net: dict, problem: str) -> dict:
        """Replace our own network that no longer matches the configuration; the servers on
        it are disconnected and connected to the new one (they keep running)."""
        ours = []
        for cid in net.get("Containers") or {}:
            c = await self.api.inspect_container(cid)
            if c is None:
                continue
            if not self.body.ours(c):
                raise BackendError(
                    "failed", f"the Docker network {self.network} {problem}, and the container "
                    f"{c.get('Name', '?').lstrip('/')}, which is not ipydoc's, uses it: "
                    f"disconnect it so that ipydoc can recreate the network")
            ours.append(c)
        log.warn("the users' network {net} {problem}: recreating it ({n} servers move along)",
                 net=self.network, problem=problem, n=len(ours))
        for c in ours:
            await self.api.disconnect_network(net["Id"], c["Id"], force=True)
        if self.firewall is not None:
            await self.firewall.remove(bridge_interface(net))
            self._firewalled = None
        await self.api.remove_network(net["Id"])
        new = await self._create()
        for c in ours:
            fresh = await self.api.inspect_container(c["Id"])
            if fresh is not None and (fresh.get("State") or {}).get("Running"):
                await self._move_onto(new, fresh)
        return new

    async def adopt(self, running: list[dict]) -> None:
        """Check the network and its firewall, and move each of the ``running`` servers
        (inspected containers of ours) that is not (only) on it onto it.  With no server
        and no network yet, nothing is done: the first start makes it."""
        if not running and await self.api.inspect_network(self.network) is None:
            return
        net = await self.ensure()
        for c in running:
            # Inspected again: a recreated network has moved its servers already.
            fresh = await self.api.inspect_container(c["Id"])
            if fresh is not None and (fresh.get("State") or {}).get("Running"):
                await self._move_onto(net, fresh)

    async def _move_onto(self, net: dict, c: dict) -> None:
        """Connect a running server to the users' network and disconnect it from every
        other; if that fails it is stopped (files kept), never left reachable."""
        networks = (c.get("NetworkSettings") or {}).get("Networks") or {}
        joined = net.get("Id") in {n.get("NetworkID") for n in networks.values()}
        others = {n: v.get("NetworkID") or n for n, v in networks.items()
                  if v.get("NetworkID") != net.get("Id")}
        if joined and not others:
            return
        user = key_from_labels((c.get("Config") or {}).get("Labels") or {})  # a server key
        try:
            if not joined:
                await self.api.connect_network(net["Id"], c["Id"])
            for nid in others.values():
                await self.api.disconnect_network(nid, c["Id"], force=True)
        except BackendError as e:
            log.warn("could not move the server of {name} onto the users' network {net}: "
                     "{why}; stopping it (its files are kept)", name=user, net=self.network,
                     why=e.message)
            await self._stop(user)
            return
        log.info("moved the running server of {name} ({id}) onto the users' network {net}"
                 "{left}", name=user, id=c["Id"][:12], net=self.network,
                 left=(" (off " + ", ".join(others) + ")") if others else "")


def network_options(reactor: Any, api: DockerAPI, network: str, egress: str,
                    host_access: list[int] | tuple[int, ...] = ()) -> dict[str, Any]:
    """DockerBackend keyword arguments for ``[docker] network/egress/host_access``: the
    isolated layout for a network name, the legacy default bridge for "".  The host
    firewall is installed only when the engine is on this machine (a unix socket)."""
    if not network:
        log.warn('docker.network = "": users\' servers run on Docker\'s default bridge, where '
                 "each can reach every other server and the host's services (NOT isolated)")
        return {}
    firewall = None
    if api.host.startswith("unix://"):
        firewall = HostFirewall(reactor, host_access)
    else:
        log.warn("the Docker engine {host} is on another machine: ipydoc cannot install the "
                 "host firewall of the users' network there; install it on that machine "
                 "(README, \"Isolation\")", host=api.host)
    return {"network": network, "isolate": True, "egress": egress, "firewall": firewall}


class Preparable(Protocol):
    async def prepare(self) -> None:
        """Check the users' network and move the running servers onto it."""


class UserNetworkService(Service):
    """Runs the backend's ``prepare()`` at daemon start, before the server manager
    reconciles (so servers moved onto the users' network are adopted at their new
    address).  An engine that is down does not stop the daemon: it is retried in the
    background (and every start ensures the network itself)."""

    name = "network"

    def __init__(self, backend: Preparable, reactor: Any) -> None:
        self.backend = backend
        self.reactor = reactor
        self._retry: Any = None
        self._backoff = 1.0

    def startService(self) -> Deferred:  # noqa: N802 (Twisted API)
        super().startService()
        return Deferred.fromCoroutine(self._attempt(first=True))

    async def _attempt(self, first: bool = False) -> None:
        self._retry = None
        try:
            await self.backend.prepare()
        except BackendError as e:
            if first and e.kind != "unreachable":
                raise  # a network that cannot isolate: the operator must act
            log.error("cannot prepare the users' network yet: {why}; retrying in {s:g} s",
                      why=e.message, s=self._backoff)
            if self.running:
                self._retry = self.reactor.callLater(self._backoff, self._again)
                self._backoff = min(self._backoff * 2, 60.0)

    def _again(self) -> None:
        Deferred.fromCoroutine(self._attempt()).addErrback(
            lambda f: log.failure("preparing the users' network", f))

    def stopService(self) -> None:  # noqa: N802 (Twisted API)
        super().stopService()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
