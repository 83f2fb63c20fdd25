"""What a user's Swarm service looks like: its spec as ipydoc writes it, and the
:class:`ServerInfo` read back from a service and its task.

The container inside is the Docker backend's (:class:`ContainerBody`: the same command and
Jupyter options, labels, environment with the token and nothing of it in argv, user,
working directory, volume name).  What Swarm's ``ContainerSpec`` at API 1.41 (Docker
20.10) can and cannot carry of the Docker backend's hardening:

* carried: all capabilities dropped (``CapabilityDrop: [ALL]``), memory, CPU and pids
  limits (``Resources.Limits``), no init, no restart (``RestartPolicy: none``), a
  profile's extra volumes (``ReadOnly`` mounts) and GPUs (a ``gpu`` generic-resource
  reservation: Swarm has no ``DeviceRequests``);
* not carried: ``no-new-privileges`` (``Privileges.NoNewPrivileges`` is API 1.46+; 20.10
  drops it silently) and ``MemorySwap`` (no swap limit in a service: on a node with swap a
  server may swap beyond its memory limit).  With every capability dropped a setuid
  program gains nothing, which covers most of what no-new-privileges is for.

The port is published in host mode (a random port on the node's own address), since the
routing mesh needs IPVS and overlay networks need a bridge the worker could not make here.
"""

from __future__ import annotations

from typing import Any

from ipydoc.backends.base import ServerInfo, ServerSpec
from ipydoc.backends.docker_body import (
    BASE_URL_LABEL,
    MANAGED_LABEL,
    ContainerBody,
    key_from_labels,
    parse_docker_time,
)
from ipydoc.names import owner_of, split_server_key

IMAGE_LABEL = "ipydoc.image"  # the image's name; the spec may hold its ID

RUNNING = "running"
#: Task states from which a task never runs again.
ENDED = ("complete", "shutdown", "failed", "rejected", "orphaned", "remove")


class ServiceBody:
    """The service spec of a user's server over the Docker backend's container body."""

    def __init__(self, body: ContainerBody, *, stop_timeout: int, volume_driver: str = "",
                 volume_options: dict[str, str] | None = None) -> None:
        self.body = body
        self.stop_timeout = stop_timeout
        self.volume_driver = volume_driver
        self.volume_options = dict(volume_options or {})

    def service_name(self, key: str) -> str:
        """The service of the server ``key`` (``{prefix}alice``, ``{prefix}alice--gpu``)."""
        return self.body.container_name(key)

    def ours(self, service: dict, key: str | None = None) -> bool:
        """Is this service one of ours (the server ``key``'s, if given)?"""
        spec = service.get("Spec") or {}
        labels = spec.get("Labels") or {}
        found = key_from_labels(labels)
        if not found or labels.get(MANAGED_LABEL) != "1" or (key is not None and found != key):
            return False
        return spec.get("Name") == f"{self.body.name_prefix}{found}"

    def mount(self, name: str) -> dict:
        """The owner's volume (``name``: the user; every server of theirs mounts it)."""
        volume_options: dict[str, Any] = {"Labels": self.body.labels(name)}
        if self.volume_driver:
            # "{name}" in an option is the user's name (e.g. an NFS export per user).
            volume_options["DriverConfig"] = {
                "Name": self.volume_driver,
                "Options": {k: v.replace("{name}", name) for k, v in self.volume_options.items()}}
        return {"Type": "volume", "Source": self.body.volume_name(name),
                "Target": self.body.notebook_dir, "VolumeOptions": volume_options}

    @staticmethod
    def generic_resources(spec: ServerSpec) -> dict:
        """A profile's GPUs as a reservation of the nodes' advertised ``gpu`` generic
        resource (Swarm has no DeviceRequests at API 1.41); nothing without a request."""
        if spec.gpus <= 0:
            return {}
        return {"Reservations": {"GenericResources": [
            {"DiscreteResourceSpec": {"Kind": "gpu", "Value": int(spec.gpus)}}]}}

    def spec(self, spec: ServerSpec, image_ref: str, node_id: str | None) -> dict:
        """The ``POST /services/create`` body: one replica, never restarted, pinned to
        ``node_id`` (None: anywhere), port published in host mode."""
        env = dict(spec.env)
        env["IPYDOC_USER"], env["IPYDOC_SERVER"] = split_server_key(spec.name)
        env["JUPYTER_TOKEN"] = spec.token
        labels = {**self.body.labels(spec.name), BASE_URL_LABEL: spec.base_url,
                  IMAGE_LABEL: spec.image}
        limits: dict[str, int] = {}
        if spec.mem_limit:
            limits["MemoryBytes"] = int(spec.mem_limit)
        if spec.cpu_limit:
            limits["NanoCPUs"] = int(round(spec.cpu_limit * 1e9))
        if spec.pids_limit:
            limits["Pids"] = int(spec.pids_limit)
        return {
            "Name": self.service_name(spec.name),
            "Labels": labels,
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": image_ref,
                    # Args, not Command: Command would replace the image's entrypoint, as
                    # the Docker backend's Cmd does not.
                    "Args": self.body.command(spec),
                    "Env": [f"{k}={v}" for k, v in env.items()],
                    "Labels": labels,
                    "User": f"{self.body.uid}:{self.body.gid}",
                    "Dir": self.body.notebook_dir,
                    "Mounts": [self.mount(owner_of(spec.name)), *self.body.shared_mounts(spec)],
                    "CapabilityDrop": ["ALL"],
                    "Init": False,
                    "StopGracePeriod": int(self.stop_timeout * 1e9),
                },
                "Resources": {"Limits": limits, **self.generic_resources(spec)},
                "RestartPolicy": {"Condition": "none", "MaxAttempts": 0},
                "Placement": {"Constraints": [f"node.id=={node_id}"] if node_id else []},
            },
            "Mode": {"Replicated": {"Replicas": 1}},
            "EndpointSpec": {"Ports": [{"Protocol": "tcp", "TargetPort": self.body.port,
                                        "PublishMode": "host"}]},
        }

    # -- read back --------------------------------------------------------------------

    @staticmethod
    def pinned_node(service: dict) -> str | None:
        constraints = (((service.get("Spec") or {}).get("TaskTemplate") or {})
                       .get("Placement") or {}).get("Constraints") or []
        for c in constraints:
            key, _, value = c.replace(" ", "").partition("==")
            if key == "node.id" and value:
                return value
        return None

    @staticmethod
    def mem_limit(service: dict) -> int:
        limits = (((service.get("Spec") or {}).get("TaskTemplate") or {})
                  .get("Resources") or {}).get("Limits") or {}
        return int(limits.get("MemoryBytes") or 0)

    def published_port(self, task: dict) -> int | None:
        for p in ((task.get("Status") or {}).get("PortStatus") or {}).get("Ports") or []:
            if p.get("TargetPort") == self.body.port and p.get("PublishedPort"):
                return int(p["PublishedPort"])
        return None

    def info(self, service: dict, task: dict | None, node_addrs: dict[str, str],
             ready_nodes: set[str]) -> ServerInfo:
        """The server a service of ours is; running only while its task runs on a node
        that is up (a task on a down node is reported running by the manager for a long
        while; its server is unreachable)."""
        spec = service.get("Spec") or {}
        labels = spec.get("Labels") or {}
        container = (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
        token = None
        for item in container.get("Env") or []:
            if item.startswith("JUPYTER_TOKEN="):
                token = item.split("=", 1)[1]
        url = None
        running = False
        started = None
        if task is not None:
            status = task.get("Status") or {}
            node = task.get("NodeID") or ""
            port = self.published_port(task)
            running = (status.get("State") == RUNNING and task.get("DesiredState") == RUNNING
                       and node in ready_nodes)
            if running and port and node_addrs.get(node):
                url = f"http://{node_addrs[node]}:{port}"
            if running:
                started = parse_docker_time(status.get("Timestamp"))
        return ServerInfo(
            name=key_from_labels(labels),
            id=service.get("ID", ""),
            running=running and url is not None,
            url=url,
            image=labels.get(IMAGE_LABEL) or container.get("Image", ""),
            started_at=started,
            token=token,
            base_url=labels.get(BASE_URL_LABEL),
        )


def current_task(tasks: list[dict]) -> dict | None:
    """The newest task of a service (one replica, no restarts: normally the only one)."""
    if not tasks:
        return None
    return max(tasks, key=lambda t: ((t.get("Version") or {}).get("Index") or 0,
                                     t.get("CreatedAt") or ""))
