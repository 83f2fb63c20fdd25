"""Unit tests of what the admin page computes: Docker stats → CPU and memory figures,
row sorting, and the stats cache that admins polling at once share."""

from __future__ import annotations

import pytest
from twisted.internet import defer

from ipydoc.backends.docker_formats import summarize_stats
from ipydoc.web.present import Row, StatsCache, ago, size, sort_rows

V1 = {  # trimmed from a real cgroup v1 engine answer
    "cpu_stats": {"cpu_usage": {"total_usage": 3_000_000_000, "percpu_usage": [1, 2]},
                  "system_cpu_usage": 20_000_000_000, "online_cpus": 2},
    "precpu_stats": {"cpu_usage": {"total_usage": 2_000_000_000},
                     "system_cpu_usage": 16_000_000_000},
    "memory_stats": {"usage": 100 * 2**20, "limit": 2**30,
                     "stats": {"total_inactive_file": 20 * 2**20, "inactive_file": 0}},
    "pids_stats": {"current": 7},
}


def test_stats_like_docker_stats_cgroup_v1():
    s = summarize_stats(V1)
    # 1 s of CPU over 4 s of system time on 2 CPUs = half a CPU
    assert s == {"cpu_percent": 50.0, "mem_bytes": 80 * 2**20, "mem_limit": 2**30, "pids": 7}


def test_stats_cgroup_v2_names_the_cache_inactive_file():
    raw = {**V1, "memory_stats": {"usage": 100 * 2**20, "limit": 2**30,
                                  "stats": {"inactive_file": 30 * 2**20}}}
    assert summarize_stats(raw)["mem_bytes"] == 70 * 2**20


def test_stats_of_a_first_sample_or_a_stopped_container_are_zero_not_an_error():
    assert summarize_stats({"precpu_stats": {}, "cpu_stats": {}, "memory_stats": {}}) == {
        "cpu_percent": 0.0, "mem_bytes": 0, "mem_limit": 0, "pids": 0}
    assert summarize_stats({})["cpu_percent"] == 0.0


def test_sort_rows_puts_rows_without_a_value_last():
    rows = [Row("a", False, False, 3, "stopped"),
            Row("b", False, False, 1, "running", stats={"mem_bytes": 5, "cpu_percent": 1}),
            Row("c", False, False, 2, "running", stats={"mem_bytes": 9, "cpu_percent": 0},
                last_activity=10)]
    assert [r.name for r in sort_rows(rows, "memory", True)] == ["c", "b", "a"]
    assert [r.name for r in sort_rows(rows, "memory", False)] == ["b", "c", "a"]
    assert [r.name for r in sort_rows(rows, "activity", False)] == ["c", "a", "b"]
    assert [r.name for r in sort_rows(rows, "state", False)] == ["b", "c", "a"]
    assert [r.name for r in sort_rows(rows, "name", True)] == ["c", "b", "a"]


def test_formatting():
    assert size(512) == "512 B" and size(54.1 * 2**20) == "54.1 MiB" and size(2**30) == "1.0 GiB"
    assert ago(None) == "never" and ago(100, now=130) == "just now"
    assert ago(100, now=100 + 7200) == "2 h ago" and ago(0.5, now=86400 * 3) == "2 days ago"


@pytest.mark.parametrize("parallel", [1, 16])
def test_stats_cache_shares_one_sampling_and_skips_failures(parallel):
    calls: list[str] = []
    pending: dict[str, defer.Deferred] = {}

    async def stats(cid: str) -> dict | None:
        calls.append(cid)
        if cid == "bad":
            raise RuntimeError("gone")
        pending[cid] = defer.Deferred()
        return await pending[cid]

    cache = StatsCache(stats, parallel=parallel)
    containers = {"alice": "a1", "bob": "bad", "carol": "c1"}
    first = defer.Deferred.fromCoroutine(cache.sample(containers))
    second = defer.Deferred.fromCoroutine(cache.sample(containers))
    for _ in range(3):
        for cid, d in list(pending.items()):
            if not d.called:
                d.callback({"mem_bytes": len(cid)})
    results = [first.result, second.result]
    assert results[0] == results[1] == {"alice": {"mem_bytes": 2}, "carol": {"mem_bytes": 2}}
    assert sorted(calls) == ["a1", "bad", "c1"]  # once each, for both callers
    assert cache.latest() == results[0]
