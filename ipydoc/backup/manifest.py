"""The manifest of a backup archive: what is in it, and the rule for member names.

The manifest is the archive's first member (``manifest.json``): the format version, the
ipydoc version, when and from which config it was made, which parts it holds, and every
other member's name, size and SHA-256.  Restore trusts nothing in the archive it cannot
check against the manifest, and the manifest itself only as far as this module's
:func:`parse` accepts it: member names come from a fixed set of shapes (no path of the
archive's choosing is ever used on disk), sizes are bounded, digests are hex.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ipydoc.names import InvalidName, validate_name

FORMAT = "ipydoc-backup"
VERSION = 1
MANIFEST_NAME = "manifest.json"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_MEMBER_BYTES = 1 << 50  # a sanity bound: a volume may be large, not unbounded

PARTS = ("redis", "history", "secret", "config", "volumes")
REDIS_MEMBER = "redis/dump.rdb"
SECRET_MEMBER = "secret"
CONFIG_MEMBER = "config/ipydoc.toml"
_PER_USER = {"history": ("history/", ".bundle"), "volumes": ("volumes/", ".tar")}


class BadArchive(ValueError):
    """The archive is not one restore may use; the message says why."""


def history_member(name: str) -> str:
    return f"history/{validate_name(name)}.bundle"


def volume_member(name: str) -> str:
    return f"volumes/{validate_name(name)}.tar"


def classify(member: str) -> tuple[str, str | None]:
    """(part, user name or None) of a member name; BadArchive for any other shape."""
    fixed = {REDIS_MEMBER: "redis", SECRET_MEMBER: "secret", CONFIG_MEMBER: "config"}
    if member in fixed:
        return fixed[member], None
    for part, (prefix, suffix) in _PER_USER.items():
        if member.startswith(prefix) and member.endswith(suffix):
            user = member[len(prefix):-len(suffix)]
            try:
                return part, validate_name(user)
            except InvalidName:
                break
    raise BadArchive(f"unexpected member name {member[:120]!r}")


@dataclass(frozen=True)
class Member:
    name: str
    size: int
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "sha256": self.sha256}


@dataclass
class Manifest:
    ipydoc_version: str
    created: float
    config_path: str
    parts: list[str]
    members: list[Member] = field(default_factory=list)
    redis_db: int = 0
    empty_histories: list[str] = field(default_factory=list)  # repos with no commit yet
    storage: str = ""  # docker.storage of the volumes ("volume" or "bind"), "" without

    def member(self, name: str) -> Member | None:
        return next((m for m in self.members if m.name == name), None)

    def users(self, part: str) -> list[str]:
        """The users with a member of ``part`` (history, volumes)."""
        found = [classify(m.name) for m in self.members]
        return sorted(u for p, u in found if p == part and u)

    def check_complete(self) -> None:
        """A site's archive has the snapshot, the secret and the config (restore needs
        them all); BadArchive if one is missing."""
        for member in (REDIS_MEMBER, SECRET_MEMBER, CONFIG_MEMBER):
            if self.member(member) is None:
                raise BadArchive(f"the archive has no {member}: not a whole site's backup")

    @property
    def total_bytes(self) -> int:
        return sum(m.size for m in self.members)

    def to_json(self) -> bytes:
        return json.dumps({
            "format": FORMAT, "version": VERSION, "ipydoc": self.ipydoc_version,
            "created": self.created, "config_path": self.config_path, "parts": self.parts,
            "redis_db": self.redis_db, "empty_histories": self.empty_histories,
            "storage": self.storage, "members": [m.as_dict() for m in self.members],
        }, indent=1).encode()


def parse(data: bytes) -> Manifest:
    """Read and check a manifest; BadArchive says what is wrong with it."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise BadArchive("the manifest is too large")
    try:
        doc = json.loads(data)
    except ValueError:
        raise BadArchive("the manifest is not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BadArchive("not an ipydoc backup (manifest format)")
    if doc.get("version") != VERSION:
        raise BadArchive(f"unknown backup format version {doc.get('version')!r} "
                         f"(this ipydoc reads version {VERSION})")
    try:
        parts = [str(p) for p in doc["parts"]]
        if any(p not in PARTS for p in parts):
            raise BadArchive(f"unknown part in {parts}")
        members = [_member(m) for m in doc["members"]]
        empty = [validate_name(n) for n in doc.get("empty_histories", [])]
        manifest = Manifest(str(doc["ipydoc"]), float(doc["created"]), str(doc["config_path"]),
                            parts, members, int(doc.get("redis_db", 0)), empty,
                            str(doc.get("storage", "")))
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, BadArchive):
            raise
        raise BadArchive(f"the manifest is malformed ({e})") from None
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise BadArchive("the manifest lists a member twice")
    for m in members:
        if classify(m.name)[0] not in parts:
            raise BadArchive(f"{m.name} belongs to a part the manifest does not list")
    if "redis" in parts and manifest.member(REDIS_MEMBER) is None:
        raise BadArchive("the manifest lists the redis part but no snapshot")
    return manifest


def _member(m: Any) -> Member:
    name, size, digest = m["name"], m["size"], m["sha256"]
    if not isinstance(name, str) or not isinstance(size, int) or not isinstance(digest, str):
        raise BadArchive("a manifest member is malformed")
    classify(name)
    if not 0 <= size <= MAX_MEMBER_BYTES:
        raise BadArchive(f"{name}: size {size} out of bounds")
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise BadArchive(f"{name}: sha256 is not 64 hex digits")
    return Member(name, size, digest)
