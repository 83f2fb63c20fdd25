"""The access caches' bound: the least recently used entry goes, the hot ones stay."""

from __future__ import annotations

from ipydoc.access.lru import LRU


def test_a_full_cache_drops_its_least_recently_used_entry_only():
    dropped: list[int] = []
    cache: LRU[str, int] = LRU(3, on_evict=lambda: dropped.append(1))
    for i, key in enumerate("abc"):
        cache.put(key, i)
    assert cache.get("a") == 0          # a is now the most recently used
    cache.put("d", 3)                   # b (the coldest) goes
    assert "b" not in cache and [cache.get(k) for k in "acd"] == [0, 2, 3]
    cache.put("c", 20)                  # replacing keeps the size
    assert len(cache) == 3 and cache.get("c") == 20
    cache.put("e", 4)                   # a is the coldest now (read before c and d)
    assert "a" not in cache and len(cache) == 3
    assert cache.evictions == len(dropped) == 2
    cache.pop("e")
    cache.pop("missing")
    assert len(cache) == 2 and cache.get("e") is None
    cache.clear()
    assert len(cache) == 0 and cache.evictions == 2
