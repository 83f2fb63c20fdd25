"""Subdomain mode as a browser sees it, without DNS: requests to the daemon's loopback
port naming the virtual host in ``Host``, a host-only cookie jar, and the walk through
the hub's handoff.  Shared by the subdomain, handoff and isolation tests.
"""

from __future__ import annotations

import re
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

import requests

from support import Daemon, progress_steps

DOMAIN = "nb.test"
STATE = "ipydoc-handoff"  # the handoff's state cookie on a user's host (plain http)


class Browser:
    """Host-only cookie jar + requests to the daemon's port with a chosen ``Host``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.jar: dict[str, dict[str, str]] = {}

    def host(self, name: str | None = None) -> str:
        return f"{name}.{DOMAIN}:{self.port}" if name else f"{DOMAIN}:{self.port}"

    def origin(self, name: str | None = None) -> str:
        return f"http://{self.host(name)}"

    def request(self, method: str, host: str, path: str, *, cookies: dict | None = None,
                html: bool = False, **kw) -> requests.Response:
        headers = {"Host": host, **kw.pop("headers", {})}
        if html:
            headers["Accept"] = "text/html"
        sent = self.jar.get(host, {}) if cookies is None else cookies
        if sent:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in sent.items())
        r = requests.request(method, f"http://127.0.0.1:{self.port}{path}", headers=headers,
                             allow_redirects=False, timeout=60, **kw)
        for raw in set_cookies(r):
            morsel = next(iter(SimpleCookie(raw).values()))
            if morsel["max-age"] == "0":
                self.jar.setdefault(host, {}).pop(morsel.key, None)
            else:
                self.jar.setdefault(host, {})[morsel.key] = morsel.value
        return r

    def get(self, host: str, path: str, **kw) -> requests.Response:
        return self.request("GET", host, path, **kw)

    def go(self, url: str, **kw) -> requests.Response:
        """GET an absolute URL that must be on one of our hosts."""
        u = urlsplit(url)
        assert u.scheme == "http" and u.netloc.endswith(f"{DOMAIN}:{self.port}"), url
        return self.get(u.netloc, u.path + (f"?{u.query}" if u.query else ""), **kw)


def set_cookies(r: requests.Response) -> list[str]:
    return r.raw.headers.getlist("Set-Cookie")


def login(b: Browser, name: str, password: str) -> requests.Response:
    hub = b.host()
    page = b.get(hub, "/hub/login")
    csrf = re.search(r'name="_csrf" value="([^"]+)"', page.text).group(1)
    return b.request("POST", hub, "/hub/login",
                     data={"_csrf": csrf, "username": name, "password": password, "next": ""},
                     headers={"Origin": b.origin()})


def wait_running(b: Browser, name: str) -> list[dict]:
    steps = progress_steps(
        f"http://127.0.0.1:{b.port}/hub/api/users/{name}/server/progress",
        headers={"Host": b.host(),
                 "Cookie": f"ipydoc-session={b.jar[b.host()]['ipydoc-session']}"})
    assert steps[-1]["phase"] == "ready", steps
    return steps


def hand_off(b: Browser, name: str, path: str = "/lab") -> str:
    """Walk the redirects from ``name``'s host through the hub; the handoff URL (to be
    opened in ``b``, which now holds the state cookie it is bound to)."""
    r = b.get(b.host(name), path, html=True, cookies={})  # as if without a host session
    assert r.status_code == 302, (r.status_code, r.text)
    state = b.jar[b.host(name)][STATE]
    assert r.headers["Location"] == (f"{b.origin()}/hub/handoff?to={name}&next="
                                     + requests.utils.quote(path, safe="") + f"&state={state}")
    r = b.go(r.headers["Location"])
    assert r.status_code == 302, (r.status_code, r.text)
    assert r.headers["Referrer-Policy"] == "no-referrer"
    return r.headers["Location"]


def subdomain_site(root, users: dict[str, str], **overrides):
    """A started subdomain-mode daemon on ``DOMAIN`` with ``users`` (name: password), for
    a module fixture to yield from; stopped and its containers removed after."""
    d = Daemon(root, {**overrides, "server": {"routing": "subdomain", "domain": DOMAIN,
                                              **overrides.get("server", {})}})
    d.start(host=f"{DOMAIN}:{d.port}")
    try:
        for name, password in users.items():
            d.add_user(name, password)
        yield d
    finally:
        d.stop()
        d.cleanup_docker()
