"""The Swarm backend (``spawn.backend = "swarm"``): each user's server is a Swarm service.

Service ``{instance}-NAME`` (one replica, never restarted), labelled like the Docker
backend's containers, with the same command, limits and token handling
(:mod:`ipydoc.backends.swarm_body` says what Swarm cannot carry over).  Talks to a swarm
manager through :class:`ipydoc.backends.swarm_api.SwarmAPI`.

* **Storage and placement.**  A user's files are the volume ``{volume_prefix}NAME`` on one
  node.  The first start places the user (:mod:`ipydoc.backends.swarm_placement`), records
  the node in Redis (:mod:`ipydoc.state.placements`) and pins the service there
  (``node.id==ID``).  A pinned user whose node is down, drained or gone gets a clear
  refusal, never a fresh empty home elsewhere; an admin moves them (``ipydoc server
  move``).  With ``volume_driver`` (shared storage) nobody is pinned.
* **Reaching the server.**  The port is published in host mode on the task's node; the
  daemon reaches ``http://NODE_ADDR:PORT``.  That traffic (token included) crosses the
  node network in plain HTTP: docs/swarm.md says what to firewall.
* **Images.**  By default the service names the image by the ID the manager has for it:
  no registry pull, the same bytes on every node (each node must have it loaded).  With
  ``pull`` the name is used and nodes pull it.
* **Events** are :mod:`ipydoc.backends.swarm_events`.
* **Pause** (issue 15): Swarm has no pause verb; the task's container is frozen through
  its node's engine (:mod:`ipydoc.backends.swarm_freezer`), and pauses are followed on the
  node engines' events (:mod:`ipydoc.backends.swarm_pause_events`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Protocol

from twisted.internet.defer import DeferredLock
from twisted.internet.task import deferLater
from twisted.logger import Logger

from ipydoc.backends.base import BackendError, BackendEvent, ServerInfo, ServerSpec
from ipydoc.backends.docker_api import DockerAPI
from ipydoc.backends.docker_body import (
    MANAGED_LABEL,
    USER_LABEL,
    ContainerBody,
    checked_key,
    checked_name,
)
from ipydoc.backends.docker_formats import label_filters
from ipydoc.backends.swarm_api import SwarmAPI
from ipydoc.backends.swarm_body import ENDED, RUNNING, ServiceBody, current_task
from ipydoc.backends.swarm_engines import NodeEngines
from ipydoc.backends.swarm_events import SwarmEvents
from ipydoc.backends.swarm_freezer import Freezer, container_of
from ipydoc.backends.swarm_move import VolumeMover
from ipydoc.backends.swarm_pause_events import PauseEvents
from ipydoc.backends.swarm_placement import Node, choose, loads, unusable_message
from ipydoc.backends.user_locks import OneOpPerUser
from ipydoc.names import owner_of
from ipydoc.state.placements import Placement

log = Logger()

UNPLACEABLE_GRACE = 5.0  # seconds a task may stay unschedulable before the start fails


class PlacementRecords(Protocol):
    """Where users' files are (the Store's :class:`ipydoc.state.placements.Placements`)."""

    async def get_placement(self, name: str) -> Placement | None: ...
    async def place(self, name: str, node: str, hostname: str) -> Placement: ...
    async def set_placement(self, name: str, node: str, hostname: str) -> None: ...
    async def forget_placement(self, name: str) -> None: ...
    async def placed_users(self) -> set[str]: ...


class SwarmBackend(OneOpPerUser):
    """Runs each user's Jupyter server as a Docker Swarm service."""

    def __init__(
        self,
        reactor: Any,
        api: SwarmAPI,
        placements: Callable[[], PlacementRecords],
        *,
        notebook_dir: str = "/home/jovyan",
        cmd: list[str] | None = None,
        port: int = 8888,
        volume_prefix: str = "ipydoc-home-",
        uid: int = 1000,
        gid: int = 100,
        name_prefix: str = "ipydoc-",
        extra_labels: dict[str, str] | None = None,
        stop_timeout: int = 10,
        start_timeout: float = 120.0,
        placement: str = "memory",
        pull: bool = False,
        volume_driver: str = "",
        volume_options: dict[str, str] | None = None,
        node_engines: dict[str, str] | None = None,
        task_poll: float = 0.5,
    ) -> None:
        if placement not in ("memory", "spread"):
            raise BackendError("failed", f"swarm placement must be 'memory' or 'spread', "
                                         f"not {placement!r}")
        if not notebook_dir.startswith("/"):
            raise BackendError("failed", f"notebook_dir must be an absolute path, not "
                                         f"{notebook_dir!r}")
        self.reactor = reactor
        self.api = api
        self._placements = placements
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.placement = placement
        self.pull = pull
        self.shared_storage = bool(volume_driver)
        self.node_engines = dict(node_engines or {})
        self.engines = NodeEngines(reactor, api, self.node_engines)
        self.freezer = Freezer(reactor, api, self.engines)
        self.extra_labels = dict(extra_labels or {})
        container = ContainerBody(
            notebook_dir=notebook_dir, cmd=list(cmd) if cmd else ["jupyter", "lab"],
            port=int(port), volume_prefix=volume_prefix, storage="volume", bind_root=None,
            uid=uid, gid=gid, name_prefix=name_prefix, network=None,
            extra_labels=self.extra_labels)
        self.body = ServiceBody(container, stop_timeout=stop_timeout,
                                volume_driver=volume_driver, volume_options=volume_options)
        self.events = SwarmEvents(reactor, api, self.body, task_poll, self.extra_labels)
        self.pause_events = PauseEvents(reactor, self.engines.every_engine(),
                                        self._labels(), name_prefix)
        self._user_locks: dict[str, DeferredLock] = {}
        self._placing = DeferredLock()  # one new placement at a time: loads stay true

    # -- what helper code (server move, image distribution) uses -------------------------

    def volume_name(self, name: str) -> str:
        return self.body.body.volume_name(name)

    async def image_ref(self, image: str) -> str:
        """What a service names: the image's ID on the manager (no pull, the same bytes
        everywhere), or with ``pull`` its name."""
        if self.pull:
            return image
        inspected = await self.api.inspect_image(image)
        if inspected is None or not inspected.get("Id"):
            raise BackendError("image_missing", f"image {image} is not on the swarm manager "
                                                f"({self.api.host}); load it on every node "
                                                f"(`ipydoc image ensure`) or set swarm.pull")
        return str(inspected["Id"])

    async def nodes(self) -> list[Node]:
        return [Node.from_api(n) for n in await self.api.list_nodes()]

    async def node_of(self, name: str) -> str | None:
        record = await self._placements().get_placement(checked_name(name))
        return record.node if record else None

    async def pin(self, name: str, node_id: str) -> None:
        """Record that ``name``'s files are on ``node_id`` (after a move copied them)."""
        node = {n.id: n for n in await self.nodes()}.get(node_id)
        if node is None:
            raise BackendError("failed", f"no swarm node {node_id}")
        await self._placements().set_placement(checked_name(name), node.id, node.hostname)

    def volume_mover(self) -> VolumeMover:
        """The verified volume copy of ``ipydoc server move`` (helper tasks labelled like
        our services, the same volume name on every node)."""
        return VolumeMover(self.reactor, self.api, self.volume_name, self.body.body.labels)

    def engine(self, hostname: str) -> DockerAPI | None:
        """The Docker engine of node ``hostname`` (``node_engines``), or None."""
        return self.engines.by_hostname(hostname)

    # -- Backend: start and stop --------------------------------------------------------

    async def _start(self, spec: ServerSpec) -> ServerInfo:
        name = checked_key(spec.name)
        sname = self.body.service_name(name)
        image = await self.image_ref(spec.image)
        existing = await self.api.inspect_service(sname)
        if existing is not None:
            if not self.body.ours(existing, name):
                raise BackendError("conflict", f"a service named {sname} exists in the swarm "
                                               f"and is not managed by ipydoc; remove or "
                                               f"rename it")
            log.info("removing the left-over service {sname}", sname=sname)
            await self.api.remove_service(existing["ID"])
        if self.shared_storage:
            sid = await self._create(spec, image, None)
        else:
            sid = await self._create_pinned(spec, image)
        self.events.kick()
        try:
            info = await self._wait_running(name, sid)
        except BaseException:
            try:
                await self.api.remove_service(sid)
            except BackendError as e:
                log.warn("could not remove the failed service {sname}: {e}", sname=sname,
                         e=e.message)
            raise
        log.info("started {sname} ({image}) at {url}", sname=sname, image=spec.image,
                 url=info.url)
        return ServerInfo(name=info.name, id=info.id, running=True, url=info.url,
                          image=spec.image, started_at=info.started_at, token=spec.token,
                          base_url=spec.base_url)

    async def _create_pinned(self, spec: ServerSpec, image: str) -> str:
        """Create the service on the node of the user's files (placing a new user); a
        named server goes where its owner's files are (placements are per user)."""
        records = self._placements()
        owner = owner_of(spec.name)
        record = await records.get_placement(owner)
        if record is None:
            async with self._placing:
                record = await records.get_placement(owner)
                if record is None:
                    node = await self._choose()
                    record = await records.place(owner, node.id, node.hostname)
                    log.info("placed {name} on node {host}", name=owner,
                             host=record.hostname)
                    if record.node == node.id:
                        return await self._create(spec, image, record.node)
        nodes = {n.id: n for n in await self.nodes()}
        node = nodes.get(record.node)
        if node is None or not node.usable:
            raise BackendError("unreachable", unusable_message(spec.name, node, record.hostname))
        return await self._create(spec, image, record.node)

    async def _choose(self) -> Node:
        services = await self._ours()
        load = loads((self.body.pinned_node(s), self.body.mem_limit(s)) for s in services)
        return choose(await self.nodes(), load, self.placement)

    async def _create(self, spec: ServerSpec, image: str, node_id: str | None) -> str:
        try:
            return await self.api.create_service(self.body.spec(spec, image, node_id))
        except BackendError as e:
            raise BackendError(e.kind, f"could not create the server of {spec.name}: "
                                       f"{e.message}") from None

    async def _wait_running(self, name: str, sid: str) -> ServerInfo:
        """Until the service's task runs and its port is known (``start_timeout``)."""
        deadline = self.reactor.seconds() + self.start_timeout
        delay = 0.1
        last = "no task yet"
        unplaceable_since: float | None = None
        while True:
            service = await self.api.inspect_service(sid)
            if service is None:
                raise BackendError("failed", f"the service of {name} vanished while starting")
            task = current_task(await self.api.list_tasks({"service": [sid]}))
            if task is not None:
                status = task.get("Status") or {}
                state = status.get("State") or "?"
                if state in ENDED:
                    raise BackendError("failed", await self._failure(name, sid, task))
                if state == RUNNING:
                    nodes = await self.nodes()
                    info = self.body.info(service, task, {n.id: n.addr for n in nodes},
                                          {n.id for n in nodes if n.state == "ready"})
                    if info.running:
                        return info
                last = f"{state}: {status.get('Err') or status.get('Message') or ''}".strip(": ")
                # "no suitable node (...)": the scheduler cannot place it (a missing volume
                # plugin, the pinned node gone meanwhile).  Give it a moment, then say so.
                if state == "pending" and status.get("Err"):
                    now = self.reactor.seconds()
                    unplaceable_since = unplaceable_since or now
                    if now - unplaceable_since >= UNPLACEABLE_GRACE:
                        raise BackendError("failed", f"the swarm cannot place the server of "
                                                     f"{name}: {status['Err']}")
                else:
                    unplaceable_since = None
            if self.reactor.seconds() >= deadline:
                raise BackendError("failed", f"the server of {name} did not come up within "
                                             f"{self.start_timeout:g} s (task {last})")
            await deferLater(self.reactor, delay, lambda: None)
            delay = min(delay * 1.5, 0.5)

    async def _failure(self, name: str, sid: str, task: dict) -> str:
        status = task.get("Status") or {}
        err = status.get("Err") or status.get("Message") or status.get("State")
        exit_code = (status.get("ContainerStatus") or {}).get("ExitCode")
        why = f"the server of {name} did not come up: {err}"
        if exit_code:
            why += f" (exit status {exit_code})"
        try:
            logs = (await self.api.service_logs(sid, tail=20)).strip()
        except BackendError:
            logs = ""
        return why + (f"; last output:\n{logs}" if logs else "")

    async def _stop(self, name: str) -> None:
        service = await self.api.inspect_service(self.body.service_name(name))
        if service is None:
            return
        if not self.body.ours(service, name):
            log.warn("not stopping {s}: it is not managed by ipydoc",
                     s=self.body.service_name(name))
            return
        try:
            # A frozen Jupyter cannot act on SIGTERM: thaw it first, so it shuts down
            # cleanly (kernels, files) within the stop grace period.
            await self.freezer.unpause(name, service)
        except BackendError as e:
            log.warn("could not unpause {name} before stopping it: {e}", name=name,
                     e=e.message)
        await self.api.remove_service(service["ID"])
        self.events.kick()
        # Removing a service only asks the node to stop and remove its container; the
        # manager forgets the task once the node reports the container removed.  Wait
        # (bounded) for that, so the volume is free for a start, a move or a purge right
        # after.  (A node that is down reports nothing: its tasks are not waited for.)
        deadline = self.reactor.seconds() + self.stop_timeout + 20
        while self.reactor.seconds() < deadline:
            tasks = await self.api.list_tasks({"service": [service["ID"]]})
            if tasks:
                ready = {n.id for n in await self.nodes() if n.state == "ready"}
                tasks = [t for t in tasks if t.get("NodeID") in ready]
            if not tasks:
                break
            await deferLater(self.reactor, 0.2, lambda: None)
        log.info("stopped and removed {s}", s=self.body.service_name(name))

    # -- Backend: pause (swarm_freezer) ----------------------------------------------

    async def pause(self, name: str) -> None:
        async with self._lock(checked_key(name)):
            await self.freezer.pause(name, await self._service(name))

    async def unpause(self, name: str) -> None:
        async with self._lock(checked_key(name)):
            await self.freezer.unpause(name, await self._service(name))

    # -- Backend: looking -------------------------------------------------------------

    def _labels(self) -> dict[str, str | None]:
        return {**self.extra_labels, MANAGED_LABEL: "1", USER_LABEL: None}

    def _label_filter(self) -> list[str]:
        return label_filters(self._labels())

    async def _service(self, name: str) -> dict | None:
        service = await self.api.inspect_service(self.body.service_name(name))
        return service if service is not None and self.body.ours(service, name) else None

    async def _ours(self) -> list[dict]:
        return [s for s in await self.api.list_services(self._label_filter())
                if self.body.ours(s)]

    async def _infos(self, services: list[dict], user: str = "") -> list[ServerInfo]:
        if not services:
            return []
        tasks = await self.api.list_tasks({"label": self._label_filter()})
        nodes = await self.nodes()
        addrs = {n.id: n.addr for n in nodes}
        ready = {n.id for n in nodes if n.state == "ready"}
        by_service: dict[str, list[dict]] = {}
        for t in tasks:
            by_service.setdefault(t.get("ServiceID", ""), []).append(t)
        current = {s["ID"]: current_task(by_service.get(s["ID"], [])) for s in services}
        infos = [self.body.info(s, current[s["ID"]], addrs, ready) for s in services]
        # Paused: asked of the nodes' engines, only for the servers that run.
        running = [t for i in infos if i.running and (t := current[i.id]) is not None]
        labels = {**self._labels(), **({USER_LABEL: owner_of(user)} if user else {})}
        paused = await self.freezer.paused_containers(running, {n.id: n for n in nodes}, labels)
        return [replace(i, paused=True) if container_of(current[i.id]) in paused else i
                for i in infos]

    async def status(self, name: str) -> ServerInfo | None:
        service = await self._service(name)
        return (await self._infos([service], name))[0] if service is not None else None

    async def list(self) -> list[ServerInfo]:
        return await self._infos(await self._ours())

    async def logs(self, server_id: str, tail: int | None = 100) -> str:
        return await self.api.service_logs(server_id, tail="all" if tail is None else tail)

    async def stats(self, server_id: str) -> dict[str, Any] | None:
        """A sample from the engine of the task's node: the manager's own, or one in
        ``node_engines``; None when the node's engine is not known (or it is gone)."""
        tasks = await self.api.list_tasks({"service": [server_id]})
        task = current_task(tasks)
        if task is None or (task.get("Status") or {}).get("State") != RUNNING:
            return None
        cid = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
        if not cid:
            return None
        try:
            engine = await self._engine_of_node(task.get("NodeID") or "")
            return await engine.stats(cid) if engine is not None else None
        except BackendError:
            return None

    async def _engine_of_node(self, node_id: str) -> DockerAPI | None:
        node = {n.id: n for n in await self.nodes()}.get(node_id)
        return await self.engines.of_node(node_id, node.hostname if node else "")

    async def check(self) -> str:
        await self.api.ping()
        info = await self.api.info()
        swarm = info.get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            raise BackendError("failed", f"the Docker engine at {self.api.host} is not a "
                                         f"swarm manager (spawn.backend = \"swarm\" needs one)")
        nodes = await self.nodes()
        ready = sum(1 for n in nodes if n.usable)
        return (f"Docker Swarm via manager {self.api.host} ({info.get('ServerVersion', '?')}): "
                f"{len(nodes)} nodes, {ready} ready")

    # -- files ------------------------------------------------------------------------

    async def _purge(self, name: str) -> None:
        """Remove the user's volume on its node (through that node's engine), then the
        placement.  Refused while the user has a service (any of their servers)."""
        for s in await self.api.list_services(label_filters({**self._labels(),
                                                             USER_LABEL: checked_name(name)})):
            raise BackendError("conflict", f"{name} still has a service "
                                           f"({(s.get('Spec') or {}).get('Name')}); stop it "
                                           f"before purging")
        record = await self._placements().get_placement(name)
        volume = self.volume_name(name)
        if self.shared_storage or record is None:
            engine: DockerAPI | None = self.api
        else:
            engine = await self._engine_of_node(record.node)
            if engine is None:
                raise BackendError("failed", f"the files of {name} are the volume {volume} on "
                                             f"node {record.hostname}; add that node to "
                                             f"swarm.node_engines so ipydoc can remove it, "
                                             f"or run `docker volume rm {volume}` there")
        # A container of a removed service may linger on the node a moment (or for good if
        # the node was down meanwhile): it holds the volume; it is ours and stopped.
        for c in await engine.list_containers({**self.extra_labels, MANAGED_LABEL: "1",
                                               USER_LABEL: name}, all=True):
            await engine.remove_container(c["Id"], force=True)
        await engine.remove_volume(volume)
        await self._placements().forget_placement(name)
        log.info("purged the files of {name}", name=name)

    def files_of(self, name: str) -> str:
        where = "shared storage" if self.shared_storage else "the node it is placed on"
        return f"volume {self.volume_name(name)} ({where})"

    async def users_with_files(self) -> set[str]:
        """The users with a placement (files on some node)."""
        return await self._placements().placed_users()

    # -- events -----------------------------------------------------------------------

    def follow(self, listener: Callable[[BackendEvent], None],
               on_open: Callable[[bool], None] | None = None) -> None:
        self.events.follow(listener, on_open)
        self.pause_events.follow(listener, on_open)

    def stop_following(self) -> None:
        self.events.stop_following()
        self.pause_events.stop_following()
