"""Running under systemd: the daemon serves on a listening socket it inherits the way
systemd passes it (fd 3, LISTEN_FDS=1, LISTEN_PID=its own pid), and the unit files are
valid for systemd."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from support import TWISTD, Daemon, free_port, wait_for

ETC = Path(__file__).parent.parent / "etc"

# What systemd does between fork and exec: put the socket at fd 3 (SD_LISTEN_FDS_START),
# and say so in the environment of the process it is about to become (same pid after exec).
LAUNCHER = """
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="ipydoc.socket")
os.execv(sys.argv[2], sys.argv[2:])
"""


def socket_activated(root: Path, listen: str, sock: socket.socket) -> Daemon:
    d = Daemon(root, {"server": {"listen": [listen]}})
    d.root.mkdir(parents=True, exist_ok=True)
    d.write_config()
    args = TWISTD + ["-n", "--pidfile=", "ipydoc", "--config", str(d.config_path)]
    d.proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(sock.fileno()), *args],
                              pass_fds=(sock.fileno(),), stdout=open(d.log_path, "ab"),
                              stderr=subprocess.STDOUT, cwd=d.root)
    return d


@pytest.mark.parametrize("family", ["INET", "INET6"])
def test_serves_on_a_socket_inherited_from_systemd(tmp_path, notebook_image, family):
    if family == "INET6" and not socket.has_ipv6:
        pytest.skip("no IPv6")
    af = socket.AF_INET if family == "INET" else socket.AF_INET6
    host = "127.0.0.1" if family == "INET" else "::1"
    listener = socket.socket(af, socket.SOCK_STREAM)
    try:
        listener.bind((host, 0))
    except OSError:
        pytest.skip(f"cannot bind {host}")
    listener.listen(128)
    port = listener.getsockname()[1]
    d = socket_activated(tmp_path / "d", f"systemd:domain={family}:index=0", listener)
    listener.close()  # from now on only the daemon holds the listening socket
    d.port = port
    try:
        url = f"http://{'[::1]' if family == 'INET6' else '127.0.0.1'}:{port}"
        def up() -> bool:
            if d.proc.poll() is not None:
                raise AssertionError(f"daemon exited:\n{d.log()}")
            try:
                return requests.get(url + "/hub/login", timeout=1).status_code == 200
            except requests.RequestException:
                return False
        wait_for(up, timeout=30, interval=0.05)
        page = requests.get(url + "/hub/login")
        assert page.status_code == 200 and 'name="password"' in page.text
        assert f"web-0 listening on systemd:domain={family}:index=0" in d.log()
        # The process serving is the one LISTEN_PID named (the launcher exec'd into twistd).
        assert b"twistd" in Path(f"/proc/{d.proc.pid}/cmdline").read_bytes()
        status = d.cli("--json", "status")
        assert status.returncode == 0, status.stderr
    finally:
        d.stop()
        d.cleanup_docker()


def test_without_the_socket_the_daemon_says_why(tmp_path):
    d = Daemon(tmp_path / "d", {"server": {"listen": ["systemd:domain=INET:index=0"]}})
    d.root.mkdir(parents=True)
    d.write_config()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    out = subprocess.run(TWISTD + ["-n", "--pidfile=", "ipydoc", "--config", str(d.config_path)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert out.returncode != 0
    assert "systemd did not pass" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.skipif(not shutil.which("systemd-socket-activate"),
                    reason="systemd-socket-activate not installed")
def test_serves_under_systemd_socket_activate(tmp_path, notebook_image):
    """The same with systemd's own tool for socket activation."""
    port = free_port()
    d = Daemon(tmp_path / "d", {"server": {"listen": ["systemd:domain=INET:index=0"]}})
    d.port = port
    d.root.mkdir(parents=True, exist_ok=True)
    d.write_config()
    d.proc = subprocess.Popen(
        # --fdname: systemd always sets LISTEN_FDNAMES, and Twisted ignores the passed
        # sockets without it; systemd-socket-activate sets it only when asked.
        ["systemd-socket-activate", "-l", f"127.0.0.1:{port}", "--fdname=ipydoc", *TWISTD, "-n", "--pidfile=",
         "ipydoc", "--config", str(d.config_path)],
        stdout=open(d.log_path, "ab"), stderr=subprocess.STDOUT, cwd=d.root)
    try:
        # systemd-socket-activate starts the daemon at the first connection, like systemd.
        d.wait_ready(timeout=60)
        assert "listening on systemd:domain=INET:index=0" in d.log()
    finally:
        d.stop()
        d.cleanup_docker()


def test_unit_files_say_what_the_issue_asks():
    service = (ETC / "ipydoc.service").read_text()
    sock = (ETC / "ipydoc.socket").read_text()
    for line in ("User=ipydoc", "SupplementaryGroups=docker", "Restart=on-failure",
                 "NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=",
                 "StateDirectory=ipydoc",
                 "ExecStart=/opt/ipydoc/.venv/bin/ipydoc serve --config /etc/ipydoc/ipydoc.toml",
                 "ExecReload=/bin/kill -HUP $MAINPID", "KillMode=mixed"):
        assert line in service, line
    assert "ListenStream=" in sock and "Accept=no" in sock
    assert "systemd:domain=INET" in sock  # it says how to configure the daemon for it


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_unit_files_pass_systemd_analyze_verify(tmp_path):
    ipydoc = shutil.which("ipydoc") or str(Path(sys.executable).with_name("ipydoc"))
    (tmp_path / "ipydoc.service").write_text(
        (ETC / "ipydoc.service").read_text().replace("/opt/ipydoc/.venv/bin/ipydoc", ipydoc))
    shutil.copy(ETC / "ipydoc.socket", tmp_path / "ipydoc.socket")
    out = subprocess.run(["systemd-analyze", "verify", "--man=no",
                          str(tmp_path / "ipydoc.socket"), str(tmp_path / "ipydoc.service")],
                         capture_output=True, text=True, timeout=60)
    problems = [ln for ln in out.stderr.splitlines()
                if "ipydoc" in ln and ("nknown" in ln or "arning" in ln or "ailed" in ln
                                       or "nvalid" in ln)]
    assert out.returncode == 0 and not problems, out.stderr
