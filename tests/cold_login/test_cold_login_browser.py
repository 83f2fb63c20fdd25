"""A cold login in Chromium: the start page prefetches JupyterLab's bundles from the
image's cache while the server boots, then JupyterLab opens and a notebook runs."""

from __future__ import annotations

import re

from playwright.sync_api import TimeoutError as PlaywrightTimeout

from browser_support import browser_fixture, browser_login, page_fixture, wait_for_lab  # noqa: F401
from support import login, wait_for


def test_cold_login_lands_on_a_working_jupyterlab(make_daemon, page):
    daemon = make_daemon()
    daemon.start()
    daemon.add_user("carol", "carol-password-1")
    # Wait until the image's files are cached (read in the background at start).
    probe, _ = login(daemon.url, "carol", "carol-password-1", next="/hub/home")
    wait_for(lambda: "/static/lab/main." in probe.get(f"{daemon.url}/hub/spawn/carol").text,
             timeout=120)
    daemon.cli("server", "stop", "carol")
    wait_for(lambda: not daemon.containers("carol"), timeout=60)

    from_cache: list[str] = []
    page.on("response", lambda r: "/static/lab/" in r.url and r.status == 200
            and "immutable" in (r.headers.get("cache-control") or "")
            and from_cache.append(r.url))
    browser_login(page, daemon.url, "carol", "carol-password-1")
    wait_for_lab(page)
    # The start page asked for the entry bundle while the server was still starting.
    assert "static-cache" in daemon.log()
    assert any("/user/carol/static/lab/main." in u for u in from_cache)

    page.locator('.jp-LauncherCard[data-category="Notebook"]').first.click(timeout=60_000)
    editor = page.locator(".jp-NotebookPanel .jp-Cell .cm-content").first
    editor.wait_for(timeout=60_000)
    page.locator(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']"
                 ).wait_for(timeout=60_000)
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
