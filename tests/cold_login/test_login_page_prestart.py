"""A returning browser's login page starts its user's stopped server (spawn.prestart_on_login).

Real daemon, Docker and jupyter_server.  The hint is the signed ``ipydoc-return`` cookie a
login leaves; the "session ended" of a returning browser is its session cookie dropped.
"""

from __future__ import annotations

import re
import time

import pytest
import requests

from ipydoc.access.cookies import Signer
from ipydoc.access.return_hint import RETURN_COOKIE, ReturnHints

from support import login, wait_for

PASSWORD = "erin-password-1"


def prestart_events(daemon, name: str) -> list[str]:
    out = daemon.cli("events", "--user", name, "--kind", "prestart", "-n", "50").stdout
    return [line for line in out.splitlines() if "login page" in line]


def unused_events(daemon, name: str) -> list[str]:
    out = daemon.cli("events", "--user", name, "--kind", "prestart-unused", "-n", "50").stdout
    return [line for line in out.splitlines() if "prestart_grace" in line]


def session_ended(s: requests.Session) -> requests.Session:
    """The browser as it comes back after its session ended: only the hint is left."""
    hint = s.cookies.get(RETURN_COOKIE)
    assert hint, "a login leaves the returning-browser hint"
    back = requests.Session()
    back.cookies.set(RETURN_COOKIE, hint)
    return back


def running(daemon, name: str) -> bool:
    return bool(daemon.containers(name, all=False))


@pytest.fixture
def site(make_daemon):
    daemon = make_daemon(spawn={"prestart_grace": 4})
    daemon.start()
    daemon.add_user("erin", PASSWORD)
    return daemon


def test_the_login_page_starts_a_returning_users_server_and_the_login_keeps_it(site):
    erin, r = login(site.url, "erin", PASSWORD)
    assert r.status_code == 303
    # The hint: HttpOnly, SameSite=Strict, and a login's answer sets it.
    set_cookie = [v for k, v in r.raw.headers.items() if k.lower() == "set-cookie"
                  and v.startswith(RETURN_COOKIE + "=")]
    assert set_cookie and "HttpOnly" in set_cookie[0] and "SameSite=Strict" in set_cookie[0]
    wait_for(lambda: running(site, "erin"), timeout=120)
    site.cli("server", "stop", "erin")
    assert not running(site, "erin")

    back = session_ended(erin)
    page = back.get(f"{site.url}/hub/login")
    assert page.status_code == 200 and 'name="password"' in page.text
    wait_for(lambda: running(site, "erin"), timeout=120)  # started while "typing"
    assert len(prestart_events(site, "erin")) == 1
    csrf = re.search(r'name="_csrf" value="([^"]+)"', page.text).group(1)
    r = back.post(f"{site.url}/hub/login", data={"_csrf": csrf, "username": "erin",
                                                 "password": PASSWORD, "next": ""},
                  headers={"Origin": site.url}, allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"].startswith("/user/erin/")
    wait_for(lambda: back.get(f"{site.url}/user/erin/api/status",
                              headers={"Accept": "application/json"}).status_code == 200,
             timeout=60)
    time.sleep(5)  # prestart_grace (4 s) is over: an unused start would be stopped by now
    assert running(site, "erin") and not unused_events(site, "erin")


def test_an_unused_start_is_stopped_after_the_grace_and_not_repeated_meanwhile(site):
    erin, _ = login(site.url, "erin", PASSWORD)
    wait_for(lambda: running(site, "erin"), timeout=120)
    site.cli("server", "stop", "erin")
    back = session_ended(erin)
    assert back.get(f"{site.url}/hub/login").status_code == 200
    wait_for(lambda: running(site, "erin"), timeout=120)
    # Nobody logs in: stopped again once prestart_grace is over, and said so.
    wait_for(lambda: not running(site, "erin") and unused_events(site, "erin"), timeout=60)
    # The cool-down: opening the login page again starts nothing.  (The event is recorded
    # before a start, so a second one would show here once the page view is handled; a
    # login afterwards proves the page views were handled in order.)
    for _ in range(3):
        assert back.get(f"{site.url}/hub/login").status_code == 200
    erin2, r = login(site.url, "erin", PASSWORD)
    assert r.status_code == 303
    wait_for(lambda: running(site, "erin"), timeout=120)
    assert len(prestart_events(site, "erin")) == 1


def test_no_start_for_a_forged_hint_a_disabled_or_recycled_account_or_after_logout(site):
    site.add_user("fred", "fred-password-1")
    erin, _ = login(site.url, "erin", PASSWORD)
    wait_for(lambda: running(site, "erin"), timeout=120)
    hint = erin.cookies.get(RETURN_COOKIE)
    site.cli("server", "stop", "erin")

    # Forged: erin's hint edited to name fred (the MAC no longer fits).
    forged = requests.Session()
    forged.cookies.set(RETURN_COOKIE, hint.replace("erin~", "fred~", 1))
    assert forged.get(f"{site.url}/hub/login").status_code == 200
    # Disabled: erin's own hint.
    site.cli("user", "disable", "erin")
    assert session_ended(erin).get(f"{site.url}/hub/login").status_code == 200
    site.cli("user", "enable", "erin")
    # Logged out: the logout answer deletes the hint (and stops the server).
    erin, _ = login(site.url, "erin", PASSWORD)
    wait_for(lambda: running(site, "erin"), timeout=120)
    page = erin.get(f"{site.url}/hub/logout")
    csrf = re.search(r'name="_csrf" value="([^"]+)"', page.text).group(1)
    out = erin.post(f"{site.url}/hub/logout", data={"_csrf": csrf},
                    headers={"Origin": site.url}, allow_redirects=False)
    assert out.status_code in (302, 303)
    assert RETURN_COOKIE not in erin.cookies
    wait_for(lambda: not running(site, "erin"), timeout=60)
    assert erin.get(f"{site.url}/hub/login").status_code == 200

    # Control: the same hint, account enabled, starts it; it is the first such start.
    assert session_ended_with(hint).get(f"{site.url}/hub/login").status_code == 200
    wait_for(lambda: running(site, "erin"), timeout=120)
    assert len(prestart_events(site, "erin")) == 1
    assert not site.containers("fred") and not prestart_events(site, "fred")

    # Recycled: erin removed with her files, a new erin made; the old hint names the old
    # account (its creation time) and starts nothing.
    site.cli("user", "remove", "erin", "--purge", "--yes")
    site.add_user("erin", PASSWORD)
    assert session_ended_with(hint).get(f"{site.url}/hub/login").status_code == 200
    _, r = login(site.url, "erin", PASSWORD)  # her own login starts it (start_on_login)
    assert r.status_code == 303
    wait_for(lambda: running(site, "erin"), timeout=120)
    assert len(prestart_events(site, "erin")) == 1  # still only the control's


def session_ended_with(hint: str) -> requests.Session:
    s = requests.Session()
    s.cookies.set(RETURN_COOKIE, hint)
    return s


def test_the_hint_names_one_account_signed_bound_and_expiring():
    """:class:`ReturnHints` read back what it issued, and nothing else."""
    now = [1_000_000.0]
    hints = ReturnHints(b"s" * 64, lifetime=100, clock=lambda: now[0])

    class Request:  # the two things ReturnHints touches of a request
        def __init__(self, cookie: str = "") -> None:
            from twisted.web.http_headers import Headers
            self.requestHeaders = Headers({b"cookie": [cookie.encode()]} if cookie else {})
            self.responseHeaders = Headers()

        def isSecure(self) -> bool:
            return False

    issued = Request()
    hints.issue(issued, "erin", 1234.5678)
    header = issued.responseHeaders.getRawHeaders(b"set-cookie")[0].decode()
    value = header.split(";")[0].split("=", 1)[1]
    assert "SameSite=Strict" in header and "HttpOnly" in header and "Max-Age=100" in header
    got = hints.read(Request(f"{RETURN_COOKIE}={value}"))
    assert got is not None and (got.name, got.created_ms) == ("erin", 1234567)
    # Another secret, an edited name, a bad shape, or past its expiry: nothing.
    other = ReturnHints(b"t" * 64, clock=lambda: now[0])
    assert other.read(Request(f"{RETURN_COOKIE}={value}")) is None
    assert hints.read(Request(f"{RETURN_COOKIE}={value.replace('erin', 'fred')}")) is None
    bad = Signer(b"s" * 64, "return-hint").sign("Erin~1~9999999999")
    assert hints.read(Request(f"{RETURN_COOKIE}={bad}")) is None
    assert hints.read(Request(f"{RETURN_COOKIE}=erin")) is None
    now[0] += 101
    assert hints.read(Request(f"{RETURN_COOKIE}={value}")) is None
