"""ipydoc behind a real nginx that terminates TLS (issue 12, item 7), end to end.

Debian's nginx listens with TLS (a certificate from the throwaway PKI of tests/pki.py for
nb.test and *.nb.test) and proxies plain HTTP to the daemon, as the README's example
does (``X-Forwarded-For $proxy_add_x_forwarded_for``, ``X-Forwarded-Proto $scheme``).
The daemon has ``public_url = "https://nb.test:PORT"`` and ``trusted_proxies =
["127.0.0.1"]``.  Clients connect to nginx from other loopback addresses (127.0.0.2,
127.0.0.3: every 127/8 address is this host), so each has an address of its own that
only nginx's ``X-Forwarded-For`` can tell the daemon.

Shown: every cookie the browser gets over the real TLS is ``__Host-`` and ``Secure``;
alice signs in on the hub and reaches her running server on her host through nginx; the
login limit pauses one client address and not another, and a client's own forged
``X-Forwarded-For`` changes nothing; the access log names the clients, not nginx.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
from urllib.parse import urlsplit

import pytest
import requests
from cryptography import x509
from requests.adapters import HTTPAdapter

import pki as pki_lib
from support import Daemon, free_port, wait_for

NGINX = os.environ.get("IPYDOC_NGINX", "/usr/sbin/nginx")
DOMAIN = "nb.test"
ALICE_PW = "alice-nginx-password"


class Via(HTTPAdapter):
    """https to nginx on 127.0.0.1, from ``source`` (a loopback address), asking for and
    verifying ``name`` (SNI)."""

    def __init__(self, name: str, source: str) -> None:
        self.name, self.source = name, source
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["server_hostname"] = self.name
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


class Browser:
    """One client machine (``source``) behind nginx: host-only cookies kept per host."""

    def __init__(self, port: int, ca: str, source: str) -> None:
        self.port, self.ca, self.source = port, ca, source
        self.jar: dict[str, dict[str, str]] = {}
        self.seen: list[str] = []  # every Set-Cookie received
        self._sessions: dict[str, requests.Session] = {}

    def host(self, name: str | None = None) -> str:
        return f"{name}.{DOMAIN}" if name else DOMAIN

    def origin(self, name: str | None = None) -> str:
        return f"https://{self.host(name)}:{self.port}"

    def _session(self, host: str) -> requests.Session:
        if host not in self._sessions:
            s = requests.Session()
            s.mount(f"https://127.0.0.1:{self.port}", Via(host, self.source))
            s.verify, s.trust_env = self.ca, False
            self._sessions[host] = s
        return self._sessions[host]

    def request(self, method: str, host: str, path: str, **kw) -> requests.Response:
        headers = {"Host": f"{host}:{self.port}", **kw.pop("headers", {})}
        if self.jar.get(host):
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar[host].items())
        r = self._session(host).request(method, f"https://127.0.0.1:{self.port}{path}",
                                        headers=headers, allow_redirects=False, timeout=60,
                                        **kw)
        for raw in r.raw.headers.getlist("Set-Cookie"):
            self.seen.append(raw)
            name, _, value = raw.split(";")[0].partition("=")
            if "max-age=0" in raw.lower().replace(" ", ""):
                self.jar.setdefault(host, {}).pop(name, None)
            else:
                self.jar.setdefault(host, {})[name] = value
        return r

    def go(self, url: str) -> requests.Response:
        u = urlsplit(url)
        assert u.scheme == "https" and u.port == self.port, url
        return self.request("GET", u.hostname, u.path + (f"?{u.query}" if u.query else ""))

    def login(self, name: str, password: str) -> requests.Response:
        page = self.request("GET", self.host(), "/hub/login")
        csrf = re.search(r'name="_csrf" value="([^"]+)"', page.text).group(1)
        return self.request("POST", self.host(), "/hub/login",
                            data={"_csrf": csrf, "username": name, "password": password,
                                  "next": ""}, headers={"Origin": self.origin()})


def error_of(r: requests.Response) -> str:
    m = re.search(r'<p class="error" role="alert">([^<]*)</p>', r.text)
    return m.group(1) if m else ""


NGINX_CONF = """
{user}
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; "" close; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name {domain} *.{domain};
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_buffering off;
            proxy_request_buffering off;
            client_max_body_size 0;
        }}
    }}
}}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory, notebook_image):
    if not shutil.which(NGINX) and not os.path.exists(NGINX):
        pytest.fail(f"{NGINX} missing: scripts/bootstrap.sh --test installs Debian's nginx")
    root = tmp_path_factory.mktemp("nginx")
    ca = pki_lib.ca("ipydoc nginx test root")
    cert, key = pki_lib.leaf(ca, DOMAIN, san=[x509.DNSName(DOMAIN), x509.DNSName(f"*.{DOMAIN}")],
                             not_before=datetime.timedelta(days=1))
    (root / "ca.pem").write_bytes(pki_lib.pem(ca[0]))
    (root / "cert.pem").write_bytes(pki_lib.pem(cert))
    (root / "key.pem").write_bytes(pki_lib.pem_key(key))
    (root / "key.pem").chmod(0o600)

    public = free_port()
    d = Daemon(root / "daemon")
    d.overrides = {
        "server": {"routing": "subdomain", "domain": DOMAIN,
                   "public_url": f"https://{DOMAIN}:{public}",
                   "trusted_proxies": ["127.0.0.1"]},
        "auth": {"stop_on_logout": False, "login_attempts_per_account": 100,
                 "login_attempts_per_address": 3}}
    d.start(wait=False)

    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(
        user="user root;" if os.geteuid() == 0 else "", dir=root, port=public,
        domain=DOMAIN, cert=root / "cert.pem", key=root / "key.pem", upstream=d.port))
    nginx = subprocess.Popen([NGINX, "-p", str(root), "-c", str(conf), "-g", "daemon off;"],
                             stdout=subprocess.DEVNULL, stderr=open(root / "nginx.out", "wb"))
    b = Browser(public, str(root / "ca.pem"), "127.0.0.9")

    def ready() -> bool:
        for proc, what in ((d.proc, d.log), (nginx, lambda: (root / "nginx.out").read_text())):
            if proc.poll() is not None:
                raise RuntimeError(f"exited:\n{what()}")
        try:
            return b.request("GET", DOMAIN, "/hub/login").status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(ready, timeout=30, interval=0.1)
        d.add_user("alice", ALICE_PW)
        yield {"daemon": d, "port": public, "ca": str(root / "ca.pem"), "root": root}
    finally:
        nginx.terminate()
        nginx.wait(10)
        d.stop()
        d.cleanup_docker()


def test_alice_signs_in_and_reaches_her_server_through_nginx(stack):
    b = Browser(stack["port"], stack["ca"], "127.0.0.2")
    r = b.login("alice", ALICE_PW)
    assert r.status_code == 303, r.text
    lab = f"{b.origin('alice')}/lab"
    assert r.headers["Location"].endswith(requests.utils.quote(lab, safe="/:"))
    # wait for her server, then walk the handoff as a browser does
    with b._session(DOMAIN).get(
            f"https://127.0.0.1:{stack['port']}/hub/api/users/alice/server/progress",
            headers={"Host": f"{DOMAIN}:{stack['port']}",
                     "Cookie": "; ".join(f"{k}={v}" for k, v in b.jar[DOMAIN].items())},
            stream=True, timeout=120) as progress:
        assert progress.status_code == 200
        for line in progress.iter_lines():
            if b'"phase": "ready"' in line or b'"phase": "failed"' in line:
                assert b'"ready"' in line, line
                break
    page = b.request("GET", b.host("alice"), "/lab", headers={"Accept": "text/html"})
    assert page.status_code == 302, page.text
    handoff = b.go(page.headers["Location"])
    assert handoff.status_code == 302, handoff.text
    redeemed = b.go(handoff.headers["Location"])
    assert redeemed.status_code == 302 and redeemed.headers["Location"] == "/lab"
    status = b.request("GET", b.host("alice"), "/api/status")
    assert status.status_code == 200 and "last_activity" in status.json()
    lab_page = b.request("GET", b.host("alice"), "/lab", headers={"Accept": "text/html"})
    assert lab_page.status_code == 200 and "JupyterLab" in lab_page.text
    # over the real TLS every cookie of ipydoc's is __Host-, Secure, Path=/, no Domain
    # (jupyter_server's own _xsrf on alice's host is the server's business)
    ours = [raw for raw in b.seen if "ipydoc-" in raw.split("=", 1)[0]]
    names = {raw.split("=", 1)[0] for raw in ours}
    assert names == {"__Host-ipydoc-login-csrf", "__Host-ipydoc-session",
                     "__Host-ipydoc-handoff", "__Host-ipydoc-user",
                     "__Host-ipydoc-return"}, names
    for raw in ours:
        attrs = [a.strip().lower() for a in raw.split(";")[1:]]
        assert "secure" in attrs and "path=/" in attrs, raw
        assert not any(a.startswith("domain") for a in attrs), raw
    # ...and so is every cookie her server sets: it only sees plain HTTP, so jupyter_server
    # leaves Secure off its _xsrf cookie; the proxy adds it for an https client
    xsrf = [raw for raw in b.seen if raw.startswith("_xsrf=")]
    assert xsrf, b.seen
    for raw in b.seen:
        assert "secure" in [a.strip().lower() for a in raw.split(";")[1:]], raw


def test_login_limit_counts_each_client_behind_nginx(stack):
    d = stack["daemon"]
    guesser = Browser(stack["port"], stack["ca"], "127.0.0.3")
    answers = [guesser.login(name, "a-wrong-guess").status_code
               for name in ("carol", "dave", "erin")]
    assert answers == [403, 403, 429]
    assert "your network address" in error_of(guesser.login("alice", ALICE_PW))
    # the guesser's own X-Forwarded-For is left of nginx's entry: not believed
    forged = Browser(stack["port"], stack["ca"], "127.0.0.3")
    page = forged.request("GET", DOMAIN, "/hub/login", headers={"X-Forwarded-For": "198.51.100.1"})
    csrf = re.search(r'name="_csrf" value="([^"]+)"', page.text).group(1)
    r = forged.request("POST", DOMAIN, "/hub/login",
                       data={"_csrf": csrf, "username": "alice", "password": ALICE_PW,
                             "next": ""},
                       headers={"Origin": forged.origin(), "X-Forwarded-For": "198.51.100.1"})
    assert r.status_code == 429
    # another machine behind the same nginx logs in
    other = Browser(stack["port"], stack["ca"], "127.0.0.4")
    assert other.login("alice", ALICE_PW).status_code == 303
    assert "login refused for alice from 127.0.0.3" in d.log()
    # the access log names each client, never nginx, nor what a client claimed to be
    assert wait_for(lambda: '"127.0.0.4" - - ' in d.log(), timeout=10)
    assert '"127.0.0.3" - - ' in d.log()
    assert '"127.0.0.1" - - ' not in d.log() and '"198.51.100.1" - - ' not in d.log()
