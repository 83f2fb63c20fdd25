"""The gate's verdict recalled from memory in subdomain mode, through the real daemon,
Docker and jupyter_server: on a user's host the host names the server and the host
session cookie the user, both in the header lines a browser repeats, so the verdict is
recalled there too (``ipydoc_proxy_recalled_verdicts_total`` counts it), never for the
host's own pages under ``/_ipydoc/``, and never past the end of the session.
"""

from __future__ import annotations

import pytest
from test_recalled_verdicts import Browser as KeptAlive
from test_recalled_verdicts import recalled

from subdomain_support import Browser, hand_off, login, subdomain_site, wait_running
from support import free_port

PW = "alice-recall-subdomain-pw"


@pytest.fixture(scope="module")
def site(tmp_path_factory, notebook_image):
    port = free_port()
    for d in subdomain_site(tmp_path_factory.mktemp("recall-subdomain"), {"alice": PW},
                            metrics={"listen": f"tcp:{port}:interface=127.0.0.1"}):
        d.metrics_url = f"http://127.0.0.1:{port}/metrics"
        yield d


def test_a_recalled_verdict_on_a_user_host_ends_with_its_session(site):
    b = Browser(site.port)
    assert login(b, "alice", PW).status_code == 303
    wait_running(b, "alice")
    assert b.go(hand_off(b, "alice", "/api/status")).status_code == 302
    host = b.host("alice")
    cookie = "; ".join(f"{k}={v}" for k, v in b.jar[host].items())
    with KeptAlive(site, cookie, host) as browser:
        before = recalled(site)
        for _ in range(3):
            status, body = browser.get("/api/status")
            assert status == 200 and b'"started"' in body
        assert recalled(site) == before + 2  # the first climbed the ladder, not the others
        status, _ = browser.get("/_ipydoc/handoff")  # the host's own page: the ladder's
        assert status in (302, 400, 403, 404)
        assert browser.get("/api/contents")[0] == 200
        assert recalled(site) == before + 3
        assert site.cli("session", "revoke", "alice").returncode == 0
        status, body = browser.get("/api/status")
        assert status == 401 and b"not logged in" in body
        assert recalled(site) == before + 3
