"""Graceful drain on stop (issue 17 §2, ipydoc/edge/drain.py), against the real daemon.

One daemon for the module, stopped with SIGTERM by every test and started again (same
state, same port; the users' containers keep running and are adopted).  ``alice``'s
server is the stdlib stand-in (tests/stand_in_backend.py, run in her real container by
her ``~/.jupyter/jupyter_server_config.py``, as a user could) with slow answers added
here; ``bob``'s is the real jupyter_server with a real kernel.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import ipaddress
import json
import re
import socket
import subprocess
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket
from cryptography import x509

import pki
from kernel_client import connect, execute, start_kernel
from stand_in_backend import pattern
from support import TEST_IMAGE, Daemon, docker, follow_progress, free_port, login, wait_for

PW = "drain-test-password"
STAND_IN = Path(__file__).parents[1] / "stand_in_backend.py"

#: Runs the stand-in on the port Jupyter was given, with slow answers the drain must wait
#: for; ``GET .../seen`` tells what arrived (asked through the proxy, before the stop).
SERVE = r'''
import hashlib, json, sys, threading, time
sys.path.insert(0, __import__("os").path.dirname(__file__))
import stand_in_backend as s
from http.server import ThreadingHTTPServer

seen = {"slow": 0, "upload_bytes": 0}

def arg(name, default):
    for a in sys.argv[1:]:
        if a.startswith("--ServerApp." + name + "="):
            return a.split("=", 1)[1]
    return default

class Handler(s.Handler):
    def do_seen(self, q):
        self.send_json(dict(seen))

    def do_slowdownload(self, q):
        """Waits ``wait`` s before its head, then ``chunks`` x 64 KiB, ``delay`` s apart."""
        seen["slow"] += 1
        time.sleep(float(q.get("wait", 0)))
        chunks, delay = int(q["chunks"]), float(q.get("delay", 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(chunks * 65536))
        self.end_headers()
        body = b"".join(s.pattern(chunks * 65536))
        try:
            for i in range(chunks):
                self.wfile.write(body[i * 65536:(i + 1) * 65536])
                self.wfile.flush()
                time.sleep(delay)
        except OSError:
            self.close_connection = True

    def do_slowupload(self, q):
        h, n = hashlib.sha256(), 0
        for chunk in self.body_chunks():
            h.update(chunk)
            n += len(chunk)
            seen["upload_bytes"] = n
        self.send_json({"sha256": h.hexdigest(), "length": n})

server = ThreadingHTTPServer((arg("ip", "0.0.0.0"), int(arg("port", "8888"))), Handler)
server.daemon_threads = True
server.serve_forever()
'''
CONFIG = '''import os, sys
os.execv(sys.executable, [sys.executable, os.path.expanduser("~/.jupyter/serve.py"),
                          *sys.argv[1:]])
'''


def install_stand_in(d: Daemon, name: str) -> None:
    """The stand-in and the config that runs it into NAME's home (her volume)."""
    vol = f"{d.instance}-home-{name}"
    docker("volume", "create", "--label", f"ipydoc.user={name}", "--label",
           "ipydoc.managed=1", vol)
    files = {".jupyter/stand_in_backend.py": STAND_IN.read_bytes(),
             ".jupyter/serve.py": SERVE.encode(),
             ".jupyter/jupyter_server_config.py": CONFIG.encode()}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    out = subprocess.run(
        ["docker", "run", "-i", "--rm", "-v", f"{vol}:/home/jovyan", "--entrypoint", "python",
         TEST_IMAGE, "-c", "import sys, tarfile; tarfile.open(fileobj=sys.stdin.buffer, "
         "mode='r|').extractall('/home/jovyan')"], input=buf.getvalue(), capture_output=True)
    assert out.returncode == 0, out.stderr


def tls_login(d: Daemon, name: str) -> requests.Session:
    """Logged in over the TLS listener (its session cookie is a ``Secure`` one)."""
    base = f"https://127.0.0.1:{d.tls_port}"
    s = requests.Session()
    page = s.get(base + "/hub/login", timeout=30, verify=d.ca)
    csrf = re.search(r'name="_csrf" value="([^"]+)"', page.text).group(1)
    r = s.post(base + "/hub/login", data={"_csrf": csrf, "username": name, "password": PW,
                                          "next": ""},
               headers={"Origin": base}, allow_redirects=False, timeout=30, verify=d.ca)
    assert r.status_code == 303, r.text
    return s


class Site:
    """The daemon and the two users' logged-in sessions."""

    def __init__(self, d: Daemon) -> None:
        self.d = d
        self.sessions: dict[str, requests.Session] = {}

    def up(self, drain_timeout: float = 10.0) -> None:
        """Running with this drain_timeout, both servers ready, fresh sessions."""
        if self.d.proc is not None and self.d.overrides["server"].get("drain_timeout") \
                == drain_timeout and self.d.proc.poll() is None:
            return
        self.d.stop()
        self.d.overrides["server"]["drain_timeout"] = drain_timeout
        self.d.start()
        for name in ("alice", "bob"):
            s, r = login(self.d.url, name, PW)
            assert r.status_code == 303, r.text
            steps = follow_progress(s, self.d.url, name)
            assert steps[-1]["phase"] == "ready", steps
            self.sessions[name] = s
        self.sessions["alice-tls"] = tls_login(self.d, "alice")

    def url(self, name: str, rest: str) -> str:
        return f"{self.d.url}/user/{name}/{rest}"

    def seen(self) -> dict[str, int]:
        return self.sessions["alice"].get(self.url("alice", "seen"), timeout=30).json()

    def sigterm(self) -> None:
        assert self.d.proc is not None
        self.d.proc.terminate()

    def exited(self, timeout: float = 60) -> int:
        assert self.d.proc is not None
        code = self.d.proc.wait(timeout)
        self.d.proc = None
        return code


def tls_files(root: Path) -> tuple[str, str, str]:
    """(CA, certificate, key) files: a certificate for 127.0.0.1 from a CA of its own."""
    ca = pki.ca("ipydoc drain test CA")
    cert, key = pki.leaf(ca, "127.0.0.1",
                         san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    paths = root / "ca.pem", root / "cert.pem", root / "key.pem"
    for path, data in zip(paths, (pki.pem(ca[0]), pki.pem(cert), pki.pem_key(key))):
        path.write_bytes(data)
    return tuple(str(p) for p in paths)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def site(tmp_path_factory, notebook_image):
    d = Daemon(tmp_path_factory.mktemp("drain"), {"server": {}})
    d.tls_port = free_port()
    d.ca, cert, key = tls_files(tmp_path_factory.mktemp("drain-pki"))
    d.overrides["server"].update({
        "listen": [f"tcp:{d.port}:interface=127.0.0.1",
                   f"ssl:{d.tls_port}:interface=127.0.0.1"],
        "tls_cert": cert, "tls_key": key})
    d.start()
    try:
        for name in ("alice", "bob"):
            d.add_user(name, PW)
        install_stand_in(d, "alice")
        yield Site(d)
    finally:
        d.stop()
        d.cleanup_docker()


def in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``fn`` in a thread; its result (or error) lands in the dict."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = fn()
        except Exception as e:  # noqa: BLE001 - the test looks at it
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def download(site: Site, chunks: int, delay: float, wait: float = 0.0, tls: bool = False
             ) -> tuple[requests.Response, bytes]:
    url = site.url("alice", f"slowdownload?chunks={chunks}&delay={delay}&wait={wait}")
    if tls:
        url = url.replace(f"http://127.0.0.1:{site.d.port}/",
                          f"https://127.0.0.1:{site.d.tls_port}/")
    r = site.sessions["alice-tls" if tls else "alice"].get(
        url, stream=True, timeout=120, verify=site.d.ca if tls else True)
    return r, b"".join(r.iter_content(65536))


def expected(chunks: int) -> bytes:
    return b"".join(pattern(chunks * 65536))


def slow_request_arrived(site: Site, before: int) -> None:
    wait_for(lambda: site.seen()["slow"] > before, timeout=30)


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_slow_download_in_flight_completes_with_connection_close(site):
    site.up()
    before = site.seen()["slow"]
    chunks = 24
    t, out = in_thread(lambda: download(site, chunks, delay=0.1, wait=1.0))
    slow_request_arrived(site, before)
    mark = len(site.d.log())
    site.sigterm()
    t.join(120)
    assert "error" not in out, out
    r, body = out["result"]
    assert r.status_code == 200
    assert r.headers.get("Connection", "").lower() == "close"
    assert body == expected(chunks)
    assert site.exited() in (0, -15)  # twistd re-raises the SIGTERM it handled
    log = site.d.log()[mark:]
    assert "draining: " in log and "drain done in" in log
    assert "0 connections aborted" in log
    assert "GET /user/alice/slowdownload" in log  # the access log stays open while draining


def test_slow_download_over_tls_completes_with_connection_close(site):
    site.up()
    before = site.seen()["slow"]
    chunks = 16
    t, out = in_thread(lambda: download(site, chunks, delay=0.1, wait=1.0, tls=True))
    slow_request_arrived(site, before)
    site.sigterm()
    wait_for(lambda: refused(site.d.tls_port), timeout=30, interval=0.01)
    t.join(120)
    assert "error" not in out, out
    r, body = out["result"]
    assert r.status_code == 200
    assert r.headers.get("Connection", "").lower() == "close"
    assert body == expected(chunks)
    assert site.exited() in (0, -15)  # twistd re-raises the SIGTERM it handled


def test_slow_upload_in_flight_completes(site):
    site.up()
    data = b"".join(pattern(40 * 65536))
    started = threading.Event()

    def body():
        for i in range(40):
            if i == 4:
                started.set()
            yield data[i * 65536:(i + 1) * 65536]
            threading.Event().wait(0.05)

    def upload() -> requests.Response:
        return site.sessions["alice"].post(site.url("alice", "slowupload"), data=body(),
                                           headers={"Origin": site.d.url}, timeout=120)

    t, out = in_thread(upload)
    assert started.wait(30)
    wait_for(lambda: site.seen()["upload_bytes"] > 0, timeout=30)
    site.sigterm()
    t.join(120)
    assert "error" not in out, out
    r = out["result"]
    assert r.status_code == 200, r.text
    assert r.json() == {"sha256": hashlib.sha256(data).hexdigest(), "length": len(data)}
    assert r.headers.get("Connection", "").lower() == "close"
    assert site.exited() in (0, -15)  # twistd re-raises the SIGTERM it handled


def test_request_on_idle_kept_alive_connection_after_sigterm_is_answered(site):
    site.up()
    conn = http.client.HTTPConnection("127.0.0.1", site.d.port, timeout=30)
    conn.request("GET", "/hub/login")
    first = conn.getresponse()
    first.read()
    assert first.status == 200 and not first.will_close  # kept alive, now idle
    # A slow request elsewhere keeps the drain going; ours comes once listening stopped.
    before = site.seen()["slow"]
    t, out = in_thread(lambda: download(site, 8, delay=0.2, wait=1.0))
    slow_request_arrived(site, before)
    site.sigterm()
    wait_for(lambda: refused(site.d.port), timeout=30, interval=0.01)
    conn.request("GET", "/hub/login")
    second = conn.getresponse()
    assert second.status == 200
    assert second.getheader("Connection", "").lower() == "close"
    assert b"<form" in second.read()
    conn.close()
    t.join(120)
    assert "error" not in out, out
    assert site.exited() in (0, -15)  # twistd re-raises the SIGTERM it handled


def save(session: requests.Session, site: Site, path: str, text: str) -> requests.Response:
    r = session.put(site.url("bob", f"api/contents/{path}"),
                    json={"type": "file", "format": "text", "content": text},
                    headers={"Origin": site.d.url}, timeout=60)
    assert r.status_code in (200, 201), r.text
    return r


def versioned(d: Daemon, name: str) -> set[str]:
    r = d.cli("--json", "history", "list", name)
    if r.returncode == 5:  # nothing versioned yet
        return set()
    assert r.returncode == 0, r.stderr
    return {f["path"] for f in json.loads(r.stdout)}


def test_a_save_answered_during_the_drain_reaches_history(site):
    site.up()
    bob = site.sessions["bob"]
    save(bob, site, "before.txt", "saved before the stop")  # bob's connection: kept alive
    before = site.seen()["slow"]
    t, out = in_thread(lambda: download(site, 12, delay=0.25, wait=0.5))
    slow_request_arrived(site, before)
    site.sigterm()
    wait_for(lambda: refused(site.d.port), timeout=30, interval=0.01)
    r = save(bob, site, "drained.txt", "saved while the daemon drained")
    assert r.headers.get("Connection", "").lower() == "close"
    t.join(120)
    assert "error" not in out, out
    assert site.exited() in (0, -15)  # twistd re-raises the SIGTERM it handled
    site.up()  # the next daemon commits what the last one queued
    wait_for(lambda: {"before.txt", "drained.txt"} <= versioned(site.d, "bob"), timeout=90,
             interval=1)


def test_new_connections_are_refused_while_draining(site):
    site.up()
    before = site.seen()["slow"]
    chunks = 16
    t, out = in_thread(lambda: download(site, chunks, delay=0.2, wait=0.5))
    slow_request_arrived(site, before)
    site.sigterm()
    wait_for(lambda: refused(site.d.port), timeout=30, interval=0.01)
    assert site.d.proc.poll() is None  # still draining: the listener went first
    t.join(120)
    assert "error" not in out, out
    assert out["result"][1] == expected(chunks)
    assert site.exited() in (0, -15)  # twistd re-raises the SIGTERM it handled


def test_kernel_websocket_is_closed_at_once_and_the_kernel_survives(site):
    site.up()
    bob = site.sessions["bob"]
    kernel = start_kernel(bob, site.d.url, "bob")
    ws = connect(bob, site.d.url, "bob", kernel)
    assert execute(ws, "x = 6 * 7; x")["text/plain"] == "42"
    # A download that outlasts the WebSocket's close keeps the daemon draining meanwhile.
    before = site.seen()["slow"]
    t, out = in_thread(lambda: download(site, 20, delay=0.25, wait=0.5))
    slow_request_arrived(site, before)
    site.sigterm()
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        while True:  # nothing more comes: the connection closes
            ws.recv()
    assert site.d.proc.poll() is None, "the WebSocket was only cut when the daemon exited"
    t.join(120)
    assert "error" not in out, out
    assert site.exited() in (0, -15)  # twistd re-raises the SIGTERM it handled
    # The next daemon: the kernel is still there, with its state.
    site.up()
    ws = connect(site.sessions["bob"], site.d.url, "bob", kernel)
    assert execute(ws, "x")["text/plain"] == "42"
    ws.close()


def test_start_progress_stream_ends_so_the_browser_reconnects(site):
    site.up()
    carol = "carol"
    if carol not in site.sessions:
        site.d.add_user(carol, PW)
        vol = f"{site.d.instance}-home-{carol}"
        docker("volume", "create", "--label", f"ipydoc.user={carol}", "--label",
               "ipydoc.managed=1", vol)
        # Her server takes long to come up: her start is in progress during the test.
        docker("run", "--rm", "-v", f"{vol}:/home/jovyan", "--entrypoint", "sh", TEST_IMAGE,
               "-c", "mkdir -p /home/jovyan/.jupyter && echo 'import time; time.sleep(40)' "
               "> /home/jovyan/.jupyter/jupyter_server_config.py")
        site.sessions[carol] = login(site.d.url, carol, PW)[0]
    s = site.sessions[carol]
    page = s.get(site.d.url + "/hub/home").text
    csrf = re.search(r'name="_csrf" value="([^"]+)"', page).group(1)
    r = s.post(f"{site.d.url}/hub/spawn/{carol}", data={"_csrf": csrf},
               headers={"Origin": site.d.url}, allow_redirects=False)
    assert r.status_code in (302, 303), r.text
    steps: list[dict[str, Any]] = []
    opened = threading.Event()

    def follow() -> str:
        with s.get(f"{site.d.url}/hub/api/users/{carol}/server/progress", stream=True,
                   timeout=120) as resp:
            opened.set()
            for line in resp.iter_lines():
                if line.startswith(b"data: "):
                    steps.append(json.loads(line[6:]))
            return resp.headers.get("Connection", "")

    before = site.seen()["slow"]
    dl, dl_out = in_thread(lambda: download(site, 20, delay=0.25, wait=0.5))
    slow_request_arrived(site, before)
    t, out = in_thread(follow)
    assert opened.wait(30)
    wait_for(lambda: steps, timeout=30)
    site.sigterm()
    t.join(60)
    assert not t.is_alive() and "error" not in out, out
    assert steps and not any(step["phase"] == "ready" for step in steps)
    assert site.d.proc.poll() is None, "the stream was only cut when the daemon exited"
    dl.join(120)
    assert "error" not in dl_out, dl_out
    site.exited()


def test_request_outliving_drain_timeout_is_aborted(site):
    site.up(drain_timeout=2.0)
    before = site.seen()["slow"]
    chunks = 200  # 200 x 0.3 s: a minute, far beyond the 2 s drain
    t, out = in_thread(lambda: download(site, chunks, delay=0.3))
    slow_request_arrived(site, before)
    mark = len(site.d.log())
    site.sigterm()
    assert site.exited(timeout=40) in (0, -15)  # long before the download could have ended
    t.join(30)
    assert not t.is_alive()
    got = out.get("result", (None, b""))[1]
    assert "error" in out or len(got) < chunks * 65536
    assert "1 connections aborted" in site.d.log()[mark:]


def test_drain_timeout_zero_closes_everything_at_once(site):
    site.up(drain_timeout=0.0)
    before = site.seen()["slow"]
    chunks = 100
    t, out = in_thread(lambda: download(site, chunks, delay=0.3))
    slow_request_arrived(site, before)
    mark = len(site.d.log())
    site.sigterm()
    assert site.exited(timeout=40) in (0, -15)
    t.join(30)
    assert not t.is_alive()
    assert "error" in out or len(out["result"][1]) < chunks * 65536
    assert "draining: " not in site.d.log()[mark:]  # today's behaviour: no drain at all
