"""Which profile a start uses: the one place every path (start page, control channel and
CLI, REST API) asks, so a profile not offered to a user is refused the same way
everywhere, as an image off the allow-list always was.

:func:`resolve` takes the user's groups and the profile asked for (None: the one of their
last start if still offered, else ``groups.default_profile``, else the first offered) and
returns the :class:`Profile` to start, or raises :class:`ProfileRefused`
(a :class:`StartFailed` of kind ``bad_profile``).

What a user may pick: ``groups.profiles_for_everyone`` plus the ``profiles`` of each of
their groups.  Limits: an admin's per-user override (``user set-limits``) first, then the
profile's own value, then the most generous of the user's groups' defaults (0 = no limit
is the most generous), then ``[spawn]``.

The configuration is read duck-typed (``config/`` is a sibling layer): :meth:`Catalogue.build`
takes ``[[profiles]]`` and ``[groups]`` as the tap has them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from ipydoc.backends.base import SharedVolume
from ipydoc.names import owner_of
from ipydoc.servers.start_handle import StartFailed
from ipydoc.state.groups import Group

DEFAULT = "default"


class ProfileRefused(StartFailed):
    """The profile asked for is not offered to this user (or does not exist)."""

    def __init__(self, message: str) -> None:
        super().__init__("bad_profile", message)


@dataclass(frozen=True)
class Profile:
    """A named bundle a start may use.  ``None`` limits: not set by the profile (0: no
    limit); ``image`` empty: ``[spawn]``'s image or the user's choice among ``spawn.images``."""

    name: str
    title: str = ""
    description: str = ""
    image: str = ""
    mem_limit: int | None = None
    cpu_limit: float | None = None
    pids_limit: int | None = None
    env: tuple[tuple[str, str], ...] = ()
    volumes: tuple[SharedVolume, ...] = ()
    gpus: int = 0

    def public(self) -> dict[str, Any]:
        """What users and the CLI see (environment names only: values may be secrets)."""
        return {"name": self.name, "title": self.title or self.name,
                "description": self.description, "image": self.image,
                "mem_limit": self.mem_limit, "cpu_limit": self.cpu_limit,
                "pids_limit": self.pids_limit, "env": sorted(k for k, _ in self.env),
                "volumes": [{"source": v.source, "target": v.target, "read_only": True}
                            for v in self.volumes], "gpus": self.gpus}


@dataclass(frozen=True)
class Catalogue:
    """The site's profiles (in the config's order) and the rules of ``[groups]``."""

    profiles: tuple[Profile, ...] = (Profile(DEFAULT, "Default"),)
    for_everyone: tuple[str, ...] = (DEFAULT,)
    default: str = DEFAULT
    by_name: dict[str, Profile] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {p.name: p for p in self.profiles})

    @classmethod
    def build(cls, profiles: Sequence[Any], groups: Any) -> Catalogue:
        """From ``Config.profiles`` and ``Config.groups`` (no profiles: the implicit
        ``default``, which is ``[spawn]``)."""
        if not profiles:
            return cls(for_everyone=tuple(groups.profiles_for_everyone),
                       default=groups.default_profile)
        made = tuple(Profile(
            p.name, p.display_name or p.name, p.description, p.image,
            p.mem_bytes if p.mem_limit else None,
            None if p.cpu_limit == -1 else p.cpu_limit,
            None if p.pids_limit == -1 else p.pids_limit,
            tuple(sorted(p.environment.items())),
            tuple(SharedVolume(v.source, v.target) for v in p.volumes), p.gpus)
            for p in profiles)
        return cls(made, tuple(groups.profiles_for_everyone), groups.default_profile)

    @property
    def images(self) -> tuple[str, ...]:
        return tuple(p.image for p in self.profiles if p.image)

    def offered(self, groups: Sequence[Group]) -> list[Profile]:
        """The profiles a member of ``groups`` may pick, in the config's order."""
        names = set(self.for_everyone)
        for g in groups:
            names.update(g.profiles)
        return [p for p in self.profiles if p.name in names]

    def resolve(self, groups: Sequence[Group], requested: str | None,
                previous: str = "") -> Profile:
        """The profile to start; :class:`ProfileRefused` when ``requested`` is not offered
        (or nothing is)."""
        offered = {p.name: p for p in self.offered(groups)}
        if requested:
            if requested in offered:
                return offered[requested]
            if requested not in self.by_name:
                raise ProfileRefused(f"there is no profile {requested!r} here")
            raise ProfileRefused(f"the profile {requested!r} is not offered to you "
                                 "(your groups do not include it)")
        for name in (previous, self.default):
            if name in offered:
                return offered[name]
        if offered:
            return next(iter(offered.values()))
        raise ProfileRefused("no profile is offered to you; ask an administrator to add "
                             "you to a group")


def group_defaults(groups: Sequence[Group]) -> dict[str, int | float | None]:
    """The most generous default limit of ``groups`` per field (0: no limit wins);
    fields no group sets are absent."""
    out: dict[str, int | float | None] = {}
    for field_ in ("mem", "cpu", "pids"):
        values = [getattr(g, field_) for g in groups if getattr(g, field_) is not None]
        if values:
            out[field_] = 0 if 0 in values else max(values)
    return out


def effective_limits(profile: Profile, groups: Sequence[Group], own: dict[str, Any],
                     spawn: dict[str, Any]) -> dict[str, Any]:
    """``mem``/``cpu``/``pids`` for a start: the admin's per-user override ``own``, the
    profile, the groups' defaults, then ``spawn`` (the config); 0 and None: no limit."""
    from_groups = group_defaults(groups)
    from_profile = {"mem": profile.mem_limit, "cpu": profile.cpu_limit,
                    "pids": profile.pids_limit}
    out = {}
    for k in ("mem", "cpu", "pids"):
        if k in own:
            v = own[k]
        elif from_profile[k] is not None:
            v = from_profile[k]
        elif k in from_groups:
            v = from_groups[k]
        else:
            v = spawn[k]
        out[k] = v or None
    return out


class ProfileChooser:
    """The server manager's part that applies the rule above (``self.store``: the
    :class:`~ipydoc.state.store.Store`; ``self.limits``: the manager's ``Limits``)."""

    store: Any
    limits: Any

    async def _chosen(self, name: str, image: str | None,
                      profile: str | Profile | None) -> Profile:
        chosen = profile if isinstance(profile, Profile) else \
            await self.choose_profile(name, profile)
        if image and chosen.image and image != chosen.image:
            raise StartFailed("bad_image", f"the profile {chosen.name} starts {chosen.image}; "
                              "it takes no other image")
        return chosen

    async def choose_profile(self, name: str, requested: str | None = None) -> Profile:
        """The profile a start of the server ``name`` (a server key) uses (the one
        validation of every path: page, control channel, API); raises ``ProfileRefused``.
        The owner's groups decide; the server's own last profile is the default."""
        groups = await self.store.groups_of(owner_of(name))
        server = await self.store.get_server(name)
        return self.limits.catalogue.resolve(groups, requested,
                                             server.profile if server else "")

    async def limits_for(self, name: str, profile: Profile) -> dict[str, Any]:
        """``mem``/``cpu``/``pids`` a start of the server ``name`` with ``profile`` gets
        (the owner's overrides and groups)."""
        lim = self.limits
        owner = owner_of(name)
        return effective_limits(profile, await self.store.groups_of(owner),
                                await self.store.get_limits(owner),
                                {"mem": lim.mem_limit, "cpu": lim.cpu_limit,
                                 "pids": lim.pids_limit})

    async def offered_profiles(self, name: str) -> list[Profile]:
        """The profiles ``name`` (a user or a server key: its owner) may pick (for the
        start page and ``server profiles``)."""
        return self.limits.catalogue.offered(await self.store.groups_of(owner_of(name)))
