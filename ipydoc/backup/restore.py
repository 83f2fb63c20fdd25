"""``ipydoc restore``: bring a site back from an archive, into an empty state directory.

Three phases, so a bad archive never leaves anything behind:

1. **Check the target**: no daemon runs on it, the state directory holds nothing but
   (perhaps) the config file, the Redis of ``redis.url`` (if any) has no ``ipydoc:*``
   key, and (``--volumes``) no user of the archive has files yet.
2. **Verify the archive**: every member is unpacked into a private directory inside the
   state directory and checked against the manifest (:func:`ipydoc.backup.archive.read`),
   volumes' tars entry by entry (:func:`~ipydoc.backends.volume_archive.check_volume_tar`);
   on any doubt that directory is removed and nothing else was written.
3. **Apply**: the signing secret (0600), the history repositories, the Redis keys
   (:mod:`ipydoc.state.snapshot`; sessions left out with ``--no-sessions``), the users'
   files (``--volumes``).  The archived config is put beside them as
   ``backup-config.toml`` (for comparison; the config in use is the one given).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from ipydoc.backends.base import BackendError
from ipydoc.backends.volume_archive import BadVolumeTar, VolumeArchive, check_volume_tar
from ipydoc.backup import archive, histories
from ipydoc.backup.manifest import (
    CONFIG_MEMBER,
    REDIS_MEMBER,
    SECRET_MEMBER,
    BadArchive,
    Manifest,
    history_member,
    volume_member,
)
from ipydoc.backup.meters import Meters, no_meters
from ipydoc.config.load import Config
from ipydoc.history.repo import GitError
from ipydoc.state import snapshot
from ipydoc.state.redis_url import parse


class RestoreRefused(RuntimeError):
    """The target is not empty, a daemon runs on it, or the archive does not fit it."""


class SiteRestore:
    """Restores an archive into the site ``cfg`` describes."""

    def __init__(self, cfg: Config, *, sessions: bool = True,
                 volumes: VolumeArchive | None = None, meters: Meters = no_meters) -> None:
        self.cfg = cfg
        self.state = cfg.state_path
        self.sessions = sessions
        self.volumes = volumes
        self.meters = meters
        self.target = parse(cfg.redis.url) if cfg.redis.url else None

    async def run(self, src: Path) -> dict[str, Any]:
        if not src.is_file():
            raise RestoreRefused(f"{src}: no such file")
        started = time.time()
        await self._check_target()
        made = not self.state.exists()
        self.state.mkdir(mode=0o750, parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".restore-", dir=self.state))
        try:
            meter = self.meters("verifying archive", None)  # unpacked bytes
            try:
                manifest = archive.read(src, work / "members", meter)
            finally:
                meter.close()
            if self.volumes is not None:
                await self._check_volumes(manifest, work / "members")
            manifest.check_complete()
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            if made:
                self.state.rmdir()  # as it was: nothing written
            raise
        try:
            result = await self._apply(manifest, work)
        except (RestoreRefused, OSError) as e:
            raise RestoreRefused(
                f"{e}\nthe archive was good but the restore stopped partway: "
                f"{self.state} (and the Redis of redis.url, and users' volumes with "
                "--volumes) now hold part of the site; empty them and run it again") from None
        finally:
            shutil.rmtree(work, ignore_errors=True)
        result["seconds"] = round(time.time() - started, 3)
        return result

    # -- 1. the target -------------------------------------------------------------------------
    async def _check_target(self) -> None:
        if self._daemon_runs():
            raise RestoreRefused(f"an ipydoc daemon runs on {self.state} (its control socket "
                                 f"{self.cfg.control_socket} answers): stop it first")
        if self.state.exists():
            config = Path(self.cfg.path).resolve()
            extra = sorted(p.name for p in self.state.iterdir() if p.resolve() != config)
            if extra:
                raise RestoreRefused(
                    f"{self.state} is not empty ({', '.join(extra[:5])}): restore needs an "
                    "empty server.state_dir (only the config file may be there)")
        if self.target is not None:
            redis = await self._connect_target()
            try:
                if await snapshot.has_ipydoc_keys(redis):
                    raise RestoreRefused(f"{self.target.describe()} already holds ipydoc:* "
                                         "keys: restore needs a Redis without ipydoc's keys")
            finally:
                await redis.disconnect()

    def _daemon_runs(self) -> bool:
        path = self.cfg.control_socket
        if not path.exists():
            return False
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(str(path))
                return True
            except OSError:
                return False

    async def _check_volumes(self, manifest: Manifest, members: Path) -> None:
        assert self.volumes is not None
        if "volumes" not in manifest.parts:
            raise RestoreRefused("--volumes: this archive holds no volumes (made without "
                                 "`backup --volumes`)")
        for name in manifest.users("volumes"):
            try:
                check_volume_tar(members / volume_member(name))
            except BadVolumeTar as e:
                raise BadArchive(f"{volume_member(name)}: {e}") from None
        taken = [n for n in manifest.users("volumes") if await self.volumes.exists(n)]
        if taken:
            raise RestoreRefused(f"these users have files already: {', '.join(taken[:10])}; "
                                 "restore --volumes writes only into new volumes")

    async def _connect_target(self) -> Any:
        try:
            return await snapshot.connect(self.target, None)
        except snapshot.SnapshotError as e:
            raise RestoreRefused(str(e)) from None

    # -- 3. apply ------------------------------------------------------------------------------
    async def _apply(self, manifest: Manifest, work: Path) -> dict[str, Any]:
        members = work / "members"
        secret = self.state / "secret"
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write((members / SECRET_MEMBER).read_bytes())
        shutil.copyfile(members / CONFIG_MEMBER, self.state / "backup-config.toml")
        os.chmod(self.state / "backup-config.toml", 0o600)
        restored = self._histories(manifest, members)
        keys = await self._redis(manifest, members / REDIS_MEMBER, work / "source")
        volumes: list[str] = []
        if self.volumes is not None:
            for name in manifest.users("volumes"):
                path = members / volume_member(name)
                meter = self.meters(f"volume {name}", path.stat().st_size)
                try:
                    await self.volumes.restore(name, path, meter.update)
                except BackendError as e:
                    raise RestoreRefused(f"restoring {name}'s files: {e.message}") from None
                finally:
                    meter.close()
                volumes.append(name)
        return {"state_dir": str(self.state), "histories": restored, "keys": keys,
                "sessions": self.sessions, "volumes": volumes,
                "volumes_in_archive": manifest.users("volumes"),
                "backup_created": manifest.created}

    def _histories(self, manifest: Manifest, members: Path) -> list[str]:
        names = sorted(manifest.users("history") + manifest.empty_histories)
        meter = self.meters("history", len(names), "repo")
        try:
            for name in names:
                bundle = members / history_member(name)
                try:
                    histories.unbundle(self.state, name, bundle if bundle.exists() else None,
                                       self.cfg.history.git)
                except GitError as e:
                    raise RestoreRefused(f"restoring {name}'s history: {e}") from None
                meter.update(1)
        finally:
            meter.close()
        return names

    async def _redis(self, manifest: Manifest, rdb: Path, workdir: Path) -> dict[str, int]:
        command = self.cfg.redis.command
        try:
            with snapshot.throwaway(rdb, workdir, command) as source_server:
                source = await snapshot.connect(None, source_server.socket, manifest.redis_db)
                try:
                    if self.target is not None:
                        target = await snapshot.connect(self.target, None)
                        try:
                            return await self._copy(source, target)
                        finally:
                            await target.disconnect()
                    with snapshot.embedded(self.state, command) as server:
                        target = await snapshot.connect(None, server.socket)
                        try:
                            counts = await self._copy(source, target)
                            await snapshot.persist(target)
                            return counts
                        finally:
                            await target.disconnect()
                finally:
                    await source.disconnect()
        except snapshot.SnapshotError as e:
            raise RestoreRefused(f"restoring Redis: {e}") from None

    async def _copy(self, source: Any, target: Any) -> dict[str, int]:
        meter = self.meters("redis keys", None, "key")
        try:
            return await snapshot.copy_keys(source, target, self.sessions, meter.update)
        finally:
            meter.close()


__all__ = ["BadArchive", "RestoreRefused", "SiteRestore"]
