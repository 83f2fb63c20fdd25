"""The Swarm endpoints of the Engine API (services, tasks, nodes, service logs), on the
same client, transport and timeouts as :class:`ipydoc.backends.docker_api.DockerAPI`.

Talk to a swarm *manager*: only managers answer these.  Answers are parsed JSON; errors
raise :class:`ipydoc.backends.base.BackendError` like every other call of the client.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from ipydoc.backends.base import BackendError
from ipydoc.backends.docker_api import DockerAPI
from ipydoc.backends.docker_formats import demux_logs, label_filters

MAX_LOG_BYTES = 4 << 20  # a user's server can print anything: never hold more than this


class SwarmAPI(DockerAPI):
    """A Docker Engine API client with the Swarm calls ipydoc needs."""

    # -- the swarm --------------------------------------------------------------------

    async def info(self) -> dict:
        return await self._call("GET", "/info", expect=dict)

    # -- services ---------------------------------------------------------------------

    async def create_service(self, spec: dict) -> str:
        result = await self._call("POST", "/services/create", body=spec, expect=dict)
        sid = result.get("ID")
        if not isinstance(sid, str) or not sid:
            raise BackendError("bad_answer", f"Docker created service {spec.get('Name')} but "
                                             f"sent no ID: {result!r}")
        return sid

    async def inspect_service(self, id_or_name: str) -> dict | None:
        """The service named exactly ``id_or_name`` (or with that id), or None."""
        s = await self._call("GET", f"/services/{quote(id_or_name)}", none_on=(404,), expect=dict)
        if s is not None and id_or_name not in (s.get("ID"), (s.get("Spec") or {}).get("Name")):
            return None  # the engine also matches id prefixes
        return s

    async def list_services(self, label_filter: dict[str, str | None] | list[str]) -> list[dict]:
        params = {"filters": json.dumps({"label": label_filters(label_filter)})}
        return await self._call("GET", "/services", params=params, expect=list)

    async def update_service(self, sid: str, version: int, spec: dict) -> None:
        await self._call("POST", f"/services/{quote(sid)}/update",
                         params={"version": str(version)}, body=spec, expect=dict)

    async def remove_service(self, sid: str) -> None:
        """Remove (its tasks' containers go with it); gone is fine."""
        await self._call("DELETE", f"/services/{quote(sid)}", ok=(200, 204), none_on=(404,))

    async def service_logs(self, sid: str, tail: int | str = 100) -> str:
        code, content = await self._request(
            "GET", f"/services/{quote(sid)}/logs",
            params={"stdout": "1", "stderr": "1", "tail": str(tail)})
        if code == 404:
            return ""
        if code != 200:
            raise self._error("GET", f"/services/{sid}/logs", code, content)
        return demux_logs(content[-MAX_LOG_BYTES:] if len(content) > MAX_LOG_BYTES else content)

    # -- tasks and nodes --------------------------------------------------------------

    async def list_tasks(self, filters: dict[str, list[str]]) -> list[dict]:
        """``GET /tasks`` (filters: ``service``, ``label`` (the service's labels), ``node``,
        ``desired-state``); a ``service`` filter naming a removed service finds nothing."""
        tasks = await self._call("GET", "/tasks", params={"filters": json.dumps(filters)},
                                 none_on=(404,), expect=list)
        return tasks or []

    async def list_nodes(self) -> list[dict]:
        return await self._call("GET", "/nodes", expect=list)

    async def inspect_node(self, node_id: str) -> dict | None:
        return await self._call("GET", f"/nodes/{quote(node_id)}", none_on=(404,), expect=dict)


def node_address(node: dict[str, Any]) -> str:
    """The address other hosts reach a node at: ``Status.Addr``, or the manager's
    advertised address when a manager reports 0.0.0.0."""
    addr = (node.get("Status") or {}).get("Addr") or ""
    if addr in ("", "0.0.0.0", "127.0.0.1"):
        manager = (node.get("ManagerStatus") or {}).get("Addr") or ""
        addr = manager.rsplit(":", 1)[0] if manager else addr
    return addr
