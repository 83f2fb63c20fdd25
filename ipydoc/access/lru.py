"""A bounded map that drops its least recently used entry when full.

The access caches (sessions, subdomain host sessions, share tables) hold one entry per
active browser or server.  Emptying a full cache whole would send every active user back
to Redis at once; dropping the coldest entry keeps the hot ones, and each lookup stays O(1).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    __slots__ = ("_items", "maxsize", "evictions", "_on_evict")

    def __init__(self, maxsize: int, on_evict: Callable[[], None] | None = None) -> None:
        self._items: OrderedDict[K, V] = OrderedDict()
        self.maxsize = maxsize
        #: Entries dropped to stay within ``maxsize``.
        self.evictions = 0
        self._on_evict = on_evict

    def get(self, key: K) -> V | None:
        """The value (now the most recently used), or None."""
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.maxsize:
            self._items.popitem(last=False)
            self.evictions += 1
            if self._on_evict is not None:
                self._on_evict()

    def pop(self, key: K) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items
