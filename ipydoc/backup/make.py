"""``ipydoc backup``: one archive of a site's state, made in the CLI process.

Order, for consistency: the Redis snapshot first (a point in time, taken by Redis), then
the history repositories (each bundle is whole; a save that lands meanwhile may be in a
bundle but not yet in the snapshot's queue, never half), then the signing secret and the
config, then (``--volumes``) each user's files.  Every part is staged in a private
directory next to the archive, because the manifest (first in the archive) lists every
member's size and SHA-256; the staging directory is removed at the end, success or not.
The daemon may keep running.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ipydoc import __version__
from ipydoc.backends.volume_archive import VolumeArchive
from ipydoc.backup import archive, histories
from ipydoc.backup.manifest import (
    CONFIG_MEMBER,
    REDIS_MEMBER,
    SECRET_MEMBER,
    Manifest,
    Member,
    history_member,
    volume_member,
)
from ipydoc.backup.meters import Meters, no_meters
from ipydoc.config.load import Config
from ipydoc.state import snapshot
from ipydoc.state.redis_url import parse


class BackupError(RuntimeError):
    """The backup could not be made; the message says why."""


class SiteBackup:
    """Makes the archive of the site ``cfg`` describes (``volumes``: with users' files)."""

    def __init__(self, cfg: Config, *, volumes: VolumeArchive | None = None,
                 meters: Meters = no_meters, redis_cli: str = "redis-cli") -> None:
        self.cfg = cfg
        self.state = cfg.state_path
        self.volumes = volumes
        self.meters = meters
        self.redis_cli = redis_cli

    async def run(self, dest: Path) -> dict[str, Any]:
        try:
            archive.tar_mode(dest)
        except ValueError as e:
            raise BackupError(str(e)) from None
        if not (self.state / "secret").is_file():
            raise BackupError(f"{self.state} has no signing secret: is server.state_dir the "
                              "state directory of a site that has run?")
        dest.parent.mkdir(parents=True, exist_ok=True)
        started = time.time()
        staging = Path(tempfile.mkdtemp(prefix=".ipydoc-backup-", dir=dest.parent))
        try:
            files, manifest = await self._stage(staging, started)
            meter = self.meters("writing archive", manifest.total_bytes)
            try:
                archive.write(dest, manifest, files, meter, started)
            finally:
                meter.close()
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return {"file": str(dest), "bytes": dest.stat().st_size, "parts": manifest.parts,
                "members": len(manifest.members),
                "histories": manifest.users("history") + manifest.empty_histories,
                "volumes": manifest.users("volumes"), "seconds": round(time.time() - started, 3)}

    async def _stage(self, staging: Path, started: float) -> tuple[dict[str, Path], Manifest]:
        files: dict[str, Path] = {}
        parts = ["redis", "history", "secret", "config"]
        manifest = Manifest(__version__, started, str(Path(self.cfg.path).resolve()), parts)
        files[REDIS_MEMBER] = self._redis(staging)
        manifest.redis_db = parse(self.cfg.redis.url).db if self.cfg.redis.url else 0
        names = histories.users(self.state)
        meter = self.meters("history", len(names), "repo")
        try:
            for name in names:
                path = staging / f"{name}.bundle"
                if histories.bundle(self.state, name, path, self.cfg.history.git):
                    files[history_member(name)] = path
                else:
                    manifest.empty_histories.append(name)
                meter.update(1)
        finally:
            meter.close()
        files[SECRET_MEMBER] = self._copy(self.state / "secret", staging / "secret")
        files[CONFIG_MEMBER] = self._copy(Path(self.cfg.path), staging / "ipydoc.toml")
        if self.volumes is not None:
            parts.append("volumes")
            manifest.storage = self.cfg.docker.storage
            for name in await self.volumes.users():
                path = staging / f"{name}.tar"
                meter = self.meters(f"volume {name}", None)
                try:
                    await self.volumes.export(name, path, meter.update)
                finally:
                    meter.close()
                files[volume_member(name)] = path
        for member, path in files.items():
            digest = archive.file_digest(path)
            manifest.members.append(Member(member, digest.size, digest.sha256))
        return files, manifest

    def _redis(self, staging: Path) -> Path:
        """The RDB snapshot, from the running server (or the embedded one, started here
        on the state directory when no daemon runs)."""
        dest = staging / "dump.rdb"
        try:
            if self.cfg.redis.url:
                snapshot.take_rdb(parse(self.cfg.redis.url), None, dest, self.redis_cli)
            elif snapshot.embedded_running(self.state):
                snapshot.take_rdb(None, snapshot.embedded_socket(self.state), dest,
                                  self.redis_cli)
            elif (self.state / "redis").is_dir():
                with snapshot.embedded(self.state, self.cfg.redis.command) as server:
                    snapshot.take_rdb(None, server.socket, dest, self.redis_cli)
            else:
                raise BackupError(f"{self.state} has no redis data and no redis.url is set")
        except snapshot.SnapshotError as e:
            raise BackupError(str(e)) from None
        return dest

    @staticmethod
    def _copy(src: Path, dest: Path) -> Path:
        shutil.copyfile(src, dest)
        dest.chmod(0o600)
        return dest
