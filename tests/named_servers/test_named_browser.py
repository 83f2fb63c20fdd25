"""A person in a real browser starts a named server (issue 19 §1): alice logs in, starts
``gpu`` from her home page's form, follows its start page to JupyterLab at
``/user/alice/gpu/lab`` (the launcher renders there, served by that server), and her
default server stayed stopped: home lists both, each with its own state.

Debian's Chromium driven by Playwright (tests/browser_support.py); a full-page
screenshot lands in test-artifacts/ when the test fails.
"""

from __future__ import annotations

import re

import pytest
import requests

from browser_support import browser_fixture, browser_login, page_fixture, start_daemon  # noqa: F401

PW = "alice-named-browser-1"


@pytest.fixture(scope="module")
def site(tmp_path_factory, notebook_image):
    d = start_daemon(tmp_path_factory.mktemp("named-browser"), auth={"start_on_login": False})
    try:
        d.add_user("alice", PW)
        yield d
    finally:
        d.stop()
        d.cleanup_docker()


def test_start_a_named_server_from_home_and_open_jupyterlab(site, page):
    browser_login(page, site.url, "alice", PW, nxt="/hub/home")
    page.wait_for_url(re.compile(r".*/hub/home$"))
    assert page.locator("#state").inner_text() == "stopped"
    page.get_by_label("Server name").fill("gpu")
    page.get_by_role("button", name="Start the new server").click()
    # The start page of gpu follows the start, then moves on to its JupyterLab.
    page.wait_for_url(re.compile(r".*/user/alice/gpu/lab([?#].*)?$"), timeout=120_000)
    page.locator(".jp-LauncherCard").first.wait_for(timeout=60_000)
    assert page.locator(".jp-Launcher").is_visible()
    # JupyterLab talks to its own server: its API calls go under /user/alice/gpu/.
    status = page.evaluate("""async () => {
        const r = await fetch('/user/alice/gpu/api/status', {credentials: 'same-origin'});
        return r.status; }""")
    assert status == 200
    # Home lists both servers, the default one still stopped.
    page.goto(site.url + "/hub/home")
    assert page.locator("#state").inner_text() == "stopped"
    row = page.locator('tr[data-server="gpu"]')
    assert row.locator('[data-field="state"]').inner_text() == "running"
    assert row.get_by_role("link", name="Open the server gpu").get_attribute("href") \
        == "/user/alice/gpu/lab"
    # The default server's URL is not the named one's: it goes to its own start page.
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    r = requests.get(site.url + "/user/alice/lab", cookies=cookies, allow_redirects=False,
                     headers={"Accept": "text/html"}, timeout=30)
    assert r.status_code == 302 and r.headers["Location"].startswith("/hub/spawn/alice?")
    # Stop it from home: its row says so, the default one is untouched.
    row.get_by_role("button", name="Stop the server gpu").click()
    page.wait_for_url(re.compile(r".*/hub/home\?done=stop.*"))
    row = page.locator('tr[data-server="gpu"]')
    assert row.locator('[data-field="state"]').inner_text() == "stopped"
    assert page.locator("#state").inner_text() == "stopped"
