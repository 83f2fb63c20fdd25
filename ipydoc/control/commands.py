"""AMP commands of the control channel.  Each one is also a CLI command (:mod:`ipydoc.cli`).

Lists come back in pages (``offset``/``limit`` in, ``items`` JSON + ``total`` out) sized to
stay well under AMP's 64 KiB value limit; the client fetches pages until it has ``total``.
To add a command: define it here, answer it in :mod:`ipydoc.control.server`, expose it in
:mod:`ipydoc.cli`.
"""

from __future__ import annotations

from twisted.protocols import amp

PAGE_BYTES = 48 * 1024   # JSON budget for one page of ``items``


class ControlError(Exception):
    """A command could not be done; the message is for the person at the shell."""


class InvalidInput(ControlError):
    pass


class NotFound(ControlError):
    pass


class Conflict(ControlError):
    pass


ERRORS = {InvalidInput: b"INVALID_INPUT", NotFound: b"NOT_FOUND", Conflict: b"CONFLICT",
          ControlError: b"FAILED"}


class Status(amp.Command):
    """Version, uptime, backend and Redis health, counts (JSON)."""
    arguments: list = []
    response = [(b"status", amp.Unicode())]
    errors = ERRORS


class UserAdd(amp.Command):
    arguments = [(b"name", amp.Unicode()), (b"password", amp.Unicode()),
                 (b"admin", amp.Boolean())]
    response: list = []
    errors = ERRORS


class UserList(amp.Command):
    arguments = [(b"offset", amp.Integer()), (b"limit", amp.Integer())]
    response = [(b"items", amp.Unicode()), (b"total", amp.Integer())]
    errors = ERRORS


class ServerList(amp.Command):
    arguments = [(b"offset", amp.Integer()), (b"limit", amp.Integer())]
    response = [(b"items", amp.Unicode()), (b"total", amp.Integer())]
    errors = ERRORS
