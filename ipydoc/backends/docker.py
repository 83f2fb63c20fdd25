"""The Docker backend: one container per user, through :mod:`ipydoc.backends.docker_api`.

Each server gets a container ``{name_prefix}KEY`` (KEY: the server key, ``NAME`` for a
user's default server, ``NAME--SERVER`` for a named one) labelled ``ipydoc.user=NAME``,
``ipydoc.server=SERVER`` ("" for the default) and ``ipydoc.managed=1``, running any stock
Jupyter image (``jupyter_server`` is all it needs).
What is in it -- the token in the environment (never argv), limits, dropped capabilities,
``no-new-privileges``, the mount of the user's files -- is :mod:`ipydoc.backends.docker_body`.
Networking is one of:

* isolated (``isolate=True`` with ``network``, the daemon's default): the container joins
  the users' network (:mod:`ipydoc.backends.users_network`, with its host firewall in
  :mod:`ipydoc.backends.docker_network`); nothing is published, the daemon reaches the
  server at its address on that network.  :meth:`DockerBackend.prepare` moves servers
  started before onto it without stopping them;
* ``network`` without ``isolate``: joins that network as the operator made it;
* neither (legacy, NOT isolated): Docker's default bridge, the port published on
  ``127.0.0.1`` only on a random host port; every server can reach every other.

The user's files are on a named volume ``{volume_prefix}NAME`` (Docker seeds a new volume
with the image's home directory, so ownership is right) or on a host directory
``bind_root/NAME``, mounted by every server of the user.  Stop never removes them; only :meth:`DockerBackend.purge` does.
Events are followed by :mod:`ipydoc.backends.docker_events`.

A container that has the right name but not our labels is somebody else's: ipydoc never
removes it and reports a conflict instead.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Callable

from twisted.internet.defer import Deferred, DeferredLock, gatherResults
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from ipydoc.backends.base import BackendError, BackendEvent, ServerInfo, ServerSpec
from ipydoc.backends.docker_api import DockerAPI
from ipydoc.backends.docker_body import (
    MANAGED_LABEL,
    USER_LABEL,
    ContainerBody,
    checked_key,
    checked_name,
    key_from_labels,
)
from ipydoc.backends.docker_events import DockerEvents
from ipydoc.backends.docker_network import EGRESS, HostFirewall
from ipydoc.backends.user_locks import OneOpPerUser
from ipydoc.backends.users_network import UsersNetwork
from ipydoc.names import owner_of

log = Logger()


class DockerBackend(OneOpPerUser):
    """Runs each user's Jupyter server in its own Docker container."""

    def __init__(
        self,
        reactor: Any,
        api: DockerAPI,
        *,
        notebook_dir: str = "/home/jovyan",
        cmd: list[str] | None = None,
        port: int = 8888,
        volume_prefix: str = "ipydoc-home-",
        storage: str = "volume",
        bind_root: str | None = None,
        uid: int = 1000,
        gid: int = 100,
        name_prefix: str = "ipydoc-",
        network: str | None = None,
        extra_labels: dict[str, str] | None = None,
        stop_timeout: int = 10,
        start_timeout: float = 120.0,
        isolate: bool = False,
        egress: str = "allow",
        firewall: HostFirewall | None = None,
    ) -> None:
        if storage not in ("volume", "bind"):
            raise BackendError("failed", f"docker storage must be 'volume' or 'bind', not {storage!r}")
        if storage == "bind" and not bind_root:
            raise BackendError("failed", "docker storage 'bind' needs bind_root (a host directory)")
        if not notebook_dir.startswith("/"):
            raise BackendError("failed", f"notebook_dir must be an absolute path, not {notebook_dir!r}")
        if isolate and not network:
            raise BackendError("failed", "isolating servers needs the name of the users' network")
        if egress not in EGRESS:
            raise BackendError("failed", f"egress must be 'allow' or 'deny', not {egress!r}")
        self.reactor = reactor
        self.api = api
        self.storage = storage
        self.bind_root = os.path.abspath(bind_root) if bind_root else None
        self.uid = uid
        self.gid = gid
        self.stop_timeout = stop_timeout
        self.start_timeout = start_timeout
        self.isolate = isolate
        self.body = ContainerBody(
            notebook_dir=notebook_dir, cmd=list(cmd) if cmd else ["jupyter", "lab"],
            port=int(port), volume_prefix=volume_prefix, storage=storage,
            bind_root=self.bind_root, uid=uid, gid=gid, name_prefix=name_prefix,
            network=network, extra_labels=dict(extra_labels or {}))
        self.users_network = UsersNetwork(api, network, egress, firewall, self.body, self.stop) \
            if isolate and network else None
        self.events = DockerEvents(reactor, api, name_prefix)
        self._user_locks: dict[str, DeferredLock] = {}

    # -- Backend ----------------------------------------------------------------------

    async def _start(self, spec: ServerSpec) -> ServerInfo:
        name = checked_key(spec.name)
        cname = self.body.container_name(name)
        await self._ensure_image(spec.image)
        if self.users_network is not None:
            await self.users_network.ensure()

        existing = await self.api.inspect_container(cname)
        if existing is not None:
            if not self.body.ours(existing, name):
                raise BackendError(
                    "conflict",
                    f"a container named {cname} exists on the Docker engine and is not managed "
                    f"by ipydoc; remove or rename it",
                )
            log.info("removing the left-over container {cname}", cname=cname)
            await self.api.remove_container(existing["Id"], force=True)

        mount = await self._prepare_storage(owner_of(name))
        body = self.body.body(spec, mount)
        try:
            cid = await self.api.create_container(cname, body)
        except BackendError as e:
            if e.kind == "conflict":
                # Someone (an earlier removal still in progress, a concurrent start) holds
                # the name: clear it once and try again.
                await self._remove_ours(cname, name)
                cid = await self.api.create_container(cname, body)
            elif e.kind == "image_missing":
                raise BackendError(
                    "image_missing", f"image {spec.image} is not on this Docker engine: {e.message}"
                ) from None
            else:
                raise BackendError(e.kind, f"could not create the server of {name}: {e.message}") from None

        try:
            info = await self._start_created(name, cid)
        except BaseException:
            try:
                await self.api.remove_container(cid, force=True)
            except BackendError as e2:
                log.warn("could not remove the failed container {cname}: {e}", cname=cname, e=e2.message)
            raise
        log.info("started {cname} ({image}) at {url}", cname=cname, image=spec.image, url=info.url)
        return ServerInfo(
            name=info.name, id=info.id, running=info.running, url=info.url, image=info.image,
            started_at=info.started_at, token=spec.token,
        )

    async def _start_created(self, name: str, cid: str) -> ServerInfo:
        try:
            await self.api.start_container(cid, timeout=self.start_timeout)
            c = await self.api.inspect_container(cid)
        except BackendError as e:
            raise BackendError(e.kind, f"could not start the server of {name}: {e.message}") from None
        if c is None:
            raise BackendError("failed", f"the container of {name} vanished right after it started")
        info = self.body.info(c)
        if info.running and info.url:
            return info
        state = c.get("State") or {}
        try:
            logs = (await self.api.logs(cid, tail=20)).strip()
        except BackendError:
            logs = ""
        if info.running:
            why = "Docker reports no address for its port"
        else:
            why = f"it exited at once with status {state.get('ExitCode')}"
            if state.get("Error"):
                why += f" ({state['Error']})"
        raise BackendError(
            "failed",
            f"the server of {name} did not come up: {why}" + (f"; last output:\n{logs}" if logs else ""),
        )

    async def _stop(self, name: str) -> None:
        cname = self.body.container_name(name)
        c = await self.api.inspect_container(cname)
        if c is None:
            return
        if not self.body.ours(c, name):
            log.warn("not stopping {cname}: it is not managed by ipydoc", cname=cname)
            return
        state = c.get("State") or {}
        if state.get("Paused"):
            # A frozen container ignores SIGTERM until thawed: thaw it so Jupyter can
            # shut down cleanly (its kernels and files) within stop_timeout.
            await self.api.unpause_container(c["Id"])
        if state.get("Running"):
            await self.api.stop_container(c["Id"], self.stop_timeout)
        await self.api.remove_container(c["Id"], force=True)
        log.info("stopped and removed {cname}", cname=cname)

    async def pause(self, name: str) -> None:
        """Freeze the user's container (``docker pause``): memory kept, no CPU."""
        async with self._lock(checked_key(name)):
            c = await self._ours_or_none(name)
            state = (c or {}).get("State") or {}
            if c is None or not state.get("Running"):
                raise BackendError("conflict", f"{name} has no running server to pause")
            if not state.get("Paused"):
                await self.api.pause_container(c["Id"])
                log.info("paused {cname}", cname=self.body.container_name(name))

    async def unpause(self, name: str) -> None:
        """Thaw the user's container; no-op when it is not paused (or gone)."""
        async with self._lock(checked_key(name)):
            c = await self._ours_or_none(name)
            if c is not None and ((c.get("State") or {}).get("Paused")):
                await self.api.unpause_container(c["Id"])

    async def _ours_or_none(self, name: str) -> dict | None:
        c = await self.api.inspect_container(self.body.container_name(name))
        return c if c is not None and self.body.ours(c, name) else None

    async def status(self, name: str) -> ServerInfo | None:
        c = await self.api.inspect_container(self.body.container_name(name))
        if c is None or not self.body.ours(c, name):
            return None
        return self.body.info(c)

    async def list(self) -> list[ServerInfo]:
        return [self.body.info(c) for c in await self._inspect_ours()]

    async def _inspect_ours(self) -> list[dict]:
        """Every container of ours, inspected."""
        rows = await self.api.list_containers({MANAGED_LABEL: "1", USER_LABEL: None}, all=True)
        ids = []
        for row in rows:
            labels = row.get("Labels") or {}
            key = key_from_labels(labels)
            names = [n.lstrip("/") for n in row.get("Names") or []]
            if key and f"{self.body.name_prefix}{key}" in names:
                ids.append(row.get("Id"))
        inspected = await gatherResults(
            [Deferred.fromCoroutine(self.api.inspect_container(i)) for i in ids if i],
            consumeErrors=True,
        ) if ids else []
        return [c for c in inspected if c is not None and self.body.ours(c)]

    async def logs(self, server_id: str, tail: int | None = 100) -> str:
        return await self.api.logs(server_id, tail="all" if tail is None else tail)

    async def stats(self, server_id: str) -> dict[str, Any] | None:
        return await self.api.stats(server_id)

    async def check(self) -> str:
        await self.api.ping()
        v = await self.api.version()
        return f"Docker {v.get('Version', '?')} (API {v.get('ApiVersion', '?')}) at {self.api.host}"

    async def _purge(self, name: str) -> None:
        checked_name(name)
        mine = {**self.body.extra_labels, MANAGED_LABEL: "1", USER_LABEL: name}
        for row in await self.api.list_containers(mine, all=True):  # every server of the user
            names = [n.lstrip("/") for n in row.get("Names") or []]
            if any(n.startswith(self.body.name_prefix) for n in names):
                raise BackendError("conflict", f"{name} still has a container ({names[0]}); "
                                               "stop it before purging")
        cname = self.body.container_name(name)
        if await self.api.inspect_container(cname) is not None:
            raise BackendError("conflict", f"{name} still has a container ({cname}); stop it before purging")
        if self.storage == "volume":
            await self.api.remove_volume(self.body.volume_name(name))
        else:
            path = self.body.user_dir(name)
            if os.path.lexists(path):
                await deferToThreadPool(
                    self.reactor, self.reactor.getThreadPool(), shutil.rmtree, path
                )
        log.info("purged the files of {name}", name=name)

    def files_of(self, name: str) -> str:
        if self.storage == "volume":
            return f"volume {self.body.volume_name(name)}"
        return f"directory {self.body.user_dir(name)}"

    async def users_with_files(self) -> set[str]:
        """The directories under ``bind_root`` (volumes are not listed)."""
        root = self.bind_root if self.storage == "bind" else None
        if not root:
            return set()

        def scan() -> set[str]:
            if not os.path.isdir(root):
                return set()
            return {e.name for e in os.scandir(root) if e.is_dir(follow_symlinks=False)}

        return await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), scan)

    # -- the users' network (isolate=True) ----------------------------------------------

    async def prepare(self) -> None:
        """At daemon start, before reconciling: check the users' network and its host
        firewall, and move every running server that is not (only) on it — one an older
        ipydoc started on the default bridge with a published port — onto it, without
        stopping it.  With no server and no network yet, the first start makes it."""
        if self.users_network is None:
            return
        running = [c for c in await self._inspect_ours() if (c.get("State") or {}).get("Running")]
        await self.users_network.adopt(running)

    # -- events -----------------------------------------------------------------------

    def follow(self, listener: Callable[[BackendEvent], None],
               on_open: Callable[[bool], None] | None = None) -> None:
        """Call ``listener`` for start/die/destroy/pause/unpause of our containers;
        reconnects by itself.

        ``on_open(reconnected)`` is called each time the stream is connected: events
        missed while it was down (a dockerd restart forgets them) are the caller's to
        reconcile."""
        self.events.follow(listener, on_open)

    def stop_following(self) -> None:
        self.events.stop_following()

    # -- helpers ----------------------------------------------------------------------

    async def _ensure_image(self, image: str) -> None:
        if await self.api.inspect_image(image) is not None:
            return
        log.info("image {image} is missing; pulling it", image=image)
        try:
            await self.api.pull_image(image)
        except BackendError as e:
            if e.kind == "unreachable" and "did not answer" not in e.message:
                raise
            raise BackendError(
                "image_missing",
                f"image {image} is not on this Docker engine and could not be pulled: {e.message}",
            ) from None
        if await self.api.inspect_image(image) is None:
            raise BackendError(
                "image_missing", f"image {image} is not on this Docker engine even after a pull"
            )

    async def _remove_ours(self, cname: str, name: str) -> None:
        c = await self.api.inspect_container(cname)
        if c is None:
            return
        if not self.body.ours(c, name):
            raise BackendError(
                "conflict", f"a container named {cname} exists and is not managed by ipydoc"
            )
        await self.api.remove_container(c["Id"], force=True)

    async def _prepare_storage(self, name: str) -> dict:
        if self.storage == "volume":
            await self.api.create_volume(self.body.volume_name(name), self.body.labels(name))  # the owner's
            return self.body.mount(name)
        path = self.body.user_dir(name)
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
            if os.geteuid() == 0:
                st = os.stat(path)
                if (st.st_uid, st.st_gid) != (self.uid, self.gid):
                    os.chown(path, self.uid, self.gid)
        except OSError as e:
            raise BackendError("failed", f"cannot prepare the directory {path} for {name}: {e}") from None
        return self.body.mount(name)
