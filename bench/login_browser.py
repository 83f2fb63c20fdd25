#!/usr/bin/env python3
"""Login → JupyterLab in a real browser (issue 15 §2): what a person waits for.

Debian's Chromium driven by Playwright (never a downloaded browser), headless, with the
flags of tests/browser_support.py.  A fresh daemon (temp state dir, free port, unique
``docker.instance``, as bench/spawn.py starts it) gets one user; one container of the
same image is run by hand for the floor.  Each rep is timed from the click on "Log in"
(t0 just before Playwright's click) to JupyterLab's launcher rendered: the first
``.jp-Launcher .jp-LauncherCard`` in the DOM, stamped inside the page by a
MutationObserver (``performance.timeOrigin + performance.now()``, the host's clock like
t0), then confirmed visible by Playwright.

Scenarios (server × browser cache), run interleaved rep by rep:

- ``direct``: JupyterLab straight from a container of the image (no ipydoc; published on
  127.0.0.1, token in the URL), t0 just before the navigation: the floor;
- ``warm``: through ipydoc, the user's server already running;
- ``cold``: through ipydoc, the server stopped (``ipydoc server stop``) before each rep;
  the browser holds no cookie of the hub (a first login on this browser);
- ``return``: as ``cold``, but the browser is a returning one: it keeps the hint a login
  leaves (``ipydoc-return``; its session ended), so the login page starts the server
  (``spawn.prestart_on_login``, docs/cold_login.md) before the click;
- ``:empty`` a new browser context per rep (empty HTTP cache, no cookies);
  ``:cached`` one persistent context (on-disk profile) that loaded JupyterLab once before
  the reps; its cookies are cleared before each rep, its HTTP cache kept.

Breakdown per rep, from the browser's own clocks (Playwright's per-request Resource Timing
for the document chain, the lab page's ``performance.getEntries()``):

- ``click``: t0 → the login POST leaves the browser (Playwright's click, the form);
- ``login``: the login POST → its response (password check, session, 303);
- ``to_lab_request``: the login POST's response → the request for the lab page (the
  redirects and the time on the spawn page, waiting for the server);
- ``lab_ttfb``: that request → first byte of the lab HTML (a cold login goes straight to
  the lab page: held until the start ends, or the server's kept page sent at once);
- ``kept page``: the lab HTML was the daemon's kept copy of the server's page
  (``Cache-Control: no-store``; docs/cold_login.md), median of 0/100 %;
- ``assets``: static files of the lab page (``/static/``): count, bytes over the wire
  (``transferSize``, 0 when the cache served them), from the lab request → end of the last;
- ``api``: API calls of the lab page (``/api/``, ``/lab/api/``): count, → end of the last;
- ``boot``: end of the last static asset → launcher (JavaScript start, plug-ins, API
  answers, first render);
- ``pre_lab_static``: static files requested before the lab page (on the spawn page);
- ``wire_bytes``: response bytes (body + headers) over the wire for every request of the
  rep, all pages (0 for what the cache served).

Prints a table (median, min, max per scenario; Δ and ratio vs the direct floor of the
same cache; cold − warm) and the breakdown medians; JSON to bench/results/.

    .venv/bin/python bench/login_browser.py [--reps 5] [--scenarios direct,warm,cold,return]
        [--think 0]
        [--image ipydoc-test-notebook:latest] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from playwright.sync_api import BrowserContext, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from spawn import PASSWORD, Daemon, docker, free_port

HERE = Path(__file__).resolve().parent
IMAGE = "ipydoc-test-notebook:latest"
CHROMIUM = os.environ.get("IPYDOC_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
LAUNCHER = ".jp-Launcher .jp-LauncherCard"
VIEWPORT = {"width": 1280, "height": 900}
USER = "alice"
SERVERS = ("direct", "warm", "cold", "return")
RETURN_COOKIE = "ipydoc-return"
CACHES = ("empty", "cached")

# Stamps the moment the launcher's first card enters the DOM, on the page's clock.
LAUNCHER_STAMP = """
(() => {
  const sel = %s;
  const mark = () => {
    if (window.__launcherAt === undefined && document.querySelector(sel)) {
      window.__launcherAt = performance.timeOrigin + performance.now();
      return true;
    }
    return false;
  };
  if (mark()) return;
  const obs = new MutationObserver(() => { if (mark()) obs.disconnect(); });
  obs.observe(document, {childList: true, subtree: true});
})();
""" % json.dumps(LAUNCHER)

PAGE_ENTRIES = """() => ({
  launcher: window.__launcherAt,
  origin: performance.timeOrigin,
  nav: performance.getEntriesByType('navigation').map(e => e.toJSON()),
  resources: performance.getEntriesByType('resource').map(e => ({
    name: e.name, start: e.startTime, end: e.responseEnd, transfer: e.transferSize,
    body: e.encodedBodySize, initiator: e.initiatorType})),
})"""


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


# -- the floor: a container of the image, run by hand ------------------------------------

class DirectServer:
    """JupyterLab from the image with no ipydoc in front: the floor."""

    def __init__(self, image: str, instance: str) -> None:
        self.image = image
        self.name = f"{instance}-direct"
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}/lab?token={self.token}"

    def start(self) -> None:
        # The token goes through the environment (``-e NAME`` copies it), not argv.
        env = dict(os.environ, JUPYTER_TOKEN=self.token)
        subprocess.run(["docker", "run", "-d", "--name", self.name, "-e", "JUPYTER_TOKEN",
                        "-p", f"127.0.0.1:{self.port}:8888", self.image, "jupyter", "lab",
                        "--ip=0.0.0.0", "--port=8888", "--no-browser"],
                       env=env, check=True, capture_output=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/api/status", timeout=2,
                                headers={"Authorization": f"token {self.token}"}
                                ).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise SystemExit(f"direct container did not answer: {docker('logs', self.name)[-2000:]}")

    def remove(self) -> None:
        docker("rm", "-f", self.name)


# -- one rep -----------------------------------------------------------------------------

def open_page(ctx: BrowserContext, requests_seen: list[Any], errors: list[str]) -> Page:
    page = ctx.new_page()
    page.set_default_timeout(180_000)
    page.on("request", lambda r: requests_seen.append(r))
    page.on("response", lambda r: errors.append(f"{r.status} {r.request.method} "
                                                f"{r.url.split('?')[0].split(':', 2)[-1]}")
            if r.status >= 400 else None)
    return page


def wait_launcher(page: Page) -> dict:
    page.locator(LAUNCHER).first.wait_for(state="visible", timeout=90_000)
    page.wait_for_function("window.__launcherAt !== undefined", timeout=30_000)
    return page.evaluate(PAGE_ENTRIES)


def keep_screenshot(page: Page) -> None:
    """A rep that never reached the launcher: what the page showed, and where it was."""
    path = HERE / "results" / f"login-browser-failed-{datetime.now():%Y%m%d-%H%M%S}.png"
    path.parent.mkdir(exist_ok=True)
    try:
        page.screenshot(path=str(path), full_page=True)
        print(f"launcher not shown at {page.url}; screenshot {path}", file=sys.stderr)
    except PlaywrightError:
        pass


def timing_of(req: Any) -> dict:
    """A request's start, first byte and end in epoch ms (Playwright's Resource Timing)."""
    t = req.timing
    start = t["startTime"]
    return {"start": start,
            "ttfb": start + t["responseStart"] if t["responseStart"] >= 0 else None,
            "end": start + t["responseEnd"] if t["responseEnd"] >= 0 else None}


def breakdown(t0_ms: float, reqs: list[Any], entries: dict, via_login: bool) -> dict:
    docs = [r for r in reqs if r.resource_type == "document"
            and r.frame == r.frame.page.main_frame]
    lab = [r for r in docs if "/lab" in r.url.split("?")[0]]
    out: dict[str, Any] = {}
    launcher = entries["launcher"]
    if via_login:
        post = next((r for r in docs if r.method == "POST" and "/hub/login" in r.url), None)
        if post is not None:
            pt = timing_of(post)
            out["click"] = pt["start"] - t0_ms
            out["login"] = pt["end"] - pt["start"] if pt["end"] else None
            if lab:
                out["to_lab_request"] = timing_of(lab[-1])["start"] - (pt["end"] or t0_ms)
            out["documents"] = [r.url.split("?")[0].replace("http://127.0.0.1", "")
                                for r in docs]
    lab_start = timing_of(lab[-1])["start"] if lab else entries["origin"]
    if lab:
        ttfb = timing_of(lab[-1])["ttfb"]
        out["lab_ttfb"] = ttfb - lab_start if ttfb else None
        out["early_page"] = 1 if kept_page(lab[-1]) else 0
    origin = entries["origin"]
    res = entries["resources"]
    static = [e for e in res if "/static/" in e["name"]]
    api = [e for e in res if "/api/" in e["name"]]
    if static:
        last = max(origin + e["end"] for e in static)
        out["assets"] = {"count": len(static), "bytes": sum(e["transfer"] for e in static),
                         "body_bytes": sum(e["body"] for e in static),
                         "to_last": last - lab_start}
        out["boot"] = launcher - last
    if api:
        out["api"] = {"count": len(api), "to_last": max(origin + e["end"] for e in api)
                      - lab_start,
                      "paths": sorted({e["name"].split("?")[0].split("/", 3)[-1] for e in api})}
    if lab:  # static files fetched before the lab page was asked for (e.g. on the spawn page)
        out["pre_lab_static"] = sum(1 for r in reqs if "/static/" in r.url
                                    and timing_of(r)["start"] < lab_start)
    out["wire_bytes"] = sum(wire_bytes(r) for r in reqs)
    out["total"] = launcher - t0_ms
    return out


def kept_page(req: Any) -> bool:
    """The lab page was the daemon's kept copy, sent while the server started
    (``Cache-Control: no-store``; the server's own page has none)."""
    try:
        response = req.response()
        return response is not None and response.headers.get("cache-control") == "no-store"
    except Exception:  # noqa: BLE001  a request of a closed document
        return False


def wire_bytes(req: Any) -> int:
    """Bytes the response of one request took over the wire (0 from the cache)."""
    try:
        if req.response() is None or req.response().from_service_worker:
            return 0
        sizes = req.sizes()
    except Exception:  # noqa: BLE001  a request of a closed document: nothing to count
        return 0
    return sizes["responseBodySize"] + sizes["responseHeadersSize"]


def login_rep(ctx: BrowserContext, base: str, think: float = 0.0) -> dict:
    reqs: list[Any] = []
    errors: list[str] = []
    page = open_page(ctx, reqs, errors)
    page.add_init_script(LAUNCHER_STAMP)
    try:
        page.goto(base + "/hub/login")
        page.get_by_label("User name").fill(USER)
        page.get_by_label("Password").fill(PASSWORD)
        button = page.get_by_role("button", name="Log in")
        button.wait_for()
        time.sleep(think)  # a person typing (--think), the same for every login scenario
        reqs.clear()
        t0 = time.time() * 1000
        button.click()
        try:
            entries = wait_launcher(page)
        except PlaywrightError:
            keep_screenshot(page)
            raise
        return breakdown(t0, reqs, entries, via_login=True) | {"errors": errors}
    finally:
        page.close()


def direct_rep(ctx: BrowserContext, direct: DirectServer) -> dict:
    reqs: list[Any] = []
    errors: list[str] = []
    page = open_page(ctx, reqs, errors)
    page.add_init_script(LAUNCHER_STAMP)
    try:
        t0 = time.time() * 1000
        page.goto(direct.url, wait_until="commit")
        try:
            entries = wait_launcher(page)
        except PlaywrightError:
            keep_screenshot(page)
            raise
        return breakdown(t0, reqs, entries, via_login=False) | {"errors": errors}
    finally:
        page.close()


# -- the run -----------------------------------------------------------------------------

def parse_scenarios(spec: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for item in spec.split(","):
        server, _, cache = item.strip().partition(":")
        if server not in SERVERS or (cache and cache not in CACHES):
            raise SystemExit(f"unknown scenario {item!r}: use {SERVERS} with optional "
                             f":empty or :cached")
        for c in ([cache] if cache else CACHES):
            if (server, c) not in out:
                out.append((server, c))
    return out


def run(args: argparse.Namespace) -> dict:
    scenarios = parse_scenarios(args.scenarios)
    root = Path(tempfile.mkdtemp(prefix="ipydoc-login-browser-"))
    d = Daemon(args.image, root)
    direct = DirectServer(args.image, d.instance)
    samples: dict[str, list[dict]] = {f"{s}:{c}": [] for s, c in scenarios}
    failures: dict[str, int] = {}
    try:
        d.start()
        d.cli("user", "add", USER, "--password-stdin", input=PASSWORD + "\n")
        if any(s == "direct" for s, _ in scenarios):
            direct.start()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            cached = p.chromium.launch_persistent_context(
                str(root / "profile"), executable_path=CHROMIUM, args=ARGS, headless=True,
                viewport=VIEWPORT)
            # One untimed load each: the server starts, the cached profile gets JupyterLab.
            login_rep(cached, d.url)
            hint = [c for c in cached.cookies() if c["name"] == RETURN_COOKIE]
            if any(s == "direct" for s, _ in scenarios):
                direct_rep(cached, direct)
            for rep in range(args.reps):
                for server, cache in scenarios:
                    key = f"{server}:{cache}"
                    if cache == "cached":
                        ctx = cached
                        ctx.clear_cookies()
                    else:
                        ctx = browser.new_context(viewport=VIEWPORT)
                    if server == "return":  # a returning browser: only its hint is left
                        if not hint:
                            raise SystemExit("the login left no returning-browser hint: "
                                             "is spawn.prestart_on_login off?")
                        ctx.add_cookies(hint)
                    try:
                        if server in ("cold", "return"):
                            d.cli("server", "stop", USER)
                        elif server == "warm":  # already running: answers at once
                            d.cli("server", "start", USER)
                        r = (direct_rep(ctx, direct) if server == "direct"
                             else login_rep(ctx, d.url, args.think))
                    except PlaywrightError as e:  # a rep that never showed the launcher
                        r = {"failed": str(e).splitlines()[0]}
                        failures[key] = failures.get(key, 0) + 1
                    finally:
                        if ctx is not cached:
                            ctx.close()
                    samples[key].append(r)
                    took = f"{r['total'] / 1000:6.2f} s" if "total" in r else r["failed"]
                    print(f"rep {rep + 1}/{args.reps} {key:14} {took}", file=sys.stderr,
                          flush=True)
            cached.close()
            browser.close()
    finally:
        direct.remove()
        d.stop()
        d.cleanup()
        shutil.rmtree(root, ignore_errors=True)
    return {"image": args.image, "reps": args.reps, "launcher_selector": LAUNCHER,
            "chromium": CHROMIUM, "samples": samples, "failures": failures,
            "summary": summarise(samples)}


def pick(sample: dict, path: str) -> float | None:
    v: Any = sample
    for k in path.split("."):
        v = v.get(k) if isinstance(v, dict) else None
    return v


PARTS = ["click", "login", "to_lab_request", "lab_ttfb", "early_page", "assets.count",
         "assets.bytes",
         "assets.to_last", "pre_lab_static", "api.count", "api.to_last", "boot",
         "wire_bytes", "total"]


def summarise(samples: dict[str, list[dict]]) -> dict:
    out: dict[str, dict] = {}
    for key, rs in samples.items():
        rs = [r for r in rs if "total" in r]
        tot = [r["total"] for r in rs]
        parts = {}
        for part in PARTS:
            vals = [v for r in rs if (v := pick(r, part)) is not None]
            parts[part] = median(vals)
        out[key] = {"n": len(tot), "median_ms": median(tot), "min_ms": min(tot, default=None),
                    "max_ms": max(tot, default=None), "parts_median": parts}
    return out


def fmt_s(ms: float | None) -> str:
    return "" if ms is None else f"{ms / 1000:.2f}"


def num(v: float | None, scale: float = 1) -> str:
    return "" if v is None else f"{v / scale:.0f}"


def report(result: dict) -> str:
    summ = result["summary"]
    lines = ["| scenario | n | median s | min s | max s | Δ floor s | × floor | cold − warm s "
             "| × warm |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, s in summ.items():
        server, cache = key.split(":")
        floor = summ.get(f"direct:{cache}", {}).get("median_ms")
        warm = summ.get(f"warm:{cache}", {}).get("median_ms")
        med = s["median_ms"]
        delta = fmt_s(med - floor) if floor and med and server != "direct" else ""
        ratio = f"{med / floor:.2f}" if floor and med and server != "direct" else ""
        cold = server in ("cold", "return")
        cw = fmt_s(med - warm) if cold and warm and med else ""
        xw = f"{med / warm:.2f}" if cold and warm and med else ""
        lines.append(f"| {key} | {s['n']} | {fmt_s(med)} | {fmt_s(s['min_ms'])} | "
                     f"{fmt_s(s['max_ms'])} | {delta} | {ratio} | {cw} | {xw} |")
    lines += ["", "breakdown (medians; times in s, bytes in KiB):", "",
              "| scenario | click | login | → lab req | lab TTFB | kept page | assets n | "
              "assets KiB | assets → last | pre-lab static | api n | api → last | boot | "
              "wire KiB | total |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, s in summ.items():
        p = s["parts_median"]
        kib = "" if p["assets.bytes"] is None else f"{p['assets.bytes'] / 1024:.0f}"
        n = "" if p["assets.count"] is None else f"{p['assets.count']:.0f}"
        an = "" if p["api.count"] is None else f"{p['api.count']:.0f}"
        lines.append(f"| {key} | {fmt_s(p['click'])} | {fmt_s(p['login'])} | {fmt_s(p['to_lab_request'])} | "
                     f"{fmt_s(p['lab_ttfb'])} | {num(p['early_page'], 0.01)}% | {n} | {kib} | {fmt_s(p['assets.to_last'])} | "
                     f"{num(p['pre_lab_static'])} | {an} | {fmt_s(p['api.to_last'])} | "
                     f"{fmt_s(p['boot'])} | {num(p['wire_bytes'], 1024)} | "
                     f"{fmt_s(p['total'])} |")
    if result.get("failures"):
        lines += ["", "reps that never showed the launcher (left out of the medians): "
                  + ", ".join(f"{k} × {n}" for k, n in result["failures"].items())]
    errs = {key: sorted({e for r in rs for e in r.get("errors", [])})
            for key, rs in result["samples"].items()}
    if any(errs.values()):
        lines += ["", "HTTP errors the pages saw:"]
        lines += [f"  {key}: {', '.join(e)}" for key, e in errs.items() if e]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="reps per scenario (median of these)")
    ap.add_argument("--scenarios", default="direct,warm,cold,return",
                    help="comma-separated: direct, warm, cold, return, each optionally "
                         ":empty or :cached (default: both caches)")
    ap.add_argument("--think", type=float, default=0.0,
                    help="seconds between the login form ready and the click (a person "
                         "typing; before t0, the same for warm, cold and return)")
    ap.add_argument("--image", default=IMAGE, help="notebook image (daemon and floor)")
    ap.add_argument("--tag", default="", help="suffix of the results file name")
    ap.add_argument("--json", action="store_true", help="print the JSON result on stdout")
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} missing: apt-get install chromium (no browser download)")
    result = run(args)
    result["when"] = datetime.now().isoformat(timespec="seconds")
    out = HERE / "results" / (f"login-browser-{datetime.now():%Y%m%d-%H%M%S}"
                              + (f"-{args.tag}" if args.tag else "") + ".json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(report(result))
        print(f"\nlauncher = first {LAUNCHER!r} in the DOM; JSON: {out}")


if __name__ == "__main__":
    main()
