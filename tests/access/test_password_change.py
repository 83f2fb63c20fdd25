"""``/hub/password``: a user changes their own password through the real daemon."""

from __future__ import annotations

import re
import subprocess

import pytest
import requests

from support import Daemon, login

OLD = "carol-old-password"
NEW = "carol-new-password"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("pw"),
               {"auth": {"start_on_login": False, "stop_on_logout": False,
                         "login_attempts_per_account": 3, "login_attempts_per_address": 1000}})
    d.start()
    d.add_user("carol", OLD)
    d.add_user("dave", "dave-the-password")
    yield d
    d.stop()


def form_csrf(session: requests.Session, base: str) -> str:
    page = session.get(base + "/hub/password")
    assert page.status_code == 200, page.text
    return re.search(r'name="_csrf" value="([^"]+)"', page.text).group(1)


def change(session: requests.Session, base: str, current: str, new: str, again: str | None = None,
           csrf: str | None = None, origin: str | None = None) -> requests.Response:
    return session.post(base + "/hub/password", allow_redirects=False,
                        headers={"Origin": origin or base},
                        data={"_csrf": form_csrf(session, base) if csrf is None else csrf,
                              "current": current, "new": new,
                              "again": new if again is None else again})


def error_of(r: requests.Response) -> str:
    m = re.search(r'<p class="error" role="alert"[^>]*>([^<]*)</p>', r.text)
    return m.group(1) if m else ""


def test_needs_a_login_and_is_linked_from_home(site):
    r = requests.get(site.url + "/hub/password", allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"].startswith("/hub/login?next=")
    assert requests.post(site.url + "/hub/password", data={"current": OLD, "new": NEW,
                                                           "again": NEW},
                         allow_redirects=False).status_code == 302
    session, _ = login(site.url, "carol", OLD)
    assert 'href="/hub/password"' in session.get(site.url + "/hub/home").text
    page = session.get(site.url + "/hub/password")
    assert 'autocomplete="current-password"' in page.text
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")


def test_forged_and_bad_forms_change_nothing(site):
    session, _ = login(site.url, "carol", OLD)
    assert change(session, site.url, OLD, NEW, csrf="forged").status_code == 403
    assert change(session, site.url, OLD, NEW, origin="http://evil.example").status_code == 403
    r = change(session, site.url, OLD, NEW, again=NEW + "x")
    assert r.status_code == 400 and "differ" in error_of(r)
    r = change(session, site.url, OLD, "short")
    assert r.status_code == 400 and "at least 8 characters" in error_of(r)
    r = change(session, site.url, "not-my-password", NEW)
    assert r.status_code == 403 and error_of(r) == "Your current password is wrong."
    r = change(session, site.url, OLD, OLD)
    assert r.status_code == 400 and "your current one" in error_of(r)
    assert login(site.url, "carol", NEW)[1].status_code == 403
    assert login(site.url, "carol", OLD)[1].status_code == 303


def test_change_keeps_this_session_and_ends_the_others(site):
    here, _ = login(site.url, "carol", OLD)
    there, _ = login(site.url, "carol", OLD)
    old_cookie = here.cookies.get("ipydoc-session") or next(iter(here.cookies.values()))
    r = change(here, site.url, OLD, NEW)
    assert r.status_code == 303 and r.headers["Location"] == "/hub/home?done=password"
    home = here.get(site.url + r.headers["Location"], allow_redirects=False)
    assert home.status_code == 200 and "Your password was changed" in home.text
    assert old_cookie not in here.cookies.values()  # a fresh session id
    assert there.get(site.url + "/hub/home", allow_redirects=False).status_code == 302
    assert login(site.url, "carol", OLD)[1].status_code == 403
    assert login(site.url, "carol", NEW)[1].status_code == 303
    events = site.cli("events", "--user", "carol", "--kind", "password-changed").stdout
    assert "other session" in events


def test_guessing_the_current_password_is_limited_like_logins(site):
    session, _ = login(site.url, "dave", "dave-the-password")
    answers = [change(session, site.url, f"guess-{i}", "dave-next-password") for i in range(3)]
    assert [r.status_code for r in answers] == [403, 403, 429]
    assert "Too many failed logins for this account" in error_of(answers[-1])
    right = change(session, site.url, "dave-the-password", "dave-next-password")
    assert right.status_code == 429 and "Retry-After" in right.headers
    assert login(site.url, "dave", "dave-the-password")[1].status_code == 429  # paused too
    # the admin's reset lifts the pause
    r = site.cli("user", "passwd", "dave", "--password-stdin", input="dave-reset-password\n")
    assert r.returncode == 0, r.stderr
    assert login(site.url, "dave", "dave-reset-password")[1].status_code == 303


def test_an_account_without_a_local_password_is_told_where_to_change_it(site):
    """Accounts of an external provider (GitHub, OIDC) have no argon2 hash."""
    sock = site.root / "state" / "redis" / "redis.sock"

    def redis(*args: str) -> None:
        subprocess.run(["redis-cli", "-s", str(sock), *args], check=True, capture_output=True)

    site.add_user("erin", "erin-the-password")
    session, _ = login(site.url, "erin", "erin-the-password")
    redis("HSET", "ipydoc:user:erin", "password", "!external")  # as ipydoc.auth makes them
    page = session.get(site.url + "/hub/password")
    assert page.status_code == 200 and "external provider" in page.text
    assert 'name="current"' not in page.text
    csrf = re.search(r'name="_csrf" value="([^"]+)"', page.text).group(1)
    r = change(session, site.url, "", NEW, csrf=csrf)
    assert r.status_code == 409 and "external provider" in r.text
    assert login(site.url, "erin", NEW)[1].status_code == 403
