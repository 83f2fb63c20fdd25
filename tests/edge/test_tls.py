"""TLS on the public site, with a test PKI made here: SNI picks the certificate, logins over
TLS get Secure cookies and HSTS, the redirect listener only redirects, bad files stop the
daemon naming them, SIGHUP swaps certificates without dropping open connections, and a
user's server answers through the proxy over TLS.

The test names (nb.test and its subdomains) resolve nowhere: the clients connect to
127.0.0.1 and ask for the name in SNI (and check the certificate against it).
"""

from __future__ import annotations

import datetime
import http.client
import os
import re
import signal
import socket
import ssl
import subprocess
import warnings
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from requests.adapters import HTTPAdapter

import pki as pki_lib
from support import TWISTD, Daemon, follow_progress, free_port, wait_for

ALICE_PW = "alice-tls-password"
HSTS_AGE = 31536000

Key = pki_lib.Key


def _leaf(issuer: pki_lib.Pair, names: list[str], days: float = 1) -> pki_lib.Pair:
    """A server certificate for ``names`` (the first is the CN), from two days ago."""
    return pki_lib.leaf(issuer, names[0], san=[x509.DNSName(n) for n in names],
                        not_before=datetime.timedelta(days=2),
                        lifetime=datetime.timedelta(days=days))


def _write(directory: Path, stem: str, cert: x509.Certificate, key: Key,
           chain: list[x509.Certificate] = ()) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_path.write_bytes(b"".join(pki_lib.pem(c) for c in [cert, *chain]))
    key_path.write_bytes(pki_lib.pem_key(key))
    key_path.chmod(0o600)
    return cert_path, key_path


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A root CA (the only thing clients trust), an intermediate, and from it a wildcard
    certificate for *.nb.test + nb.test (served with its chain) and one for other.test."""
    d = tmp_path_factory.mktemp("pki")
    root = pki_lib.ca("ipydoc test root")
    inter = pki_lib.ca("ipydoc test intermediate", issuer=root)
    (d / "root.pem").write_bytes(pki_lib.pem(root[0]))
    wild = _leaf(inter, ["*.nb.test", "nb.test"])
    other = _leaf(inter, ["other.test"])
    return {"dir": d, "root": root, "inter": inter, "ca": str(d / "root.pem"),
            "wild": wild, "wild_files": _write(d, "wild", *wild, chain=[inter[0]]),
            "other": other, "other_files": _write(d, "other", *other, chain=[inter[0]])}


@pytest.fixture(scope="module")
def site(tmp_path_factory, pki, notebook_image):
    d = Daemon(tmp_path_factory.mktemp("tls"))
    d.tls_port, d.redirect_port = free_port(), free_port()
    wild_cert, wild_key = pki["wild_files"]
    d.overrides = {"server": {
        # The plain listener stays for Daemon.wait_ready and to compare against.
        "listen": [f"tcp:{d.port}:interface=127.0.0.1",
                   f"ssl:{d.tls_port}:interface=127.0.0.1"],
        "tls_cert": str(wild_cert), "tls_key": str(wild_key),
        "tls_certs": [[str(p) for p in pki["other_files"]]],
        "redirect_listen": [f"tcp:{d.redirect_port}:interface=127.0.0.1"],
        "hsts": HSTS_AGE, "hsts_include_subdomains": True}}
    d.start()
    d.add_user("alice", ALICE_PW)
    yield d
    d.stop()
    d.cleanup_docker()


def handshake(port: int, name: str | None, ca: str | None) -> tuple[bytes, str | None, str]:
    """(the certificate the server presents, the ALPN protocol, the TLS version) when a
    client asks for ``name``; with ``ca`` the certificate must be valid for ``name``."""
    if ca is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as tls:
            return tls.getpeercert(binary_form=True), tls.selected_alpn_protocol(), tls.version()


class PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1, asking for (and verifying) ``name``; one keep-alive connection."""

    def __init__(self, name: str, port: int, ca: str) -> None:
        super().__init__(name, port, timeout=30, context=ssl.create_default_context(cafile=ca))

    def connect(self) -> None:
        raw = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)

    def get(self, path: str) -> http.client.HTTPResponse:
        self.request("GET", path)
        r = self.getresponse()
        r.read()
        return r


class SNIAdapter(HTTPAdapter):
    """requests to https://127.0.0.1:PORT that ask for, and verify, another name."""

    def __init__(self, server_hostname: str) -> None:
        self.server_hostname = server_hostname
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["server_hostname"] = self.server_hostname
        super().init_poolmanager(*args, **kwargs)


def tls_session(site, pki, name: str = "nb.test") -> tuple[requests.Session, str]:
    base = f"https://127.0.0.1:{site.tls_port}"
    s = requests.Session()
    s.mount(base, SNIAdapter(name))
    s.verify = pki["ca"]
    s.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment beats s.verify
    return s, base


def login(s: requests.Session, base: str, name: str, password: str) -> requests.Response:
    page = s.get(base + "/hub/login")
    csrf = re.search(r'name="_csrf" value="([^"]+)"', page.text).group(1)
    return s.post(base + "/hub/login", data={"_csrf": csrf, "username": name,
                                             "password": password, "next": ""},
                  headers={"Origin": base}, allow_redirects=False)


def test_sni_picks_the_certificate_for_each_name(site, pki):
    wild, other = _der(pki["wild"][0]), _der(pki["other"][0])
    # Verified against the root only: the intermediate must come from the daemon.
    for name in ("alice.nb.test", "bob.nb.test", "nb.test"):
        cert, alpn, version = handshake(site.tls_port, name, pki["ca"])
        assert cert == wild, name
        assert alpn == "http/1.1"  # h2 offered first, never chosen
        assert version in ("TLSv1.2", "TLSv1.3")
    assert handshake(site.tls_port, "other.test", pki["ca"])[0] == other
    # A name no certificate has, and no SNI at all: the listener's default.
    assert handshake(site.tls_port, "unknown.example", None)[0] == wild
    assert handshake(site.tls_port, None, None)[0] == wild
    # *.nb.test is one label deep: a.b.nb.test is not covered, so it fails verification.
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(site.tls_port, "a.b.nb.test", pki["ca"])


def test_old_tls_versions_are_refused(site):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # that is the point
        try:
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        except ValueError:
            pytest.skip("this Python's OpenSSL cannot even offer TLS 1.1")
    with socket.create_connection(("127.0.0.1", site.tls_port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError):
            ctx.wrap_socket(raw, server_hostname="nb.test").close()


def test_login_over_tls_sets_secure_cookies_and_hsts(site, pki):
    s, base = tls_session(site, pki)
    page = s.get(base + "/hub/login")
    assert page.status_code == 200
    assert page.headers["Strict-Transport-Security"] == \
        f"max-age={HSTS_AGE}; includeSubDomains"
    csrf_cookie = page.headers["Set-Cookie"]
    # over https every cookie is __Host- (Secure, Path=/, no Domain: no other host,
    # not even a user's subdomain, can set or shadow it)
    assert csrf_cookie.startswith("__Host-ipydoc-login-csrf=") and "; Secure" in csrf_cookie
    assert "; Path=/;" in csrf_cookie and "Domain" not in csrf_cookie
    csrf = re.search(r'name="_csrf" value="([^"]+)"', page.text).group(1)
    r = s.post(base + "/hub/login", data={"_csrf": csrf, "username": "alice",
                                          "password": ALICE_PW, "next": ""},
               headers={"Origin": base}, allow_redirects=False)
    assert r.status_code in (302, 303), r.text
    session_cookie = r.headers["Set-Cookie"]
    assert session_cookie.startswith("__Host-ipydoc-session=")
    assert "; Secure" in session_cookie and "HttpOnly" in session_cookie
    assert "; Path=/;" in session_cookie and "Domain" not in session_cookie
    assert r.headers["Strict-Transport-Security"].startswith(f"max-age={HSTS_AGE}")
    assert s.get(base + "/hub/home").status_code == 200
    # Over plain HTTP the same pages get neither Secure nor HSTS.
    plain = requests.get(site.url + "/hub/login")
    assert "Strict-Transport-Security" not in plain.headers
    assert "Secure" not in plain.headers["Set-Cookie"]
    assert plain.headers["Set-Cookie"].startswith("ipydoc-login-csrf=")  # no __Host- on http


def test_users_server_answers_through_the_proxy_over_tls(site, pki):
    s, base = tls_session(site, pki, "alice.nb.test")
    r = login(s, base, "alice", ALICE_PW)
    assert r.status_code in (302, 303), r.text
    steps = follow_progress(s, base, "alice")
    assert steps[-1]["phase"] == "ready", steps
    status = s.get(base + "/user/alice/api/status")
    assert status.status_code == 200, status.text
    assert "started" in status.json()
    assert status.headers["Strict-Transport-Security"].startswith(f"max-age={HSTS_AGE}")


def test_redirect_listener_only_redirects_to_https(site):
    base = f"http://127.0.0.1:{site.redirect_port}"
    for path in ("/user/alice/lab/tree/a%20b.ipynb?reset=1&x=%2F", "/hub/login", "/"):
        r = requests.get(base + path, headers={"Host": f"alice.nb.test:{site.redirect_port}"},
                         allow_redirects=False)
        assert r.status_code == 301
        assert r.headers["Location"] == f"https://alice.nb.test:{site.tls_port}{path}"
        assert "Strict-Transport-Security" not in r.headers
        assert "Set-Cookie" not in r.headers and "<form" not in r.text
    r = requests.post(base + "/hub/login", data={"username": "alice", "password": ALICE_PW},
                      headers={"Host": "nb.test"}, allow_redirects=False)
    assert r.status_code == 308
    assert r.headers["Location"] == f"https://nb.test:{site.tls_port}/hub/login"
    assert "Set-Cookie" not in r.headers
    # A Host header that is no host name gets no redirect anywhere.
    with socket.create_connection(("127.0.0.1", site.redirect_port), timeout=10) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\nHost: evil.test/@x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"location" not in answer.lower()


def test_sighup_reloads_certificates_and_keeps_open_connections(site, pki):
    old = _der(pki["wild"][0])
    kept = PinnedHTTPS("alice.nb.test", site.tls_port, pki["ca"])
    assert kept.get("/hub/login").status == 200
    assert kept.sock.getpeercert(binary_form=True) == old

    renewed = _leaf(pki["inter"], ["*.nb.test", "nb.test"], days=90)
    cert_path, key_path = pki["wild_files"]
    _write(pki["dir"], "wild", *renewed, chain=[pki["inter"][0]])
    site.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: handshake(site.tls_port, "bob.nb.test", pki["ca"])[0] == _der(renewed[0]),
             timeout=15)
    assert "TLS certificates reloaded" in site.log()
    # The connection opened before the reload still works, on its old certificate.
    assert kept.get("/hub/login").status == 200
    assert kept.sock.getpeercert(binary_form=True) == old
    kept.close()

    # A broken new file is logged with its name; the certificate loaded before stays.
    key_path.write_bytes(pki_lib.pem_key(pki_lib.new_key()))
    site.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "does not belong to the certificate" in site.log(), timeout=15)
    assert f"key {key_path}" in site.log()
    assert handshake(site.tls_port, "nb.test", pki["ca"])[0] == _der(renewed[0])
    assert site.proc.poll() is None
    _write(pki["dir"], "wild", *renewed, chain=[pki["inter"][0]])


def _start_with(tmp_path: Path, **server: str) -> subprocess.CompletedProcess[str]:
    port = free_port()
    lines = [f'state_dir = "{tmp_path}/state"', f'listen = "ssl:{port}:interface=127.0.0.1"']
    lines += [f'{k} = "{v}"' for k, v in server.items()]
    cfg = tmp_path / "ipydoc.toml"
    cfg.write_text("[server]\n" + "\n".join(lines) + "\n")
    out = subprocess.run(TWISTD + ["-n", "--pidfile=", "ipydoc", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    with socket.socket() as probe:  # it never listened
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    return out


@pytest.mark.parametrize("case", ["missing cert", "not PEM", "key of another cert",
                                  "missing key", "garbage key", "encrypted key",
                                  "unreadable key"])
def test_bad_certificate_or_key_stops_the_daemon_naming_the_file(tmp_path, pki, case):
    cert, key = pki["wild_files"]
    cert, key = str(cert), str(key)
    bad = tmp_path / "bad.pem"
    if case == "missing cert":
        cert, expect = str(tmp_path / "nope.pem"), "cannot read"
    elif case == "not PEM":
        bad.write_text("hello\n")
        cert, expect = str(bad), "no PEM certificate"
    elif case == "key of another cert":
        key, expect = str(pki["other_files"][1]), "does not belong to the certificate"
    elif case == "missing key":
        key, expect = str(tmp_path / "nope.key"), "cannot read"
    elif case == "garbage key":
        bad.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        key, expect = str(bad), "not a usable private key"
    elif case == "encrypted key":
        bad.write_bytes(pki["wild"][1].private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase")))
        key, expect = str(bad), "encrypted"
    elif os.geteuid() == 0:  # root reads a 0000 file; a directory it cannot read either
        key, expect = str(tmp_path), "cannot read"
    else:
        bad.write_bytes(Path(key).read_bytes())
        bad.chmod(0)
        key, expect = str(bad), "cannot read"
    out = _start_with(tmp_path, tls_cert=cert, tls_key=key)
    assert out.returncode != 0
    named = cert if "cert" in case or case == "not PEM" else key
    assert named in out.stderr and expect in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("server, message", [
    ({}, "server.tls_cert (and tls_key) must be set for the TLS listener"),
    ({"tls_cert": "/x.pem", "redirect_listen": "ssl:9"}, "redirect listeners are plain HTTP"),
    ({"tls_cert": "/x.pem", "listen": "ssl:443:sslmethod=TLSv1_METHOD"}, "sslmethod="),
    ({"listen": "tcp:8000", "hsts": 600}, "server.hsts needs a TLS listener"),
    ({"listen": "tcp:8000", "redirect_listen": "tcp:80"}, "server.redirect_listen needs"),
    ({"tls_cert": "/x.pem", "tls_certs": [["/a.pem", "/b.key", "/c"]]},
     "server.tls_certs[0] must be"),
    ({"listen": "tcp:8000", "tls_cert": "/x.pem"}, "server.tls_cert is set but no server.listen"),
])
def test_tls_config_mistakes_name_the_key(server, message):
    from ipydoc.config.errors import ConfigError
    from ipydoc.config.load import from_dict

    with pytest.raises(ConfigError) as e:
        from_dict({"server": {"listen": "ssl:8443", **server}})
    assert message in str(e.value)


def test_certificate_selection_rules(pki, tmp_path):
    from ipydoc.edge.certificates import CertFiles, CertStore, name_matches
    from ipydoc.edge.listen_spec import https_port, parse_listen

    assert name_matches("*.nb.test", "alice.nb.test")
    assert not name_matches("*.nb.test", "nb.test")
    assert not name_matches("*.nb.test", "a.b.nb.test")
    wild = CertFiles(*map(str, pki["wild_files"]), "server.tls_cert")
    other = CertFiles(*map(str, pki["other_files"]), "server.tls_certs[0]")
    # An exact name wins over a wildcard whatever the order.
    exact_cert = _leaf(pki["inter"], ["bob.nb.test"])
    exact = CertFiles(*map(str, _write(tmp_path, "bob", *exact_cert)), "server.tls_certs[1]")
    store = CertStore([wild, other, exact])
    assert store.select("BOB.nb.test.") is store.context_for(exact)
    assert store.select("carol.nb.test") is store.context_for(wild)
    assert store.select("other.test") is store.context_for(other)
    assert store.select("nowhere.test") is None
    # Expired certificates load (the daemon warns) so an outage is not made worse.
    expired = _leaf(pki["inter"], ["old.test"], days=-1)
    old = CertStore([CertFiles(*map(str, _write(tmp_path, "old", *expired)), "server.tls_cert")])
    assert "expired" in old._loaded[next(iter(old._loaded))].warnings[0]
    # Listen entries.
    assert parse_listen("tcp:80") is None
    t = parse_listen("ssl:8443:interface=127.0.0.1:privateKey=/k.pem:certKey=/c.pem")
    assert (t.endpoint, t.cert, t.key) == ("tcp:8443:interface=127.0.0.1", "/c.pem", "/k.pem")
    assert parse_listen("tls:systemd:domain=INET6:index=0").endpoint == \
        "systemd:domain=INET6:index=0"
    assert https_port("", ["tcp:80", "ssl:8443:interface=::"]) == 8443
    assert https_port("https://nb.test", ["ssl:8443"]) == 443
    assert https_port("https://nb.test:9443", ["ssl:8443"]) == 9443
