"""The archive file: one tar (gzip when the name ends ``.tar.gz`` / ``.tgz``), the
manifest first, then every member it lists.

Writing goes to ``FILE.partial`` and is renamed into place at the end, so a backup that
fails never leaves a file that looks complete.  Reading is one pass in tar's stream mode
(nothing seeks, so a pipe would do) and trusts nothing: the first member must be the
manifest, every other member must be a regular file the manifest names, of the size it
states, once; its bytes go to a path built from the manifest's checked name (never from
the tar header), and their SHA-256 is compared with the manifest's.  Links, devices,
directories, unknown names, extra or missing members are refused.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import zlib
from pathlib import Path
from typing import IO, Protocol

from ipydoc.backup.manifest import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    BadArchive,
    Manifest,
    Member,
    parse,
)

CHUNK = 1024 * 1024


class Meter(Protocol):
    """Progress of one long piece of work (bytes); the CLI shows it as a bar."""

    def update(self, n: int) -> None: ...

    def close(self) -> None: ...


class NoMeter:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def tar_mode(path: Path) -> str:
    """The tarfile write mode for ``path``'s name; ValueError for an unknown ending."""
    name = path.name
    if name.endswith((".tar.gz", ".tgz")):
        return "w:gz"
    if name.endswith(".tar"):
        return "w"
    raise ValueError(f"{path}: the archive's name must end in .tar or .tar.gz")


def file_digest(path: Path) -> Member:
    """Size and SHA-256 of a staged file (its member name is filled in by the caller)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return Member("", size, h.hexdigest())


class _Counted:
    """A file read by tarfile, reporting its progress to a meter."""

    def __init__(self, f: IO[bytes], meter: Meter) -> None:
        self._f = f
        self._meter = meter

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._meter.update(len(data))
        return data


def write(path: Path, manifest: Manifest, files: dict[str, Path], meter: Meter,
          mtime: float) -> None:
    """Write ``manifest`` and then each listed member's staged file to ``path``."""
    mode = tar_mode(path)
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        extra = {"compresslevel": 6} if mode == "w:gz" else {}  # gzip's default, not 9
        with os.fdopen(fd, "wb") as raw, \
                tarfile.open(fileobj=raw, mode=mode, **extra) as tar:  # type: ignore[call-overload]
            body = manifest.to_json()
            tar.addfile(_info(MANIFEST_NAME, len(body), mtime), _Bytes(body))
            for m in manifest.members:
                with open(files[m.name], "rb") as f:
                    tar.addfile(_info(m.name, m.size, mtime), _Counted(f, meter))
            tar.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._data) if n < 0 else self._pos + n
        out = self._data[self._pos:end]
        self._pos += len(out)
        return out


def _info(name: str, size: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = int(mtime)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def read(path: Path, into: Path | None, meter: Meter) -> Manifest:
    """Check the archive at ``path`` against its manifest, copying each member to
    ``into / NAME`` (or only hashing it when ``into`` is None); BadArchive says why not."""
    try:
        with tarfile.open(path, mode="r|*") as tar:
            return _read(tar, into, meter)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise BadArchive(f"the archive is damaged or not a tar file: {e}") from None


def _read(tar: tarfile.TarFile, into: Path | None, meter: Meter) -> Manifest:
    first = tar.next()
    if first is None or first.name != MANIFEST_NAME or not first.isreg():
        raise BadArchive(f"the archive does not start with {MANIFEST_NAME}")
    if first.size > MAX_MANIFEST_BYTES:
        raise BadArchive("the manifest is too large")
    f = tar.extractfile(first)
    assert f is not None
    manifest = parse(f.read(first.size))
    seen: set[str] = set()
    while (info := tar.next()) is not None:
        expected = manifest.member(info.name)
        if expected is None:
            raise BadArchive(f"member {info.name[:120]!r} is not in the manifest")
        if not info.isreg():
            raise BadArchive(f"member {info.name} is not a regular file")
        if info.name in seen:
            raise BadArchive(f"member {info.name} appears twice")
        if info.size != expected.size:
            raise BadArchive(f"member {info.name} has {info.size} bytes, the manifest says "
                             f"{expected.size}")
        seen.add(info.name)
        src = tar.extractfile(info)
        assert src is not None
        digest = _copy(src, expected, into, meter)
        if digest != expected.sha256:
            raise BadArchive(f"member {info.name} does not match its sha256 in the manifest "
                             "(the archive was changed or damaged)")
    missing = [m.name for m in manifest.members if m.name not in seen]
    if missing:
        raise BadArchive(f"the archive lacks {', '.join(missing[:5])} (truncated?)")
    return manifest


def _copy(src: IO[bytes], member: Member, into: Path | None, meter: Meter) -> str:
    """Hash (and copy) exactly ``member.size`` bytes; the hex digest."""
    h = hashlib.sha256()
    out = None
    if into is not None:
        target = into / member.name  # a checked shape (manifest.classify), no '..'
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        out = open(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
    try:
        left = member.size
        while left > 0:
            chunk = src.read(min(CHUNK, left))
            if not chunk:
                raise BadArchive(f"member {member.name} ends early")
            left -= len(chunk)
            h.update(chunk)
            if out is not None:
                out.write(chunk)
            meter.update(len(chunk))
    finally:
        if out is not None:
            out.close()
    return h.hexdigest()
