"""Subdomain mode in a real browser (Debian's Chromium via Playwright): the handoff, the
attacks on it, and cookie tossing (issue 12, item 6).

``nb.test`` and ``*.nb.test`` resolve to 127.0.0.1 inside the browser
(``--host-resolver-rules``); the daemon is real, and so is alice's server.  What the
browser does with cookies (host-only vs ``Domain=``, which it sends where, SameSite on
the redirects between hub and user host) is the browser's own, not a model of it.
"""

from __future__ import annotations

import os
import re
import shutil

import pytest
from playwright.sync_api import sync_playwright

from browser_support import ARGS, CHROMIUM
from subdomain_support import DOMAIN, Browser, hand_off, subdomain_site

ALICE_PW = "alice-browser-pw"
BOB_PW = "bob-browser-pw-1"


@pytest.fixture(scope="module")
def site(tmp_path_factory, notebook_image):
    yield from subdomain_site(tmp_path_factory.mktemp("browser-sub"),
                              {"alice": ALICE_PW, "bob": BOB_PW},
                              auth={"stop_on_logout": False})


@pytest.fixture(scope="module")
def chromium():
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} missing: .ci/run installs Debian's chromium")
    rules = f"--host-resolver-rules=MAP {DOMAIN} 127.0.0.1, MAP *.{DOMAIN} 127.0.0.1"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, rules],
                                    headless=True)
        yield browser
        browser.close()


def log_in(context, port: int, name: str, password: str):
    page = context.new_page()
    page.goto(f"http://{DOMAIN}:{port}/hub/login")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    return page


def cookies_of(context, url: str) -> dict[str, str]:
    return {c["name"]: c["value"] for c in context.cookies(url)}


def test_handoff_and_its_attacks_in_a_real_browser(site, chromium):
    port = site.port
    hub, alice_host = f"http://{DOMAIN}:{port}", f"http://alice.{DOMAIN}:{port}"
    alice_ctx, bob_ctx = chromium.new_context(), chromium.new_context()
    try:
        # alice logs in on the hub; the browser goes hub -> spawn -> her host -> hub
        # handoff -> her host, and lands in JupyterLab on alice.nb.test
        page = log_in(alice_ctx, port, "alice", ALICE_PW)
        page.wait_for_url(re.compile(rf"^{re.escape(alice_host)}/lab([?#].*)?$"),
                          timeout=120_000)
        page.locator(".jp-LauncherCard").first.wait_for(timeout=60_000)
        on_alice = cookies_of(alice_ctx, alice_host)
        assert "ipydoc-user" in on_alice and "ipydoc-handoff" in on_alice
        assert "ipydoc-session" not in on_alice  # the hub's cookie stays on the hub

        # (a) alice fetches a handoff URL for her host with her hub session, and bob's
        # browser (logged in as bob) is sent through it
        mail = Browser(port)
        mail.jar[mail.host()] = {"ipydoc-session": cookies_of(alice_ctx, hub)["ipydoc-session"]}
        link = hand_off(mail, "alice", "/lab")
        bob = log_in(bob_ctx, port, "bob", BOB_PW)
        bob.wait_for_url(re.compile(rf"^{re.escape(hub)}/hub/spawn/bob"), timeout=60_000)
        answer = bob.goto(link)
        assert answer.status == 403 and "another browser" in bob.content()
        assert "ipydoc-user" not in cookies_of(bob_ctx, alice_host)
        # and alice's host, asked directly, sends bob to the hub, which refuses him
        answer = bob.goto(f"{alice_host}/api/status")
        assert answer.status == 403 and "another user" in bob.content()
        assert "ipydoc-user" not in cookies_of(bob_ctx, alice_host)

        # (b) cookie tossing: a script on alice's host writes a session cookie for the
        # whole domain (here bob's real session, so the hub would act as bob for her)
        planted = cookies_of(bob_ctx, hub)["ipydoc-session"]
        page.evaluate("v => { document.cookie = "
                      "`ipydoc-session=${v}; Domain=" + DOMAIN + "; Path=/`; }", planted)
        sent = [c for c in alice_ctx.cookies(hub) if c["name"] == "ipydoc-session"]
        assert len(sent) == 2  # the browser now sends both to the hub
        home = page.goto(f"{hub}/hub/home")
        assert home.ok and page.url.startswith(f"{hub}/hub/login")  # no session, not bob's
        assert "bob" not in page.content()
    finally:
        alice_ctx.close()
        bob_ctx.close()
