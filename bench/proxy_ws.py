#!/usr/bin/env python3
"""Kernel WebSocket round trip for ``bench/proxy.py`` (needs aiohttp: run it with a Python
that has it, e.g. ``/tmp/peer-venv/bin/python``).

Same logic as ``../shared/peer/run_ws_bench.py``: one kernel, started over the first
target's HTTP API, shared by all targets; per target and repetition one WebSocket to
``<base>/api/kernels/<id>/channels``, 20 unrecorded warm-up messages, then ``--n``
sequential ``execute_request('1+1')``; RTT = until the matching ``execute_reply``, and
the matching ``status: idle`` is awaited before the next request.  The order rotates per
repetition.  Targets come as JSON: ``[{"name", "http", "ws", "headers"}, ...]`` where
``http``/``ws`` are base URLs ending in the server's base_url (``.../user/<u>``).
"""
import argparse
import asyncio
import json
import statistics
import time
import uuid

import aiohttp


def pct(xs, p):
    xs = sorted(xs); k = (len(xs) - 1) * p / 100; f = int(k); c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


def msg(session):
    mid = uuid.uuid4().hex
    return mid, json.dumps({
        "header": {"msg_id": mid, "username": "bench", "session": session, "msg_type": "execute_request",
                   "version": "5.3", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": "1+1", "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True}})


async def run_target(s, target, kid, n, warm=20):
    session = uuid.uuid4().hex
    url = f"{target['ws']}/api/kernels/{kid}/channels?session_id={session}"
    rtts = []
    async with s.ws_connect(url, headers=target["headers"], max_msg_size=0) as ws:
        for i in range(warm + n):
            mid, m = msg(session)
            t0 = time.perf_counter()
            await ws.send_str(m)
            t_reply = None; idle = False
            while t_reply is None or not idle:
                r = await asyncio.wait_for(ws.receive(), 30)
                if r.type != aiohttp.WSMsgType.TEXT:
                    raise RuntimeError(f"{target['name']}: ws closed: {r}")
                d = json.loads(r.data)
                if d["parent_header"].get("msg_id") != mid:
                    continue
                if d.get("msg_type") == "execute_reply":
                    t_reply = time.perf_counter()
                elif d.get("msg_type") == "status" and d["content"].get("execution_state") == "idle":
                    idle = True
            if i >= warm:
                rtts.append((t_reply - t0) * 1000)
    return rtts


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", required=True, help="JSON list of targets (first: kernel owner)")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    targets = json.loads(a.targets)
    names = [t["name"] for t in targets]
    first = targets[0]
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{first['http']}/api/kernels", headers=first["headers"],
                          json={"name": "python3"}) as r:
            assert r.status == 201, (r.status, await r.text())
            kid = (await r.json())["id"]
        await asyncio.sleep(2)
        res = {t: [] for t in names}; per_rep = []
        for rep in range(a.reps):
            k = rep % len(targets)
            for t in targets[k:] + targets[:k]:
                rt = await run_target(s, t, kid, a.n)
                res[t["name"]] += rt
                row = {"rep": rep + 1, "target": t["name"], "p50_ms": pct(rt, 50),
                       "p99_ms": pct(rt, 99), "mean_ms": statistics.mean(rt)}
                per_rep.append(row)
                print(f"ws rep{rep+1} {t['name']}: p50 {row['p50_ms']:.3f} ms p99 {row['p99_ms']:.3f} ms",
                      flush=True)
        async with s.delete(f"{first['http']}/api/kernels/{kid}", headers=first["headers"]):
            pass
    summary = {t: {"n": len(v), "p50_ms": pct(v, 50), "p90_ms": pct(v, 90), "p99_ms": pct(v, 99),
                   "max_ms": max(v), "mean_ms": statistics.mean(v)} for t, v in res.items()}
    with open(a.out, "w") as f:
        json.dump({"summary_pooled": summary, "per_rep": per_rep, "n_per_rep": a.n}, f, indent=1)


asyncio.run(main())
