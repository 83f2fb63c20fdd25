"""The pages a person sees, in Debian's Chromium: log in, watch the server start, land in
JupyterLab; stop it from the home page and start it again.

One daemon for the module (tests run in file order and each leaves the site usable for
the next).  The browser fixtures and helpers are in tests/browser_support.py.  A failing test leaves a
full-page screenshot in test-artifacts/.
"""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from browser_support import (  # noqa: F401 - the fixtures are used by name
    browser_fixture,
    browser_login,
    page_fixture,
    phases_shown,
    phone_fixture,
    start_daemon,
    wait_for_lab,
    watch_steps,
)
from support import TEST_IMAGE

PASSWORD = "pages-password-1"



@pytest.fixture(scope="module")
def site(tmp_path_factory):
    d = start_daemon(tmp_path_factory.mktemp("pages"))
    d.add_user("erin", PASSWORD)
    yield d
    d.stop()
    d.cleanup_docker()


def test_login_goes_straight_to_jupyterlab(site, page):
    # A cold login goes to JupyterLab itself, which waits for the start (issue 15 §2:
    # docs/cold_login.md); only a start slower than 5 s shows the start page on the way.
    seen = watch_steps(page)
    documents: list[str] = []
    page.on("request", lambda r: r.resource_type == "document"
            and r.frame == page.main_frame and documents.append(r.url.split("?")[0]))
    browser_login(page, site.url, "erin", PASSWORD)
    wait_for_lab(page)
    assert documents[-1] == site.url + "/user/erin/lab", documents
    phases = phases_shown(seen)
    assert "failed" not in phases
    if any("/hub/spawn/" in u for u in documents):  # a slow start: the steps were shown
        assert seen[-1][-1][0] == "ready", seen[-1]


def test_home_shows_state_image_and_limits(site, page):
    browser_login(page, site.url, "erin", PASSWORD, "/hub/home")
    page.wait_for_url(re.compile(r".*/hub/home$"))
    expect(page.locator("#state")).to_have_text("running")
    body = page.locator("main").inner_text()
    assert TEST_IMAGE in body
    assert "1.0 GiB memory" in body and "1 CPU" in body
    expect(page.get_by_role("link", name="Open JupyterLab")).to_have_attribute(
        "href", "/user/erin/lab")
    expect(page.get_by_role("link", name="Personal API tokens")).to_be_visible()
    # not an admin: no admin link anywhere
    assert page.get_by_role("link", name="Admin").count() == 0


def test_stop_from_home_then_start_again(site, page):
    browser_login(page, site.url, "erin", PASSWORD, "/hub/home")
    page.wait_for_url(re.compile(r".*/hub/home$"))
    page.get_by_role("button", name="Stop my server").click()
    page.wait_for_url(re.compile(r".*/hub/home\?done=stop.*"))
    expect(page.locator("#state")).to_have_text("stopped")
    expect(page.get_by_role("status")).to_contain_text("Stopped the server of erin")
    assert site.containers("erin") == []
    # the proxy now sends the browser to the spawn page rather than to a dead server
    r = requests.get(site.url + "/user/erin/api/status",
                     cookies={c["name"]: c["value"] for c in page.context.cookies()})
    assert r.status_code == 503

    seen = watch_steps(page)
    page.get_by_role("button", name="Start my server").click()
    wait_for_lab(page)
    assert len([p for p in phases_shown(seen) if p != "ready"]) >= 2, seen
    assert len(site.containers("erin", all=False)) == 1


def test_home_is_usable_on_a_phone(site, phone):
    browser_login(phone, site.url, "erin", PASSWORD, "/hub/home")
    phone.wait_for_url(re.compile(r".*/hub/home$"))
    # nothing wider than the screen: no sideways scrolling
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width
    button = phone.get_by_role("link", name="Open JupyterLab")
    box = button.bounding_box()
    assert box and box["height"] >= 36  # a comfortable touch target


def test_pages_send_escaped_text_and_no_third_party_resources(site, page):
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    browser_login(page, site.url, "erin", PASSWORD, "/hub/home")
    page.wait_for_url(re.compile(r".*/hub/home$"))
    page.goto(site.url + "/hub/token")
    assert requested and all(u.startswith(site.url) for u in requested), requested
    # keyboard: the first Tab reaches the skip link, which moves focus to the content
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    csp = requests.get(site.url + "/hub/login").headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp


def test_spawn_page_of_another_user_is_refused(site):
    from support import login

    s, _ = login(site.url, "erin", PASSWORD, next="/hub/home")
    r = s.get(site.url + "/hub/spawn/someone", allow_redirects=False)
    assert r.status_code == 403
    r = s.get(site.url + "/hub/api/users/someone/server/progress")
    assert r.status_code == 403
