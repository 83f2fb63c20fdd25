"""``[[profiles]]`` and ``[groups]``: the named bundles a user may start a server with, and
which of them everyone may pick.  (Groups from logins are configured in the providers'
tables: ``[auth.github] group_teams``, ``[auth.oidc.<id>] groups_claim``.)

A profile names an image and, optionally, memory, CPUs, pids, environment variables,
read-only extra volumes and a GPU request.  A value a profile does not set comes from the
user's groups' default limits, then from ``[spawn]``.  A profile's image joins the image
allow-list (``spawn.images``): naming it in a profile *is* offering it.

With no ``[[profiles]]`` the site has one implicit profile, ``default``, that is
``[spawn]`` itself (image, limits), so nothing changes for a site that uses none.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

from ipydoc.config.errors import ConfigError
from ipydoc.config.types import fill, parse_size
from ipydoc.names import InvalidName, validate_name

DEFAULT_PROFILE = "default"
#: An environment variable's name (POSIX portable names).
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
#: Variables ipydoc sets itself: a profile may not override them.
RESERVED_ENV = frozenset({"JUPYTER_TOKEN", "IPYDOC_USER"})
#: A Docker named volume (Docker's own rule).
VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
#: Paths a volume may not be mounted over or be taken from.
FORBIDDEN_TARGETS = ("/", "/proc", "/sys", "/dev", "/etc", "/usr", "/bin", "/sbin", "/lib",
                     "/lib64", "/var/run", "/run", "/tmp")
FORBIDDEN_SOURCES = ("/", "/proc", "/sys", "/dev", "/etc", "/boot", "/root", "/var/run",
                     "/run", "/var/lib/docker")


@dataclass
class ProfileVolume:
    """Read-only shared data: ``source`` is an absolute host path (bind) or a named
    volume; ``target`` the absolute path in the container.  Always mounted read-only."""

    source: str = ""
    target: str = ""


@dataclass
class Profile:
    name: str = ""
    display_name: str = ""
    description: str = ""
    image: str = ""
    mem_limit: str = ""        # "" = from the groups' defaults, then [spawn]
    cpu_limit: float = -1.0    # -1 = from the groups' defaults, then [spawn]; 0 = none
    pids_limit: int = -1       # likewise
    environment: dict[str, str] = field(default_factory=dict)
    volumes: list[ProfileVolume] = field(default_factory=list)
    gpus: int = 0              # GPUs requested (Docker DeviceRequests); -1 = all

    @property
    def title(self) -> str:
        return self.display_name or self.name

    @property
    def mem_bytes(self) -> int | None:
        """The profile's memory limit in bytes, or None when it does not set one."""
        return parse_size(self.mem_limit) if self.mem_limit else None


@dataclass
class GroupsSection:
    #: Profiles every user may pick, whatever their groups.
    profiles_for_everyone: list[str] = field(default_factory=lambda: [DEFAULT_PROFILE])
    #: The profile a start without a choice uses (if the user may pick it; else the first
    #: profile they may pick).
    default_profile: str = DEFAULT_PROFILE


def read_profiles(value: object) -> list[Profile]:
    """The ``[[profiles]]`` array of tables, each table checked like any section."""
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ConfigError("profiles must be an array of tables ([[profiles]])")
    out = []
    for i, table in enumerate(value):
        p = Profile()
        volumes = table.get("volumes", [])
        if not isinstance(volumes, list) or not all(isinstance(v, dict) for v in volumes):
            raise ConfigError(f"profiles[{i}].volumes must be an array of tables "
                              "([[profiles.volumes]])")
        fill(p, f"profiles[{i}]", {k: v for k, v in table.items() if k != "volumes"})
        for j, v in enumerate(volumes):
            vol = ProfileVolume()
            fill(vol, f"profiles[{i}].volumes[{j}]", v)
            p.volumes.append(vol)
        out.append(p)
    return out


def _clean_abs(key: str, path: str) -> str:
    if not path.startswith("/") or posixpath.normpath(path) != path or "\x00" in path:
        raise ConfigError(f"{key} must be a clean absolute path (no .., no trailing /), "
                          f"not {path!r}")
    return path


def _validate_volume(key: str, v: ProfileVolume, notebook_dir: str) -> None:
    target = _clean_abs(f"{key}.target", v.target)
    if target in FORBIDDEN_TARGETS or target == notebook_dir:
        raise ConfigError(f"{key}.target {target!r} would hide a system directory or the "
                          "user's files; choose another path")
    if v.source.startswith("/"):
        source = _clean_abs(f"{key}.source", v.source)
        if any(source == f or source.startswith(f + "/") for f in FORBIDDEN_SOURCES
               if f != "/") or source == "/":
            raise ConfigError(f"{key}.source {source!r} is a system directory; share a "
                              "directory made for it")
    elif not VOLUME_NAME.fullmatch(v.source):
        raise ConfigError(f"{key}.source must be an absolute host path or a Docker volume "
                          f"name, not {v.source!r}")


def _validate_profile(key: str, p: Profile, notebook_dir: str) -> None:
    try:
        validate_name(p.name)
    except InvalidName as e:
        raise ConfigError(f"{key}.name: {e}") from None
    if not p.image:
        raise ConfigError(f"{key} ({p.name}): image must name an image")
    if p.mem_limit:
        try:
            parse_size(p.mem_limit)
        except ValueError as e:
            raise ConfigError(f"{key}.mem_limit: {e}") from None
    if p.cpu_limit < 0 and p.cpu_limit != -1:
        raise ConfigError(f"{key}.cpu_limit must be 0 (no limit) or positive")
    if p.pids_limit < -1:
        raise ConfigError(f"{key}.pids_limit must be 0 (no limit) or positive")
    if p.gpus < -1:
        raise ConfigError(f"{key}.gpus must be a number of GPUs (or -1: all of them)")
    for k in p.environment:
        if not ENV_NAME.fullmatch(k) or k in RESERVED_ENV:
            raise ConfigError(f"{key}.environment: {k!r} is not a variable name a profile "
                              f"may set (letters, digits, _; not {', '.join(sorted(RESERVED_ENV))})")
    targets = set()
    for j, v in enumerate(p.volumes):
        _validate_volume(f"{key}.volumes[{j}]", v, notebook_dir)
        if v.target in targets:
            raise ConfigError(f"{key}.volumes[{j}].target {v.target!r} is mounted twice")
        targets.add(v.target)


def validate(profiles: list[Profile], groups: GroupsSection, notebook_dir: str = "") -> None:
    """ConfigError naming the first profile or ``[groups]`` key that cannot be used."""
    names = set()
    for i, p in enumerate(profiles):
        _validate_profile(f"profiles[{i}]", p, notebook_dir)
        if p.name in names:
            raise ConfigError(f"profiles[{i}].name {p.name!r} is used twice")
        names.add(p.name)
    known = names or {DEFAULT_PROFILE}
    for n in groups.profiles_for_everyone:
        if n not in known:
            raise ConfigError(f"groups.profiles_for_everyone names {n!r}, which is no "
                              f"profile (profiles: {', '.join(sorted(known))})")
    if groups.default_profile not in known:
        raise ConfigError(f"groups.default_profile {groups.default_profile!r} is no profile "
                          f"(profiles: {', '.join(sorted(known))})")
