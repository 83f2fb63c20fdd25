"""The control channel over TCP with TLS and client certificates, with a test CA made here.

A client certificate from the right CA gets in; one from another CA, or none, is refused
during the handshake, before any command is read (the refused ``user add`` never happens).
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

import pki as pki_lib
from support import CLI, TWISTD, free_port


def make_ca(directory: Path, cn: str) -> pki_lib.Pair:
    pair = pki_lib.ca(cn)
    (directory / f"{cn}.pem").write_bytes(pki_lib.pem(pair[0]))
    return pair


def issue(directory: Path, ca: pki_lib.Pair, cn: str, server: bool) -> tuple[Path, Path]:
    cert, key = pki_lib.leaf(ca, cn, usage=pki_lib.SERVER if server else pki_lib.CLIENT,
                             san=pki_lib.LOCALHOST if server else ())
    cert_path, key_path = directory / f"{cn}.crt", directory / f"{cn}.key"
    cert_path.write_bytes(pki_lib.pem(cert))
    key_path.write_bytes(pki_lib.pem_key(key))
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d, "ipydoc-test-ca")
    rogue = make_ca(d, "rogue-ca")
    return {
        "dir": d,
        "ca": d / "ipydoc-test-ca.pem",
        "server": issue(d, ca, "localhost", server=True),
        "admin": issue(d, ca, "admin-alice", server=False),
        "rogue": issue(d, rogue, "mallory", server=False),
        "rogue_ca": d / "rogue-ca.pem",
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory, pki):
    from support import TEST_IMAGE, Daemon

    if subprocess.run(["docker", "image", "inspect", TEST_IMAGE], capture_output=True).returncode:
        pytest.fail(f"test image {TEST_IMAGE} missing (.ci/run builds it)")
    port = free_port()
    cert, key = pki["server"]
    d = Daemon(tmp_path_factory.mktemp("control-tls"), {"control": {
        "listen_tls": f"tcp:{port}:interface=127.0.0.1", "tls_cert": str(cert),
        "tls_key": str(key), "tls_client_ca": str(pki["ca"])}})
    d.tls_port = port
    d.start()
    yield d
    d.stop()
    d.cleanup_docker()


def tls_cli(site, pki, *args: str, client: str | None = "admin", host: str = "localhost",
            ca: Path | None = None, input: str | None = None) -> subprocess.CompletedProcess[str]:
    opts = ["--control", f"tls:{host}:{site.tls_port}", "--tls-ca", str(ca or pki["ca"])]
    if client:
        cert, key = pki[client]
        opts += ["--tls-cert", str(cert), "--tls-key", str(key)]
    # No --config: a remote admin has no config file, only the address and certificates.
    return subprocess.run(CLI + opts + list(args), capture_output=True, text=True,
                          input=input, timeout=60, cwd="/")


def test_good_client_certificate_is_accepted(site, pki):
    r = tls_cli(site, pki, "--json", "status")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["redis_ok"] is True
    r = tls_cli(site, pki, "user", "add", "alice", "--password-stdin", input="alice-secret\n")
    assert r.returncode == 0, r.stderr
    users = json.loads(tls_cli(site, pki, "--json", "user", "list").stdout)
    assert [u["name"] for u in users] == ["alice"]
    # The daemon logs who did it: the certificate's subject.
    assert "user-added alice" in site.log() and "by cert CN=admin-alice" in site.log()
    # IP address, checked against the certificate's IP SAN, works as well.
    assert tls_cli(site, pki, "status", host="127.0.0.1").returncode == 0
    # Environment variables instead of options.
    env = {"IPYDOC_CONTROL": f"tls:localhost:{site.tls_port}", "IPYDOC_TLS_CA": str(pki["ca"]),
           "IPYDOC_TLS_CERT": str(pki["admin"][0]), "IPYDOC_TLS_KEY": str(pki["admin"][1]),
           "PATH": "/usr/bin:/bin"}
    r = subprocess.run(CLI + ["--json", "user", "show", "alice"], capture_output=True,
                       text=True, env=env, timeout=60, cwd="/")
    assert r.returncode == 0 and json.loads(r.stdout)["name"] == "alice", r.stderr


@pytest.mark.parametrize("client", ["rogue", None])
def test_unknown_or_missing_client_certificate_is_refused(site, pki, client):
    name = "mallory" if client else "nobody"
    r = tls_cli(site, pki, "user", "add", name, "--password-stdin", client=client,
                input="mallory-pw-123\n")
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "TLS connection" in r.stderr and "Traceback" not in r.stderr
    users = json.loads(site.cli("--json", "user", "list").stdout)
    assert name not in {u["name"] for u in users}
    assert "TLS connection from" in site.log() and "refused" in site.log()


def test_refused_before_any_command_is_read(site, pki):
    """A raw TLS client without a certificate sends an AMP box at once; nothing runs."""
    box = b"".join(len(k).to_bytes(2, "big") + k + len(v).to_bytes(2, "big") + v
                   for k, v in [(b"_command", b"UserAdd"), (b"_ask", b"1"),
                                (b"name", b"eve"), (b"password", b"eve-password-1"),
                                (b"admin", b"True")]) + b"\x00\x00"
    ctx = ssl.create_default_context(cafile=str(pki["ca"]))
    with socket.create_connection(("127.0.0.1", site.tls_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            try:
                tls.sendall(box)
                answer = tls.recv(65536)
            except (ssl.SSLError, ConnectionError):
                answer = b""
    assert b"_answer" not in answer
    time.sleep(0.5)
    users = json.loads(site.cli("--json", "user", "list").stdout)
    assert "eve" not in {u["name"] for u in users}


def test_client_checks_the_daemon_certificate(site, pki):
    r = tls_cli(site, pki, "status", ca=pki["rogue_ca"])
    assert r.returncode == 3 and "TLS connection" in r.stderr, r.stderr
    r = tls_cli(site, pki, "status", host="127.0.0.2")  # not a name in the certificate
    assert r.returncode == 3, r.stderr


def test_tls_option_errors(site, pki, tmp_path):
    r = subprocess.run(CLI + ["--control", f"tls:localhost:{site.tls_port}", "status"],
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 2 and "--tls-ca" in r.stderr
    r = tls_cli(site, pki, "status", ca=tmp_path / "missing.pem")
    assert r.returncode == 2 and "missing.pem" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(CLI + ["--control", "tls:localhost", "status"], capture_output=True,
                       text=True, timeout=60, cwd="/")
    assert r.returncode == 2 and "tls:HOST:PORT" in r.stderr
    port = free_port()
    r = subprocess.run(CLI + ["--control", f"tls:localhost:{port}", "--tls-ca", str(pki["ca"]),
                              "status"], capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 3 and "not running" in r.stderr


def test_daemon_refuses_unusable_tls_files_naming_the_key(tmp_path, pki):
    cfg = tmp_path / "ipydoc.toml"
    cfg.write_text(f'[server]\nstate_dir = "{tmp_path}/state"\nlisten = "tcp:{free_port()}"\n'
                   f'[control]\nlisten_tls = "tcp:{free_port()}"\n'
                   f'tls_cert = "{tmp_path}/nope.crt"\ntls_key = "{pki["server"][1]}"\n'
                   f'tls_client_ca = "{pki["ca"]}"\n')
    out = subprocess.run(TWISTD + ["-n", "--pidfile=", "ipydoc", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode != 0
    assert "control.tls_cert" in out.stderr and "nope.crt" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    cfg.write_text(f'[control]\nlisten_tls = "tcp:{free_port()}"\n')
    out = subprocess.run(TWISTD + ["-n", "--pidfile=", "ipydoc", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode != 0 and "control.tls_cert must be set" in out.stderr
