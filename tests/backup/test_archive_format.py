"""The backup archive format (ipydoc.backup.archive, .manifest): what is written is read
back byte for byte, and whatever does not match the manifest is refused."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from ipydoc.backup import archive
from ipydoc.backup.manifest import (
    BadArchive,
    Manifest,
    Member,
    classify,
    history_member,
    parse,
    volume_member,
)


def _site(tmp_path: Path) -> tuple[Manifest, dict[str, Path]]:
    """A manifest and staged files like a real backup's (random contents)."""
    stage = tmp_path / "stage"
    stage.mkdir()
    contents = {"redis/dump.rdb": os.urandom(5000), "secret": os.urandom(64),
                "config/ipydoc.toml": b"[server]\nstate_dir = '/x'\n",
                history_member("alice"): os.urandom(70000), volume_member("bob"): b""}
    files = {}
    manifest = Manifest("0.1.0", 1700000000.0, "/etc/ipydoc.toml",
                        ["redis", "history", "secret", "config", "volumes"])
    for i, (name, data) in enumerate(contents.items()):
        path = stage / f"f{i}"
        path.write_bytes(data)
        files[name] = path
        d = archive.file_digest(path)
        manifest.members.append(Member(name, d.size, d.sha256))
    return manifest, files


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_round_trip(tmp_path, suffix):
    manifest, files = _site(tmp_path)
    dest = tmp_path / f"site{suffix}"
    archive.write(dest, manifest, files, archive.NoMeter(), manifest.created)
    assert not dest.with_name(dest.name + ".partial").exists()
    assert oct(dest.stat().st_mode & 0o777) == "0o600"
    with tarfile.open(dest) as tar:
        assert tar.getnames()[0] == "manifest.json"
    out = tmp_path / "out"
    back = archive.read(dest, out, archive.NoMeter())
    assert back.members == manifest.members
    assert back.users("history") == ["alice"] and back.users("volumes") == ["bob"]
    for name, path in files.items():
        assert (out / name).read_bytes() == path.read_bytes()


def test_unknown_suffix_refused(tmp_path):
    with pytest.raises(ValueError, match=".tar or .tar.gz"):
        archive.tar_mode(tmp_path / "site.zip")


def _written(tmp_path: Path, suffix: str = ".tar") -> tuple[Path, Manifest, dict[str, Path]]:
    manifest, files = _site(tmp_path)
    dest = tmp_path / f"site{suffix}"
    archive.write(dest, manifest, files, archive.NoMeter(), manifest.created)
    return dest, manifest, files


def test_a_changed_byte_is_refused(tmp_path):
    dest, manifest, files = _written(tmp_path)
    data = bytearray(dest.read_bytes())
    secret = files["secret"].read_bytes()
    at = data.index(secret) + 10  # a byte inside the secret member's data
    data[at] ^= 0x01
    dest.write_bytes(bytes(data))
    with pytest.raises(BadArchive, match="sha256"):
        archive.read(dest, None, archive.NoMeter())


def test_a_changed_byte_in_gzip_is_refused(tmp_path):
    dest, _, _ = _written(tmp_path, ".tar.gz")
    data = bytearray(dest.read_bytes())
    data[len(data) // 2] ^= 0x40
    dest.write_bytes(bytes(data))
    with pytest.raises(BadArchive):
        archive.read(dest, tmp_path / "out", archive.NoMeter())


def test_truncated_archive_is_refused(tmp_path):
    dest, _, _ = _written(tmp_path)
    data = dest.read_bytes()
    dest.write_bytes(data[: len(data) // 3])
    with pytest.raises(BadArchive):
        archive.read(dest, None, archive.NoMeter())


def _tar(dest: Path, manifest: dict, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> None:
    with tarfile.open(dest, "w") as tar:
        body = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tar.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tar.addfile(info, io.BytesIO(m[1]))


def _doc(members: list[tuple[str, bytes]], **extra) -> dict:
    doc = {"format": "ipydoc-backup", "version": 1, "ipydoc": "0.1.0", "created": 1.0,
           "config_path": "/c", "parts": ["secret", "history", "config", "volumes"],
           "members": [{"name": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
                       for n, d in members]}
    doc.update(extra)
    return doc


def test_unknown_format_version_is_refused(tmp_path):
    dest = tmp_path / "a.tar"
    _tar(dest, _doc([("secret", b"x" * 64)], version=2), [("secret", b"x" * 64)])
    with pytest.raises(BadArchive, match="unknown backup format version 2"):
        archive.read(dest, None, archive.NoMeter())


def test_traversal_names_are_refused_in_manifest_and_tar(tmp_path):
    for bad in ("../evil", "/etc/passwd", "history/../../evil.bundle", "history/a/b.bundle",
                "volumes/Bob.tar", "secret/x"):
        with pytest.raises(BadArchive):
            classify(bad)
    dest = tmp_path / "a.tar"
    out = tmp_path / "out"
    _tar(dest, _doc([("secret", b"s" * 64)]), [("../../evil", b"boom"), ("secret", b"s" * 64)])
    with pytest.raises(BadArchive, match="not in the manifest"):
        archive.read(dest, out, archive.NoMeter())
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()
    with pytest.raises(BadArchive, match="unexpected member name"):
        parse(json.dumps(_doc([("../escape", b"x")])).encode())


def test_links_and_devices_are_refused(tmp_path):
    out = tmp_path / "out"
    for kind in (tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.DIRTYPE):
        link = tarfile.TarInfo(history_member("alice"))
        link.type = kind
        link.linkname = "/etc/shadow"
        dest = tmp_path / f"link{kind!r}.tar"
        _tar(dest, _doc([(history_member("alice"), b"")]), [link])
        with pytest.raises(BadArchive, match="not a regular file"):
            archive.read(dest, out, archive.NoMeter())
    assert not (out / "history" / "alice.bundle").exists()


def test_sizes_and_duplicates_are_bounded_by_the_manifest(tmp_path):
    dest = tmp_path / "a.tar"
    _tar(dest, _doc([("secret", b"s" * 64)]), [("secret", b"s" * 65)])
    with pytest.raises(BadArchive, match="65 bytes, the manifest says 64"):
        archive.read(dest, None, archive.NoMeter())
    _tar(dest, _doc([("secret", b"s" * 64)]), [("secret", b"s" * 64), ("secret", b"s" * 64)])
    with pytest.raises(BadArchive, match="twice"):
        archive.read(dest, tmp_path / "o2", archive.NoMeter())
    _tar(dest, _doc([("secret", b"s" * 64)]), [])
    with pytest.raises(BadArchive, match="lacks secret"):
        archive.read(dest, None, archive.NoMeter())


def test_manifest_must_come_first(tmp_path):
    dest = tmp_path / "a.tar"
    with tarfile.open(dest, "w") as tar:
        info = tarfile.TarInfo("secret")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(BadArchive, match="does not start with manifest.json"):
        archive.read(dest, None, archive.NoMeter())
    dest.write_bytes(b"this is not a tar file at all" * 50)
    with pytest.raises(BadArchive):
        archive.read(dest, None, archive.NoMeter())


def _volume_tar(path: Path, entries: list[tarfile.TarInfo]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info in entries:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isreg() else None)
    return path


def _entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", size: int = 1):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = size if kind == tarfile.REGTYPE else 0
    return info


def test_volume_tars_are_checked_before_unpacking(tmp_path):
    from ipydoc.backends.volume_archive import BadVolumeTar, check_volume_tar

    good = _volume_tar(tmp_path / "good.tar", [
        _entry("ipydoc-volume/", tarfile.DIRTYPE), _entry("ipydoc-volume/a.txt"),
        _entry("ipydoc-volume/link", tarfile.SYMTYPE, "/etc/passwd"),  # the user's own link
        _entry("ipydoc-volume/hard", tarfile.LNKTYPE, "ipydoc-volume/a.txt")])
    assert check_volume_tar(good) == 4
    for bad, why in (([_entry("ipydoc-volume/../../etc/cron.d/x")], "outside"),
                     ([_entry("/etc/passwd")], "outside"),
                     ([_entry("elsewhere/a")], "outside"),
                     ([_entry("ipydoc-volume/h", tarfile.LNKTYPE, "etc/shadow")], "outside"),
                     ([_entry("ipydoc-volume/dev", tarfile.CHRTYPE)], "device"),
                     ([_entry("ipydoc-volume/dev", tarfile.BLKTYPE)], "device")):
        with pytest.raises(BadVolumeTar, match=why):
            check_volume_tar(_volume_tar(tmp_path / "bad.tar", bad))
    (tmp_path / "junk.tar").write_bytes(b"junk" * 300)
    with pytest.raises(BadVolumeTar):
        check_volume_tar(tmp_path / "junk.tar")


def test_a_partial_site_is_not_complete(tmp_path):
    manifest, _ = _site(tmp_path)
    manifest.check_complete()
    for member in ("redis/dump.rdb", "secret", "config/ipydoc.toml"):
        partial = Manifest("0.1.0", 1.0, "/c", manifest.parts,
                           [m for m in manifest.members if m.name != member])
        with pytest.raises(BadArchive, match=f"has no {member}"):
            partial.check_complete()
