"""Reading and writing files on a user's server, through its contents API.

Content is read with the server token (``type=file&format=base64``), so it works for any
backend and image.  The user's server is hostile (its owner can replace it by any
program), so it is read with the bounded client of :mod:`ipydoc.proxy.fetch` (no
``treq``): ``Accept-Encoding: identity`` and no other ``Content-Encoding`` accepted, a byte
budget on the body (``max_file_size`` as base64 plus room for the model, small for the
other reads), one deadline of ``history.fetch_timeout`` for the whole exchange, and only
a JSON object of the expected shape is used.  At most ``READ_SLOTS`` file reads run at
once over all users, which bounds the memory they take.  Files larger than
``history.max_file_size`` (default 10 MiB) are not versioned (event ``history-skipped``);
a notebook output larger than ``history.max_output_size`` (1 MiB) is replaced in the
versioned copy by a short stream output saying so (the user's own file keeps it).
Notebooks are otherwise stored byte for byte as saved, so diffs and restores are exact.
Binary files within the cap are stored as they are.

Named servers (issue 19): a user's servers share one volume, so the user's files are
read from whichever of them runs (:func:`reach`: the one that saved first, then the
default, then any other); each is addressed by its own base URL (:class:`At`).

An answer that breaks a rule raises :class:`~ipydoc.history.errors.Hostile`; a server
that cannot be read now (refused, reset, 5xx, token changed) raises
:class:`~ipydoc.history.errors.Transient`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from twisted.internet import defer

from ipydoc.config.history import HistorySection
from ipydoc.config.types import parse_size
from ipydoc.history.errors import HistoryError, Hostile, Transient
from ipydoc.names import SERVER_KEY_SEPARATOR, InvalidName, server_key
from ipydoc.proxy.fetch import Fetcher, FetchError, FetchResponse

MODEL_BUDGET = 1024 * 1024         # a contents model without content
LISTING_BUDGET = 16 * 1024 * 1024  # a folder listing (thousands of entries)
READ_SLOTS = 4         # file reads at once over all users (each up to ~3x its budget)


class UserServers(Protocol):
    """What history needs of the server manager: the running servers' routes (``url``,
    ``token``) and each user's base path (it depends on the routing mode)."""

    routes: Mapping[str, Any]

    def base_url(self, name: str) -> str: ...


@dataclass(frozen=True)
class At:
    """A route to one of a user's servers and that server's key (its base URL)."""

    key: str
    url: str
    token: str


def reach(servers: UserServers, owner: str, prefer: str = "") -> At | None:
    """A running server of ``owner`` to read and write their files through: the named
    server ``prefer`` ("" the default), then the default one, then any other of theirs."""
    routes = servers.routes
    try:
        first = server_key(owner, prefer) if prefer else owner
    except InvalidName:
        first = owner
    for key in dict.fromkeys((first, owner)):
        route = routes.get(key)
        if route is not None:
            return At(key, route.url, route.token)
    named = owner + SERVER_KEY_SEPARATOR
    for key in sorted(k for k in routes if k.startswith(named)):
        return At(key, routes[key].url, routes[key].token)
    return None


class StoreSource(Protocol):
    """The Redis service: its ``store`` exists once it has started."""

    store: Any


class Contents:
    """The contents API of users' servers, read and written within budgets."""

    def __init__(self, cfg: HistorySection, servers: UserServers | None,
                 store_source: StoreSource, reactor: Any) -> None:
        self.cfg = cfg
        self.servers = servers
        self._store_source = store_source
        self.max_file = parse_size(cfg.max_file_size)
        self.max_output = parse_size(cfg.max_output_size)
        self._fetch = Fetcher(reactor, connect_timeout=10)
        self._read_slots = defer.DeferredSemaphore(READ_SLOTS)

    def prefix(self, user: str) -> str:
        """The contents API's path on ``user``'s server (its base URL depends on routing)."""
        base = self.servers.base_url(user) if self.servers is not None else f"/user/{user}/"
        return f"{base}api/contents/"

    def url(self, name: str, route: Any, path: str) -> str:
        """``path`` on ``name``'s server, or on the server an :class:`At` names."""
        key = route.key if isinstance(route, At) else name
        return f"{route.url}{self.prefix(key)}{quote(path)}"

    async def _fetch_contents(self, name: str, route: Any, path: str, budget: int,
                              params: dict[str, str]) -> FetchResponse:
        try:
            return await self._fetch.get(
                self.url(name, route, path), params=params, max_body=budget,
                timeout=self.cfg.fetch_timeout,
                headers={"Authorization": f"token {route.token}"})
        except FetchError as e:
            if e.budget:
                raise Hostile(f"reading {path}: {e}") from None
            raise Transient(str(e)) from None  # refused, reset: restarting, or stopped

    async def get(self, name: str, route: Any, path: str, budget: int = MODEL_BUDGET,
                  **params: str) -> dict[str, Any] | None:
        """A contents-API model (a JSON object), None for 404; the answer is bounded."""
        r = await self._fetch_contents(name, route, path, budget, params)
        if r.code == 404:
            return None
        if r.code >= 500 or r.code in (401, 403):  # 403: the token changed (restart)
            raise Transient(f"HTTP {r.code}")
        if r.code != 200:
            raise HistoryError(f"the server answered HTTP {r.code} reading {path}")
        try:
            model = r.json()
        except FetchError as e:
            raise Hostile(f"reading {path}: {e}") from None
        if not isinstance(model, dict):
            raise Hostile(f"reading {path}: the answer is not a contents model")
        return model

    async def read_file(self, name: str, route: Any, path: str) -> bytes | None:
        """The file's bytes as versioned (outputs trimmed), or None: gone, a folder, too big."""
        model = await self.get(name, route, path, content="0")
        if model is None or model.get("type") == "directory":
            return None
        size = model.get("size")
        if isinstance(size, int) and size > self.max_file:
            await self._skipped(name, path, size)
            return None
        # base64 of max_file_size plus room for the model around it
        budget = self.max_file * 4 // 3 + MODEL_BUDGET
        async with self._read_slots:
            model = await self.get(name, route, path, budget, type="file",
                                   format="base64", content="1")
            if model is None:
                return None
            content = model.get("content") or ""
            if not isinstance(content, str):
                raise Hostile(f"reading {path}: the content is not a string")
            try:
                data = (base64.b64decode(content)  # jupyter_server wraps its lines
                        if model.get("format") == "base64" else content.encode("utf-8"))
            except (ValueError, UnicodeEncodeError):
                raise Hostile(f"reading {path}: the content is not valid base64") from None
            del model, content
        if len(data) > self.max_file:
            await self._skipped(name, path, len(data))
            return None
        return self.trim(path, data)

    async def _skipped(self, name: str, path: str, size: int) -> None:
        await self._store_source.store.add_event(
            "history-skipped", name, f"{path}: {size} bytes is over history.max_file_size "
            f"({self.cfg.max_file_size}); not versioned")

    def trim(self, path: str, data: bytes) -> bytes:
        """``data`` with notebook outputs over ``max_output_size`` replaced by a note."""
        if not path.endswith(".ipynb") or len(data) <= self.max_output:
            return data
        try:
            nb = json.loads(data)
            cells = nb["cells"]
        except (ValueError, KeyError, TypeError):
            return data
        trimmed = False
        for cell in cells:
            outputs = cell.get("outputs") if isinstance(cell, dict) else None
            for i, out in enumerate(outputs or []):
                size = len(json.dumps(out))
                if size > self.max_output:
                    outputs[i] = {"output_type": "stream", "name": "stdout", "text": [
                        f"[ipydoc history: an output of {size} bytes is not kept in the "
                        f"history (history.max_output_size = {self.cfg.max_output_size})]\n"]}
                    trimmed = True
        if not trimmed:
            return data
        return (json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()

    async def write(self, name: str, route: Any, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` on ``name``'s server (``PUT``, as a save): a notebook
        as JSON, text as text, anything else as base64.  :class:`HistoryError` if it
        cannot be done."""
        model: dict[str, Any]
        if path.endswith(".ipynb"):
            try:
                model = {"type": "notebook", "format": "json", "content": json.loads(data)}
            except ValueError:
                model = {"type": "file", "format": "base64",
                         "content": base64.b64encode(data).decode()}
        else:
            try:
                model = {"type": "file", "format": "text", "content": data.decode("utf-8")}
            except UnicodeDecodeError:
                model = {"type": "file", "format": "base64",
                         "content": base64.b64encode(data).decode()}
        await self._put(name, route, path, model, "the restore",
                        timeout=max(120.0, self.cfg.fetch_timeout))

    async def make_folders(self, name: str, route: Any, path: str) -> None:
        """Create the folders ``path`` lies in (``PUT`` of a directory model; one that
        exists is left as it is), so a file of a deleted folder can be restored."""
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            folder = "/".join(parts[:i])
            await self._put(name, route, folder, {"type": "directory"},
                            f"to create the folder {folder}", timeout=self.cfg.fetch_timeout)

    async def _put(self, name: str, route: Any, path: str, model: dict[str, Any],
                   what: str, timeout: float) -> None:
        """``PUT`` a contents model on ``name``'s server; :class:`HistoryError` saying
        ``what`` was refused (with the server's message, bounded) if it is not 200/201."""
        try:
            r = await self._fetch.request(
                "PUT", self.url(name, route, path), body=json.dumps(model).encode(),
                max_body=MODEL_BUDGET, timeout=timeout,
                headers={"Authorization": f"token {route.token}",
                         "Content-Type": "application/json"})
        except FetchError as e:
            raise HistoryError(f"the server of {name} could not be reached or answered "
                               f"badly: {e}") from None
        if r.code not in (200, 201):
            why = ""
            try:
                answer = r.json()
                why = str(answer.get("message", ""))[:200] if isinstance(answer, dict) else ""
            except FetchError:
                pass
            raise HistoryError(f"the server refused {what}: HTTP {r.code} {why}".strip())


def children(listing: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The entries of a folder's model that are objects (the server is not trusted)."""
    content = (listing or {}).get("content")
    return [c for c in content if isinstance(c, dict)] if isinstance(content, list) else []
