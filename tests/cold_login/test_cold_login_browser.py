"""A cold login in Chromium: the browser goes straight to JupyterLab; the second time, the
server's kept lab page and the image's bundles arrive while the server boots, then
JupyterLab opens and a notebook runs.  A start that fails sends the page to the start
page with the error."""

from __future__ import annotations

import re

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from browser_support import (  # noqa: F401
    browser_fixture,
    browser_login,
    page_fixture,
    wait_for_kernel,
    wait_for_lab,
)
from support import docker, wait_for


def stop(daemon, name: str) -> None:
    assert daemon.cli("server", "stop", name).returncode == 0
    wait_for(lambda: not daemon.containers(name), timeout=60)


def first_login(daemon, page, name: str, password: str) -> None:
    """A first cold login (no kept page yet): the lab page waits for the start."""
    browser_login(page, daemon.url, name, password)
    wait_for_lab(page)
    wait_for(lambda: f"kept the lab page of {name}" in daemon.log(), timeout=60)
    stop(daemon, name)
    page.context.clear_cookies()


def test_cold_login_lands_on_a_working_jupyterlab(make_daemon, page):
    daemon = make_daemon()
    daemon.start()
    daemon.add_user("carol", "carol-password-1")
    documents: list[str] = []
    page.on("request", lambda r: r.resource_type == "document"
            and documents.append(r.url.split("?")[0]))
    first_login(daemon, page, "carol", "carol-password-1")
    assert not any("/hub/spawn/" in u for u in documents), documents  # no start page

    from_cache: list[str] = []
    page.on("response", lambda r: ("/static/lab/" in r.url or "/lab/extensions/" in r.url)
            and r.status == 200 and "immutable" in (r.headers.get("cache-control") or "")
            and from_cache.append(r.url))
    browser_login(page, daemon.url, "carol", "carol-password-1")
    wait_for_lab(page)
    # The kept page was sent, and its bundles came from the image's cache, while the
    # server was still starting.
    wait_for(lambda: "early-lab" in daemon.log() and "static-cache" in daemon.log())
    assert any("/user/carol/static/lab/main." in u for u in from_cache), from_cache
    assert any("/user/carol/lab/extensions/" in u and "remoteEntry." in u
               for u in from_cache), from_cache

    page.locator('.jp-LauncherCard[data-category="Notebook"]').first.click(timeout=60_000)
    editor = page.locator(".jp-NotebookPanel .jp-Cell .cm-content").first
    editor.wait_for(timeout=60_000)
    wait_for_kernel(page)
    editor.click()
    page.keyboard.type("6*7")
    output = page.locator(".jp-NotebookPanel .jp-OutputArea-output").first
    for _ in range(5):  # JupyterLab may drop a run sent while it reconnects the kernel
        editor.click()
        page.keyboard.press("Control+Enter")
        try:
            output.wait_for(timeout=10_000)
            break
        except PlaywrightTimeout:
            continue
    assert output.inner_text().strip() == "42"
    assert re.match(r".*/user/carol/lab", page.url)


def test_a_failed_start_under_the_kept_page_shows_the_start_pages_error(make_daemon, page):
    daemon = make_daemon()
    daemon.start()
    daemon.add_user("dave", "dave-password-1")
    first_login(daemon, page, "dave", "dave-password-1")
    # dave's next start never answers (a Jupyter config in his home); it dies starting.
    assert daemon.cli("server", "start", "dave").returncode == 0
    (cid,) = daemon.containers("dave")
    docker("exec", cid, "sh", "-c", "mkdir -p ~/.jupyter && echo 'import time; "
           "time.sleep(600)' > ~/.jupyter/jupyter_server_config.py")
    stop(daemon, "dave")

    browser_login(page, daemon.url, "dave", "dave-password-1")
    page.wait_for_url(re.compile(r".*/user/dave/lab$"))
    wait_for(lambda: "early-lab" in daemon.log())
    (cid,) = wait_for(lambda: daemon.containers("dave"), timeout=60)
    docker("kill", cid, check=False)
    page.wait_for_url(re.compile(r".*/hub/spawn/dave\?next=.*"), timeout=60_000)
    expect(page.locator("#title")).to_have_text("Your server could not start", timeout=30_000)
    expect(page.locator("#message")).to_contain_text("exited while starting")
    expect(page.get_by_role("button", name="Try again")).to_be_visible()
