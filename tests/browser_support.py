"""The one browser setup of the tests: Debian's Chromium driven by Playwright (never a
downloaded browser), with the flags this machine class needs, and the page fixtures
and helpers shared by the page tests.  A failing test leaves a full-page screenshot in
test-artifacts/.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright

from support import TEST_IMAGE, Daemon

CHROMIUM = os.environ.get("IPYDOC_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"

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


LAB = re.compile(r".*/user/[a-z0-9-]+/lab([?#].*)?$")

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


def watch_steps(page: Page) -> list[list[list[str]]]:
    """Every state of the spawn page's step list, as (phase, message) pairs."""
    seen: list[list[list[str]]] = []
    page.expose_binding("ipydocSteps", lambda _source, items: seen.append(items))
    page.add_init_script(STEP_WATCHER)
    return seen


def wait_for_lab(page: Page) -> None:
    page.wait_for_url(LAB, timeout=120_000)
    page.locator(".jp-LauncherCard").first.wait_for(timeout=60_000)


#: A notebook's execution indicator once its kernel is ready.
KERNEL_IDLE = ".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']"


def wait_for_kernel(page: Page, timeout: float = 60_000) -> None:
    """The open notebook's kernel is idle.  JupyterLab sometimes asks first which kernel to
    start (a "Select Kernel" dialog over the notebook, the notebook's own kernel
    preselected; seen once in CI): a person accepts it, and so does this."""
    idle = page.locator(KERNEL_IDLE)
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    idle.or_(dialog).first.wait_for(timeout=timeout)
    if not idle.is_visible() and dialog.is_visible():
        dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
        idle.wait_for(timeout=timeout)


def phases_shown(seen: list[list[list[str]]]) -> list[str]:
    """Distinct phases the step list showed, in order of first appearance."""
    out: list[str] = []
    for items in seen:
        for phase, _message in items:
            if phase not in out:
                out.append(phase)
    return out


# -- this module's site ------------------------------------------------------------------
