"""``ipydoc serve`` / ``python -m ipydoc``: the supervisor with real sockets, Redis and
Docker: it serves, replaces its worker on ``ipydoc restart`` on the same listening
socket, keeps the old worker when the new one cannot start, restarts a worker that
died, and stops everything (the embedded Redis too) on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from support import CLI, SERVE, Daemon, free_port, wait_for


def cli_json(d: Daemon, *args: str) -> dict:
    """A command over the control socket named directly (the config file may be broken)."""
    r = subprocess.run(CLI + ["--control", str(d.root / "state" / "control.sock"), "--json",
                              *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return json.loads(r.stdout)


def worker_pid(d: Daemon) -> int:
    return cli_json(d, "status")["pid"]


def listening_inodes(port: int) -> set[str]:
    """The inodes of the sockets listening on 127.0.0.1:``port``."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":
            found.add(fields[9])
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_help_of_both_entry_points():
    out = subprocess.run([*SERVE, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "supervisor" in out.stdout and "--config" in out.stdout
    assert "--worker" not in out.stdout
    out = subprocess.run(CLI + ["serve", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "SIGHUP" in out.stdout and "restart" in out.stdout
    out = subprocess.run(CLI + ["restart", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "--timeout" in out.stdout and "--json" in out.stdout


def test_serve_with_a_bad_config_says_why(tmp_path):
    (tmp_path / "bad.toml").write_text("[server]\nnonsense = 1\n")
    out = subprocess.run([*SERVE, "--config", str(tmp_path / "bad.toml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "server.nonsense" in out.stderr and "Traceback" not in out.stderr


@pytest.fixture
def served(make_daemon):
    metrics = free_port()
    d = make_daemon(auth={"stop_on_logout": False},
                    metrics={"listen": f"tcp:{metrics}:interface=127.0.0.1"})
    d.serve = True
    d.metrics_port = metrics
    d.start()
    return d


def test_serve_runs_the_daemon_in_a_worker(served):
    d = served
    page = requests.get(d.url + "/hub/login", timeout=10)
    assert page.status_code == 200 and 'name="password"' in page.text
    pid = worker_pid(d)
    assert pid != d.proc.pid and children(d.proc.pid).count(pid) == 1
    assert "supervisor pid" in d.log() and "ipydoc ready" in d.log()
    control = d.root / "state" / "control.sock"
    assert oct(control.stat().st_mode & 0o777) == "0o600"
    # The same command through `ipydoc serve` (it becomes `python -m ipydoc`).
    for argv in (["--config", str(d.config_path), "serve"],
                 ["serve", "--config", str(d.config_path)]):  # as etc/ipydoc.service says
        out = subprocess.run(CLI + argv, capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and "cannot listen" in out.stdout + out.stderr


def test_restart_replaces_the_worker_on_the_same_socket(served):
    d = served
    before = listening_inodes(d.port)
    metrics_socket = listening_inodes(d.metrics_port)
    assert len(before) == 1 and len(metrics_socket) == 1
    old = worker_pid(d)
    for _ in range(2):
        out = cli_json(d, "restart")
        assert out["ok"] is True and out["old"] == old and out["new"] != old
        assert out["old_gone"] is True and not alive(old)
        assert worker_pid(d) == out["new"]
        assert listening_inodes(d.port) == before  # one socket, the supervisor's
        assert requests.get(d.url + "/hub/login", timeout=10).status_code == 200
        scrape = requests.get(f"http://127.0.0.1:{d.metrics_port}/metrics", timeout=10)
        assert scrape.status_code == 200 and "ipydoc_" in scrape.text  # metrics.listen too
        assert listening_inodes(d.metrics_port) == metrics_socket
        old = out["new"]
    table = subprocess.run(CLI + ["--config", str(d.config_path), "restart"],
                           capture_output=True, text=True, timeout=120)
    assert table.returncode == 0 and table.stdout.startswith(f"restarted: worker {old} -> ")
    # The control socket file outlived every old worker, and kept its mode.
    control = d.root / "state" / "control.sock"
    assert oct(control.stat().st_mode & 0o777) == "0o600"


def test_a_new_worker_that_cannot_start_leaves_the_old_one_serving(served):
    d = served
    old = worker_pid(d)
    good = d.config_path.read_text()
    assert "start_timeout = 60.0" in good
    d.config_path.write_text(good.replace("start_timeout = 60.0", "start_timeout = -1"))
    r = subprocess.run(CLI + ["--control", str(d.root / "state" / "control.sock"), "restart"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert f"worker {old} keeps serving" in r.stderr and "start_timeout" in r.stderr
    assert worker_pid(d) == old and alive(old)
    assert requests.get(d.url + "/hub/login", timeout=10).status_code == 200

    # A config that loads but whose worker exits at start (a TLS listener whose
    # certificate file is missing): the same, with the worker's exit as the reason, and
    # the listener bound for it is closed again.
    port = free_port()
    d.config_path.write_text(good.replace(
        f'listen = ["tcp:{d.port}:interface=127.0.0.1"]',
        f'listen = ["tcp:{d.port}:interface=127.0.0.1", "ssl:{port}:interface=127.0.0.1"]\n'
        f'tls_cert = "{d.root}/missing.pem"'))
    r = subprocess.run(CLI + ["--control", str(d.root / "state" / "control.sock"), "--json",
                              "restart"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    answer = json.loads(r.stdout)
    assert answer["ok"] is False and answer["old"] == old
    assert "exited before it was ready" in answer["error"]
    assert "missing.pem" in d.log()
    assert worker_pid(d) == old and not listening_inodes(port)
    d.config_path.write_text(good)
    out = cli_json(d, "restart")
    assert out["ok"] and out["new"] != old


def test_sighup_rereads_the_config_binding_and_closing_listeners(served):
    """`systemctl reload` is SIGHUP: a listener added is bound for the new worker; one
    removed is closed once the old worker is gone."""
    d = served
    old = worker_pid(d)
    good = d.config_path.read_text()
    extra = free_port()
    line = f'listen = ["tcp:{d.port}:interface=127.0.0.1"]'
    assert line in good
    d.config_path.write_text(good.replace(
        line, f'listen = ["tcp:{d.port}:interface=127.0.0.1", "tcp:{extra}:interface=127.0.0.1"]'))
    os.kill(d.proc.pid, signal.SIGHUP)
    new = wait_for(lambda: (p := worker_pid(d)) != old and p, timeout=120, interval=0.5)
    wait_for(lambda: not alive(old), timeout=60)
    page = requests.get(f"http://127.0.0.1:{extra}/hub/login", timeout=10)
    assert page.status_code == 200 and len(listening_inodes(extra)) == 1
    d.config_path.write_text(good)
    os.kill(d.proc.pid, signal.SIGHUP)
    wait_for(lambda: worker_pid(d) != new, timeout=120, interval=0.5)
    wait_for(lambda: not alive(new) and not listening_inodes(extra), timeout=60)
    assert "closed listeners no longer configured" in d.log()
    assert requests.get(d.url + "/hub/login", timeout=10).status_code == 200


def test_a_worker_that_dies_is_started_again(served):
    d = served
    old = worker_pid(d)
    os.kill(old, signal.SIGKILL)

    def new_worker() -> int | None:
        try:
            pid = worker_pid(d)
        except AssertionError:
            return None
        return pid if pid != old else None
    pid = wait_for(new_worker, timeout=60, interval=0.5)
    assert "exited unexpectedly" in d.log() and children(d.proc.pid).count(pid) == 1


def test_sigterm_stops_workers_and_the_embedded_redis(served):
    d = served
    worker = worker_pid(d)
    redis = int((d.root / "state" / "redis" / "redis.pid").read_text())
    assert alive(redis)
    assert d.stop() == 0
    assert not alive(worker) and not alive(redis)
    assert not (d.root / "state" / "control.sock").exists()
    assert not (d.root / "state" / "control.sock.lock").exists()
    assert "ipydoc serve stopped" in d.log()


def test_restart_under_plain_twistd_says_what_to_do(make_daemon):
    d = make_daemon()
    d.start()
    r = d.cli("restart")
    assert r.returncode == 6
    assert "without a supervisor" in r.stderr and "systemctl restart" in r.stderr
    assert requests.get(d.url + "/hub/login", timeout=10).status_code == 200
