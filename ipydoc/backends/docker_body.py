"""What a user's container looks like: its names, labels and body as ipydoc writes them,
and the :class:`ServerInfo` read back from an inspected one.

Kept apart from the backend's calls so that what runs in a container (limits, security
options, mounts, environment, command) reads in one place.  A container that has the
right name but not our labels is somebody else's: :meth:`ContainerBody.ours` says which.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from typing import Any

from ipydoc.backends.base import BackendError, ServerInfo, ServerSpec
from ipydoc.backends.jupyter_args import server_args
from ipydoc.names import InvalidName, server_key, split_server_key, validate_name

USER_LABEL = "ipydoc.user"      # the owner (a user name), for every server of the user
SERVER_LABEL = "ipydoc.server"  # the server's name; "" (or absent: older ipydoc) = default
MANAGED_LABEL = "ipydoc.managed"
BASE_URL_LABEL = "ipydoc.base_url"  # which routing mode it was started for (adoption)


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


def checked_name(name: str) -> str:
    """``name`` if it is a valid user name, else BackendError.

    Names are validated at the edge; this is a last guard so that a bug elsewhere can
    never turn into a path or a container name we did not mean."""
    try:
        return validate_name(name)
    except InvalidName as e:
        raise BackendError("failed", f"refusing the user name {name!r}: {e}") from None


def checked_key(key: str) -> str:
    """``key`` if it is a valid server key (``USER`` or ``USER--SERVER``), else
    BackendError: the same last guard as :func:`checked_name`, for what names a server
    (container, service, lock) rather than a person (volume, directory, placement)."""
    try:
        split_server_key(key)
    except InvalidName as e:
        raise BackendError("failed", f"refusing the server key {key!r}: {e}") from None
    return key


def key_from_labels(labels: dict[str, str]) -> str:
    """The server key our labels name (owner, server name), "" when they name none."""
    try:
        return server_key(labels.get(USER_LABEL) or "", labels.get(SERVER_LABEL) or "")
    except InvalidName:
        return ""


class ContainerBody:
    """Names, labels and the create body of each user's container (``network``: the
    network it joins, or None for the default bridge with a port on ``127.0.0.1``)."""

    def __init__(
        self,
        *,
        notebook_dir: str,
        cmd: list[str],
        port: int,
        volume_prefix: str,
        storage: str,
        bind_root: str | None,
        uid: int,
        gid: int,
        name_prefix: str,
        network: str | None,
        extra_labels: dict[str, str],
    ) -> None:
        self.notebook_dir = notebook_dir
        self.cmd = cmd
        self.port = port
        self.volume_prefix = volume_prefix
        self.storage = storage
        self.bind_root = bind_root
        self.uid = uid
        self.gid = gid
        self.name_prefix = name_prefix
        self.network = network
        self.extra_labels = extra_labels

    # -- names ------------------------------------------------------------------------

    def container_name(self, key: str) -> str:
        """The container of the server ``key`` (``{prefix}alice``, ``{prefix}alice--gpu``)."""
        return f"{self.name_prefix}{checked_key(key)}"

    def volume_name(self, name: str) -> str:
        return f"{self.volume_prefix}{checked_name(name)}"

    def user_dir(self, name: str) -> str:
        assert self.bind_root is not None
        return os.path.join(self.bind_root, checked_name(name))

    def labels(self, key: str) -> dict[str, str]:
        """Our labels for the server ``key`` (a user name: the default server, and the
        labels of the user's volume): the owner and the server's name ("" default)."""
        owner, server = split_server_key(checked_key(key))
        labels = dict(self.extra_labels)
        labels[USER_LABEL] = owner
        labels[SERVER_LABEL] = server
        labels[MANAGED_LABEL] = "1"
        return labels

    def ours(self, c: dict, key: str | None = None) -> bool:
        """Is this inspected container one of ours (the server ``key``'s, if given)?"""
        labels = (c.get("Config") or {}).get("Labels") or {}
        found = key_from_labels(labels)
        if not found or labels.get(MANAGED_LABEL) != "1":
            return False
        if key is not None and found != key:
            return False
        return c.get("Name", "").lstrip("/") == f"{self.name_prefix}{found}"

    # -- written ----------------------------------------------------------------------

    def mount(self, name: str) -> dict:
        """Where the user's files go: the volume or the bind directory, at the notebook
        directory (the volume or directory must exist: the backend prepares it).  ``name``
        is the owner: every server of a user mounts the same files."""
        if self.storage == "volume":
            return {"Type": "volume", "Source": self.volume_name(name), "Target": self.notebook_dir}
        return {"Type": "bind", "Source": self.user_dir(name), "Target": self.notebook_dir}

    def command(self, spec: ServerSpec) -> list[str]:
        """``cmd`` (default ``jupyter lab``) plus the options ipydoc's routing relies on."""
        return self.cmd + server_args(spec, port=self.port, root_dir=self.notebook_dir)

    @staticmethod
    def shared_mounts(spec: ServerSpec) -> list[dict]:
        """A profile's extra volumes, each read-only (a bind for a host path; a named
        volume is never created here: ``NoCopy`` keeps the image's files out of it)."""
        out: list[dict] = []
        for v in spec.volumes:
            if v.is_bind:
                out.append({"Type": "bind", "Source": v.source, "Target": v.target,
                            "ReadOnly": True})
            else:
                out.append({"Type": "volume", "Source": v.source, "Target": v.target,
                            "ReadOnly": True, "VolumeOptions": {"NoCopy": True}})
        return out

    @staticmethod
    def device_requests(spec: ServerSpec) -> list[dict]:
        """A profile's GPU request as Docker's ``DeviceRequests`` (the nvidia driver)."""
        if not spec.gpus:
            return []
        return [{"Driver": "", "Count": int(spec.gpus), "Capabilities": [["gpu"]]}]

    def body(self, spec: ServerSpec, mount: dict) -> dict:
        """The Engine API create body: limits (swap off), all capabilities dropped,
        ``no-new-privileges``, no restart policy; the token only in the environment."""
        env = dict(spec.env)
        owner, server = split_server_key(spec.name)
        env["IPYDOC_USER"] = owner
        env["IPYDOC_SERVER"] = server
        env["JUPYTER_TOKEN"] = spec.token
        port_key = f"{self.port}/tcp"
        host_config: dict[str, Any] = {
            "Mounts": [mount, *self.shared_mounts(spec)],
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
        if spec.gpus:
            host_config["DeviceRequests"] = self.device_requests(spec)
        return {
            "Image": spec.image,
            "Cmd": self.command(spec),
            "Env": [f"{k}={v}" for k, v in env.items()],
            "Labels": {**self.labels(spec.name), BASE_URL_LABEL: spec.base_url},
            "User": f"{self.uid}:{self.gid}",
            "WorkingDir": self.notebook_dir,
            "ExposedPorts": {port_key: {}},
            "HostConfig": host_config,
        }

    # -- read back --------------------------------------------------------------------

    def info(self, c: dict) -> ServerInfo:
        """The server an inspected container of ours is (token from its environment)."""
        config = c.get("Config") or {}
        state = c.get("State") or {}
        labels = config.get("Labels") or {}
        running = bool(state.get("Running"))
        token = None
        for item in config.get("Env") or []:
            if item.startswith("JUPYTER_TOKEN="):
                token = item.split("=", 1)[1]
        return ServerInfo(
            name=key_from_labels(labels),
            id=c.get("Id", ""),
            running=running,
            url=self.url(c) if running else None,
            image=config.get("Image", ""),
            started_at=parse_docker_time(state.get("StartedAt")),
            token=token,
            base_url=labels.get(BASE_URL_LABEL),
            paused=running and bool(state.get("Paused")),
        )

    def url(self, c: dict) -> str | None:
        net = c.get("NetworkSettings") or {}
        if self.network:
            n = (net.get("Networks") or {}).get(self.network) or {}
            ip = n.get("IPAddress")
            return f"http://{ip}:{self.port}" if ip else None
        for b in (net.get("Ports") or {}).get(f"{self.port}/tcp") or []:
            if b.get("HostIp") in ("127.0.0.1", "") and b.get("HostPort"):
                return f"http://127.0.0.1:{b['HostPort']}"
        return None
