"""AMP commands of the control channel for groups and profiles (issue 19), declared
apart from :mod:`ipydoc.control.commands` and answered by :mod:`ipydoc.control.groups`.

Group properties travel as JSON (``props``): ``{"admin": bool, "profiles": [names],
"limits": {"mem": BYTES, "cpu": CPUS, "pids": N}}`` with any subset of the keys; ``clear``
(comma-separated mem/cpu/pids) drops default limits.
"""

from __future__ import annotations

from twisted.protocols import amp

from ipydoc.control.commands import _PAGE_ANSWER, _RESULT, ERRORS


class GroupList(amp.Command):
    """Every group: ``items`` with name, admin, profiles, limits, members (count)."""
    arguments: list = []
    response = _PAGE_ANSWER
    errors = ERRORS


class GroupShow(amp.Command):
    """One group and its members (name → source: ``manual`` or a provider id)."""
    arguments = [(b"name", amp.Unicode())]
    response = _RESULT
    errors = ERRORS


class GroupAdd(amp.Command):
    """Create a group (``CONFLICT`` if it exists), with ``props`` set at once."""
    arguments = [(b"name", amp.Unicode()), (b"props", amp.Unicode())]
    response = _RESULT
    errors = ERRORS


class GroupSet(amp.Command):
    """Change a group's properties (``props``, ``clear``)."""
    arguments = [(b"name", amp.Unicode()), (b"props", amp.Unicode()),
                 (b"clear", amp.Unicode())]
    response = _RESULT
    errors = ERRORS


class GroupRemove(amp.Command):
    """Delete a group and every membership in it (the accounts stay)."""
    arguments = [(b"name", amp.Unicode())]
    response = _RESULT
    errors = ERRORS


class GroupMemberAdd(amp.Command):
    """Add a user to a group by hand (a login never removes such a membership)."""
    arguments = [(b"name", amp.Unicode()), (b"user", amp.Unicode())]
    response = _RESULT
    errors = ERRORS


class GroupMemberRemove(amp.Command):
    """Remove a user from a group, whatever made the membership."""
    arguments = [(b"name", amp.Unicode()), (b"user", amp.Unicode())]
    response = _RESULT
    errors = ERRORS


class ProfileList(amp.Command):
    """The site's profiles; with ``user``, those that user may pick (``items``)."""
    arguments = [(b"user", amp.Unicode(optional=True))]
    response = _PAGE_ANSWER
    errors = ERRORS
