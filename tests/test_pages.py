"""The pages a person sees, in Debian's Chromium: log in, watch the server start, land in
JupyterLab; stop it from the home page and start it again.

One daemon for the module (tests run in file order and each leaves the site usable for
the next).  The browser fixtures and helpers here are shared with the other page tests
(test_pages_failure.py, test_admin.py, test_tokens.py).  A failing test leaves a
full-page screenshot in test-artifacts/.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect, sync_playwright

from support import TEST_IMAGE, Daemon

CHROMIUM = os.environ.get("IPYDOC_CHROMIUM", "/usr/bin/chromium")
# The same flags as test_browser.py: this machine class needs every one of them.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"
LAB = re.compile(r".*/user/[a-z0-9-]+/lab([?#].*)?$")

PASSWORD = "pages-password-1"

# Reports each change of the spawn page's step list to the test (exposed binding below),
# so the test sees what the page showed even after it moved on to JupyterLab.
STEP_WATCHER = """
document.addEventListener("DOMContentLoaded", function () {
  var list = document.getElementById("steps");
  if (!list || !window.ipydocSteps) return;
  var report = function () {
    window.ipydocSteps(Array.prototype.map.call(list.children, function (li) {
      return [li.dataset.phase, li.textContent];
    }));
  };
  report();
  new MutationObserver(report).observe(list, {childList: true});
});
"""


# -- shared fixtures and helpers (imported by the other page test modules) ----------------
def start_daemon(root: Path, **overrides: Any) -> Daemon:
    if subprocess.run(["docker", "image", "inspect", TEST_IMAGE], capture_output=True).returncode:
        pytest.fail(f"test image {TEST_IMAGE} missing (.ci/run builds it)")
    d = Daemon(root, overrides)
    d.start()
    return d


# Fixtures have explicit names so other modules can import them (``browser_fixture``)
# without the import shadowing the test functions' ``browser``/``page`` arguments.
@pytest.fixture(scope="module", name="browser")
def browser_fixture():
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} missing: .ci/run installs Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def _new_page(browser: Any, request: Any, viewport: dict[str, int]) -> Any:
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    if getattr(request.node, "failed", False):
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


@pytest.fixture(name="page")
def page_fixture(browser, request):
    """A fresh browser context (no cookies) at desktop size."""
    yield from _new_page(browser, request, {"width": 1280, "height": 900})


@pytest.fixture(name="phone")
def phone_fixture(browser, request):
    """A fresh browser context at a phone's size."""
    yield from _new_page(browser, request, {"width": 390, "height": 844})


def browser_login(page: Page, base: str, name: str, password: str, nxt: str = "") -> None:
    page.goto(base + "/hub/login" + (f"?next={nxt}" if nxt else ""))
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def watch_steps(page: Page) -> list[list[list[str]]]:
    """Every state of the spawn page's step list, as (phase, message) pairs."""
    seen: list[list[list[str]]] = []
    page.expose_binding("ipydocSteps", lambda _source, items: seen.append(items))
    page.add_init_script(STEP_WATCHER)
    return seen


def wait_for_lab(page: Page) -> None:
    page.wait_for_url(LAB, timeout=120_000)
    page.locator(".jp-LauncherCard").first.wait_for(timeout=60_000)


def phases_shown(seen: list[list[list[str]]]) -> list[str]:
    """Distinct phases the step list showed, in order of first appearance."""
    out: list[str] = []
    for items in seen:
        for phase, _message in items:
            if phase not in out:
                out.append(phase)
    return out


# -- this module's site ------------------------------------------------------------------
@pytest.fixture(scope="module")
def site(tmp_path_factory):
    d = start_daemon(tmp_path_factory.mktemp("pages"))
    d.add_user("erin", PASSWORD)
    yield d
    d.stop()
    d.cleanup_docker()


def test_login_shows_progress_steps_then_jupyterlab(site, page):
    seen = watch_steps(page)
    browser_login(page, site.url, "erin", PASSWORD)
    wait_for_lab(page)
    phases = phases_shown(seen)
    # queued, creating, waiting, ready: at least two distinct steps before Lab opened
    before_ready = [p for p in phases if p not in ("ready", "failed", "stopped")]
    assert len(before_ready) >= 2, seen
    assert "failed" not in phases
    assert seen[-1][-1][0] == "ready", seen[-1]
    assert "Creating your server" in " ".join(m for items in seen for _, m in items)


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
