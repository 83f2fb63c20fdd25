"""Two people in one JupyterLab (issue 19 §3), in two real browser contexts (Debian's
Chromium driven by Playwright): alice shares her server with bob from her home page,
bob opens the notebook alice made, runs a cell and saves; alice reloads and sees his
output.  A screenshot is kept in test-artifacts/ when the test fails.
"""

from __future__ import annotations

import json

from playwright.sync_api import TimeoutError as PlaywrightTimeout

from browser_support import LAB, browser_fixture, browser_login, wait_for_kernel  # noqa: F401
from support import Daemon, wait_for

PW = {"alice": "alice-browser-share-pw", "bob": "bob-browser-share-pw"}
NOTEBOOK = {"type": "notebook", "format": "json", "content": {
    "cells": [{"cell_type": "code", "source": "", "metadata": {}, "outputs": [],
               "execution_count": None}],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5}}


def open_notebook(page, base: str, owner: str, path: str):
    page.goto(f"{base}/user/{owner}/lab/tree/{path}")
    editor = page.locator(".jp-NotebookPanel .jp-Cell .cm-content").first
    editor.wait_for(timeout=120_000)
    wait_for_kernel(page)
    return editor


def test_owner_and_guest_in_the_same_jupyterlab(tmp_path, browser, request):
    d = Daemon(tmp_path)
    d.start()
    contexts = []
    try:
        for name, pw in PW.items():
            d.add_user(name, pw)
        pages = {}
        for name in PW:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            contexts.append(context)
            page = context.new_page()
            page.set_default_timeout(30_000)
            browser_login(page, d.url, name, PW[name])
            page.wait_for_url(LAB, timeout=120_000)
            pages[name] = page
        alice, bob = pages["alice"], pages["bob"]
        # alice makes a notebook in her server (as JupyterLab would, with her cookie)
        r = alice.request.put(f"{d.url}/user/alice/api/contents/together.ipynb",
                              data=json.dumps(NOTEBOOK),
                              headers={"Origin": d.url, "Content-Type": "application/json"})
        assert r.status in (200, 201), r.text()
        # bob cannot open it yet
        r = bob.request.get(f"{d.url}/user/alice/api/contents/together.ipynb")
        assert r.status == 403
        # alice shares from her home page
        alice.goto(d.url + "/hub/home")
        alice.locator("#share-guest").fill("bob")
        alice.locator("#add-share-button").click()
        alice.wait_for_url(d.url + "/hub/home#shares")
        assert "bob" in alice.locator("#given-shares").inner_text()
        # bob finds it on his home page and opens it
        bob.goto(d.url + "/hub/home")
        link = bob.locator("#received-shares a", has_text="Open")
        assert link.get_attribute("href") == "/user/alice/lab"
        editor = open_notebook(bob, d.url, "alice", "together.ipynb")
        output = bob.locator(".jp-NotebookPanel .jp-OutputArea-output").first
        for _ in range(5):  # a run sent while the kernel's WebSocket reconnects is dropped
            editor.click()
            bob.keyboard.press("Control+a")
            bob.keyboard.type("sum(range(10)) * 1000 + 7")
            bob.keyboard.press("Control+Enter")
            try:
                output.wait_for(timeout=10_000)
                break
            except PlaywrightTimeout:
                continue
        assert output.inner_text().strip() == "45007"
        bob.keyboard.press("Control+s")
        wait_for(lambda: "45007" in alice.request.get(
            f"{d.url}/user/alice/api/contents/together.ipynb").text(), 30)
        # alice opens (reloads) the notebook and sees bob's cell and its output
        open_notebook(alice, d.url, "alice", "together.ipynb")
        alice.reload()
        alice.locator(".jp-NotebookPanel .jp-OutputArea-output").first.wait_for(timeout=60_000)
        assert "45007" in alice.locator(".jp-NotebookPanel .jp-OutputArea-output"
                                        ).first.inner_text()
        assert "sum(range(10))" in alice.locator(".jp-NotebookPanel .jp-Cell .cm-content"
                                                 ).first.inner_text()
    except Exception:
        from browser_support import ARTIFACTS
        ARTIFACTS.mkdir(exist_ok=True)
        for i, c in enumerate(contexts):
            for p in c.pages:
                p.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{i}.png"),
                             full_page=True)
        raise
    finally:
        for c in contexts:
            c.close()
        d.stop()
        d.cleanup_docker()
