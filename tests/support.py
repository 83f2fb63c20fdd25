"""Helpers for tests that run the real daemon (``twistd -n ipydoc``) as a user would."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

TEST_IMAGE = os.environ.get("IPYDOC_TEST_IMAGE", "ipydoc-test-notebook:latest")
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
CLI = [sys.executable, "-m", "ipydoc.cli"]
SERVE = [sys.executable, "-m", "ipydoc"]  # the supervisor (`ipydoc serve`)


class ThreadedServer:
    """A loopback TCP server for tests: each connection served by ``serve(conn)`` in a
    thread of its own (a subclass defines it); ``url`` is its address."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.url = "http://127.0.0.1:%d" % self._sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._sock.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        raise NotImplementedError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def peak_rss(pid: int) -> int:
    """The peak resident memory of process ``pid`` so far, in bytes (``VmHWM``)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def docker(*args: str, check: bool = True) -> str:
    out = subprocess.run(["docker", *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {out.stderr}")
    return out.stdout.strip()


@dataclass
class Daemon:
    """One ipydoc daemon under test, with its own state dir, port and Docker names."""

    root: Path
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    instance: str = field(default_factory=lambda: "t" + secrets.token_hex(3))
    proc: subprocess.Popen[bytes] | None = None
    serve: bool = False  # run through `python -m ipydoc` (supervisor; proc is its pid)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.root / "ipydoc.toml"

    @property
    def log_path(self) -> Path:
        return self.root / "daemon.log"

    def write_config(self) -> None:
        sections: dict[str, dict[str, Any]] = {
            "server": {"listen": [f"tcp:{self.port}:interface=127.0.0.1"],
                       "state_dir": str(self.root / "state")},
            "spawn": {"image": TEST_IMAGE, "start_timeout": 60.0, "mem_limit": "1G",
                      "cpu_limit": 1.0},
            "docker": {"volume_prefix": f"{self.instance}-home-", "instance": self.instance},
        }
        for section, values in self.overrides.items():
            sections.setdefault(section, {}).update(values)
        lines = []
        for section, values in sections.items():
            lines.append(f"[{section}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self, wait: bool = True, host: str | None = None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.write_config()
        log = open(self.log_path, "ab")
        argv = (SERVE + ["--config", str(self.config_path)] if self.serve else
                TWISTD + ["-n", "--pidfile", str(self.root / "twistd.pid"), "ipydoc",
                          "--config", str(self.config_path)])
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        if wait:
            self.wait_ready(host=host)

    def wait_ready(self, timeout: float = 30, host: str | None = None) -> None:
        """Until the login page answers (asked for with ``Host: host`` when given: a
        subdomain-mode hub answers only on its own domain)."""
        headers = {"Host": host} if host else {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "/hub/login", headers=headers,
                                timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"daemon not ready in {timeout}s:\n{self.log()}")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(CLI + ["--config", str(self.config_path), *args],
                              capture_output=True, text=True, input=input, timeout=60)

    def add_user(self, name: str, password: str, admin: bool = False) -> None:
        r = self.cli("user", "add", name, "--password-stdin", *(["--admin"] if admin else []),
                     input=password + "\n")
        assert r.returncode == 0, r.stderr

    def containers(self, name: str | None = None, all: bool = True) -> list[str]:
        filters = ["--filter", f"label=ipydoc.instance={self.instance}"]
        if name:
            filters += ["--filter", f"label=ipydoc.user={name}"]
        out = docker("ps", "-q", *(["-a"] if all else []), *filters)
        return out.split()

    def cleanup_docker(self) -> None:
        # A start the stopped daemon had asked for may still land in dockerd just after:
        # look until nothing of this instance has appeared for a moment.
        deadline = time.monotonic() + 15
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 1.0 and time.monotonic() < deadline:
            ids = self.containers()
            if ids:
                docker("rm", "-f", *ids, check=False)
                quiet_since = time.monotonic()
            time.sleep(0.2)
        vols = docker("volume", "ls", "-q", "--filter", f"name={self.instance}-home-").split()
        if vols:
            docker("volume", "rm", "-f", *vols, check=False)
        remove_networks(f"label=ipydoc.instance={self.instance}")


def remove_networks(label_filter: str) -> None:
    """Remove the users' networks matching a label filter, and their host firewall chains."""
    from ipydoc.backends.docker_network import bridge_interface, teardown_commands

    for nid in docker("network", "ls", "-q", "--filter", label_filter).split():
        net = json.loads(docker("network", "inspect", nid, check=False) or "[{}]")[0]
        docker("network", "rm", nid, check=False)
        if net.get("Id"):
            for argv in teardown_commands(bridge_interface(net)):
                subprocess.run(argv, capture_output=True)


def plant_firewall_chain(bridge: str) -> None:
    """What a daemon leaves on the host for ``bridge``: its chain and the INPUT jump to it,
    IPv4 and IPv6 (as a network removed while no daemon ran leaves them)."""
    from ipydoc.backends.docker_network import FAMILIES, chain_rules, jump_rule

    for f in FAMILIES:
        subprocess.run([f.restore, "-w", "--noflush"], input=chain_rules(bridge, [], f),
                       text=True, check=True)
        subprocess.run([f.iptables, "-w", "-I", *jump_rule(bridge)[:1], "1",
                        *jump_rule(bridge)[1:]], check=True)


def login(base: str, name: str, password: str, next: str | None = None) -> tuple[requests.Session, requests.Response]:
    """Log in through the form as a browser does; returns the session and the POST's answer."""
    s = requests.Session()
    page = s.get(base + "/hub/login" + (f"?next={next}" if next else ""))
    csrf = re.search(r'name="_csrf" value="([^"]+)"', page.text).group(1)
    r = s.post(base + "/hub/login", data={"_csrf": csrf, "username": name, "password": password,
                                          "next": next or ""},
               headers={"Origin": base}, allow_redirects=False)
    return s, r


def running_site(root: Path, sections: dict[str, Any], users: dict[str, str],
                 admins: tuple[str, ...] = ()):
    """A started daemon with ``users`` (name: password; ``admins`` among them), for a
    module fixture to yield from; stopped and its containers removed after."""
    d = Daemon(root, sections)
    d.start()
    try:
        for name, password in users.items():
            d.add_user(name, password, admin=name in admins)
        yield d
    finally:
        d.stop()
        d.cleanup_docker()


def csrf_of(session: requests.Session, base: str) -> str:
    page = session.get(base + "/hub/home")
    return re.search(r'name="_csrf" value="([^"]+)"', page.text).group(1)


def progress_steps(url: str, *, session: requests.Session | None = None,
                   headers: dict[str, str] | None = None,
                   timeout: float = 120) -> list[dict[str, Any]]:
    """Read a start's progress stream (server-sent events) at ``url`` until a final step
    (ready, failed, stopped); the steps seen."""
    steps: list[dict[str, Any]] = []
    with (session or requests).get(url, headers=headers, stream=True, timeout=timeout) as r:
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"].startswith("text/event-stream"), r.headers
        for line in r.iter_lines():
            if line.startswith(b"data: "):
                steps.append(json.loads(line[6:]))
                if steps[-1]["phase"] in ("ready", "failed", "stopped"):
                    break
    return steps


def follow_progress(session: requests.Session, base: str, name: str, timeout: float = 90) -> list[dict[str, Any]]:
    """Read NAME's default server's progress stream until a final step; the steps seen."""
    return progress_steps(f"{base}/hub/api/users/{name}/server/progress", session=session,
                          timeout=timeout)


def wait_for(predicate: Any, timeout: float = 30, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s")
        time.sleep(interval)
