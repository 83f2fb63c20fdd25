"""Pausing a user's Swarm server (issue 15): Swarm has no pause verb, so the container of
the service's task is frozen (``docker pause``, the cgroup freezer) through the engine of
the task's node (:class:`ipydoc.backends.swarm_engines.NodeEngines`).

* **The container** is the running task's ``Status.ContainerStatus.ContainerID``, on the
  node ``NodeID`` names.  A task on a node whose engine ipydoc does not know (not the
  manager, not in ``swarm.node_engines``) cannot be paused: :meth:`Freezer.pause` raises
  ``BackendError("failed", ...)`` naming the node and the key to set; ``status`` and
  ``list`` still work and report that server as not paused (nobody can look).
* **What Swarm makes of it: nothing.**  A paused container is still running to the node's
  agent: the task stays ``running``, is not rescheduled (and restart policy ``none`` would
  not restart it).  Docker stops an image's HEALTHCHECK while a container is paused and
  sends no ``health_status: unhealthy`` event, so Swarm does not kill a paused task for
  its health either (tried on 20.10 with a 1 s health check: the same task stayed running
  through 50 s paused, and was healthy again right after the unpause).
* **Looking is cheap.**  ``status`` inspects one container; ``list`` asks each node with
  running tasks of ours for its containers once (``GET /containers/json``: ``State`` says
  ``paused``), one call per node, not per server, all nodes at once.  Only tasks that run
  are looked at; the task poll (:mod:`ipydoc.backends.swarm_events`) is not touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.logger import Logger

from ipydoc.backends.base import BackendError
from ipydoc.backends.docker_api import DockerAPI
from ipydoc.backends.swarm_api import SwarmAPI
from ipydoc.backends.swarm_body import RUNNING, current_task
from ipydoc.backends.swarm_engines import NodeEngines
from ipydoc.backends.swarm_placement import Node

log = Logger()

#: runc gives up ("unable to freeze") when the container's processes fork while it
#: freezes them (a server still starting its kernels); a moment later it works.
FREEZE_TRIES = 3
FREEZE_RETRY_DELAY = 0.2  # seconds, times the attempt


def container_of(task: dict | None) -> str:
    """The container id of a task ("" before the node made one)."""
    status = (task or {}).get("Status") or {}
    return str((status.get("ContainerStatus") or {}).get("ContainerID") or "")


@dataclass(frozen=True)
class TaskContainer:
    """Where a running server's container is: its id, its node, that node's engine."""

    container: str
    node: Node
    engine: DockerAPI | None


class Freezer:
    """Pause, unpause and see paused containers of our services' tasks."""

    def __init__(self, reactor: Any, api: SwarmAPI, engines: NodeEngines) -> None:
        self.reactor = reactor
        self.api = api
        self.engines = engines

    async def locate(self, service: dict) -> TaskContainer | None:
        """The container of ``service``'s running task on a ready node, or None."""
        task = current_task(await self.api.list_tasks({"service": [service["ID"]]}))
        if task is None or task.get("DesiredState") != RUNNING or \
                (task.get("Status") or {}).get("State") != RUNNING or not container_of(task):
            return None
        found = await self.api.inspect_node(task.get("NodeID") or "")
        if found is None:
            return None
        node = Node.from_api(found)
        if node.state != "ready":
            return None
        return TaskContainer(container_of(task), node,
                             await self.engines.of_node(node.id, node.hostname))

    async def pause(self, name: str, service: dict | None) -> None:
        """Freeze ``name``'s server; no-op when paused; "conflict" when none runs."""
        where = await self.locate(service) if service is not None else None
        if where is None:
            raise BackendError("conflict", f"{name} has no running server to pause")
        if where.engine is None:
            raise BackendError("failed", f"cannot pause the server of {name}: it runs on node "
                                         f"{where.node.hostname}, whose Docker engine ipydoc "
                                         f"does not know; add it to swarm.node_engines "
                                         f"(\"{where.node.hostname}\" = \"tcp://ADDRESS:2376\")")
        state = await self._state(where)
        if not state.get("Running"):
            raise BackendError("conflict", f"{name} has no running server to pause")
        if state.get("Paused"):
            return
        try:
            await self._freeze(where.engine, where.container)
        except BackendError as e:
            # 409: paused by someone else meanwhile (fine), or it stopped (a conflict).
            if e.kind != "conflict" or not (await self._state(where)).get("Paused"):
                raise
        else:
            log.info("paused the server of {name} on node {host}", name=name,
                     host=where.node.hostname)

    async def unpause(self, name: str, service: dict | None) -> None:
        """Thaw ``name``'s server; no-op when it is not paused, or cannot be looked at."""
        where = await self.locate(service) if service is not None else None
        if where is None or where.engine is None:
            return
        if not (await self._state(where)).get("Paused"):
            return
        try:
            await where.engine.unpause_container(where.container)
        except BackendError as e:
            if e.kind != "conflict":  # 409: thawed (or stopped) meanwhile: fine
                raise
        else:
            log.info("unpaused the server of {name} on node {host}", name=name,
                     host=where.node.hostname)

    async def _freeze(self, engine: DockerAPI, container: str) -> None:
        for attempt in range(1, FREEZE_TRIES + 1):
            try:
                await engine.pause_container(container)
                return
            except BackendError as e:
                if e.kind in ("unreachable", "conflict") or attempt == FREEZE_TRIES:
                    raise
                log.info("pausing {c} failed ({msg}); trying again", c=container[:12],
                         msg=e.message)
            await deferLater(self.reactor, FREEZE_RETRY_DELAY * attempt, lambda: None)

    async def _state(self, where: TaskContainer) -> dict:
        assert where.engine is not None
        inspected = await where.engine.inspect_container(where.container)
        return (inspected or {}).get("State") or {}

    async def paused_containers(self, tasks: list[dict], nodes: dict[str, Node],
                                labels: dict[str, str | None]) -> set[str]:
        """Of these running tasks, the containers that are paused: one container listing
        (``labels``) per node that has any; a node without engine, or whose engine fails
        to answer, counts as nothing paused (logged)."""
        wanted: dict[str, set[str]] = {}
        for t in tasks:
            if container_of(t):
                wanted.setdefault(t.get("NodeID") or "", set()).add(container_of(t))
        looks = [Deferred.fromCoroutine(self._paused_on(nodes[n], ids, labels))
                 for n, ids in wanted.items() if n in nodes]
        found: set[str] = set()
        for part in await gatherResults(looks, consumeErrors=True):
            found |= part
        return found

    async def _paused_on(self, node: Node, ids: set[str],
                         labels: dict[str, str | None]) -> set[str]:
        try:
            engine = await self.engines.of_node(node.id, node.hostname)
            if engine is None:
                return set()
            listed = await engine.list_containers(labels, all=False)
        except BackendError as e:
            log.warn("cannot tell whether servers on node {host} are paused: {msg}",
                     host=node.hostname, msg=e.message)
            return set()
        return {c["Id"] for c in listed if c.get("Id") in ids and c.get("State") == "paused"}
