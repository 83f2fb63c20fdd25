"""/hub/api/openapi.json: a valid OpenAPI 3.1 document, built from the same table the
router serves, so every route served is described and every described route served
(checked on the live daemon both ways)."""

from __future__ import annotations

import os
import re

import pytest
import requests
from api_support import API, Client, make_token, openapi
from openapi_spec_validator import validate

from ipydoc.web.api.app import ApiPages
from ipydoc.web.api.endpoints import ENDPOINTS
from ipydoc.web.api.schemas import SCHEMAS

from support import Daemon

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
METRICS_TOKEN = "m" * 40


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("openapi")
    (root / "metrics-token").write_text(METRICS_TOKEN + "\n")
    os.chmod(root / "metrics-token", 0o600)
    d = Daemon(root, {"auth": {"start_on_login": False}, "history": {"enabled": False},
                      "metrics": {"token_file": str(root / "metrics-token")}})
    d.start()
    try:
        d.add_user("ada", "ada-password-1", admin=True)
        yield d
    finally:
        d.stop()
        d.cleanup_docker()


def concrete(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: {"name": "ada", "token_id": "0" * 16,
                                           "server": "gpu"}[m[1]], template)


def test_the_document_is_valid_openapi_3_1(site):
    doc = openapi(site.url)
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    assert set(doc["components"]["schemas"]) == set(SCHEMAS)
    for ops in doc["paths"].values():
        for op in ops.values():
            assert op["x-scope"] in ("", "any", "read", "servers", "admin")
            assert "401" in op["responses"] or op["x-scope"] == ""


def test_every_route_served_is_described_and_every_described_route_served(site):
    doc = openapi(site.url)
    described = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert described == {(e.method, e.full_path) for e in ENDPOINTS}
    # The group routes nothing but the table (one catch-all under /api).
    rules = sorted(r.rule for r in ApiPages.app.url_map.iter_rules())
    assert rules == ["/api", "/api/<path:rest>"]
    headers = {"Authorization": "token " + make_token(site, doc, "ada", "ada-password-1",
                                                      ["admin"])}
    for template, ops in doc["paths"].items():
        url = site.url + concrete(template)
        for method in METHODS:
            if method in ("POST", "DELETE") and template.endswith(("/server",
                                                                  "/servers/{server}")):
                continue  # served (tests/api/test_api_dashboard.py); no container here
            r = requests.request(method, url, headers=headers, timeout=30)
            if method.lower() in ops:
                assert r.status_code != 405, (method, template)
                if r.status_code == 404:
                    assert "no API endpoint" not in r.json()["error"]["message"]
            else:
                assert r.status_code == 405, (method, template, r.status_code)
                assert set(r.headers["Allow"].split(", ")) == {m.upper() for m in ops}


def test_a_switched_off_feature_is_described_too(site):
    doc = openapi(site.url)
    token = make_token(site, doc, "ada", "ada-password-1", ["read"])
    r = Client(site.url, doc, token).get("/users/ada/history")
    assert (r.status_code, r.json()["error"]["code"]) == (503, "unavailable")
    assert requests.get(site.url + API + "/openapi.json", timeout=10).headers[
        "Content-Type"] == "application/json"


def test_answers_are_counted_by_operation_and_status(site):
    doc = openapi(site.url)
    api = Client(site.url, doc, make_token(site, doc, "ada", "ada-password-1", ["read"]))
    for _ in range(3):
        api.get("/user")
    assert requests.get(site.url + API + "/nothing", headers=api.headers,
                        timeout=10).status_code == 404

    def count(operation: str, status: str) -> float:
        text = requests.get(site.url + "/hub/metrics", timeout=10, headers={
            "Authorization": "Bearer " + METRICS_TOKEN}).text
        found = re.search(r'^ipydoc_api_requests_total\{operation="%s",status="%s"\} (\S+)$'
                          % (operation, status), text, re.M)
        return float(found[1]) if found else 0.0

    assert count("users_me", "200") >= 3
    assert count("unmatched", "404") >= 1
