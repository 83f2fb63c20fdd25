"""Behind a TLS-terminating proxy (issue 12, item 7; and the https half of item 6).

Two real daemons on plain HTTP, as behind nginx; the tests send what such a proxy sends
(``X-Forwarded-For``, ``X-Forwarded-Proto``) straight from loopback:

* ``proxied``: subdomain mode, ``public_url = "https://nb.test:PORT"``, ``trusted_proxies
  = ["127.0.0.1"]``.  Every cookie it sets (login form, session, OAuth binding, handoff
  state, user host) is ``__Host-``, ``Secure``, ``Path=/``, without ``Domain``; old
  plain names and duplicates are ignored; the login limit counts per forwarded address.
* ``direct``: path mode, no public_url, ``trusted_proxies = ["::1"]``, listening on
  127.0.0.1 and ::1.  From 127.0.0.1 (not trusted) the headers change nothing; from ::1
  they are believed.

No containers are needed (``start_on_login = false``).
"""

from __future__ import annotations

import re
import socket

import pytest
import requests

from support import Daemon, wait_for

DOMAIN = "nb.test"
ALICE_PW = "alice-proxied-pw"
BOB_PW = "bob-proxied-pw-1"


def set_cookies(r: requests.Response) -> list[str]:
    return r.raw.headers.getlist("Set-Cookie")


def attributes(raw: str) -> dict[str, str]:
    out = {}
    for part in raw.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        out[key.lower()] = value
    return out


class Hop:
    """What the TLS-terminating proxy sends to the daemon: plain HTTP from loopback, the
    browser's ``Host``, and (when asked) ``X-Forwarded-*``; cookies kept per host."""

    def __init__(self, base: str, port: int, forwarded_for: str | None = None,
                 proto: str | None = "https") -> None:
        self.base, self.port = base, port
        self.forwarded_for, self.proto = forwarded_for, proto
        self.jar: dict[str, dict[str, str]] = {}
        self.seen: list[str] = []  # every Set-Cookie received

    def host(self, name: str | None = None) -> str:
        return f"{name}.{DOMAIN}:{self.port}" if name else f"{DOMAIN}:{self.port}"

    def origin(self, name: str | None = None) -> str:
        return f"https://{self.host(name)}"

    def request(self, method: str, host: str, path: str, *, cookie: str | None = None,
                **kw) -> requests.Response:
        headers = {"Host": host, **kw.pop("headers", {})}
        if self.forwarded_for is not None:
            headers["X-Forwarded-For"] = self.forwarded_for
        if self.proto is not None:
            headers["X-Forwarded-Proto"] = self.proto
        sent = self.jar.get(host, {})
        if cookie is not None:
            headers["Cookie"] = cookie
        elif sent:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in sent.items())
        r = requests.request(method, self.base + path, headers=headers,
                             allow_redirects=False, timeout=30, **kw)
        for raw in set_cookies(r):
            self.seen.append(raw)
            name, _, value = raw.split(";")[0].partition("=")
            if attributes(raw).get("max-age") == "0":
                self.jar.setdefault(host, {}).pop(name, None)
            else:
                self.jar.setdefault(host, {})[name] = value
        return r

    def go(self, url: str, **kw) -> requests.Response:
        """GET an absolute https URL on one of our hosts (through the 'proxy')."""
        m = re.fullmatch(r"https://([^/]+)(/.*)", url)
        assert m and m.group(1).endswith(f"{DOMAIN}:{self.port}"), url
        return self.request("GET", m.group(1), m.group(2), **kw)


def login(hop: Hop, name: str, password: str, host: str | None = None,
          origin: str | None = None) -> requests.Response:
    host = host or hop.host()
    page = hop.request("GET", host, "/hub/login")
    csrf = re.search(r'name="_csrf" value="([^"]+)"', page.text).group(1)
    return hop.request("POST", host, "/hub/login",
                       data={"_csrf": csrf, "username": name, "password": password,
                             "next": ""},
                       headers={"Origin": origin or hop.origin()})


def error_of(r: requests.Response) -> str:
    m = re.search(r'<p class="error" role="alert">([^<]*)</p>', r.text)
    return m.group(1) if m else ""


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("proxied"))
    d.overrides = {
        "server": {"routing": "subdomain", "domain": DOMAIN,
                   "public_url": f"https://{DOMAIN}:{d.port}",
                   "trusted_proxies": ["127.0.0.1"]},
        "auth": {"start_on_login": False, "stop_on_logout": False,
                 "login_attempts_per_account": 100, "login_attempts_per_address": 3},
        # a provider only for its binding cookie (the start page never calls GitHub)
        "auth.github": {"client_id": "ipydoc-test", "client_secret": "not-used",
                        "orgs": ["example"]}}
    d.start(host=f"{DOMAIN}:{d.port}")
    d.add_user("alice", ALICE_PW)
    d.add_user("bob", BOB_PW)
    yield d
    d.stop()
    d.cleanup_docker()


@pytest.fixture(scope="module")
def direct(tmp_path_factory):
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        port6 = s.getsockname()[1]
    d = Daemon(tmp_path_factory.mktemp("direct"))
    d.port6 = port6
    d.overrides = {
        "server": {"listen": [f"tcp:{d.port}:interface=127.0.0.1",
                              f"tcp6:{port6}:interface=\\:\\:1"],
                   "trusted_proxies": ["::1"]},
        "auth": {"start_on_login": False, "stop_on_logout": False,
                 "login_attempts_per_account": 100, "login_attempts_per_address": 3}}
    d.start()
    d.add_user("alice", ALICE_PW)
    yield d
    d.stop()
    d.cleanup_docker()


# -- proxied: public_url https, the proxy on 127.0.0.1 trusted ---------------------------
def test_every_cookie_is_secure_and_host_prefixed_behind_the_proxy(proxied):
    hop = Hop(proxied.url, proxied.port, forwarded_for="198.51.100.20", proto=None)
    r = login(hop, "alice", ALICE_PW)  # no X-Forwarded-Proto: public_url alone says https
    assert r.status_code == 303, r.text
    start = hop.request("GET", hop.host(), "/hub/oauth/github/start")  # binding cookie
    assert start.status_code == 302 and "github.com" in start.headers["Location"]
    page = hop.request("GET", hop.host("alice"), "/lab", headers={"Accept": "text/html"})
    assert page.status_code == 302  # no host session yet: the handoff, with a state cookie
    assert page.headers["Location"].startswith(f"{hop.origin()}/hub/handoff?to=alice&")
    handoff = hop.go(page.headers["Location"])
    assert handoff.status_code == 302, handoff.text
    assert handoff.headers["Location"].startswith(f"{hop.origin('alice')}/_ipydoc/handoff?")
    redeemed = hop.go(handoff.headers["Location"])
    assert redeemed.status_code == 302 and redeemed.headers["Location"] == "/lab"
    # the host session works: the server is not running (no 401, no handoff again)
    status = hop.request("GET", hop.host("alice"), "/api/status")
    assert status.status_code == 503 and "not running" in status.json()["message"]
    home = hop.request("GET", hop.host(), "/hub/home")
    csrf = re.search(r'name="_csrf" value="([^"]+)"', home.text).group(1)
    out = hop.request("POST", hop.host(), "/hub/logout", data={"_csrf": csrf},
                      headers={"Origin": hop.origin()})
    assert out.status_code == 303

    names = {raw.split("=", 1)[0] for raw in hop.seen}
    assert {"__Host-ipydoc-login-csrf", "__Host-ipydoc-session", "__Host-ipydoc-oauth",
            "__Host-ipydoc-handoff", "__Host-ipydoc-user"} <= names, names
    for raw in hop.seen:
        attrs = attributes(raw)
        assert raw.startswith("__Host-"), raw
        assert "secure" in attrs and attrs.get("path") == "/" and "domain" not in attrs, raw
        assert "httponly" in attrs, raw


def test_plain_names_and_duplicates_are_ignored_over_https(proxied):
    alice, bob = Hop(proxied.url, proxied.port), Hop(proxied.url, proxied.port)
    assert login(alice, "alice", ALICE_PW).status_code == 303
    assert login(bob, "bob", BOB_PW).status_code == 303
    hub = alice.host()
    mine = alice.jar[hub]["__Host-ipydoc-session"]
    planted = bob.jar[hub]["__Host-ipydoc-session"]  # bob's own session, as a cookie tosser

    def home(cookie: str) -> requests.Response:
        return alice.request("GET", hub, "/hub/home", cookie=cookie)

    assert "alice" in home(f"__Host-ipydoc-session={mine}").text
    # a sibling host can write "ipydoc-session=...; Domain=nb.test" but not a __Host- name:
    # the old plain name is not read over https, alone or beside the real cookie
    r = home(f"ipydoc-session={planted}")
    assert r.status_code == 302 and r.headers["Location"].startswith("/hub/login")
    r = home(f"ipydoc-session={planted}; __Host-ipydoc-session={mine}")
    assert r.status_code == 200 and "alice" in r.text and "bob" not in r.text
    r = home(f"__Host-ipydoc-session={mine}; __Host-ipydoc-session={planted}")
    assert r.status_code == 302  # sent twice: no session at all
    # the same at a user's host, for its cookie
    page = alice.request("GET", alice.host("alice"), "/lab", headers={"Accept": "text/html"})
    alice.go(alice.go(page.headers["Location"]).headers["Location"])
    user = alice.jar[alice.host("alice")]["__Host-ipydoc-user"]

    def status(cookie: str) -> int:
        return alice.request("GET", alice.host("alice"), "/api/status", cookie=cookie).status_code

    assert status(f"__Host-ipydoc-user={user}") == 503  # signed in; server not running
    assert status(f"ipydoc-user={user}") == 401
    assert status(f"__Host-ipydoc-user={user}; __Host-ipydoc-user={user}") == 401


def test_the_login_limit_counts_each_forwarded_address(proxied):
    first = Hop(proxied.url, proxied.port, forwarded_for="198.51.100.1")
    answers = [login(first, name, "a-wrong-guess").status_code
               for name in ("carol", "dave", "erin")]
    assert answers == [403, 403, 429]
    assert "your network address" in error_of(login(first, "alice", ALICE_PW))
    # what the client writes left of the proxy's entry is its own claim: not believed
    spoof = Hop(proxied.url, proxied.port, forwarded_for="203.0.113.9, 198.51.100.1")
    assert login(spoof, "alice", ALICE_PW).status_code == 429
    # another client behind the same proxy is not paused
    second = Hop(proxied.url, proxied.port, forwarded_for="198.51.100.2")
    assert login(second, "alice", ALICE_PW).status_code == 303
    log = proxied.log()
    assert "login refused for alice from 198.51.100.1" in log
    # the access log names the client, not the proxy
    assert wait_for(lambda: '"198.51.100.2" - - ' in proxied.log(), timeout=10)


# -- direct: only ::1 is a trusted proxy --------------------------------------------------
def test_forwarded_headers_from_an_untrusted_peer_change_nothing(direct):
    base = direct.url
    answers = []
    for i, name in enumerate(("carol", "dave", "erin")):
        hop = Hop(base, direct.port, forwarded_for=f"198.51.100.{i + 1}")
        answers.append(login(hop, name, "a-wrong-guess", host=f"127.0.0.1:{direct.port}",
                             origin=base).status_code)
    assert answers == [403, 403, 429]  # all counted as 127.0.0.1
    assert "login refused for erin from 127.0.0.1" in direct.log()
    # X-Forwarded-Proto: https from it does not make cookies Secure or __Host-
    page = requests.get(base + "/hub/login", headers={"X-Forwarded-Proto": "https"})
    [cookie] = set_cookies(page)
    assert cookie.startswith("ipydoc-login-csrf=") and "secure" not in attributes(cookie)


def test_forwarded_headers_from_a_trusted_peer_are_believed(direct):
    base6, host = f"http://[::1]:{direct.port6}", f"[::1]:{direct.port6}"
    # 127.0.0.1 is paused (the test before); ::1 is not, but a client the trusted
    # proxy names as 127.0.0.1 is that paused address
    named = Hop(base6, direct.port6, forwarded_for="127.0.0.1", proto="https")
    r = login(named, "alice", ALICE_PW, host=host, origin=f"https://{host}")
    assert r.status_code == 429 and "your network address" in error_of(r)
    hop = Hop(base6, direct.port6, forwarded_for="198.51.100.7", proto="https")
    r = login(hop, "alice", ALICE_PW, host=host, origin=f"https://{host}")
    assert r.status_code == 303, r.text
    assert "login refused for alice from 127.0.0.1" in direct.log()
    assert {raw.split("=", 1)[0] for raw in hop.seen} == {"__Host-ipydoc-login-csrf",
                                                          "__Host-ipydoc-session"}
    assert all("secure" in attributes(raw) for raw in hop.seen)
    # the same proxy relaying plain http: plain cookies
    plain = Hop(base6, direct.port6, forwarded_for="198.51.100.7", proto="http")
    page = plain.request("GET", host, "/hub/login")
    [cookie] = set_cookies(page)
    assert cookie.startswith("ipydoc-login-csrf=") and "secure" not in attributes(cookie)


@pytest.mark.parametrize("chain, client", [
    ("198.51.100.1", "198.51.100.1"),
    ("203.0.113.9, 198.51.100.1", "198.51.100.1"),          # left of it: the client's claim
    ("198.51.100.1, 10.0.0.2", "198.51.100.1"),             # 10.0.0.2: another trusted hop
    ("10.0.0.3, 10.0.0.2", "10.0.0.3"),                     # all trusted: the leftmost
    ("junk, 10.0.0.2", "10.0.0.2"),                         # nothing better to believe
    ("[2001:db8::5]:4711", "2001:db8::5"),
    ("198.51.100.1:4711", "198.51.100.1"),
    ("::ffff:198.51.100.1", "198.51.100.1"),
    ("unknown", None),
    ("", None),
])
def test_the_client_is_the_rightmost_untrusted_address(chain, client):
    from ipydoc.edge.forwarding import Forwarding

    rules = Forwarding.from_settings(["127.0.0.1", "10.0.0.0/8"])
    assert rules.client([chain.encode()]) == client


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "proxy.example.org", "", "10.0.0.1-9"])
def test_bad_trusted_proxies_are_refused_naming_the_key(entry):
    from ipydoc.config.errors import ConfigError
    from ipydoc.config.load import from_dict

    with pytest.raises(ConfigError, match=r"server\.trusted_proxies: .* is not an IP"):
        from_dict({"server": {"trusted_proxies": [entry]}})


def test_trusted_proxies_is_a_list_of_strings():
    from ipydoc.config.errors import ConfigError
    from ipydoc.config.load import from_dict

    assert from_dict({}).server.trusted_proxies == []
    ok = from_dict({"server": {"trusted_proxies": ["unix", "fd00::/8", " 10.1.2.3 "]}})
    assert ok.server.trusted_proxies == ["unix", "fd00::/8", " 10.1.2.3 "]
    with pytest.raises(ConfigError, match=r"server\.trusted_proxies must be a list"):
        from_dict({"server": {"trusted_proxies": "127.0.0.1"}})
