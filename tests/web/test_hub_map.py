"""The hub's URL map (ipydoc.web.hub): every prefix reaches its page group with the whole
path, and every route a page group declares is reachable through the map."""

from __future__ import annotations

import pytest_twisted
from klein import Klein
from treq.testing import StubTreq
from twisted.web.resource import Resource

from ipydoc.web.account_pages import AccountPages
from ipydoc.web.admin_pages import AdminPages
from ipydoc.web.api.app import ApiPages
from ipydoc.web.handoff_page import HandoffPage
from ipydoc.web.history_pages import HistoryPages
from ipydoc.web.home_pages import HomePages
from ipydoc.web.hub import URL_MAP, HubSite
from ipydoc.web.login_pages import LoginPages
from ipydoc.web.metrics_page import MetricsPage
from ipydoc.web.provider_pages import ProviderPages

GROUPS = {"login": LoginPages, "providers": ProviderPages, "home": HomePages,
          "account": AccountPages, "admin": AdminPages, "history": HistoryPages,
          "handoff": HandoffPage, "metrics": MetricsPage, "api": ApiPages}


class Echo:
    """A page group that says who it is and which path it routed on."""

    app = Klein()

    def __init__(self, name: str) -> None:
        self.name = name

    @app.route("/", methods=["GET", "POST"])
    def root(self, request):
        return f"{self.name} /".encode()

    @app.route("/<path:rest>", methods=["GET", "POST"])
    def any(self, request, rest):
        return f"{self.name} /{rest}".encode()


def client() -> StubTreq:
    root = Resource()
    root.putChild(b"hub", HubSite({name: Echo(name) for name in GROUPS}).resource())
    return StubTreq(root)


def group_of(path: str) -> str | None:
    if path == "/":
        return "home"
    for prefix, group in URL_MAP:
        if path == prefix or path.startswith(prefix + "/"):
            return group
    return None


@pytest_twisted.ensureDeferred
async def test_each_prefix_reaches_its_group_with_the_whole_path():
    treq = client()
    paths = ["/", "/login", "/logout", "/oauth/github/start", "/oauth/x/callback", "/home",
             "/spawn/alice", "/stop/alice", "/api/users/alice/server/progress", "/password",
             "/token", "/token/abc/revoke", "/admin", "/admin/api/servers", "/admin/users",
             "/admin/users/bob/stop", "/history/alice", "/history/alice/file",
             "/handoff", "/metrics", "/api", "/api/users", "/api/openapi.json"]
    for path in paths:
        for method in ("GET", "POST"):
            response = await treq.request(method, "http://hub.test/hub" + path)
            body = (await response.content()).decode()
            assert (response.code, body) == (200, f"{group_of(path)} {path}"), (method, path)


@pytest_twisted.ensureDeferred
async def test_unknown_prefixes_are_not_found():
    treq = client()
    for path in ("/nothing", "/homes", "/adminx", "/apis", "/login2"):
        response = await treq.get("http://hub.test/hub" + path)
        assert response.code == 404, path


def test_every_route_of_every_group_is_on_the_map():
    for name, group in GROUPS.items():
        rules = list(group.app.url_map.iter_rules())
        assert rules, name
        for rule in rules:
            assert group_of(rule.rule) == name, (name, rule.rule)
