"""The Docker engine of each swarm node, for what only a node's own engine can do: a
server's resource sample, pausing its container, removing a user's volume.

The manager's engine (``docker.host``) serves the tasks on the manager itself; any other
node is reached through ``swarm.node_engines`` (node hostname → engine URL).  A node in
neither has no engine here: callers say so clearly or do without (docs/swarm.md).
"""

from __future__ import annotations

from typing import Any

from ipydoc.backends.docker_api import DockerAPI
from ipydoc.backends.swarm_api import SwarmAPI


class NodeEngines:
    """Node → its engine client (one pooled client per URL, made on first use)."""

    def __init__(self, reactor: Any, api: SwarmAPI, urls: dict[str, str]) -> None:
        self.reactor = reactor
        self.api = api
        self.urls = dict(urls)
        self._clients: dict[str, DockerAPI] = {}
        self._manager_node: str | None = None

    def by_hostname(self, hostname: str) -> DockerAPI | None:
        """The engine of ``hostname`` from ``node_engines``, or None."""
        url = self.urls.get(hostname)
        if url is None:
            return None
        client = self._clients.get(hostname)
        if client is None:
            client = self._clients[hostname] = DockerAPI(self.reactor, url)
        return client

    async def manager_node_id(self) -> str:
        """The node id of the manager ipydoc talks to (asked once: it does not change)."""
        if self._manager_node is None:
            info = await self.api.info()
            self._manager_node = str((info.get("Swarm") or {}).get("NodeID") or "")
        return self._manager_node

    async def of_node(self, node_id: str, hostname: str) -> DockerAPI | None:
        """The engine of the node ``node_id`` (hostname ``hostname``), or None."""
        if node_id and node_id == await self.manager_node_id():
            return self.api
        return self.by_hostname(hostname)

    def every_engine(self) -> list[DockerAPI]:
        """The manager's engine and every engine of ``node_engines`` (for their events)."""
        return [self.api, *(c for c in map(self.by_hostname, sorted(self.urls)) if c)]

    async def close(self) -> None:
        """Drop the node engines' pooled connections (the manager's client is the caller's)."""
        for client in self._clients.values():
            await client.close()
