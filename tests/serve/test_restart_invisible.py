"""Issue 17 §2: ``ipydoc restart`` under load, as a user sees it.

A client keeps sending requests through the proxy and to the hub (one keep-alive
``requests.Session``) and keeps a kernel WebSocket busy while the daemon's worker is
replaced three times.  No HTTP request fails; the kernel WebSocket is closed by the old
worker and reconnects (as JupyterLab does), and the kernel still knows ``x``; the user's
container was never restarted; a notebook saved during a switch is in the history.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass, field

import pytest
import requests
import websocket

from kernel_client import connect, execute, start_kernel
from support import CLI, docker, follow_progress, login, wait_for

PASSWORD = "alice-secret-pw"
RESTARTS = 3


@dataclass
class Load:
    """What the request loop saw."""

    sent: int = 0
    failures: list[str] = field(default_factory=list)
    slowest: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)


def request_loop(session: requests.Session, base: str, load: Load) -> None:
    paths = ["/user/alice/api/status", "/hub/home"]
    while not load.stop.is_set():
        path = paths[load.sent % 2]
        began = time.monotonic()
        try:
            r = session.get(base + path, timeout=60, allow_redirects=False)
            if r.status_code != 200:
                load.failures.append(f"{path}: HTTP {r.status_code} {r.text[:200]}")
        except requests.RequestException as e:
            load.failures.append(f"{path}: {type(e).__name__}: {e}")
        load.slowest = max(load.slowest, time.monotonic() - began)
        load.sent += 1


@dataclass
class Kernel:
    """A kernel kept busy over its WebSocket, reconnecting when the socket closes."""

    session: requests.Session
    base: str
    kernel_id: str
    results: list[str] = field(default_factory=list)
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        ws = connect(self.session, self.base, "alice", self.kernel_id)
        while not self.stop.is_set():
            try:
                self.results.append(execute(ws, "import time; time.sleep(0.05); x")["text/plain"])
            except (websocket.WebSocketException, ConnectionError, OSError) as e:
                self.reconnects += 1
                try:
                    ws.close()
                except Exception:  # noqa: BLE001 - already closed
                    pass
                ws = self._reconnect(e)
                if ws is None:
                    return
        ws.close()

    def _reconnect(self, why: Exception) -> websocket.WebSocket | None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self.stop.is_set():
            try:
                return connect(self.session, self.base, "alice", self.kernel_id)
            except Exception as e:  # noqa: BLE001 - JupyterLab retries too
                self.errors.append(f"reconnect after {why!r}: {e!r}")
                time.sleep(0.2)
        return None


@pytest.fixture
def site(make_daemon):
    d = make_daemon(auth={"stop_on_logout": False}, history={"coalesce_seconds": 0.5})
    d.serve = True
    d.start()
    d.add_user("alice", PASSWORD)
    return d


def started_at(container: str) -> str:
    return docker("inspect", "-f", "{{.State.StartedAt}}", container)


def history_versions(d, path: str) -> list[dict]:
    r = d.cli("--json", "history", "list", "alice", path)
    return json.loads(r.stdout) if r.returncode == 0 else []


def test_restarts_under_load_fail_no_request(site):
    d = site
    session, r = login(d.url, "alice", PASSWORD)
    assert r.status_code == 303
    assert follow_progress(session, d.url, "alice")[-1]["phase"] == "ready"
    [container] = d.containers("alice", all=False)
    born = started_at(container)

    kernel_id = start_kernel(session, d.url, "alice")
    ws = connect(session, d.url, "alice", kernel_id)
    assert execute(ws, "x = 41; x")["text/plain"] == "41"
    ws.close()

    load = Load()
    kernel = Kernel(session, d.url, kernel_id)
    threads = [threading.Thread(target=request_loop, args=(session, d.url, load), daemon=True),
               threading.Thread(target=kernel.run, daemon=True)]
    for t in threads:
        t.start()
    wait_for(lambda: load.sent > 20 and kernel.results, timeout=60)

    workers = []
    for i in range(RESTARTS):
        sent_before = load.sent
        restart = subprocess.Popen(CLI + ["--config", str(d.config_path), "--json", "restart"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # A save while the workers swap (the new one is starting or the old one drains).
        nb = {"cells": [{"cell_type": "code", "id": "c0", "metadata": {}, "outputs": [],
                         "execution_count": None, "source": f"y = {i}"}],
              "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
        time.sleep(0.5)
        put = session.put(f"{d.url}/user/alice/api/contents/during-{i}.ipynb",
                          json={"type": "notebook", "format": "json", "content": nb},
                          headers={"Origin": d.url}, timeout=60)
        assert put.status_code in (200, 201), put.text
        out, err = restart.communicate(timeout=300)
        assert restart.returncode == 0, (out, err)
        outcome = json.loads(out)
        assert outcome["ok"] and outcome["old_gone"]
        workers.append(outcome)
        wait_for(lambda n=sent_before: load.sent > n + 20, timeout=60)  # served after it
    wait_for(lambda: kernel.reconnects >= 1 and len(kernel.results) > 5, timeout=60)
    load.stop.set()
    kernel.stop.set()
    for t in threads:
        t.join(timeout=90)

    assert len({w["new"] for w in workers}) == RESTARTS
    assert load.failures == [], load.failures[:10]
    assert load.sent > 100
    assert kernel.results and set(kernel.results) == {"41"}
    assert kernel.reconnects >= 1  # the old worker closed the socket; we came back
    ws = connect(session, d.url, "alice", kernel_id)
    assert execute(ws, "x + 1")["text/plain"] == "42"
    ws.close()
    assert d.containers("alice", all=False) == [container]
    assert started_at(container) == born  # the server kept running through every restart
    for i in range(RESTARTS):
        versions = wait_for(lambda i=i: history_versions(d, f"during-{i}.ipynb"), timeout=60)
        assert versions[0]["author"] == "alice"
    print(f"\n{load.sent} requests, 0 failed, slowest {load.slowest:.3f} s; kernel "
          f"reconnected {kernel.reconnects} times; restarts "
          f"{[w['seconds'] for w in workers]} s")
