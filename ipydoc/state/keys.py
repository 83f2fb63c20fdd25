"""Every Redis key ipydoc uses, built here and only here, and the key schema.

Every key starts with ``ipydoc:``; ``{name}`` is always a validated user name
(:mod:`ipydoc.names`), so it can never contain ``:`` and split a key; ``{key}`` is a
validated *server key* (:func:`ipydoc.names.server_key`): the user name for a user's
default server, ``NAME--SERVER`` for a named one (issue 19), equally free of ``:``.  Secrets (session
ids, tokens, login states, provider subjects) appear in keys only as SHA-256 hex digests.
The modules of :mod:`ipydoc.state` are the only readers and writers of these keys.

=====================================  ======  =================================================
key                                    type    contents
=====================================  ======  =================================================
``ipydoc:users``                       zset    every user name, score 0 (lexical order → paging)
``ipydoc:user:{name}``                 hash    ``password`` (argon2id), ``admin`` (0/1),
                                               ``disabled`` (0/1), ``created`` (unix time)
``ipydoc:session:{sha256(id)}``        hash    ``user``, ``created``, ``csrf``; expires with the
                                               session.  Only a hash of the cookie's id is
                                               stored.
``ipydoc:user-sessions:{name}``        set     the session keys of a user (revoke them all)
``ipydoc:server:{key}``                hash    ``state`` (starting/running/paused/stopping/
                                               stopped/failed), ``id``, ``url``, ``token``,
                                               ``image``, ``started``, ``error``, ``updated``,
                                               ``paused_since``, ``idle_since`` (unix times,
                                               only while paused: since when, and the last
                                               activity before the pause)
                                               ``profile``: the profile it was started with
``ipydoc:servers``                     set     server keys that have a server record
``ipydoc:user-servers:{name}``         set     the keys of NAME's *named* servers that have a
                                               record (kept in step with ``servers`` in the
                                               same MULTI / script; the default server's
                                               record ``server:{name}`` is read directly), so
                                               ``servers_of(NAME)`` is one script call
``ipydoc:routes``                      hash    server key → backend URL, only for servers that
                                               answer (running, or paused: resumed on first
                                               request)
``ipydoc:activity``                    hash    server key → last proxied traffic (unix time)
``ipydoc:events``                      stream  ``kind``, ``user``, ``detail`` (capped at about
                                               10,000 entries); read by ``ipydoc events``.
                                               ``pause``/``resume`` (detail: why / what
                                               resumed it: proxy, token, page, cli)
``ipydoc:token:{sha256(token)}``       hash    a personal API token: ``user``, ``note``,
                                               ``created``, ``expires`` (unix time, empty:
                                               never), ``last_used``, ``scopes`` (space
                                               separated: read, servers, admin; absent on
                                               older tokens: read servers); the key expires
                                               with the token. Only a hash of the token is
                                               stored.
``ipydoc:user-tokens:{name}``          set     the token hashes of a user (list, revoke all)
``ipydoc:limits:{name}``               hash    an admin's per-user overrides of the spawn
                                               limits: ``mem`` (bytes), ``cpu`` (CPUs),
                                               ``pids``; a missing field means the config's
                                               value, ``0`` means no limit (``ipydoc user
                                               set-limits``)
``ipydoc:user-options:{name}``         hash    ``image``: the user's last choice among
                                               ``spawn.images`` (the start page's user_options)
``ipydoc:history-queue:{name}``        list    saves seen by the proxy, not yet committed: JSON
                                               ``{"op": save/rename/delete, "path", "time",
                                               "message"?, "attempts"?, "error"?}``, oldest
                                               first (RPUSH; the history service pops an entry
                                               only after committing it or dead-lettering it; at
                                               most ``history.max_queue`` entries, appended by a
                                               script that refuses or coalesces when full)
``ipydoc:history-dead:{name}``         list    queue entries given up on
                                               (``history-dead-letter`` events): JSON
                                               ``{"entry", "reason", "time", "attempts"}``,
                                               oldest first, the newest 100 kept
``ipydoc:history-push:{name}``         hash    the remote mirror: ``state`` (ok/failing),
                                               ``rev`` (last pushed), ``error``, ``attempts``,
                                               ``updated``, ``created`` (repo made through the
                                               API)
``ipydoc:history-repo:{name}``         hash    the user's own repository (issue 18,
                                               :mod:`ipydoc.state.user_repos`): ``url``, ``via``
                                               (github/token), ``login``, ``secret`` (the
                                               credential, Fernet ciphertext under a key
                                               derived from the signing secret; never plain),
                                               ``status`` (pending/ok/failing/refused), ``error``,
                                               ``rev`` (last pushed), ``attempts``, ``linked``,
                                               ``updated``.  ``refused``: no push until the user
                                               re-links or retries.  Gone with the account.
``ipydoc:history-repos``               set     the names that have ``history-repo:{name}``
``ipydoc:handoff:{sha256(token)}``     string  subdomain mode: a one-time token from the hub to
                                               a user's host, ``"NAME SESSIONKEY
                                               sha256(STATE)"`` (the browser's state cookie
                                               there); 30 s (:mod:`ipydoc.state.handoff`)
``ipydoc:host-session:{sha256(id)}``   hash    subdomain mode: the ``ipydoc-user`` cookie of
                                               NAME's host: ``user``, ``session`` (the hub
                                               session's key; dead with it), ``created``
``ipydoc:login-fails:user:{name}``     string  failed logins of an account name (existing or
                                               not) in the current ``auth.login_window``;
                                               expires with it
                                               (:mod:`ipydoc.state.login_limits`)
``ipydoc:login-fails:addr:{addr}``     string  the same per client address (IPv4, IPv6 ``/64``)
``ipydoc:login-state:{sha256(st)}``    string  a login at a provider in progress (JSON:
                                               provider, nonce, PKCE verifier, next,
                                               redirect_uri, hash of the browser-binding
                                               cookie); 10 minutes, taken once by the callback
                                               (:mod:`ipydoc.state.login_states`)
``ipydoc:login-states``                zset    the outstanding login states (member: the key's
                                               hash, score: expiry in ms); capped at
                                               ``auth.oauth_pending_max`` (:mod:`.login_states`)
``ipydoc:oauth-starts:addr:{addr}``    string  provider logins started from one client address
                                               in the current 10 minutes
                                               (``auth.oauth_starts_per_address``)
``ipydoc:identity:{p}:{sha256(sub)}``  string  the account name owned by provider ``p``'s
                                               subject ``sub`` (OIDC ``sub``, GitHub numeric id)
``ipydoc:user-identity:{name}``        string  JSON ``provider``, ``subject``, ``created`` (the
                                               account's): the identity that owns the account
                                               (:mod:`ipydoc.state.identities`)
``ipydoc:removed:{name}``              hash    a removed account whose files are kept: the name
                                               is reserved (no account may be made with it)
                                               until ``ipydoc user purge``; ``removed``, ``by``,
                                               ``files``, ``versions``, ``mirror``, and the
                                               account's ``password``, ``admin``, ``disabled``,
                                               ``created`` for ``ipydoc user restore``
                                               (:mod:`ipydoc.state.reservations`)
``ipydoc:groups``                      set     every group name (:mod:`ipydoc.state.groups`)
``ipydoc:group:{group}``               hash    a group's properties: ``admin`` (0/1: members
                                               are admins), ``profiles`` (comma-separated
                                               profile names members may pick), ``mem``
                                               (bytes), ``cpu``, ``pids`` (default limits when
                                               the profile sets none; missing: [spawn]'s),
                                               ``created``
``ipydoc:group-members:{group}``       hash    member name → where the membership comes from:
                                               ``manual`` (CLI, admin page) or a provider id
                                               (``github``, an OIDC id: synced at each login)
``ipydoc:user-groups:{name}``          hash    the same memberships seen from the user: group →
                                               source (kept in step with ``group-members``)
``ipydoc:shares:{key}``                hash    who may use server KEY besides its owner (issue
                                               19 §3, :mod:`ipydoc.state.shares`): field
                                               ``user:{name}`` or ``group:{group}`` → JSON
                                               ``{"mode": rw/view, "by", "created"}``
``ipydoc:shared-with:{kind}:{guest}``  set     the server keys shared with a user (``kind``
                                               ``user``) or a group (``group``)
``ipydoc:owner-shares:{name}``         set     NAME's server keys that have a share
``ipydoc:placement:{name}``            hash    swarm backend: the node holding NAME's files
                                               (``node`` id, ``hostname``, ``placed`` unix
                                               time); the user's server is pinned there
                                               (:mod:`ipydoc.state.placements`)
``ipydoc:prestart:{name}``             string  a start of NAME's server from the login page of a
                                               returning browser (:mod:`ipydoc.state.prestarts`):
                                               ``pending`` until NAME logs in (then deleted),
                                               ``unused`` after such a start was stopped for
                                               want of a login (the cool-down: no other start
                                               from the login page meanwhile); with a TTL
``ipydoc:lease:{what}``                string  a lease (:mod:`ipydoc.state.leases`): ``"OWNER FENCE"``
                                               with a TTL; OWNER is a daemon id
                                               (``host:pid:random``); ``{what}`` is
                                               ``start:{key}`` (one start of the server KEY
                                               cluster-wide), ``history:{name}`` (the one
                                               worker draining NAME's history queue) or
                                               ``leader:culler`` (the daemon that culls)
``ipydoc:fence:{what}``                string  the fencing counter of ``lease:{what}``
                                               (INCR'd at each new holder; kept for good)
``ipydoc:once:{what}``                 string  work done once cluster-wide (e.g. recording a
                                               container's death seen by every daemon); short
                                               TTL; ``guest:{key}:{credential digest}``: a
                                               guest's first request to a shared server (the
                                               ``guest-session`` event), 30 days
``ipydoc:cluster:secret``              string  a fingerprint (HMAC) of the signing secret of
                                               the daemons using this Redis; a daemon with
                                               another secret refuses to start
``ipydoc:cluster``                     channel pub/sub between daemons
                                               (:mod:`ipydoc.state.bus`): JSON ``{"from",
                                               "kind", "name"}``; not a key
=====================================  ======  =================================================

A personal token is named outside Redis by its ``id``: the first 16 hex digits of its
hash (shown on the tokens page; revoking takes the id, never the token).

Sessions are listed per user from ``user-sessions:{name}`` (entries whose session key has
expired are dropped from the set as they are met) and over all users with ``SCAN``.
Outside Redis a session is named by its ``sid``: the hex hash in its key, which identifies
it without revealing the cookie (the CLI shows 16 digits and accepts any unique prefix of
8 or more).

``server:{key}`` also holds ``fence``: the fencing token of the start lease of the
start that wrote it; a write carrying an older fence is refused
(:mod:`ipydoc.state.fenced`), so a start whose lease expired cannot overwrite a newer one.

A server's record and its route change together in one MULTI/EXEC so a reader never sees
a route without a running server or the other way round.
"""

from __future__ import annotations

import hashlib

P = "ipydoc:"

# -- single keys -------------------------------------------------------------------------
USERS = P + "users"
SERVERS = P + "servers"
ROUTES = P + "routes"
ACTIVITY = P + "activity"
EVENTS = P + "events"
LOGIN_STATES = P + "login-states"

#: What every session key / token key starts with (tells a credential's kind from its key).
SESSION_PREFIX = P + "session:"
TOKEN_PREFIX = P + "token:"


def digest(secret: str) -> str:
    """The SHA-256 hex digest under which a secret is named in a key."""
    return hashlib.sha256(secret.encode()).hexdigest()


def tail(key: str) -> str:
    """The last part of a key: the user name or the digest it was built with."""
    return key.rsplit(":", 1)[1]


# -- accounts ------------------------------------------------------------------------------
def user_key(name: str) -> str:
    return f"{P}user:{name}"


def removed_key(name: str) -> str:
    return f"{P}removed:{name}"


REMOVED_PATTERN = f"{P}removed:*"


def limits_key(name: str) -> str:
    return f"{P}limits:{name}"


def user_options_key(name: str) -> str:
    return f"{P}user-options:{name}"


def identity_key(provider: str, subject: str) -> str:
    return f"{P}identity:{provider}:{digest(subject)}"


def user_identity_key(name: str) -> str:
    return f"{P}user-identity:{name}"


# -- sessions and tokens -------------------------------------------------------------------
def session_key(session_id: str) -> str:
    return SESSION_PREFIX + digest(session_id)


def session_key_of_sid(sid: str) -> str:
    """The session key whose digest is ``sid`` (64 hex digits)."""
    return SESSION_PREFIX + sid


def session_pattern(sid_prefix: str = "") -> str:
    """SCAN pattern of the session keys whose digest starts with ``sid_prefix``."""
    return f"{SESSION_PREFIX}{sid_prefix}*"


def user_sessions_key(name: str) -> str:
    return f"{P}user-sessions:{name}"


def token_key(token_hash: str) -> str:
    return TOKEN_PREFIX + token_hash


def user_tokens_key(name: str) -> str:
    return f"{P}user-tokens:{name}"


# -- groups ---------------------------------------------------------------------------------
GROUPS = P + "groups"


def group_key(group: str) -> str:
    return f"{P}group:{group}"


def group_members_key(group: str) -> str:
    return f"{P}group-members:{group}"


def user_groups_key(name: str) -> str:
    return f"{P}user-groups:{name}"


# -- shares (issue 19 §3) ------------------------------------------------------------------
SHARES_PATTERN = f"{P}shares:*"


def shares_key(key: str) -> str:
    return f"{P}shares:{key}"


def shared_with_key(kind: str, guest: str) -> str:
    return f"{P}shared-with:{kind}:{guest}"


def owner_shares_key(name: str) -> str:
    return f"{P}owner-shares:{name}"


# -- servers -------------------------------------------------------------------------------
def server_key(name: str) -> str:
    """The record of the server ``name`` (a server key: a user name or ``NAME--SERVER``)."""
    return f"{P}server:{name}"


def user_servers_key(name: str) -> str:
    """The set of the keys of user ``name``'s named servers."""
    return f"{P}user-servers:{name}"


def placement_key(name: str) -> str:
    return f"{P}placement:{name}"


PLACEMENT_PATTERN = P + "placement:*"


# -- history -------------------------------------------------------------------------------
def history_queue_key(name: str) -> str:
    return f"{P}history-queue:{name}"


HISTORY_QUEUE_PATTERN = f"{P}history-queue:*"


def history_push_key(name: str) -> str:
    return f"{P}history-push:{name}"


def history_dead_key(name: str) -> str:
    return f"{P}history-dead:{name}"


def history_repo_key(name: str) -> str:
    return f"{P}history-repo:{name}"


HISTORY_REPOS = f"{P}history-repos"


def history_keys_pattern(name: str) -> str:
    """SCAN pattern of every ``history-*:{name}`` key."""
    return f"{P}history-*:{name}"


# -- subdomain handoff ---------------------------------------------------------------------
def handoff_key(token: str) -> str:
    return f"{P}handoff:{digest(token)}"


def host_session_key(host_session_id: str) -> str:
    return f"{P}host-session:{digest(host_session_id)}"


# -- login limits and provider logins ------------------------------------------------------
def login_fails_user_key(name: str) -> str:
    return f"{P}login-fails:user:{name}"


def login_fails_addr_key(group: str) -> str:
    return f"{P}login-fails:addr:{group}"


def login_state_key(state: str) -> str:
    return f"{P}login-state:{digest(state)}"


def oauth_starts_key(group: str) -> str:
    return f"{P}oauth-starts:addr:{group}"


# -- several daemons (leases, fences, pub/sub) ---------------------------------------------
CLUSTER_CHANNEL = P + "cluster"
SECRET_FINGERPRINT = P + "cluster:secret"


def prestart_key(name: str) -> str:
    return f"{P}prestart:{name}"


def lease_key(what: str) -> str:
    return f"{P}lease:{what}"


def fence_key(what: str) -> str:
    return f"{P}fence:{what}"


def once_key(what: str) -> str:
    return f"{P}once:{what}"
