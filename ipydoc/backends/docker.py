"""The Docker backend: one container per user, through :mod:`ipydoc.backends.docker_api`.

Each user ``NAME`` gets a container ``{name_prefix}NAME`` labelled ``ipydoc.user=NAME`` and
``ipydoc.managed=1``, running any stock Jupyter image (``jupyter_server`` is all it needs)
with:

* the server token in the environment (``JUPYTER_TOKEN``, read by jupyter_server), never
  in argv where ``ps`` and ``docker inspect`` of the command would show it;
* networking, one of:

  - isolated (``isolate=True`` with ``network``, the daemon's default): the container
    joins the users' network, a bridge where containers cannot reach each other, the
    host only on the ports allowed, and the outside only with ``egress="allow"``
    (:mod:`ipydoc.backends.docker_network`).  Nothing is published; the daemon reaches
    the server at its address on that network.  :meth:`DockerBackend.prepare` creates
    or checks the network and the host firewall, and moves servers started before
    (on another network, with a published port) onto it without stopping them;
  - ``network`` without ``isolate``: joins that network as the operator made it;
  - neither (legacy, NOT isolated): Docker's default bridge, the port published on
    ``127.0.0.1`` only on a random host port; every server can reach every other;
* limits: memory (swap off: ``MemorySwap == Memory``), CPUs, pids; all capabilities
  dropped, ``no-new-privileges``, no restart policy (ipydoc decides what runs);
* the user's files on a named volume ``{volume_prefix}NAME`` (Docker seeds a new volume
  with the image's home directory, so ownership is right) or on a host directory
  ``bind_root/NAME`` bind-mounted at the notebook directory.  Stop never removes them;
  only :meth:`DockerBackend.purge` does.

A container that has the right name but not our labels is somebody else's: ipydoc never
removes it and reports a conflict instead.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import datetime
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredLock, gatherResults
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from ipydoc.backends.base import BackendError, BackendEvent, ServerInfo, ServerSpec
from ipydoc.backends.docker_api import DockerAPI
from ipydoc.backends.docker_network import (
    EGRESS,
    ICC_OPTION,
    NETWORK_LABEL,
    HostFirewall,
    bridge_interface,
)
from ipydoc.backends.jupyter_args import server_args
from ipydoc.names import InvalidName, validate_name

log = Logger()

USER_LABEL = "ipydoc.user"
MANAGED_LABEL = "ipydoc.managed"
BASE_URL_LABEL = "ipydoc.base_url"  # which routing mode it was started for (adoption)
EVENT_ACTIONS = ("start", "die", "destroy")


def parse_docker_time(value: str | None) -> float | None:
    """Docker's RFC 3339 nanosecond timestamps to a Unix time; the zero time is None."""
    if not value or value.startswith("0001-01-01"):
        return None
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", value)
    if not m:
        return None
    base, frac, tz = m.groups()
    tz = "+00:00" if tz == "Z" else tz
    try:
        t = datetime.fromisoformat(base + tz).timestamp()
    except ValueError:
        return None
    if frac:
        t += int(frac[:9].ljust(9, "0")) / 1e9
    return t


class DockerBackend:
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
        self.notebook_dir = notebook_dir
        self.cmd = list(cmd) if cmd else ["jupyter", "lab"]
        self.port = int(port)
        self.volume_prefix = volume_prefix
        self.storage = storage
        self.bind_root = os.path.abspath(bind_root) if bind_root else None
        self.uid = uid
        self.gid = gid
        self.name_prefix = name_prefix
        self.network = network
        self.extra_labels = dict(extra_labels or {})
        self.stop_timeout = stop_timeout
        self.start_timeout = start_timeout
        self.isolate = isolate
        self.egress = egress
        self.firewall = firewall
        self._network_lock = DeferredLock()
        self._firewalled: str | None = None  # the bridge whose host rules are in place
        # follow() state
        self._listener: Callable[[BackendEvent], None] | None = None
        self._on_open: Callable[[bool], None] | None = None
        self._opened_before = False
        self._following = False
        self._stream: Deferred | None = None
        self._retry = None
        self._backoff = 0.5
        self._last_time = 0  # timeNano of the last event seen, for replay after a reconnect
        self._last_keys: set[tuple] = set()
        self._locks: dict[str, DeferredLock] = {}

    # -- names ------------------------------------------------------------------------

    def container_name(self, name: str) -> str:
        return f"{self.name_prefix}{self._checked(name)}"

    def volume_name(self, name: str) -> str:
        return f"{self.volume_prefix}{self._checked(name)}"

    def user_dir(self, name: str) -> str:
        assert self.bind_root is not None
        return os.path.join(self.bind_root, self._checked(name))

    @staticmethod
    def _checked(name: str) -> str:
        # Names are validated at the edge; this is a last guard so that a bug elsewhere can
        # never turn into a path or a container name we did not mean.
        try:
            return validate_name(name)
        except InvalidName as e:
            raise BackendError("failed", f"refusing the user name {name!r}: {e}") from None

    def _labels(self, name: str) -> dict[str, str]:
        labels = dict(self.extra_labels)
        labels[USER_LABEL] = name
        labels[MANAGED_LABEL] = "1"
        return labels

    def _ours(self, c: dict, name: str | None = None) -> bool:
        """Is this inspected container one of ours (for ``name``, if given)?"""
        labels = (c.get("Config") or {}).get("Labels") or {}
        user = labels.get(USER_LABEL)
        if not user or labels.get(MANAGED_LABEL) != "1":
            return False
        if name is not None and user != name:
            return False
        return c.get("Name", "").lstrip("/") == f"{self.name_prefix}{user}"

    # -- the container body -----------------------------------------------------------

    def command(self, spec: ServerSpec) -> list[str]:
        """``cmd`` (default ``jupyter lab``) plus the options ipydoc's routing relies on."""
        return self.cmd + server_args(spec, port=self.port, root_dir=self.notebook_dir)

    def container_body(self, spec: ServerSpec, mount: dict) -> dict:
        env = dict(spec.env)
        env["IPYDOC_USER"] = spec.name
        env["JUPYTER_TOKEN"] = spec.token
        port_key = f"{self.port}/tcp"
        host_config: dict[str, Any] = {
            "Mounts": [mount],
            "SecurityOpt": ["no-new-privileges"],
            "CapDrop": ["ALL"],
            "RestartPolicy": {"Name": "no"},
            "Init": False,
        }
        if self.network:
            host_config["NetworkMode"] = self.network
        else:
            host_config["PortBindings"] = {port_key: [{"HostIp": "127.0.0.1", "HostPort": ""}]}
        if spec.mem_limit:
            host_config["Memory"] = int(spec.mem_limit)
            host_config["MemorySwap"] = int(spec.mem_limit)  # no swap on top of the limit
        if spec.cpu_limit:
            host_config["NanoCpus"] = int(round(spec.cpu_limit * 1e9))
        if spec.pids_limit:
            host_config["PidsLimit"] = int(spec.pids_limit)
        return {
            "Image": spec.image,
            "Cmd": self.command(spec),
            "Env": [f"{k}={v}" for k, v in env.items()],
            "Labels": {**self._labels(spec.name), BASE_URL_LABEL: spec.base_url},
            "User": f"{self.uid}:{self.gid}",
            "WorkingDir": self.notebook_dir,
            "ExposedPorts": {port_key: {}},
            "HostConfig": host_config,
        }

    # -- Backend ----------------------------------------------------------------------

    def _lock(self, name: str) -> DeferredLock:
        """One start/stop/purge at a time per user (in this process)."""
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = DeferredLock()
        return lock

    async def start(self, spec: ServerSpec) -> ServerInfo:
        async with self._lock(self._checked(spec.name)):
            return await self._start(spec)

    async def stop(self, name: str) -> None:
        async with self._lock(self._checked(name)):
            await self._stop(name)

    async def purge(self, name: str) -> None:
        """Delete the user's files (volume or directory).  Refused while a container exists."""
        async with self._lock(self._checked(name)):
            await self._purge(name)

    async def _start(self, spec: ServerSpec) -> ServerInfo:
        name = self._checked(spec.name)
        cname = self.container_name(name)
        await self._ensure_image(spec.image)
        if self.isolate:
            await self.ensure_network()

        existing = await self.api.inspect_container(cname)
        if existing is not None:
            if not self._ours(existing, name):
                raise BackendError(
                    "conflict",
                    f"a container named {cname} exists on the Docker engine and is not managed "
                    f"by ipydoc; remove or rename it",
                )
            log.info("removing the left-over container {cname}", cname=cname)
            await self.api.remove_container(existing["Id"], force=True)

        mount = await self._prepare_storage(name)
        body = self.container_body(spec, mount)
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
        info = self._info(c)
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
        cname = self.container_name(name)
        c = await self.api.inspect_container(cname)
        if c is None:
            return
        if not self._ours(c, name):
            log.warn("not stopping {cname}: it is not managed by ipydoc", cname=cname)
            return
        if (c.get("State") or {}).get("Running"):
            await self.api.stop_container(c["Id"], self.stop_timeout)
        await self.api.remove_container(c["Id"], force=True)
        log.info("stopped and removed {cname}", cname=cname)

    async def status(self, name: str) -> ServerInfo | None:
        c = await self.api.inspect_container(self.container_name(name))
        if c is None or not self._ours(c, name):
            return None
        return self._info(c)

    async def list(self) -> list[ServerInfo]:
        return [self._info(c) for c in await self._inspect_ours()]

    async def _inspect_ours(self) -> list[dict]:
        """Every container of ours, inspected."""
        rows = await self.api.list_containers({MANAGED_LABEL: "1", USER_LABEL: None}, all=True)
        ids = []
        for row in rows:
            labels = row.get("Labels") or {}
            user = labels.get(USER_LABEL)
            names = [n.lstrip("/") for n in row.get("Names") or []]
            if user and f"{self.name_prefix}{user}" in names:
                ids.append(row.get("Id"))
        inspected = await gatherResults(
            [Deferred.fromCoroutine(self.api.inspect_container(i)) for i in ids if i],
            consumeErrors=True,
        ) if ids else []
        return [c for c in inspected if c is not None and self._ours(c)]

    async def check(self) -> str:
        await self.api.ping()
        v = await self.api.version()
        return f"Docker {v.get('Version', '?')} (API {v.get('ApiVersion', '?')}) at {self.api.host}"

    async def _purge(self, name: str) -> None:
        cname = self.container_name(name)
        if await self.api.inspect_container(cname) is not None:
            raise BackendError("conflict", f"{name} still has a container ({cname}); stop it before purging")
        if self.storage == "volume":
            await self.api.remove_volume(self.volume_name(name))
        else:
            path = self.user_dir(name)
            if os.path.lexists(path):
                await deferToThreadPool(
                    self.reactor, self.reactor.getThreadPool(), shutil.rmtree, path
                )
        log.info("purged the files of {name}", name=name)

    # -- the users' network (isolate=True) ----------------------------------------------

    def _network_labels(self) -> dict[str, str]:
        return {**self.extra_labels, MANAGED_LABEL: "1", NETWORK_LABEL: "users"}

    def _owns_network(self, net: dict) -> bool:
        labels = net.get("Labels") or {}
        return all(labels.get(k) == v for k, v in self._network_labels().items())

    def _network_problem(self, net: dict) -> str | None:
        """Why ``net`` does not keep users apart as configured, or None."""
        if net.get("Driver") != "bridge":
            return f"is a {net.get('Driver')!r} network, not a bridge"
        if (net.get("Options") or {}).get(ICC_OPTION) != "false":
            return f"lets its containers reach each other ({ICC_OPTION} is not false)"
        if bool(net.get("Internal")) != (self.egress == "deny"):
            return ('is internal (no way out) but docker.egress = "allow"' if net.get("Internal")
                    else 'routes to the outside but docker.egress = "deny"')
        return None

    async def ensure_network(self) -> dict:
        """The users' network as configured: created if missing, recreated if it is ours
        and set up differently (e.g. ``egress`` changed), refused if it is someone else's
        and does not isolate; its host firewall installed.  One inspect when all is in
        place, so every start calls it (a network removed under us comes back)."""
        async with self._network_lock:
            net = await self.api.inspect_network(self.network)
            if net is None:
                return await self._create_network()
            problem = self._network_problem(net)
            if problem and not self._owns_network(net):
                raise BackendError(
                    "failed", f"the Docker network {self.network} {problem}; ipydoc did not "
                    f"create it and leaves it alone: remove it, or set docker.network to "
                    f"another name")
            if problem:
                return await self._recreate_network(net, problem)
            await self._install_firewall(net)
            return net

    async def _install_firewall(self, net: dict) -> None:
        bridge = bridge_interface(net)
        if self.firewall is None or bridge == self._firewalled:
            return
        if self._firewalled is not None:  # our network was removed and made again
            await self.firewall.remove(self._firewalled)
            self._firewalled = None
        if await self.firewall.install(bridge):
            self._firewalled = bridge

    async def _create_network(self) -> dict:
        try:
            await self.api.create_network(
                self.network, internal=self.egress == "deny", options={ICC_OPTION: "false"},
                labels=self._network_labels())
        except BackendError as e:
            if e.kind != "conflict":  # conflict: made meanwhile; checked below
                raise BackendError(
                    e.kind, f"could not create the users' network {self.network}: {e.message}"
                ) from None
        net = await self.api.inspect_network(self.network)
        if net is None:
            raise BackendError("failed", f"the users' network {self.network} vanished as it was made")
        problem = self._network_problem(net)
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

    async def _recreate_network(self, net: dict, problem: str) -> dict:
        """Replace our own network that no longer matches the configuration; the servers on
        it are disconnected and connected to the new one (they keep running)."""
        ours = []
        for cid in net.get("Containers") or {}:
            c = await self.api.inspect_container(cid)
            if c is None:
                continue
            if not self._ours(c):
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
        new = await self._create_network()
        for c in ours:
            fresh = await self.api.inspect_container(c["Id"])
            if fresh is not None and (fresh.get("State") or {}).get("Running"):
                await self._move_onto(new, fresh)
        return new

    async def prepare(self) -> None:
        """At daemon start, before reconciling: check the users' network and its host
        firewall, and move every running server that is not (only) on it — one an older
        ipydoc started on the default bridge with a published port — onto it, without
        stopping it.  With no server and no network yet, the first start makes it."""
        if not self.isolate:
            return
        running = [c for c in await self._inspect_ours() if (c.get("State") or {}).get("Running")]
        if not running and await self.api.inspect_network(self.network) is None:
            return
        net = await self.ensure_network()
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
        user = ((c.get("Config") or {}).get("Labels") or {}).get(USER_LABEL, "")
        try:
            if not joined:
                await self.api.connect_network(net["Id"], c["Id"])
            for nid in others.values():
                await self.api.disconnect_network(nid, c["Id"], force=True)
        except BackendError as e:
            log.warn("could not move the server of {name} onto the users' network {net}: "
                     "{why}; stopping it (its files are kept)", name=user, net=self.network,
                     why=e.message)
            await self.stop(user)
            return
        log.info("moved the running server of {name} ({id}) onto the users' network {net}"
                 "{left}", name=user, id=c["Id"][:12], net=self.network,
                 left=(" (off " + ", ".join(others) + ")") if others else "")

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
        if not self._ours(c, name):
            raise BackendError(
                "conflict", f"a container named {cname} exists and is not managed by ipydoc"
            )
        await self.api.remove_container(c["Id"], force=True)

    async def _prepare_storage(self, name: str) -> dict:
        if self.storage == "volume":
            vname = self.volume_name(name)
            await self.api.create_volume(vname, self._labels(name))
            return {"Type": "volume", "Source": vname, "Target": self.notebook_dir}
        path = self.user_dir(name)
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
            if os.geteuid() == 0:
                st = os.stat(path)
                if (st.st_uid, st.st_gid) != (self.uid, self.gid):
                    os.chown(path, self.uid, self.gid)
        except OSError as e:
            raise BackendError("failed", f"cannot prepare the directory {path} for {name}: {e}") from None
        return {"Type": "bind", "Source": path, "Target": self.notebook_dir}

    def _info(self, c: dict) -> ServerInfo:
        config = c.get("Config") or {}
        state = c.get("State") or {}
        labels = config.get("Labels") or {}
        running = bool(state.get("Running"))
        token = None
        for item in config.get("Env") or []:
            if item.startswith("JUPYTER_TOKEN="):
                token = item.split("=", 1)[1]
        return ServerInfo(
            name=labels.get(USER_LABEL, ""),
            id=c.get("Id", ""),
            running=running,
            url=self._url(c) if running else None,
            image=config.get("Image", ""),
            started_at=parse_docker_time(state.get("StartedAt")),
            token=token,
            base_url=labels.get(BASE_URL_LABEL),
        )

    def _url(self, c: dict) -> str | None:
        net = c.get("NetworkSettings") or {}
        if self.network:
            n = (net.get("Networks") or {}).get(self.network) or {}
            ip = n.get("IPAddress")
            return f"http://{ip}:{self.port}" if ip else None
        for b in (net.get("Ports") or {}).get(f"{self.port}/tcp") or []:
            if b.get("HostIp") in ("127.0.0.1", "") and b.get("HostPort"):
                return f"http://127.0.0.1:{b['HostPort']}"
        return None

    # -- events -----------------------------------------------------------------------

    def follow(self, listener: Callable[[BackendEvent], None],
               on_open: Callable[[bool], None] | None = None) -> None:
        """Call ``listener`` for start/die/destroy of our containers; reconnects by itself.

        ``on_open(reconnected)`` is called each time the stream is connected: events
        missed while it was down (a dockerd restart forgets them) are the caller's to
        reconcile."""
        self._listener = listener
        self._on_open = on_open
        if self._following:
            return
        self._following = True
        self._backoff = 0.5
        self._connect()

    def stop_following(self) -> None:
        self._following = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None

    def _connect(self) -> None:
        self._retry = None
        if not self._following:
            return
        since = None
        if self._last_time:
            since = f"{self._last_time // 10**9}.{self._last_time % 10**9:09d}"
        filters = {"type": ["container"], "label": [USER_LABEL], "event": list(EVENT_ACTIONS)}

        def opened() -> None:
            self._backoff = 0.5
            reconnected, self._opened_before = self._opened_before, True
            if reconnected:
                log.info("Docker events stream at {host} reconnected", host=self.api.host)
            if self._on_open is not None:
                self._on_open(reconnected)

        d = self.api.events(filters, self._on_event, since=since, on_open=opened)
        self._stream = d
        d.addCallbacks(self._ended, self._failed)

    def _ended(self, _: Any) -> None:
        self._stream = None
        if self._following:
            log.info("the Docker events stream ended; reconnecting")
            self._schedule()

    def _failed(self, f: Any) -> None:
        self._stream = None
        if f.check(CancelledError) or not self._following:
            return
        msg = f.value.message if f.check(BackendError) else f.getErrorMessage()
        log.warn("Docker events: {msg}; retrying in {s:g} s", msg=msg, s=self._backoff)
        self._schedule()

    def _schedule(self) -> None:
        delay = self._backoff
        self._backoff = min(self._backoff * 2, 10.0)
        self._retry = self.reactor.callLater(delay, self._connect)

    def _on_event(self, ev: dict) -> None:
        action = ev.get("Action") or ev.get("status")
        if ev.get("Type", "container") != "container" or action not in EVENT_ACTIONS:
            return
        actor = ev.get("Actor") or {}
        attrs = actor.get("Attributes") or {}
        user = attrs.get(USER_LABEL)
        if not user or attrs.get("name") != f"{self.name_prefix}{user}":
            return  # another deployment's container, or not one of ours
        cid = actor.get("ID") or ev.get("id") or ""
        t = ev.get("timeNano") or 0
        key = (cid, action)
        if t and t < self._last_time:
            return  # replayed after a reconnect, already delivered
        if t == self._last_time and key in self._last_keys:
            return
        if t > self._last_time:
            self._last_time = t
            self._last_keys = set()
        self._last_keys.add(key)
        if self._listener is not None:
            self._listener(BackendEvent(name=user, id=cid, action=action))


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


class UserNetworkService(Service):
    """Runs :meth:`DockerBackend.prepare` at daemon start, before the server manager
    reconciles (so servers moved onto the users' network are adopted at their new
    address).  An engine that is down does not stop the daemon: it is retried in the
    background (and every start ensures the network itself)."""

    name = "network"

    def __init__(self, backend: DockerBackend, reactor: Any) -> None:
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
