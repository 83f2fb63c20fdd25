"""``ipydoc server move NAME NODE``: move a user's files to another Swarm node.

The order keeps every byte: stop the user's servers (the default and every named one: they
share the files; through the manager, as ``server stop`` does), copy the volume to the target node and verify it (byte count and sha256 at
both ends and in between, :mod:`ipydoc.backends.swarm_move`), and only then re-pin the
user to the target; start the server there if it was running.  If the copy fails, the pin
is unchanged and the server is started again where it was.  The old volume is kept on the
source node: a move never deletes a user's only copy (``docker volume rm`` it there once
you are satisfied).

From the stop until the pin changes the move holds the start lease of each of the user's
servers (:mod:`ipydoc.state.leases`), so no daemon of the site starts one on the files
being copied; a start asked meanwhile waits for the move and then reports the stop.  The
servers that ran are started again afterwards.

Refused, with the reason, before anything is stopped: a backend that is not Swarm, an
unknown node, a node that is down or drained, the node the user is already on, a user who
was never placed (their first start places them), a source node that is down.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

from twisted.logger import Logger

from ipydoc.backends.base import BackendError
from ipydoc.backends.swarm_move import VolumeMover
from ipydoc.servers.manager import ServerManager, StartFailed
from ipydoc.state.leases import DAEMON_ID, LeaseKeeper, start_lease

log = Logger()


@runtime_checkable
class MovableBackend(Protocol):
    """What a move needs of the backend (the Swarm backend has it; Docker does not)."""

    async def nodes(self) -> list[Any]: ...

    async def node_of(self, name: str) -> str | None: ...

    async def pin(self, name: str, node_id: str) -> None: ...

    def image_ref(self, image: str) -> Any: ...

    def volume_mover(self) -> VolumeMover: ...


class MoveRefused(Exception):
    """The move was not started (``kind``: not_available, not_found, conflict, failed)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass
class MoveReport:
    """What a move did, for the CLI."""

    name: str
    source: str = ""            # hostnames
    target: str = ""
    bytes: int = 0
    sha256: str = ""
    seconds: float = 0.0
    was_running: bool = False
    running: bool = False
    steps: list[str] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "from": self.source, "to": self.target,
                "bytes": self.bytes, "sha256": self.sha256, "seconds": round(self.seconds, 2),
                "was_running": self.was_running, "running": self.running,
                "steps": self.steps, "old_volume_kept_on": self.source}


def _get(node: Any, key: str) -> str:
    value = node.get(key) if isinstance(node, dict) else getattr(node, key, "")
    return str(value or "")


class Mover:
    """Runs moves with the server manager (stop/start) and the Swarm backend (pins, copy)."""

    def __init__(self, manager: ServerManager, backend: Any) -> None:
        self.manager = manager
        self.backend = backend

    async def move(self, name: str, node: str, say: Callable[[str], None] | None = None) -> MoveReport:
        backend = self.backend
        if not isinstance(backend, MovableBackend):
            raise MoveRefused("not_available", "server move needs spawn.backend = swarm (with "
                                               "the Docker backend every user is on this machine)")
        if getattr(backend, "shared_storage", False):
            raise MoveRefused("conflict", "with swarm.volume_driver the files are on shared "
                                          "storage: nobody is pinned, there is nothing to move")
        report = MoveReport(name)

        def step(message: str) -> None:
            report.steps.append(message)
            log.info("move of {name}: {message}", name=name, message=message)
            if say is not None:
                say(message)

        nodes = await backend.nodes()
        target = _find(nodes, node)
        if target is None:
            known = ", ".join(sorted(_get(n, "hostname") for n in nodes))
            raise MoveRefused("not_found", f"no node {node} in the swarm (nodes: {known})")
        report.target = _get(target, "hostname")
        if _get(target, "state") != "ready" or _get(target, "availability") not in ("", "active"):
            raise MoveRefused("conflict", f"node {report.target} is {_get(target, 'state')}"
                                          f"/{_get(target, 'availability')}: it cannot take a "
                                          "user now")
        source_id = await backend.node_of(name)
        if not source_id:
            raise MoveRefused("conflict", f"{name} has no node yet (never started): nothing to "
                                          "move; their first start places them")
        source = _find(nodes, source_id)
        report.source = _get(source, "hostname") if source is not None else source_id
        if source_id == _get(target, "id"):
            raise MoveRefused("conflict", f"{name} is already on {report.target}")
        if source is None or _get(source, "state") != "ready":
            raise MoveRefused("conflict", f"{name}'s files are on {report.source}, which is "
                                          "down: they cannot be copied until it is back")

        records = {s.name: s for s in await self.manager.store.servers_of(name)}
        keys = sorted(set(records) | {name})  # the default server first (a prefix)
        ran = [k for k in keys if self._runs(k, records.get(k))]
        report.was_running = bool(ran)
        record = records.get(name) or next(iter(records.values()), None)
        image = (record.image if record is not None and record.image
                 else self.manager.limits.allowed_images[0])
        image_ref = backend.image_ref(image)
        if inspect.isawaitable(image_ref):
            image_ref = await image_ref
        for key in ran:
            step(f"stopping the server {key}")
            await self.manager.stop(key, f"moving to {report.target}")
        # From here until the pin changes no daemon of the site may start a server of the
        # user (it would write to the files being copied): the move holds their start
        # leases, under an owner of its own, so starts here and elsewhere wait for it.
        store = self.manager.store
        keepers: list[LeaseKeeper] = []
        try:
            for key in keys:
                lease = await store.take_lease(start_lease(key), self.manager.lease_ttl,
                                               owner=f"{DAEMON_ID}/move")
                if lease is None:
                    raise MoveRefused("conflict", f"the server {key} is being started; "
                                                  f"{name} stays on {report.source} (move "
                                                  "again)")
                keepers.append(LeaseKeeper(store, lease, self.manager.lease_ttl,
                                           self.manager.reactor))
            failure = await self._copy_and_pin(name, keys, image_ref, source_id, target,
                                               report, keepers, step)
        except MoveRefused as e:
            failure = e
        finally:
            for keeper in keepers:
                await keeper.release()
        where = "again where it was" if failure is not None else f"on {report.target}"
        for key in ran:
            await self._start(key, report, step, where)
        if failure is not None:
            raise failure
        return report

    def _runs(self, key: str, record: Any) -> bool:
        return self.manager.is_busy(key) or key in self.manager.routes or (
            record is not None and record.state in ("running", "starting", "paused"))

    async def _copy_and_pin(self, name: str, keys: list[str], image_ref: str,
                            source_id: str, target: Any, report: MoveReport,
                            keepers: list[LeaseKeeper],
                            step: Callable[[str], None]) -> MoveRefused | None:
        """Under the start leases: copy, verify, re-pin.  The reason it did not, or None."""
        # A start that won a lease between the stop and here has run (a start waiting
        # for a lease now is harmless: it cannot run before the lease is given up).
        records = await self.manager.store.get_servers(keys)
        for key in keys:
            record = records.get(key)
            if key in self.manager.routes or (
                    record is not None and record.state in ("running", "starting")):
                return MoveRefused("conflict", f"the server {key} was started again before "
                                               f"the copy; {name} stays on {report.source} "
                                               "(move again)")
        step(f"copying {name}'s files from {report.source} to {report.target}")
        t0 = time.monotonic()
        try:
            copied = await self.backend.volume_mover().copy(
                name, image_ref, source_id, _get(target, "id"), progress=step)
        except BackendError as e:
            await self.manager.store.add_server_event("move-failed", name, e.message[:500])
            return MoveRefused("failed", f"the move of {name} failed and {name} stays on "
                                         f"{report.source}: {e.message}")
        report.bytes, report.sha256, report.seconds = copied.bytes, copied.sha256, copied.seconds
        if any(k.lost for k in keepers):  # a lease expired (Redis out of reach): a start may have run
            return MoveRefused("conflict", f"the move lost its hold on {name}'s starts during "
                                           f"the copy; {name} stays on {report.source} (move "
                                           "again)")
        await self.backend.pin(name, _get(target, "id"))
        detail = (f"from {report.source} to {report.target}: {copied.bytes} bytes verified "
                  f"(sha256 {copied.sha256[:16]}) in {time.monotonic() - t0:.1f}s; the old "
                  f"volume is kept on {report.source}")
        await self.manager.store.add_server_event("move", name, detail)
        step(f"moved {detail}")
        return None

    async def _start(self, name: str, report: MoveReport, step: Callable[[str], None],
                     where: str) -> None:
        step(f"starting the server {name} {where}")
        for attempt in (1, 2):
            try:
                await self.manager.start(name)
                report.running = True
                return
            except StartFailed as e:
                if e.kind == "stopped" and attempt == 1:
                    # A start asked during the move waited for it and ended as stopped (the
                    # move's stop); this start may have joined it: start anew.
                    continue
                step(f"the server of {name} did not start ({e.kind}): {e.message}")
                return


def _find(nodes: list[Any], wanted: str) -> Any:
    """The node whose hostname or id is ``wanted`` (or whose id starts with it, when that
    is unique and at least 6 characters)."""
    for n in nodes:
        if wanted in (_get(n, "hostname"), _get(n, "id")):
            return n
    prefixed = [n for n in nodes if len(wanted) >= 6 and _get(n, "id").startswith(wanted)]
    return prefixed[0] if len(prefixed) == 1 else None
