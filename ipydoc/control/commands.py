"""AMP commands of the control channel.  Each one is also a CLI command (:mod:`ipydoc.cli`).

The channel is AMP (``twisted.protocols.amp``) on the unix socket ``control.socket``
(mode 0600) and, when ``control.listen_tls`` is set, on TCP with TLS and client
certificates.  Every command below is one request and one answer; names, passwords and
flags go in as AMP values, and structured answers come back as JSON text.

Conventions (so that no AMP value ever reaches the 64 KiB limit):

* **Lists** take ``offset`` and ``limit`` and answer ``items`` (a JSON array) and
  ``total``.  The daemon caps a page at 1,000 items *and* at :data:`PAGE_BYTES` of JSON,
  so a page may hold fewer items than asked for: fetch again from
  ``offset + len(items)`` until ``total`` is reached (:func:`ipydoc.cli.client.fetch_all`).
* **Logs** come in chunks: ``ServerLogs(offset=0)`` reads the container's output once and
  answers its first chunk and ``next`` (the offset of the next chunk, -1 at the end);
  later calls on the same connection with ``offset=next`` return the rest of that same
  snapshot.  ``HistoryExport`` pages a git bundle (bytes) the same way.
* **Events** are read by long polling: ``Events(after=ID, wait=S)`` answers at once when
  events newer than ``ID`` exist, else waits up to ``S`` seconds (at most 30) for one.
  ``after=""`` answers the newest ``limit`` events (no waiting); ``after="$"`` means "from
  now".  The answer's ``last`` is the ``after`` of the next call.
* **Single objects** come back as ``result``, a JSON object.
* **Errors** are the exceptions below; their message is meant for the person at the shell.
  The CLI maps them to exit codes: ``INVALID_INPUT`` 2, ``NOT_FOUND`` 5,
  ``NOT_AVAILABLE`` 6, everything else (``CONFLICT``, ``FAILED``) 1.

To add a command: define it here, answer it in its group's responders
(:mod:`ipydoc.control.users`, ``servers``, ``events``, ``history``), add it to
:mod:`ipydoc.cli.parser` and a handler to its group in :mod:`ipydoc.cli` (``users.py``, ...),
document it in the README's Administration section.  (Some groups declare their
commands next to their responders: groups in :mod:`ipydoc.control.group_commands`, personal
API tokens in :mod:`ipydoc.control.tokens`.)
"""

from __future__ import annotations

from twisted.protocols import amp

PAGE_BYTES = 48 * 1024   # JSON budget for one page of ``items`` or one chunk of logs
MAX_PAGE = 1000          # items per page, whatever ``limit`` asks for
MAX_WAIT = 30.0          # seconds an Events call may wait


class ControlError(Exception):
    """A command could not be done; the message is for the person at the shell."""


class InvalidInput(ControlError):
    """A name, password or value that is not acceptable."""


class NotFound(ControlError):
    """No such user, server, container or session."""


class Conflict(ControlError):
    """The request contradicts the current state (the user exists, is disabled, ...)."""


class NotAvailable(ControlError):
    """This daemon does not offer what was asked (e.g. no idle culler is configured)."""


ERRORS = {InvalidInput: b"INVALID_INPUT", NotFound: b"NOT_FOUND", Conflict: b"CONFLICT",
          NotAvailable: b"NOT_AVAILABLE", ControlError: b"FAILED"}

_PAGE_ARGS = [(b"offset", amp.Integer()), (b"limit", amp.Integer())]
_PAGE_ANSWER = [(b"items", amp.Unicode()), (b"total", amp.Integer())]
_RESULT = [(b"result", amp.Unicode())]


class Status(amp.Command):
    """Version, uptime, backend and Redis health, counts (JSON in ``status``)."""
    arguments: list = []
    response = [(b"status", amp.Unicode())]
    errors = ERRORS


# -- users ----------------------------------------------------------------------------------
class UserAdd(amp.Command):
    """Create a local account (password at least 8 characters; hashed with argon2id)."""
    arguments = [(b"name", amp.Unicode()), (b"password", amp.Unicode()),
                 (b"admin", amp.Boolean())]
    response: list = []
    errors = ERRORS


class UserRemove(amp.Command):
    """Delete an account: disable, revoke sessions, stop the server, drop its records.

    Without ``purge`` the files (volume or directory) and the history are kept and the
    name is reserved: no account can be made with it until :class:`UserPurge` (or
    :class:`UserRestore`), so the files never reach someone else (:mod:`ipydoc.control.removal`).
    With ``purge`` the files, the history repository and its records are deleted too.
    ``result``: ``{"removed", "sessions_revoked", "server_stopped", "purged", "reserved",
    "files", "versions", "mirror"}`` (what was kept, or deleted with ``purge``).
    """
    arguments = [(b"name", amp.Unicode()), (b"purge", amp.Boolean())]
    response = _RESULT
    errors = ERRORS


class UserPurge(amp.Command):
    """Delete the files, history and records a removed account left, and free its name.

    For a name with no account (reserved by a removal, or left over from an older ipydoc);
    ``CONFLICT`` for a live account.  ``result``: ``{"purged", "files", "versions",
    "mirror", "history_deleted", "reserved"}``.
    """
    arguments = [(b"name", amp.Unicode())]
    response = _RESULT
    errors = ERRORS


class UserRestore(amp.Command):
    """Bring a removed account whose files are kept back, as it was (same password or
    login identity, files and history).  ``result``: ``{"restored", "files", "versions",
    "admin", "disabled", "external"}``; ``NOT_FOUND`` when the name is not reserved.
    """
    arguments = [(b"name", amp.Unicode())]
    response = _RESULT
    errors = ERRORS


class UserRemovedList(amp.Command):
    """Removed accounts whose files are kept (their names are reserved): ``name``,
    ``removed``, ``by``, ``files``, ``versions``, ``mirror``."""
    arguments = _PAGE_ARGS
    response = _PAGE_ANSWER
    errors = ERRORS


class UserList(amp.Command):
    """Accounts in name order: ``name``, ``admin``, ``disabled``, ``created``, ``server``."""
    arguments = _PAGE_ARGS
    response = _PAGE_ANSWER
    errors = ERRORS


class UserShow(amp.Command):
    """One account with its server, last activity and live sessions."""
    arguments = [(b"name", amp.Unicode())]
    response = _RESULT
    errors = ERRORS


class UserDisable(amp.Command):
    """Refuse logins, end every session and stop the server (files are kept)."""
    arguments = [(b"name", amp.Unicode())]
    response = _RESULT
    errors = ERRORS


class UserEnable(amp.Command):
    """Allow logins again."""
    arguments = [(b"name", amp.Unicode())]
    response = _RESULT
    errors = ERRORS


class UserSetAdmin(amp.Command):
    """Grant (``admin=True``) or withdraw admin rights."""
    arguments = [(b"name", amp.Unicode()), (b"admin", amp.Boolean())]
    response = _RESULT
    errors = ERRORS


class UserSetLimits(amp.Command):
    """Override the spawn limits of one user (applied at their next start).

    ``limits`` is JSON: ``{"mem": BYTES, "cpu": CPUS, "pids": N}`` with any subset of the
    keys; 0 means no limit.  ``clear`` (comma-separated names) drops overrides, so the
    config's values apply again.  ``result``: the user's overrides and effective limits.
    """
    arguments = [(b"name", amp.Unicode()), (b"limits", amp.Unicode()),
                 (b"clear", amp.Unicode())]
    response = _RESULT
    errors = ERRORS


class UserPasswd(amp.Command):
    """Set a new password; unless ``keep_sessions``, every session and personal API token
    of the user ends."""
    arguments = [(b"name", amp.Unicode()), (b"password", amp.Unicode()),
                 (b"keep_sessions", amp.Boolean())]
    response = _RESULT
    errors = ERRORS


# -- servers --------------------------------------------------------------------------------
class ServerStart(amp.Command):
    """Start a user's server; with ``wait``, answer once it is ready (or failed).

    ``profile``: one the user may pick (``INVALID_INPUT`` otherwise); empty: their last,
    else the default (:mod:`ipydoc.servers.profiles`)."""
    arguments = [(b"name", amp.Unicode()), (b"wait", amp.Boolean()),
                 (b"profile", amp.Unicode(optional=True))]
    response = _RESULT
    errors = ERRORS


class ServerStop(amp.Command):
    """Stop a user's server (the container is removed, the files are kept)."""
    arguments = [(b"name", amp.Unicode())]
    response = _RESULT
    errors = ERRORS


class ServerPause(amp.Command):
    """Pause a user's running server (frozen, memory and kernels kept; the first request
    resumes it).  ``result``: ``{"name", "paused"}`` (false: it was not running)."""
    arguments = [(b"name", amp.Unicode())]
    response = _RESULT
    errors = ERRORS


class ServerResume(amp.Command):
    """Resume a user's paused server.  ``result``: ``{"name", "resumed"}`` (false: it
    was not paused)."""
    arguments = [(b"name", amp.Unicode())]
    response = _RESULT
    errors = ERRORS


class ServerMove(amp.Command):
    """Move a user's files to another Swarm node (by hostname or id): stop, copy and
    verify, re-pin, start there if it ran (:mod:`ipydoc.servers.move`).  The old volume
    is kept.  ``result``: ``{"name", "from", "to", "bytes", "sha256", "seconds",
    "was_running", "running", "steps", "old_volume_kept_on"}``."""
    arguments = [(b"name", amp.Unicode()), (b"node", amp.Unicode())]
    response = _RESULT
    errors = ERRORS


class ServerList(amp.Command):
    """Servers with a record: state, image, URL, start time, last activity, error."""
    arguments = _PAGE_ARGS
    response = _PAGE_ANSWER
    errors = ERRORS


class ServerShow(amp.Command):
    """One server: its record, what the backend reports, whether a start/stop is running."""
    arguments = [(b"name", amp.Unicode())]
    response = _RESULT
    errors = ERRORS


class ServerLogs(amp.Command):
    """The last ``tail`` lines (0: all) of the container's output, in chunks (see above)."""
    arguments = [(b"name", amp.Unicode()), (b"tail", amp.Integer()), (b"offset", amp.Integer())]
    response = [(b"text", amp.Unicode()), (b"next", amp.Integer())]
    errors = ERRORS


class ServerRemove(amp.Command):
    """Forget a stopped named server (``name``: its key ``USER--SERVER``): its record,
    route and activity; the user's files are kept.  ``CONFLICT`` for the default server
    or one that runs.  ``result``: ``{"name", "owner", "server", "removed"}``."""
    arguments = [(b"name", amp.Unicode())]
    response = _RESULT
    errors = ERRORS


# -- routes, sessions, culling, events ------------------------------------------------------
class RouteList(amp.Command):
    """The proxy's routes: ``name``, ``target``, ``served`` (in the proxy's table),
    ``stored`` (in Redis), ``last_activity``."""
    arguments = _PAGE_ARGS
    response = _PAGE_ANSWER
    errors = ERRORS


class SessionList(amp.Command):
    """Live login sessions (of ``user``, or everyone's when empty): ``sid``, ``user``,
    ``created``, ``expires_in``."""
    arguments = [(b"user", amp.Unicode()), *_PAGE_ARGS]
    response = _PAGE_ANSWER
    errors = ERRORS


class SessionRevoke(amp.Command):
    """End sessions: every one of ``user``, or the one whose ``sid`` starts with ``sid``.

    ``result``: ``{"revoked": N, "user": NAME}``.
    """
    arguments = [(b"user", amp.Unicode()), (b"sid", amp.Unicode())]
    response = _RESULT
    errors = ERRORS


class Cull(amp.Command):
    """Run the idle culler now.  ``NOT_AVAILABLE`` when none is configured."""
    arguments: list = []
    response = _RESULT
    errors = ERRORS


class Events(amp.Command):
    """Events (``id``, ``time``, ``kind``, ``user``, ``detail``) newer than ``after``.

    Long poll (see the module docstring); ``user`` and ``kinds`` (comma-separated) filter
    what is returned, while ``last`` still moves past what was skipped.  With ``after=""``
    the newest events that fit one answer come back and ``omitted`` says how many older
    ones of the ``limit`` newest were left out for size.
    """
    arguments = [(b"after", amp.Unicode()), (b"wait", amp.Float()), (b"limit", amp.Integer()),
                 (b"user", amp.Unicode()), (b"kinds", amp.Unicode())]
    response = [(b"items", amp.Unicode()), (b"last", amp.Unicode()),
                (b"omitted", amp.Integer(optional=True))]
    errors = ERRORS


# -- history (ipydoc.history) ---------------------------------------------------------------
class HistoryList(amp.Command):
    """A user's versioned files (``path`` empty): ``path``, ``versions``, ``last``,
    ``present``, ``size``, ``rev`` (the last version), ``deleted`` (when, or null); only
    the deleted ones with ``deleted``; or the versions of one file, followed through
    renames: ``rev``, ``time``, ``author``, ``message``, ``change`` (A/M/D/R), ``path``
    (the path then), ``from_path`` (R), newest first.  ``NOT_AVAILABLE`` when history is
    off."""
    arguments = [(b"name", amp.Unicode()), (b"path", amp.Unicode()), *_PAGE_ARGS,
                 (b"deleted", amp.Boolean(optional=True))]
    response = _PAGE_ANSWER
    errors = ERRORS


class HistoryRestore(amp.Command):
    """Write version ``rev`` of ``path`` back to the user's running server (a new save,
    which becomes a new version).  ``result``: ``{"name", "path", "rev"}``."""
    arguments = [(b"name", amp.Unicode()), (b"path", amp.Unicode()), (b"rev", amp.Unicode())]
    response = _RESULT
    errors = ERRORS


class HistoryExport(amp.Command):
    """The whole history of ``name`` as a git bundle, in chunks: ``offset=0`` makes the
    bundle (kept open for this connection) and answers its first chunk; later calls on
    the same connection with ``offset=next`` the rest (``next`` -1 at the end).  ``size``
    and ``sha256`` are the whole bundle's, to check what was written.  ``NOT_FOUND`` when
    the user has no history yet."""
    arguments = [(b"name", amp.Unicode()), (b"offset", amp.Integer())]
    response = [(b"data", amp.String()), (b"next", amp.Integer()), (b"size", amp.Integer()),
                (b"sha256", amp.Unicode())]
    errors = ERRORS


class HistoryDeadLetters(amp.Command):
    """Changes of a user the history worker gave up on (its server's answer broke a limit,
    or it failed ``history.max_attempts`` times), newest first: ``op``, ``path``,
    ``reason``, ``time``, ``attempts``.  ``NOT_AVAILABLE`` when history is off."""
    arguments = [(b"name", amp.Unicode()), *_PAGE_ARGS]
    response = _PAGE_ANSWER
    errors = ERRORS


# -- restarts (ipydoc.control.restart) ------------------------------------------------------
class Restart(amp.Command):
    """Ask the supervisor (``ipydoc serve``) to replace this worker; answers at once.
    ``result``: ``{"worker": PID, "attempt": N}`` (the restart to wait for: see
    :class:`Supervision`).  ``NOT_AVAILABLE`` when the daemon runs without a supervisor."""
    arguments: list = []
    response = _RESULT
    errors = ERRORS


class Supervision(amp.Command):
    """Which worker answered, and what its supervisor last did: ``result`` is
    ``{"worker": PID, "supervised": bool, "supervisor": {...}}`` with the supervisor's
    ``attempt``, ``state`` and ``last`` restart (``ok``, ``old``, ``new``, ``error``)."""
    arguments: list = []
    response = _RESULT
    errors = ERRORS


# -- shares of a server (ipydoc.control.shares, issue 19 §3) ----------------------------------
class ShareAdd(amp.Command):
    """Share ``owner``'s server ``server`` ("" = the default) with a user (``kind`` user)
    or a group (``kind`` group) in ``mode`` (rw/view), or change that share's mode.
    ``result``: the share (``server``, ``owner``, ``kind``, ``guest``, ``mode``, ``by``,
    ``created``) and ``changed``."""
    arguments = [(b"owner", amp.Unicode()), (b"server", amp.Unicode()),
                 (b"kind", amp.Unicode()), (b"guest", amp.Unicode()), (b"mode", amp.Unicode())]
    response = _RESULT
    errors = ERRORS


class ShareRemove(amp.Command):
    """Revoke one share (``kind`` + ``guest``), or every share of the server when
    ``guest`` is empty; the guests' open connections to it are closed at once.
    ``result``: ``{"removed": [shares]}``; ``NOT_FOUND`` when there was no such share."""
    arguments = [(b"owner", amp.Unicode()), (b"server", amp.Unicode()),
                 (b"kind", amp.Unicode()), (b"guest", amp.Unicode())]
    response = _RESULT
    errors = ERRORS


class ShareList(amp.Command):
    """Shares: of ``owner``'s servers (``owner``), of the servers shared with ``guest``
    (directly or through a group), or every share of the site (neither)."""
    arguments = [(b"owner", amp.Unicode(optional=True)), (b"guest", amp.Unicode(optional=True)),
                 *_PAGE_ARGS]
    response = _PAGE_ANSWER
    errors = ERRORS
