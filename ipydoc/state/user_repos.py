"""Users' own history repositories (``history-repo:{name}``, ``history-repos``).

One hash per user: where their history is pushed, the credential as ciphertext (sealed by
:mod:`ipydoc.history.sealing`; this module never sees it in clear), and how the last push
went.  The set ``history-repos`` lists the linked names, so a daemon that starts finds
the pushes it is behind on without SCAN.
"""

from __future__ import annotations

from typing import Any

from ipydoc.state.connection import StoreBase
from ipydoc.state.keys import HISTORY_REPOS, history_repo_key

#: The fields a link is made of (a new link replaces every one of them).
LINK_FIELDS = ("url", "via", "login", "secret", "status", "error", "rev", "attempts",
               "linked", "updated")


class UserRepos(StoreBase):
    async def user_repo(self, name: str) -> dict[str, str]:
        """The link of ``name`` (empty: none)."""
        return dict(await self.redis.hgetall(history_repo_key(name)) or {})

    async def link_user_repo(self, name: str, url: str, via: str, login: str,
                             secret: str) -> None:
        """Link (or re-link) ``name``'s repository: the old state goes, pushes start over."""
        now = repr(self._now())
        fields = {"url": url, "via": via, "login": login, "secret": secret,
                  "status": "pending", "error": "", "rev": "", "attempts": "0",
                  "linked": now, "updated": now}
        t = await self.redis.multi()
        t.delete(history_repo_key(name))
        t.hmset(history_repo_key(name), fields)
        t.sadd(HISTORY_REPOS, name)
        await t.commit()

    async def set_user_repo_state(self, name: str, secret: str, **values: Any) -> bool:
        """Record how a push went, only if the link is still the one pushed with (its
        ciphertext ``secret``): an unlink or re-link meanwhile wins.  False then."""
        flat = {k: ("" if v is None else str(v)) for k, v in values.items()}
        flat["updated"] = repr(self._now())
        args: list[str] = [secret]
        for k, v in flat.items():
            args += [k, v]
        return bool(await self._eval(
            "if redis.call('HGET', KEYS[1], 'secret') ~= ARGV[1] then return 0 end "
            "redis.call('HSET', KEYS[1], unpack(ARGV, 2)) return 1",
            [history_repo_key(name)], *args))

    async def unlink_user_repo(self, name: str) -> bool:
        """Delete the link (and its ciphertext); False if there was none."""
        t = await self.redis.multi()
        t.delete(history_repo_key(name))
        t.srem(HISTORY_REPOS, name)
        gone, _ = await t.commit()
        return bool(gone)

    async def user_repo_names(self) -> list[str]:
        return sorted(await self.redis.smembers(HISTORY_REPOS) or [])
