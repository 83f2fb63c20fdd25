"""The history queue: saves seen by the proxy and not yet committed (``history-queue:{name}``),
the ones given up on (``history-dead:{name}``) and the mirror's state (``history-push:{name}``).

Entries are only ever appended; the history service (:mod:`ipydoc.history`) pops the head
only after committing it or dead-lettering it, with compare-and-set scripts, so a crash
loses no save and a slow worker never drops one it has not handled.
"""

from __future__ import annotations

import json
from typing import Any

from ipydoc.state.connection import StoreBase
from ipydoc.state.keys import (
    HISTORY_QUEUE_PATTERN,
    history_dead_key,
    history_push_key,
    history_queue_key,
    tail,
)

# KEYS: queue.  ARGV: entry JSON, cap, op, path.  Appends unless the queue holds ``cap``
# entries; then a save is 'coalesced' (dropped) when the newest queued entry touching
# its path is a save of it that is not at the head (the head's read may be done
# already), so that later read covers it; otherwise 'full' (nothing is removed).
ENQUEUE_SCRIPT = """
local n = redis.call('LLEN', KEYS[1])
if n < tonumber(ARGV[2]) then
  redis.call('RPUSH', KEYS[1], ARGV[1])
  return 'queued'
end
if ARGV[3] ~= 'save' then return 'full' end
local path = ARGV[4]
local function related(p)
  if type(p) ~= 'string' then return false end
  return p == path or string.sub(path, 1, #p + 1) == p .. '/'
      or string.sub(p, 1, #path + 1) == path .. '/'
end
local items = redis.call('LRANGE', KEYS[1], 1, -1)
for i = #items, 1, -1 do
  local ok, e = pcall(cjson.decode, items[i])
  if ok and type(e) == 'table' then
    if e['op'] == 'save' and e['path'] == path then return 'coalesced' end
    if related(e['path']) or related(e['to']) then return 'full' end
  end
end
return 'full'
"""

# KEYS: queue, dead.  ARGV: the head as read, dead-letter record, how many to keep.
DEAD_SCRIPT = """
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[1] then return 0 end
redis.call('LPOP', KEYS[1])
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
return 1
"""

# KEYS: queue.  ARGV: the head as read, its replacement.
REPLACE_HEAD_SCRIPT = """
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[1] then return 0 end
redis.call('LSET', KEYS[1], 0, ARGV[2])
return 1
"""


def _queue_entry(raw: str) -> dict[str, Any]:
    """A history queue entry; a broken one (never written by us) reads as ``invalid``."""
    try:
        entry = json.loads(raw)
    except ValueError:
        entry = None
    return entry if isinstance(entry, dict) else {"op": "invalid", "path": "", "time": 0}


class HistoryQueue(StoreBase):
    HISTORY_DEAD_KEEP = 100

    async def history_enqueue(self, name: str, entry: dict[str, Any],
                              cap: int = 0) -> str:
        """Append ``entry`` atomically unless ``cap`` entries are queued: ``queued``,
        ``coalesced`` (a save covered by a queued save of the same path) or ``full``."""
        if cap <= 0:
            await self.redis.rpush(history_queue_key(name), json.dumps(entry))
            return "queued"
        return str(await self._eval(
            ENQUEUE_SCRIPT, [history_queue_key(name)],
            json.dumps(entry), str(cap), str(entry.get("op", "")), str(entry.get("path", ""))))

    async def history_peek(self, name: str, count: int = 200) -> list[dict[str, Any]]:
        return [_queue_entry(item) for item in await self.history_peek_raw(name, count)]

    async def history_peek_raw(self, name: str, count: int = 200) -> list[str]:
        """The oldest ``count`` entries as stored (for the compare-and-set calls below)."""
        return list(await self.redis.lrange(history_queue_key(name), 0, count - 1) or [])

    async def history_replace_head(self, name: str, old: str, new: str) -> bool:
        """Rewrite the oldest entry (its attempt count) if it is still ``old``."""
        return bool(await self._eval(
            REPLACE_HEAD_SCRIPT, [history_queue_key(name)], old, new))

    async def history_dead_letter(self, name: str, old: str, reason: str,
                                  attempts: int) -> bool:
        """Move the oldest entry (if it is still ``old``) to the dead letters, atomically."""
        record = json.dumps({"entry": _queue_entry(old), "reason": reason,
                             "time": self._now(), "attempts": attempts})
        return bool(await self._eval(
            DEAD_SCRIPT, [history_queue_key(name), history_dead_key(name)],
            old, record, str(self.HISTORY_DEAD_KEEP)))

    async def history_dead_letters(self, name: str) -> list[dict[str, Any]]:
        """The entries given up on, newest first."""
        raw = await self.redis.lrange(history_dead_key(name), 0, -1) or []
        out = []
        for item in reversed(raw):
            try:
                record = json.loads(item)
            except ValueError:
                continue
            if isinstance(record, dict):
                out.append(record)
        return out

    async def history_drop(self, name: str, count: int = 1) -> None:
        """Remove the ``count`` oldest entries (entries are only ever appended)."""
        await self.redis.ltrim(history_queue_key(name), count, -1)

    async def history_queued(self, name: str) -> int:
        return int(await self.redis.llen(history_queue_key(name)))

    async def history_queue_owners(self) -> list[str]:
        """Users with a non-empty queue (SCAN; used once at start)."""
        keys = await self._scan(HISTORY_QUEUE_PATTERN)
        return sorted(tail(k) for k in keys)

    async def history_push_state(self, name: str) -> dict[str, str]:
        return dict(await self.redis.hgetall(history_push_key(name)) or {})

    async def set_history_push_state(self, name: str, **values: Any) -> None:
        flat = {k: ("" if v is None else str(v)) for k, v in values.items()}
        flat["updated"] = repr(self._now())
        await self.redis.hmset(history_push_key(name), flat)
