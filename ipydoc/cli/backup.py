"""Handlers of ``ipydoc backup FILE`` and ``ipydoc restore FILE``.

They run in this process, not in the daemon (archives are large and AMP is not for
streams): the config file (``--config``) says where the state directory, Redis and the
users' volumes are.  The work is :mod:`ipydoc.backup`; here are the options, the
progress bars (:mod:`ipydoc.cli.progress`) and the answer (a summary, or JSON).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable, Coroutine

from ipydoc.cli.client import load_config
from ipydoc.cli.errors import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, CliError
from ipydoc.cli.progress import meters


def backup(args: argparse.Namespace) -> int:
    from ipydoc.backup.make import BackupError, SiteBackup

    cfg = load_config(args)

    async def work(volumes: Any) -> dict[str, Any]:
        try:
            return await SiteBackup(cfg, volumes=volumes, meters=meters(args)).run(
                Path(args.file).absolute())
        except BackupError as e:
            raise CliError(f"backup failed: {e}", EXIT_REFUSED) from None

    result = _run(cfg, args.volumes, work)
    human = (f"wrote {result['file']} ({_size(result['bytes'])}, {result['members']} members) "
             f"in {result['seconds']:.1f} s\n"
             f"history of {len(result['histories'])} user(s); "
             + (f"files of {len(result['volumes'])} user(s)" if "volumes" in result["parts"]
                else "no volumes (add --volumes)"))
    print(json.dumps(result) if args.json else human)
    return EXIT_OK


def restore(args: argparse.Namespace) -> int:
    from ipydoc.backup.manifest import BadArchive
    from ipydoc.backup.restore import RestoreRefused, SiteRestore

    cfg = load_config(args)

    async def work(volumes: Any) -> dict[str, Any]:
        try:
            return await SiteRestore(cfg, sessions=not args.no_sessions, volumes=volumes,
                                     meters=meters(args)).run(Path(args.file))
        except BadArchive as e:
            raise CliError(f"refusing the archive, nothing was written: {e}",
                           EXIT_REFUSED) from None
        except RestoreRefused as e:
            raise CliError(f"restore refused: {e}", EXIT_REFUSED) from None

    result = _run(cfg, args.volumes, work)
    keys = result["keys"]
    left = [n for n in result["volumes_in_archive"] if n not in result["volumes"]]
    human = (f"restored into {result['state_dir']} in {result['seconds']:.1f} s: "
             f"{keys['copied']} Redis keys ({keys['skipped']} left out"
             f"{'' if result['sessions'] else ', sessions among them'}), history of "
             f"{len(result['histories'])} user(s), files of {len(result['volumes'])} user(s)"
             + (f"\nthe archive also holds files of {len(left)} user(s): add --volumes"
                if left else ""))
    print(json.dumps(result) if args.json else human)
    return EXIT_OK


def _run(cfg: Any, with_volumes: bool,
         work: Callable[[Any], Coroutine[Any, Any, dict[str, Any]]]) -> dict[str, Any]:
    """Run ``work(volume_archive or None)`` on the reactor; its result or its error."""
    if with_volumes and cfg.spawn.backend != "docker":
        raise CliError("--volumes covers the docker backend only (Swarm volumes live on "
                       "their nodes: back them up there)", EXIT_USAGE)
    from twisted.internet import defer, reactor

    from ipydoc.backends.docker_api import DockerAPI
    from ipydoc.backends.volume_archive import VolumeArchive

    outcome: list[Any] = []

    async def main() -> dict[str, Any]:
        if not with_volumes:
            return await work(None)
        d = cfg.docker
        api = DockerAPI(reactor, d.host or None)
        volumes = VolumeArchive(reactor, api, image=cfg.spawn.image, instance=d.instance,
                                storage=d.storage, volume_prefix=d.volume_prefix,
                                bind_root=d.bind_root)
        try:
            return await work(volumes)
        finally:
            await volumes.close()
            await api.close()

    def start() -> None:
        d = defer.Deferred.fromCoroutine(main())
        d.addBoth(lambda r: (outcome.append(r), reactor.stop()))

    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=False)
    if hasattr(outcome[0], "raiseException"):
        failure = outcome[0]
        from ipydoc.backends.base import BackendError

        if failure.check(BackendError):
            raise CliError(failure.value.message, EXIT_REFUSED)
        failure.raiseException()
    return outcome[0]


def _size(n: int) -> str:
    for unit in ("GiB", "MiB", "KiB"):
        scale = 1024 ** (("KiB", "MiB", "GiB").index(unit) + 1)
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
