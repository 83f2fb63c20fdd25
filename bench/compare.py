#!/usr/bin/env python3
"""One table from a peer_compare.sh run: ipydoc vs JupyterHub+DockerSpawner+CHP.

Reads bench/results/spawn-ipydoc-*-<TAG>-r<k>-<arm>.json (bench/spawn.py) and
bench/results/<TAG>/spawn-{cold,burst}-docker-*.json (the peer's run_spawn.py), and prints
cold-spawn p50/max per round and pooled over all rounds, the ratio ipydoc/peer of the
p50s, and memory with KEEP servers: ipydoc daemon + embedded Redis vs hub + CHP.

    python3 bench/compare.py cmp-20261126T021500
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from spawn import pct

RESULTS = Path(__file__).resolve().parent / "results"


def load(tag: str) -> dict[str, dict[str, dict]]:
    """{arm: {round: {"cold": [s...], "burst": [s...], "mem": {...}}}}"""
    arms: dict[str, dict[str, dict]] = {}
    for f in sorted(RESULTS.glob(f"spawn-ipydoc-*-{tag}-r*.json")):
        d = json.loads(f.read_text())
        m = re.search(r"-r(\d+)-(\w+)$", d["tag"])
        mem = d.get("mem_n_servers", {})
        arms.setdefault(m.group(2), {})[m.group(1)] = {
            "cold": [r["ready_s"] for r in d.get("cold_rows", [])],
            "burst_p50": d.get("burst_ready_s", {}).get("p50"),
            "frontend_mib": mem.get("daemon_plus_redis_mib"),
            "frontend_detail": f"daemon {mem.get('daemon_rss_mib', 0):.0f} + redis {mem.get('redis_rss_mib', 0):.0f}",
            "container_mib": mem.get("docker_stats_mem_mib", {}).get("p50"),
            "containers": mem.get("containers")}
    for f in sorted((RESULTS / tag).glob("spawn-*-docker-*.json")):
        d = json.loads(f.read_text())
        rnd = d["tag"].lstrip("r")
        slot = arms.setdefault("peer", {}).setdefault(rnd, {})
        if d["test"] == "cold":
            slot["cold"] = [r["ready_s"] for r in d["rows"] if r.get("ok")]
        else:
            mem = d.get("mem_n_servers", {})
            slot["burst_p50"] = d.get("ready_s", {}).get("p50")
            slot["frontend_mib"] = mem.get("hub_rss_mib", 0) + mem.get("chp_rss_mib", 0)
            slot["frontend_detail"] = f"hub {mem.get('hub_rss_mib', 0):.0f} + CHP {mem.get('chp_rss_mib', 0):.0f}"
            slot["container_mib"] = mem.get("docker_stats_mem_mib", {}).get("p50")
            slot["containers"] = mem.get("containers")
    return arms


def fmt(x: float | None, f: str = ".2f") -> str:
    return "–" if x is None else format(x, f)


def main() -> None:
    tag = sys.argv[1]
    arms = load(tag)
    peer = arms.get("peer", {})
    print(f"## ipydoc vs JupyterHub 6.1.1 + DockerSpawner + CHP ({tag})\n")
    print("Cold spawn, sequential (s, start request -> 200 on /user/<u>/api/status via the proxy):\n")
    print("| arm | round | n | p50 s | max s | p50 ratio vs peer (same round) |")
    print("|---|---|---|---|---|---|")
    pooled: dict[str, list[float]] = {}
    for arm in sorted(arms, key=lambda a: (a == "peer", a)):
        for rnd in sorted(arms[arm]):
            xs = arms[arm][rnd].get("cold", [])
            pooled.setdefault(arm, []).extend(xs)
            ref = peer.get(rnd, {}).get("cold")
            ratio = pct(xs, 50) / pct(ref, 50) if xs and ref and arm != "peer" else None
            print(f"| {arm} | {rnd} | {len(xs)} | {fmt(pct(xs, 50))} | {fmt(max(xs) if xs else None)} | {fmt(ratio)} |")
    for arm, xs in pooled.items():
        ratio = (pct(xs, 50) / pct(pooled["peer"], 50)) if arm != "peer" and pooled.get("peer") else None
        print(f"| **{arm}** | all | {len(xs)} | **{fmt(pct(xs, 50))}** | {fmt(max(xs) if xs else None)} | **{fmt(ratio)}** |")
    print("\nMemory with the servers of the burst phase running (after the settle time):\n")
    print("| arm | round | servers | front end RSS MiB | (detail) | container p50 MiB (docker stats) | burst p50 s |")
    print("|---|---|---|---|---|---|---|")
    for arm in sorted(arms, key=lambda a: (a == "peer", a)):
        for rnd, v in sorted(arms[arm].items()):
            print(f"| {arm} | {rnd} | {v.get('containers', '–')} | {fmt(v.get('frontend_mib'), '.1f')} | "
                  f"{v.get('frontend_detail', '')} | {fmt(v.get('container_mib'), '.1f')} | {fmt(v.get('burst_p50'))} |")


if __name__ == "__main__":
    main()
