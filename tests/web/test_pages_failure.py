"""A start that fails shows why and offers a retry; the retry works once an admin fixed
the configuration (the daemon restarted with a good ``spawn.image``, sessions kept); the
progress page picks up where it was after a reload mid-spawn."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from browser_support import (  # noqa: F401 - the fixtures are used by name
    browser_fixture,
    browser_login,
    page_fixture,
    phases_shown,
    start_daemon,
    wait_for_lab,
    watch_steps,
)
from support import TEST_IMAGE

BAD_IMAGE = "ipydoc-no-such-image:nope"
PASSWORD = "failure-password-1"
# Jupyter answers about 3 s later than usual, so a reload lands mid-spawn.
SLOW_CMD = ["sh", "-c", 'sleep 3; exec jupyter lab "$@"', "ipydoc-slow-start"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    d = start_daemon(tmp_path_factory.mktemp("failure"), spawn={"image": BAD_IMAGE})
    d.add_user("fay", PASSWORD)
    yield d
    d.stop()
    d.cleanup_docker()


def test_failed_start_shows_reason_and_retry_works_after_the_fix(site, page):
    browser_login(page, site.url, "fay", PASSWORD)
    page.wait_for_url(re.compile(r".*/hub/spawn/fay\?.*"))
    expect(page.locator("#title")).to_have_text("Your server could not start", timeout=30_000)
    expect(page.locator("#message")).to_contain_text(BAD_IMAGE)
    retry = page.get_by_role("button", name="Try again")
    expect(retry).to_be_visible()
    expect(retry).to_be_focused()

    # The home page says the same.
    home = page.context.new_page()
    home.goto(site.url + "/hub/home")
    expect(home.locator("#state")).to_have_text("failed")
    expect(home.get_by_role("alert")).to_contain_text(BAD_IMAGE)
    home.close()

    # The admin fixes the configuration and restarts the daemon; the session survives.
    site.stop()
    site.overrides["spawn"]["image"] = TEST_IMAGE
    site.overrides["docker"] = {"cmd": SLOW_CMD}
    site.start()

    seen = watch_steps(page)
    retry.click()
    page.wait_for_url(re.compile(r".*/hub/spawn/fay\?.*"))
    expect(page.locator('#steps li[data-phase="waiting"]')).to_have_count(1, timeout=30_000)
    # Reload mid-spawn: the steps so far are shown again and the page keeps following.
    page.reload()
    expect(page.locator("#title")).to_have_text("Starting your server")
    assert page.locator("#steps li").count() >= 2
    expect(page.locator('#steps li[data-phase="creating"]')).to_have_count(1)
    wait_for_lab(page)
    assert {"queued", "creating", "waiting"} <= set(phases_shown(seen)), seen
    assert len(site.containers("fay", all=False)) == 1
