"""What users see when their server is gone, hung or broken: a clear page, never a traceback.

The first tests run the site and proxy in-process in front of a closed port (a server
that died while its route was still known) and a gate that crashes; the last ones run
the real daemon with a real container whose processes are stopped (504) and then killed (not running,
with a working start button).
"""

from __future__ import annotations

import json
import re
import subprocess
from functools import partial

import pytest
import pytest_twisted
import requests
from twisted.internet import reactor, threads
from twisted.web.resource import Resource

from ipydoc.access.ladder import start_url
from ipydoc.edge.routing import Routing
from ipydoc.edge.site import make_site
from ipydoc.proxy.gate import Forward

from support import Daemon, closed_port, docker, follow_progress, login, wait_for

BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
API = {"Accept": "application/json"}


class Gate:
    """alice's route points at a port nobody listens on; "boom" makes the gate crash."""

    def __init__(self) -> None:
        self.target = f"http://127.0.0.1:{closed_port()}"

    def claims(self, request) -> bool:
        return request.path.startswith(b"/user/")

    async def decide(self, request):
        if request.path.startswith(b"/user/boom/"):
            raise RuntimeError("secret internal detail <script>")
        # the start page as the real gate names it (path mode)
        return Forward("alice", self.target, "tok",
                       start_url=partial(start_url, Routing(), "alice"))

    def saw_traffic(self, user: str) -> None:
        pass

    def saw_response(self, user, method, path, code) -> None:
        pass


@pytest_twisted.async_yield_fixture
async def proxy():
    site = make_site(Resource(), Gate(), reactor)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    yield f"http://127.0.0.1:{port.getHost().port}"
    await port.stopListening()
    await site.proxy.close()


def get(url: str, headers: dict) -> requests.Response:
    return requests.get(url, headers=headers, timeout=30, allow_redirects=False)


@pytest_twisted.ensureDeferred
async def test_dead_server_page_offers_to_start_it(proxy):
    r = await threads.deferToThread(get, proxy + "/user/alice/lab/tree/a%20b.ipynb", BROWSER)
    assert r.status_code == 502
    assert r.headers["Content-Type"].startswith("text/html")
    assert "<h1>Your server is not running</h1>" in r.text
    start = re.search(r'id="start" href="([^"]+)"', r.text).group(1)
    assert start == "/hub/spawn/alice?next=/user/alice/lab/tree/a%2520b.ipynb"
    assert 'id="retry" href="/user/alice/lab/tree/a%20b.ipynb"' in r.text
    assert "Traceback" not in r.text


@pytest_twisted.ensureDeferred
async def test_dead_server_answers_api_clients_in_json(proxy):
    r = await threads.deferToThread(get, proxy + "/user/alice/api/contents", BROWSER)
    assert r.status_code == 502 and r.headers["Content-Type"] == "application/json"
    assert "not answering" in r.json()["message"]
    r = await threads.deferToThread(get, proxy + "/user/alice/lab", API)
    assert r.status_code == 502 and r.json()["status"] == 502


@pytest_twisted.ensureDeferred
async def test_a_crash_in_the_proxy_is_a_short_page_without_details(proxy):
    for headers in (BROWSER, API, {}):
        r = await threads.deferToThread(get, proxy + "/user/boom/lab", headers)
        assert r.status_code == 500
        assert "Traceback" not in r.text and "secret internal detail" not in r.text
        assert "<script>" not in r.text
        if headers is API:
            assert r.json()["message"] == "Internal error in the proxy."
        elif headers is BROWSER:
            assert "<h1>Something went wrong</h1>" in r.text


@pytest_twisted.ensureDeferred
async def test_dot_segment_page(proxy):
    r = await threads.deferToThread(get, proxy + "/user/alice/%2e%2e/bob/lab", BROWSER)
    assert r.status_code == 404 and "<h1>Not found</h1>" in r.text
    assert "not forwarded" in r.text


# -- the real daemon ------------------------------------------------------------------------

PW = "alice-errors-pw"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("errors"),
               overrides={"proxy": {"backend_response_timeout": 3.0}})
    d.start()
    d.add_user("alice", PW)
    session, r = login(d.url, "alice", PW)
    assert r.status_code == 303
    assert follow_progress(session, d.url, "alice")[-1]["phase"] == "ready"
    yield d, session
    for cid in d.containers("alice", all=False):
        signal_processes(cid, "CONT")
    d.stop()
    d.cleanup_docker()


def signal_processes(container: str, sig: str) -> None:
    """SIGSTOP/SIGCONT every process of the container from the host: a hung server.
    (Not ``docker pause``: ipydoc follows that and resumes the server, issue 15.)"""
    pids = docker("top", container, "-o", "pid").split()[1:]
    subprocess.run(["kill", f"-{sig}", *pids], check=True)


def test_hung_server_is_a_504_page(site):
    d, session = site
    (container,) = d.containers("alice", all=False)
    signal_processes(container, "STOP")
    try:
        page = session.get(d.url + "/user/alice/lab", headers=BROWSER, timeout=60)
        api = session.get(d.url + "/user/alice/api/status", timeout=60)
    finally:
        signal_processes(container, "CONT")
    assert page.status_code == 504 and "<h1>Your server is not answering</h1>" in page.text
    assert 'href="/hub/spawn/alice?next=/user/alice/lab"' in page.text
    assert api.status_code == 504 and "took too long" in api.json()["message"]
    assert "Traceback" not in page.text + api.text
    assert session.get(d.url + "/user/alice/api/status", timeout=30).status_code == 200


def test_container_gone_says_not_running_with_a_start_button_that_works(site):
    d, session = site
    (container,) = d.containers("alice", all=False)
    docker("kill", container)
    (api,) = wait_for(lambda: [r for r in [session.get(d.url + "/user/alice/api/status",
                                                      timeout=30)] if r.status_code == 503],
                      timeout=30)
    message = api.json()["message"]
    assert "not running" in message and "/hub/spawn/alice" in message
    page = session.get(d.url + "/user/alice/lab", headers=BROWSER, timeout=30)
    assert page.url.startswith(d.url + "/hub/spawn/alice")
    assert "Your server is not running" in page.text and "Traceback" not in page.text
    form = re.search(r'<form method="post" action="(/hub/spawn/alice)".*?</form>', page.text,
                     re.S)
    assert form and 'id="start-button"' in form.group(0)
    fields = dict(re.findall(r'name="(_csrf|next)" value="([^"]*)"', form.group(0)))
    started = session.post(d.url + form.group(1), data=fields, headers={"Origin": d.url},
                           allow_redirects=False, timeout=30)
    assert started.status_code == 303
    assert follow_progress(session, d.url, "alice")[-1]["phase"] == "ready"
    status = session.get(d.url + "/user/alice/api/status", timeout=30)
    assert status.status_code == 200 and "last_activity" in json.loads(status.text)
