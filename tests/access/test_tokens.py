"""Personal API tokens: made on /hub/token in a real browser, shown once, used by a plain
HTTP client (requests) against the owner's server through the proxy, refused after
revocation or expiry and anywhere but the owner's own server."""

from __future__ import annotations

import hashlib
import re
import subprocess
import time

import pytest
import requests
from playwright.sync_api import expect

from browser_support import (  # noqa: F401 - the fixtures are used by name
    browser_fixture,
    browser_login,
    page_fixture,
    start_daemon,
)
from support import csrf_of, follow_progress, login

PW = "tokens-password-1"
NOTE = '<script>alert("x")</script> ci & nbclient'


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    d = start_daemon(tmp_path_factory.mktemp("tokens"))
    d.add_user("tess", PW)
    d.add_user("uma", "uma-password-1")
    yield d
    d.stop()
    d.cleanup_docker()


@pytest.fixture(scope="module")
def tess(site):
    s, r = login(site.url, "tess", PW)
    assert r.status_code == 303
    assert follow_progress(s, site.url, "tess")[-1]["phase"] == "ready"
    return s


def redis_cli(site, *args: str) -> str:
    sock = site.root / "state" / "redis" / "redis.sock"
    return subprocess.run(["redis-cli", "-s", str(sock), *args], capture_output=True,
                          text=True).stdout.strip()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


def test_token_drives_the_server_and_is_refused_after_revocation(site, tess, page):
    browser_login(page, site.url, "tess", PW, "/hub/token")
    page.wait_for_url(re.compile(r".*/hub/token$"))
    page.get_by_label("Note").fill(NOTE)
    page.get_by_label("Expires").select_option(label="7 days")
    page.get_by_role("button", name="Create token").click()
    token = page.get_by_label(re.compile("^Token")).input_value()
    assert re.fullmatch(r"ipd_[A-Za-z0-9_-]{43}", token), token
    # the note is shown as text, never as markup
    expect(page.locator("tbody")).to_contain_text(NOTE)
    assert page.evaluate("document.querySelectorAll('main script').length") == 0
    row = page.locator("tr[data-token]")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("in 6 days")

    # Only a hash is stored; the page never shows the token again.
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert redis_cli(site, "HGET", f"ipydoc:token:{digest}", "user") == "tess"
    assert token not in redis_cli(site, "--no-raw", "HGETALL", f"ipydoc:token:{digest}")
    page.reload()
    assert token not in page.content()
    expect(page.locator("tr[data-token]")).to_have_count(1)  # a reload made no new token

    # A plain HTTP client drives the server with the token (no cookie, no Origin).
    base = f"{site.url}/user/tess"
    r = requests.get(f"{base}/api/status", headers=auth(token))
    assert r.status_code == 200 and "last_activity" in r.json()
    r = requests.put(f"{base}/api/contents/from-script.txt", headers=auth(token),
                     json={"type": "file", "format": "text", "content": "made by a script"})
    assert r.status_code == 201, r.text
    r = requests.get(f"{base}/api/contents/from-script.txt", headers=auth(token))
    assert r.json()["content"] == "made by a script"
    r = requests.post(f"{base}/api/kernels", headers=auth(token), json={"name": "python3"})
    assert r.status_code == 201, r.text
    kernel = r.json()["id"]
    assert requests.delete(f"{base}/api/kernels/{kernel}", headers=auth(token)).status_code == 204
    assert requests.get(f"{base}/api/status",
                        headers={"Authorization": f"Bearer {token}"}).status_code == 200
    # the token's last use shows on the page
    page.reload()
    expect(page.locator("tr[data-token]")).to_contain_text("just now")

    # Only the owner's server, and a wrong token is no session either.
    r = requests.get(f"{site.url}/user/uma/api/status", headers=auth(token))
    assert r.status_code == 403
    r = requests.get(f"{base}/api/status", headers=auth(token[:-2] + "xx"))
    assert r.status_code == 401
    r = tess.get(f"{base}/api/status", headers=auth("ipd_" + "A" * 43))
    assert r.status_code == 401  # an explicit bad token is refused even with a cookie

    # Revoke (the page asks first), then the token is refused at once.
    page.once("dialog", lambda d: d.accept())
    page.locator("tr[data-token]").get_by_role("button", name=re.compile("^Revoke")).click()
    page.wait_for_url(re.compile(r".*/hub/token\?done=revoked$"))
    expect(page.get_by_role("status").first).to_contain_text("revoked")
    expect(page.locator("tr[data-token]")).to_have_count(0)
    r = requests.get(f"{base}/api/status", headers=auth(token))
    assert r.status_code == 401 and "revoked" in r.json()["message"]
    assert redis_cli(site, "EXISTS", f"ipydoc:token:{digest}") == "0"


def test_token_expires(site, tess):
    csrf = csrf_of(tess, site.url)
    r = tess.post(site.url + "/hub/token", data={"_csrf": csrf, "note": "short",
                                                 "expires_in": "2"},
                  headers={"Origin": site.url})
    assert r.status_code == 200 and r.url == site.url + "/hub/token"
    token = re.search(r'id="new-token" readonly value="([^"]+)"', r.text).group(1)
    assert requests.get(f"{site.url}/user/tess/api/status", headers=auth(token)).status_code == 200
    time.sleep(2.5)
    r = requests.get(f"{site.url}/user/tess/api/status", headers=auth(token))
    assert r.status_code == 401
    assert "short" not in tess.get(site.url + "/hub/token").text  # gone from the list too


def test_token_forms_need_csrf_and_valid_input(site, tess):
    csrf = csrf_of(tess, site.url)
    url = site.url + "/hub/token"
    r = tess.post(url, data={"note": "x", "expires_in": "0"}, headers={"Origin": site.url})
    assert r.status_code == 403
    r = tess.post(url, data={"_csrf": csrf, "expires_in": "0"},
                  headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    r = tess.post(url, data={"_csrf": csrf, "expires_in": str(10 * 365 * 86400)},
                  headers={"Origin": site.url})
    assert r.status_code == 400 and "at most a year" in r.text
    r = tess.post(url, data={"_csrf": csrf, "expires_in": "0", "note": "x" * 101},
                  headers={"Origin": site.url})
    assert r.status_code == 400
    # another user cannot revoke tess's tokens
    r = tess.post(url, data={"_csrf": csrf, "expires_in": "0", "note": "keep"},
                  headers={"Origin": site.url})
    token = re.search(r'id="new-token" readonly value="([^"]+)"', r.text).group(1)
    token_id = hashlib.sha256(token.encode()).hexdigest()[:16]
    uma, _ = login(site.url, "uma", "uma-password-1", next="/hub/home")
    r = uma.post(f"{site.url}/hub/token/{token_id}/revoke",
                 data={"_csrf": csrf_of(uma, site.url), "confirmed": "1"},
                 headers={"Origin": site.url}, allow_redirects=False)
    assert r.status_code == 404
    assert requests.get(f"{site.url}/user/tess/api/status", headers=auth(token)).status_code == 200
    # while the server is stopped the token gets a clear 503, not a login page
    tess.post(f"{site.url}/hub/stop/tess", data={"_csrf": csrf}, headers={"Origin": site.url})
    r = requests.get(f"{site.url}/user/tess/api/status", headers=auth(token))
    assert r.status_code == 503 and "not running" in r.json()["message"]
