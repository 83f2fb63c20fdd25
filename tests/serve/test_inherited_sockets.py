"""The sockets the supervisor binds and its workers adopt: which listeners a config has,
how they are bound (unix mode and lock, TCP) and socket activation through the
supervisor (the private Twisted names the adoption relies on are checked in
tests/edge/test_twisted_private_api.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from ipydoc.config.load import from_dict
from ipydoc.edge.inherited_sockets import control_spec, listener_specs
from ipydoc.serve.sockets import BindError, Sockets, bind

from support import CLI, SERVE, Daemon, wait_for


def test_listener_specs_name_every_listener_once(tmp_path):
    cfg = from_dict({
        "server": {"listen": ["tcp:8080:interface=127.0.0.1", "ssl:8443", "tcp:8080:interface=127.0.0.1"],
                   "redirect_listen": ["tcp:8081"], "tls_cert": "/c.pem",
                   "state_dir": str(tmp_path / "st:ate")},
        "control": {"listen_tls": "tcp:9443", "tls_cert": "/c", "tls_key": "/k",
                    "tls_client_ca": "/ca"},
        "metrics": {"listen": "tcp:9100:interface=127.0.0.1"},
    })
    specs = listener_specs(cfg)
    assert specs == ["tcp:8080:interface=127.0.0.1", "tcp:8443", "tcp:8081",
                     control_spec(tmp_path / "st:ate" / "control.sock"), "tcp:9443",
                     "tcp:9100:interface=127.0.0.1"]
    assert specs[3].endswith(":mode=600:lockfile=1") and "st\\:ate" in specs[3]


def test_unix_sockets_are_bound_with_their_mode_and_lock(tmp_path):
    path = tmp_path / "a:b" / "control.sock"
    path.parent.mkdir()
    held = Sockets()
    spec = control_spec(path)
    assert held.ensure([spec]) == [spec]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert os.readlink(f"{path}.lock") == str(os.getpid())
    with pytest.raises(BindError, match="lock"):
        bind(spec)  # a second binder (another daemon) is refused: the lock is ours
    client = socket.socket(socket.AF_UNIX)
    client.connect(str(path))  # listening, though nobody accepts yet
    client.close()
    held.close_all()
    assert not path.exists() and not Path(f"{path}.lock").exists()


def test_tcp_sockets_and_all_or_nothing(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    taken = busy.getsockname()[1]
    held = Sockets()
    with pytest.raises(BindError, match=str(taken)):
        held.ensure(["tcp:0:interface=127.0.0.1", f"tcp:{taken}:interface=127.0.0.1"])
    assert held.bound == {}  # the first one was closed again
    [spec] = held.ensure(["tcp:0:interface=127.0.0.1:backlog=10"])
    assert held.bound[spec].sock.getsockname()[0] == "127.0.0.1"
    assert held.keep_only([]) == [spec]
    busy.close()
    with pytest.raises(BindError, match="binds tcp:"):
        bind("ssl:443")


# What systemd does between fork and exec (as in tests/test_systemd.py).
LAUNCHER = """
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="ipydoc.socket")
os.execv(sys.argv[2], sys.argv[2:])
"""


def test_socket_activation_through_the_supervisor(tmp_path, notebook_image):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    d = Daemon(tmp_path / "d", {"server": {"listen": ["systemd:domain=INET:index=0"]}})
    d.port = port
    d.root.mkdir(parents=True)
    d.write_config()
    d.proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(listener.fileno()), *SERVE, "--config",
         str(d.config_path)], pass_fds=(listener.fileno(),), stdout=open(d.log_path, "ab"),
        stderr=subprocess.STDOUT, cwd=d.root)
    listener.close()
    try:
        d.wait_ready(timeout=60)
        assert "listening on systemd:domain=INET:index=0" in d.log()
        r = subprocess.run(CLI + ["--config", str(d.config_path), "--json", "restart"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: requests.get(d.url + "/hub/login", timeout=5).status_code == 200)
    finally:
        d.stop()
        d.cleanup_docker()
