#!/usr/bin/env python3
"""Jupyter's own start inside the notebook image (issue 15 §2): container start → the
first 200 of ``/api/status``, and where that time goes.

For each rep and each image (interleaved, so every image sees the same machine), one
container is run by hand with the arguments ipydoc gives it (``jupyter_args.server_args``:
base URL, hub mode, …; token via the environment, port published on 127.0.0.1), then
``GET /user/<u>/api/status`` every 10 ms until 200.  Stages, all on the host's clock:

- ``create``: ``docker create`` (API call to container created);
- ``start``: ``docker start`` until it returns (namespaces, cgroup, tini);
- ``to_first_log``: start returned → the server's first log line (``docker logs
  --timestamps``): Python start and the imports of jupyter_server / JupyterLab;
- ``to_running``: first log line → "is running at" (extensions linked and loaded);
- ``to_200``: "is running at" → first 200 seen by the poller;
- ``total``: ``docker start`` issued → first 200 (what a cold login waits for, less the
  daemon's own work);
- ``cpu``: CPU seconds the container used until that 200 (its cgroup): the work itself,
  which other load on the machine barely moves, unlike the wall times;
- with ``--kernel``, after the 200: ``POST /api/kernels`` → the reply to a first
  ``execute_request`` on its WebSocket (what a pre-started kernel would save).

Medians (and min/max of ``total``) per image and the ratio to the first image; JSON to
bench/results/.

    .venv/bin/python bench/jupyter_start.py [--reps 10] [--image A --image B]
    .venv/bin/python bench/jupyter_start.py --image base=IMG --image nolsp=IMG \\
        --extra nolsp=--ServerApp.jpserver_extensions=jupyter_lsp=False --cmd nolsp=jupyter-lab
    .venv/bin/python bench/jupyter_start.py --bodies [--reps 9]   # docker start by shape
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import subprocess
import time
import uuid
from datetime import datetime
from pathlib import Path

import requests
import websocket
from spawn import docker, free_port, iso_ts

from ipydoc.backends.base import ServerSpec
from ipydoc.backends.jupyter_args import server_args

HERE = Path(__file__).resolve().parent
IMAGE = "ipydoc-test-notebook:latest"
STAGES = ["create", "start", "to_first_log", "to_running", "to_200", "total", "cpu"]


def spec_args(user: str, cmd: list[str]) -> list[str]:
    spec = ServerSpec(name=user, image="", base_url=f"/user/{user}/", token="")
    return [*cmd, *server_args(spec, port=8888, root_dir="/home/jovyan")]


def cpu_seconds(cid: str) -> float | None:
    """CPU time the container has used (its cgroup, v1 or v2): unlike wall time, barely
    moved by other work on a loaded machine."""
    for path, scale in ((f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage", 1e-9),
                        (f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat", 1e-6),
                        (f"/sys/fs/cgroup/docker/{cid}/cpu.stat", 1e-6)):
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        if path.endswith("cpu.stat"):
            text = dict(line.split() for line in text.splitlines())["usage_usec"]
        return int(text) * scale
    return None


def start_kernel(s: requests.Session, api: str, token: str) -> float:
    """POST /api/kernels → the reply to a first ``execute_request`` over the kernel's
    WebSocket: what a kernel pre-started in the image would save the first notebook."""
    auth = {"Authorization": f"token {token}"}
    t = time.time()
    kid = s.post(api + "kernels", json={"name": "python3"}, headers=auth, timeout=30).json()["id"]
    ws = websocket.create_connection(api.replace("http", "ws", 1) + f"kernels/{kid}/channels",
                                     header=[f"Authorization: token {token}"], timeout=60)
    try:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "bench", "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": "1 + 1", "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
        while True:
            msg = json.loads(ws.recv())
            if (msg.get("msg_type") == "execute_reply"
                    and msg.get("parent_header", {}).get("msg_id") == msg_id):
                return time.time() - t
    finally:
        ws.close()


def one_start(image: str, extra: list[str], cmd: list[str], with_kernel: bool) -> dict:
    name = f"ipydoc-jstart-{secrets.token_hex(4)}"
    port = free_port()
    token = secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_TOKEN=token)
    url = f"http://127.0.0.1:{port}/user/u/api/status"
    try:
        t0 = time.time()
        cid = subprocess.run(["docker", "create", "--name", name, "-e", "JUPYTER_TOKEN", "-p",
                        f"127.0.0.1:{port}:8888", image, *spec_args("u", cmd), *extra],
                             env=env, check=True, capture_output=True, text=True).stdout.strip()
        t1 = time.time()
        subprocess.run(["docker", "start", name], check=True, capture_output=True)
        t2 = time.time()
        deadline = time.monotonic() + 120
        s = requests.Session()
        while True:
            try:
                r = s.get(url, headers={"Authorization": f"token {token}"}, timeout=5)
                if r.status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
                raise SystemExit(f"{image}: no 200 in 120 s:\n{logs.stderr[-2000:]}")
            time.sleep(0.01)
        t3 = time.time()
        cpu = cpu_seconds(cid)
        kernel = start_kernel(s, url.removesuffix("status"), token) if with_kernel else None
        logs = subprocess.run(["docker", "logs", "--timestamps", name], capture_output=True,
                              text=True).stdout
        logs += subprocess.run(["docker", "logs", "--timestamps", name], capture_output=True,
                               text=True).stderr
        stamps = sorted((iso_ts(line.split(" ", 1)[0]), line) for line in logs.splitlines()
                        if line[:4].isdigit())
        first = stamps[0][0] if stamps else None
        running = next((t for t, line in stamps if re.search(r"is running at", line)), None)
        return {"create": t1 - t0, "start": t2 - t1,
                "to_first_log": first - t2 if first else None,
                "to_running": running - first if running and first else None,
                "to_200": t3 - running if running else None, "total": t3 - t1, "cpu": cpu,
                "kernel": kernel}
    finally:
        docker("rm", "-f", name)


#: ``docker start`` of a container shaped like ipydoc's (a user-defined bridge network, a
#: volume, memory and pids limits, no capabilities), and each shape with one part left out.
BODIES = {
    "as ipydoc": [],
    "network none": ["--network", "none"],
    "no volume": ["-v"],
    "no limits": ["--memory", "--memory-swap", "--pids-limit"],
    "no security opts": ["--cap-drop", "--security-opt"],
}


def body_args(net: str, vol: str, leave_out: list[str]) -> list[str]:
    full = [("--network", net), ("-v", f"{vol}:/home/jovyan/work"), ("--memory", "1g"),
            ("--memory-swap", "1g"), ("--pids-limit", "512"), ("--cap-drop", "ALL"),
            ("--security-opt", "no-new-privileges")]
    if leave_out[:1] == ["--network"]:
        return [*leave_out, *(a for kv in full[1:] for a in kv)]
    return [a for k, v in full if k not in leave_out for a in (k, v)]


def bodies(image: str, reps: int) -> str:
    """``docker start`` alone (a ``sleep``, no Jupyter) per container shape, interleaved:
    what the network attach, the volume, the limits and the security options cost.  The
    run's tag (in the names of everything it created)."""
    tag = secrets.token_hex(4)
    net, vol = f"ipydoc-jstart-net-{tag}", f"ipydoc-jstart-vol-{tag}"
    docker("network", "create", net)
    docker("volume", "create", vol)
    times: dict[str, list[float]] = {k: [] for k in BODIES}
    try:
        for i in range(reps):
            for label, leave_out in BODIES.items():
                name = f"ipydoc-jstart-{tag}-{i}-{len(times[label])}-{list(BODIES).index(label)}"
                subprocess.run(["docker", "create", "--name", name, "--user", "1000:100",
                                *body_args(net, vol, leave_out), "--entrypoint", "sleep",
                                image, "60"], check=True, capture_output=True)
                t0 = time.time()
                subprocess.run(["docker", "start", name], check=True, capture_output=True)
                times[label].append(time.time() - t0)
                docker("rm", "-f", name)
    finally:
        docker("network", "rm", net)
        docker("volume", "rm", vol)
    base = statistics.median(times["as ipydoc"])
    print(f"docker start by container shape, median of {reps} (s)\n")
    print("| shape | start | min | max | × as ipydoc |\n|---|---|---|---|---|")
    for label, ts in times.items():
        print(f"| {label} | {statistics.median(ts):.3f} | {min(ts):.3f} | {max(ts):.3f} | "
              f"{statistics.median(ts) / base:.2f} |")
    return tag


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--image", action="append",
                    help="image, or LABEL=IMAGE to run one image several ways (repeat to "
                         "compare; the first is the base)")
    ap.add_argument("--extra", action="append", default=[],
                    help="LABEL=ARG: one more jupyter argument for that label's containers")
    ap.add_argument("--cmd", action="append", default=[],
                    help="LABEL=CMD: the command instead of 'jupyter lab' (space-separated)")
    ap.add_argument("--kernel", action="store_true",
                    help="also time a kernel: POST /api/kernels → first execute_reply")
    ap.add_argument("--tag", default="")
    ap.add_argument("--bodies", action="store_true",
                    help="instead: docker start alone by container shape (network, volume, "
                         "limits, security options), on the first image")
    args = ap.parse_args()
    if args.bodies:
        bodies((args.image or [IMAGE])[0].rpartition("=")[2], args.reps)
        return
    variants = dict((v.partition("=")[0], v.partition("=")[2] or v)
                    for v in (args.image or [IMAGE]))
    images = list(variants)
    extras: dict[str, list[str]] = {i: [] for i in images}
    cmds: dict[str, list[str]] = {i: ["jupyter", "lab"] for i in images}
    for e in args.extra:
        label, _, arg = e.partition("=")
        extras[label].append(arg)
    for e in args.cmd:
        label, _, cmd = e.partition("=")
        cmds[label] = cmd.split()
    samples: dict[str, list[dict]] = {i: [] for i in images}
    for _ in range(args.reps):
        for label in images:
            samples[label].append(one_start(variants[label], extras[label], cmds[label],
                                            args.kernel))
    summary = {}
    for img, rs in samples.items():
        summary[img] = {k: statistics.median([r[k] for r in rs if r[k] is not None])
                        for k in STAGES}
        ks = [r["kernel"] for r in rs if r["kernel"] is not None]
        summary[img]["kernel"] = statistics.median(ks) if ks else None
        summary[img]["min_total"] = min(r["total"] for r in rs)
        summary[img]["max_total"] = max(r["total"] for r in rs)
    base = summary[images[0]]["total"]
    print(f"container start → first 200 of /api/status, median of {args.reps} (s)\n")
    print("| image | " + " | ".join(STAGES) + " | min | max | × first |")
    print("|---|" + "---|" * (len(STAGES) + 3))
    for img, s in summary.items():
        print(f"| {img} | " + " | ".join(f"{s[k]:.3f}" for k in STAGES)
              + f" | {s['min_total']:.3f} | {s['max_total']:.3f} | {s['total'] / base:.2f} |"
              + (f" kernel → first reply {s['kernel']:.3f} s" if s["kernel"] else ""))
    out = HERE / "results" / (f"jupyter-start-{datetime.now():%Y%m%d-%H%M%S}"
                              + (f"-{args.tag}" if args.tag else "") + ".json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"reps": args.reps, "variants": variants, "extras": extras, "cmds": cmds,
                               "samples": samples, "summary": summary}, indent=2))
    print(f"\nJSON: {out}")


if __name__ == "__main__":
    main()
