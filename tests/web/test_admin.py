"""The admin dashboard in a real browser: users with state and live memory numbers, stop
(after a confirmation), add, disable, search and sort; CSRF on every action; every admin
URL refuses a non-admin with 403."""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from browser_support import (  # noqa: F401 - the fixtures are used by name
    browser_fixture,
    browser_login,
    page_fixture,
    phone_fixture,
    start_daemon,
)
from support import csrf_of, follow_progress, login, wait_for

ADMIN_PW = "admin-password-1"
BOB_PW = "bob-password-12"

ADMIN_URLS = [
    ("GET", "/hub/admin"),
    ("GET", "/hub/admin?q=b&sort=memory&order=desc"),
    ("GET", "/hub/admin/api/servers"),
    ("POST", "/hub/admin/users"),
    *[("POST", f"/hub/admin/users/ada/{a}") for a in ("start", "stop", "disable", "enable")],
    *[("POST", f"/hub/admin/users/bob/{a}") for a in ("start", "stop", "disable", "enable")],
]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    d = start_daemon(tmp_path_factory.mktemp("admin"), auth={"start_on_login": False})
    d.add_user("ada", ADMIN_PW, admin=True)
    d.add_user("bob", BOB_PW)
    yield d
    d.stop()
    d.cleanup_docker()


@pytest.fixture(scope="module")
def bob(site):
    """bob's logged-in HTTP session, with his server running."""
    s, r = login(site.url, "bob", BOB_PW)
    assert r.status_code == 303
    csrf = re.search(r'name="_csrf" value="([^"]+)"', s.get(site.url + "/hub/home").text).group(1)
    s.post(site.url + "/hub/spawn/bob", data={"_csrf": csrf}, headers={"Origin": site.url})
    assert follow_progress(s, site.url, "bob")[-1]["phase"] == "ready"
    s.csrf = csrf
    return s


def admin_row(page, name):
    return page.locator(f'tr[data-user="{name}"]')


def test_admin_sees_users_with_live_memory_and_stops_a_server(site, bob, page):
    browser_login(page, site.url, "ada", ADMIN_PW, "/hub/admin")
    page.wait_for_url(re.compile(r".*/hub/admin$"))
    row = admin_row(page, "bob")
    expect(row.locator('[data-field="state"]')).to_have_text("running")
    expect(admin_row(page, "ada").locator('[data-field="state"]')).to_have_text("stopped")
    # live numbers from the Docker stats API, filled in by the page's script
    expect(row.locator('[data-field="memory"]')).to_have_text(
        re.compile(r"^\d+(\.\d)? (KiB|MiB|GiB)$"), timeout=20_000)
    expect(row.locator('[data-field="cpu"]')).to_have_text(re.compile(r"^\d+\.\d %$"))
    memory = row.locator('[data-field="memory"]').inner_text()
    assert not memory.startswith("0 ")
    # the event log shows bob's start
    expect(page.locator("#events")).to_contain_text("spawn")

    # Stop asks first: dismissing the question changes nothing ...
    page.once("dialog", lambda d: d.dismiss())
    row.get_by_role("button", name="Stop the server of bob").click()
    page.wait_for_timeout(300)
    assert len(site.containers("bob", all=False)) == 1
    # ... accepting it stops the server.
    messages = []
    page.once("dialog", lambda d: (messages.append(d.message), d.accept()))
    row.get_by_role("button", name="Stop the server of bob").click()
    page.wait_for_url(re.compile(r".*/hub/admin\?done=stop&user=bob$"))
    assert "Stop the server of bob?" in messages[0]
    expect(page.get_by_role("status").first).to_contain_text("Stopped the server of bob")
    expect(admin_row(page, "bob").locator('[data-field="state"]')).to_have_text("stopped")
    assert site.containers("bob") == []
    assert bob.get(site.url + "/user/bob/api/status").status_code == 503
    expect(page.locator("#events")).to_contain_text("stopped by admin ada")

    # ... and starts it again.
    admin_row(page, "bob").get_by_role("button", name="Start the server of bob").click()
    page.wait_for_url(re.compile(r".*/hub/admin\?done=start&user=bob$"))
    expect(admin_row(page, "bob").locator('[data-field="state"]')).to_have_text(
        "running", timeout=60_000)
    wait_for(lambda: bob.get(site.url + "/user/bob/api/status").status_code == 200, 60)


def test_admin_adds_searches_sorts_and_disables(site, bob, page, phone):
    browser_login(page, site.url, "ada", ADMIN_PW, "/hub/admin")
    page.wait_for_url(re.compile(r".*/hub/admin$"))
    # a bad name is refused with the reason, and what was typed is kept
    page.get_by_label("User name").fill("Not_Valid")
    page.get_by_label("Password", exact=True).fill("carol-password-1")
    page.get_by_role("button", name="Add user").click()
    expect(page.get_by_role("alert")).to_contain_text("lower-case letters")
    expect(page.get_by_label("User name")).to_have_value("Not_Valid")

    page.get_by_label("User name").fill("carol")
    page.get_by_label("Password", exact=True).fill("carol-password-1")
    page.get_by_role("button", name="Add user").click()
    expect(page.get_by_role("status").first).to_contain_text("Added the account carol")
    expect(admin_row(page, "carol")).to_be_visible()
    carol, r = login(site.url, "carol", "carol-password-1", next="/hub/token")
    assert r.status_code == 303
    r = carol.post(site.url + "/hub/token", headers={"Origin": site.url},
                   data={"_csrf": csrf_of(carol, site.url), "expires_in": "0"})
    token = re.search(r'id="new-token" readonly value="([^"]+)"', r.text).group(1)
    status = site.url + "/user/carol/api/status"
    r = requests.get(status, headers={"Authorization": f"token {token}"})
    assert r.status_code == 503  # a good token; her server is just not running

    # search
    page.get_by_label("Search users").fill("car")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("tr[data-user]")).to_have_count(1)
    expect(page.locator("#count")).to_contain_text("1 of 3 users")
    # sort: by state, running first; by name descending
    page.goto(site.url + "/hub/admin?sort=state&order=asc")
    names = page.locator("tr[data-user]").evaluate_all("rs => rs.map(r => r.dataset.user)")
    assert names[0] == "bob", names
    page.get_by_role("link", name="Name").click()  # header link: by name, ascending
    page.get_by_role("link", name=re.compile("^Name")).click()  # again: descending
    names = page.locator("tr[data-user]").evaluate_all("rs => rs.map(r => r.dataset.user)")
    assert names == ["carol", "bob", "ada"], names
    expect(page.locator("th", has_text="Name")).to_have_attribute("aria-sort", "descending")

    # disable carol (asks first); she can no longer log in
    page.once("dialog", lambda d: d.accept())
    admin_row(page, "carol").get_by_role("button", name="Disable carol").click()
    page.wait_for_url(re.compile(r".*done=disable&user=carol.*"))
    expect(admin_row(page, "carol")).to_contain_text("disabled")
    _, r = login(site.url, "carol", "carol-password-1")
    assert r.status_code == 403 and "disabled" in r.text
    assert carol.get(site.url + "/hub/home", allow_redirects=False).status_code == 302
    r = requests.get(status, headers={"Authorization": f"token {token}"})
    assert r.status_code == 403 and "disabled" in r.json()["message"]
    # an admin cannot disable themselves: there is no button for it
    expect(admin_row(page, "ada").get_by_role("button", name="Disable ada")).to_have_count(0)

    # the dashboard on a phone: rows stack, nothing scrolls sideways
    browser_login(phone, site.url, "ada", ADMIN_PW, "/hub/admin")
    phone.wait_for_url(re.compile(r".*/hub/admin$"))
    expect(admin_row(phone, "bob")).to_be_visible()
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390


def test_a_non_admin_gets_403_on_every_admin_url(site, bob):
    for method, path in ADMIN_URLS:
        if method == "GET":
            r = bob.get(site.url + path, allow_redirects=False)
        else:
            r = bob.post(site.url + path, allow_redirects=False, headers={"Origin": site.url},
                         data={"_csrf": bob.csrf, "confirmed": "1", "name": "mallory",
                               "password": "mallory-password", "admin": "1"})
        assert r.status_code == 403, (method, path, r.status_code)
    # nothing happened
    assert login(site.url, "mallory", "mallory-password")[1].status_code == 403
    assert login(site.url, "ada", ADMIN_PW)[1].status_code == 303
    # without a session: the pages send to login, the API says 401
    r = requests.get(site.url + "/hub/admin", allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"].startswith("/hub/login?next=/hub/admin")
    assert requests.get(site.url + "/hub/admin/api/servers").status_code == 401
    assert requests.post(site.url + "/hub/admin/users/bob/stop").status_code in (401, 403)


def test_admin_actions_need_csrf_same_origin_and_confirmation(site, bob):
    ada, _ = login(site.url, "ada", ADMIN_PW, next="/hub/admin")
    page = ada.get(site.url + "/hub/admin").text
    csrf = re.search(r'name="_csrf" value="([^"]+)"', page).group(1)
    url = site.url + "/hub/admin/users/bob/stop"
    # no token, a wrong token, or another site's Origin: refused
    for data, origin in (({"confirmed": "1"}, site.url),
                         ({"_csrf": "x" * len(csrf), "confirmed": "1"}, site.url),
                         ({"_csrf": csrf, "confirmed": "1"}, "https://evil.example")):
        r = ada.post(url, data=data, headers={"Origin": origin}, allow_redirects=False)
        assert r.status_code == 403
    # without confirmed=1 (no JavaScript): a confirmation page, nothing stopped
    r = ada.post(url, data={"_csrf": csrf}, headers={"Origin": site.url}, allow_redirects=False)
    assert r.status_code == 200 and "Stop the server of bob?" in r.text
    assert 'name="confirmed" value="1"' in r.text
    assert len(site.containers("bob", all=False)) == 1
    assert bob.get(site.url + "/user/bob/api/status").status_code == 200
    # the stats API answers JSON with bob's numbers
    data = ada.get(site.url + "/hub/admin/api/servers").json()
    assert data["users"]["bob"]["state"] == "running"
    assert data["users"]["bob"]["stats"]["mem_bytes"] > 1_000_000
    assert data["users"]["bob"]["stats"]["mem_limit"] == 1024 ** 3
