"""Who may call what on /hub/api/, against the real daemon: scopes, owners and admins,
cookies with and without CSRF and Origin, revoked and legacy tokens, and the one error
shape for every refusal (each answer checked against the OpenAPI document)."""

from __future__ import annotations

import hashlib
import secrets

import pytest
import requests
from api_support import API, Client, make_token, openapi, redis_cli, session_client

from support import Daemon

PW = {"ada": "ada-password-1", "bob": "bob-password-1", "cy": "cy-password-1"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("api"), {"auth": {"start_on_login": False}})
    d.start()
    try:
        d.add_user("ada", PW["ada"], admin=True)
        d.add_user("bob", PW["bob"])
        d.add_user("cy", PW["cy"])
        yield d
    finally:
        d.stop()
        d.cleanup_docker()


@pytest.fixture(scope="module")
def doc(site):
    return openapi(site.url)


def code(r: requests.Response) -> tuple[int, str]:
    return r.status_code, r.json()["error"]["code"]


def test_no_credential_is_401_with_a_challenge(site, doc):
    api = Client(site.url, doc)
    for path in ("/user", "/users", "/users/bob", "/users/bob/tokens", "/events"):
        r = api.get(path)
        assert code(r) == (401, "unauthorized"), path
        assert r.headers["WWW-Authenticate"].startswith("token ")
    assert code(api.post("/users/bob/server", {})) == (401, "unauthorized")
    bad = Client(site.url, doc, "ipd_" + "x" * 43)
    assert code(bad.get("/user")) == (401, "unauthorized")
    basic = api.get("/user", headers={"Authorization": "Basic Ym9iOng="})
    assert code(basic) == (401, "unauthorized")
    # Public: the root and the description.
    assert api.get("").json()["openapi"] == API + "/openapi.json"


def test_a_read_token_reads_but_cannot_start_nor_use_the_server(site, doc):
    api = Client(site.url, doc, make_token(site, doc, "bob", PW["bob"], ["read"]))
    assert api.get("/users/bob").json()["server"]["state"] == "stopped"
    assert set(api.get("/user").json()["scopes"]) == {"read"}
    assert code(api.post("/users/bob/server", {})) == (403, "missing_scope")
    assert code(api.delete("/users/bob/server")) == (403, "missing_scope")
    assert code(api.post("/users/bob/tokens", {"scopes": ["read"]})) == (403, "missing_scope")
    assert not site.containers("bob")
    proxied = requests.get(site.url + "/user/bob/api/status", headers=api.headers, timeout=10)
    assert proxied.status_code == 403 and "servers" in proxied.json()["message"]


def test_a_user_cannot_touch_another_user(site, doc):
    api = Client(site.url, doc, make_token(site, doc, "bob", PW["bob"], ["servers"]))
    for method, path in (("GET", "/users/cy"), ("GET", "/users/cy/server"),
                         ("POST", "/users/cy/server"), ("DELETE", "/users/cy/server"),
                         ("GET", "/users/cy/tokens"), ("GET", "/users/cy/history"),
                         ("GET", "/users/nobody"), ("PATCH", "/users/bob"),
                         ("GET", "/users"), ("GET", "/servers")):
        r = api.call(method, path, {} if method in ("POST", "PATCH") else None)
        assert code(r) == (403, "forbidden"), (method, path)
    assert code(api.get("/events?user=cy")) == (403, "forbidden")
    own = api.get("/events").json()["items"]
    assert own and {e["user"] for e in own} == {"bob"}
    # Not even its own account's admin flag.
    assert code(api.patch("/users/bob", {"admin": True})) == (403, "forbidden")


def test_admins_act_on_others_only_with_the_admin_scope(site, doc):
    plain = Client(site.url, doc, make_token(site, doc, "ada", PW["ada"], ["servers"]))
    assert code(plain.get("/users/bob")) == (403, "missing_scope")
    assert code(plain.get("/users")) == (403, "missing_scope")
    admin = Client(site.url, doc, make_token(site, doc, "ada", PW["ada"], ["admin"]))
    assert admin.get("/users/bob").json()["name"] == "bob"
    assert code(admin.get("/users/nobody")) == (404, "not_found")
    assert code(admin.get("/users/Not_A_Name")) == (400, "invalid_name")
    # Tokens stay their own user's, admins included.
    assert code(admin.get("/users/bob/tokens")) == (403, "forbidden")
    # Add, grant, withdraw, disable, enable.
    added = admin.post("/users", {"name": "dee", "password": "dee-password-1"})
    assert added.status_code == 201 and added.json()["admin"] is False
    assert code(admin.post("/users", {"name": "dee", "password": "dee-password-1"})) == \
        (409, "conflict")
    assert code(admin.post("/users", {"name": "Dee!", "password": "dee-password-1"})) == \
        (400, "invalid_name")
    assert code(admin.post("/users", {"name": "eve", "password": "short"})) == \
        (400, "invalid_field")
    assert admin.patch("/users/dee", {"admin": True}).json()["admin"] is True
    dee = Client(site.url, doc, make_token(site, doc, "dee", "dee-password-1", ["admin"]))
    assert dee.get("/users").status_code == 200
    admin.patch("/users/dee", {"admin": False})
    # The admin scope counts only while its user is an admin.
    assert code(dee.get("/users")) == (403, "forbidden")
    assert dee.get("/user").json()["admin"] is False
    # An admin group counts as the flag does (the one admin rule).
    site.cli("group", "add", "staff", "--admin")
    site.cli("group", "members", "add", "staff", "dee")
    assert dee.get("/users").status_code == 200 and dee.get("/user").json()["admin"] is True
    site.cli("group", "remove", "staff")
    assert code(dee.get("/users")) == (403, "forbidden")
    assert admin.patch("/users/dee", {"disabled": True}).json()["disabled"] is True
    assert code(dee.get("/user")) == (403, "forbidden")
    assert code(admin.patch("/users/ada", {"disabled": True})) == (409, "conflict")
    assert admin.patch("/users/dee", {"disabled": False}).json()["disabled"] is False
    assert dee.get("/user").status_code == 200
    kinds = [e["kind"] for e in admin.get("/events?user=dee").json()["items"]]
    assert kinds[:1] == ["user-add"] and "user-disable" in kinds and "user-enable" in kinds


def test_a_token_cannot_mint_scopes_it_lacks(site, doc):
    bob = Client(site.url, doc, make_token(site, doc, "bob", PW["bob"], ["servers"]))
    assert bob.post("/users/bob/tokens", {"scopes": ["read"]}).status_code == 201
    assert code(bob.post("/users/bob/tokens", {"scopes": ["admin"]})) == (400, "invalid_field")
    ada = Client(site.url, doc, make_token(site, doc, "ada", PW["ada"], ["servers"]))
    assert code(ada.post("/users/ada/tokens", {"scopes": ["admin"]})) == (403, "missing_scope")


def test_cookie_requests_follow_the_pages_csrf_and_origin_rule(site, doc):
    browser = session_client(site, doc, "cy", PW["cy"])
    csrf = browser.headers["X-CSRF-Token"]
    bare = Client(site.url, doc, session=browser.http)  # the cookie, nothing else
    assert bare.get("/users/cy").json()["name"] == "cy"       # reads need no CSRF
    assert code(bare.post("/users/cy/tokens", {"note": "x"})) == (403, "csrf")
    assert code(bare.post("/users/cy/tokens", {"note": "x"}, headers={
        "X-CSRF-Token": csrf, "Origin": "https://evil.example"})) == (403, "csrf")
    assert code(bare.post("/users/cy/tokens", {"note": "x"}, headers={
        "X-CSRF-Token": "wrong", "Origin": site.url})) == (403, "csrf")
    made = browser.post("/users/cy/tokens", {"note": "x", "scopes": ["read"]})
    assert made.status_code == 201
    assert made.json()["info"]["scopes"] == ["read"]
    listed = browser.get("/users/cy/tokens").json()["items"]
    assert made.json()["info"]["id"] in [t["id"] for t in listed]


def test_a_revoked_token_is_401_at_once(site, doc):
    token = make_token(site, doc, "cy", PW["cy"], ["servers"])
    api = Client(site.url, doc, token)
    token_id = hashlib.sha256(token.encode()).hexdigest()[:16]
    assert token_id in [t["id"] for t in api.get("/users/cy/tokens").json()["items"]]
    r = api.delete(f"/users/cy/tokens/{token_id}")
    assert r.status_code == 204
    assert code(api.get("/user")) == (401, "unauthorized")
    other = Client(site.url, doc, make_token(site, doc, "cy", PW["cy"], ["servers"]))
    assert code(other.delete(f"/users/cy/tokens/{token_id}")) == (404, "not_found")


def test_a_token_from_before_scopes_keeps_its_access(site, doc):
    token = "ipd_" + secrets.token_urlsafe(32)
    digest = hashlib.sha256(token.encode()).hexdigest()
    redis_cli(site, "HSET", f"ipydoc:token:{digest}", "user", "bob", "note", "old",
              "created", "1", "expires", "", "last_used", "")
    redis_cli(site, "SADD", "ipydoc:user-tokens:bob", digest)
    api = Client(site.url, doc, token)
    assert sorted(api.get("/user").json()["scopes"]) == ["read", "servers"]
    # Through the proxy it gets past the credential and owner steps, as before.
    r = requests.get(site.url + "/user/bob/api/status", headers=api.headers, timeout=10)
    assert r.status_code == 503 and "not running" in r.json()["message"]


def test_every_malformed_request_gets_the_one_error_shape(site, doc):
    admin = Client(site.url, doc, make_token(site, doc, "ada", PW["ada"], ["admin"]))
    h = admin.headers
    raw = f"{site.url}{API}/users"
    cases = [
        (requests.post(raw, data=b"{nope", headers={**h, "Content-Type": "application/json"}),
         400, "invalid_json"),
        (requests.post(raw, data=b"[1]", headers={**h, "Content-Type": "application/json"}),
         400, "invalid_json"),
        (requests.post(raw, data=b"name=x", headers={
            **h, "Content-Type": "application/x-www-form-urlencoded"}), 400, "unknown_field"),
        (requests.post(raw, data=b'{"name": "x"}', headers={**h, "Content-Type": "text/plain"}),
         415, "unsupported_media_type"),
        (requests.post(raw, data=b'{"name": "' + b"a" * 20000 + b'"}',
                       headers={**h, "Content-Type": "application/json"}),
         413, "payload_too_large"),
        (requests.put(raw, headers=h), 405, "method_not_allowed"),
        (requests.get(f"{site.url}{API}/nothing", headers=h), 404, "not_found"),
    ]
    for r, status, expected in cases:
        assert r.headers["Content-Type"] == "application/json", r.text
        assert r.json() == {"error": {"status": status, "code": expected,
                                      "message": r.json()["error"]["message"]}}, r.text
    assert code(admin.post("/users", {"name": "x", "password": "p" * 12, "role": "x"})) == \
        (400, "unknown_field")
    assert code(admin.post("/users", {"name": 5, "password": "p" * 12})) == \
        (400, "invalid_field")
    assert code(admin.patch("/users/bob", {})) == (400, "invalid_field")
    assert code(admin.get("/users?limit=100000")) == (400, "invalid_field")
    assert code(admin.get("/users?limit=x")) == (400, "invalid_field")
    assert code(admin.get("/users?page=2")) == (400, "unknown_field")
    assert code(admin.get("/events?after=nope")) == (400, "invalid_field")
    assert code(admin.post("/users/ada/tokens", {"scopes": ["root"]})) == (400, "invalid_field")
    assert code(admin.post("/users/ada/tokens", {"expires_in": -1})) == (400, "invalid_field")
    assert code(admin.get("/users/ada/history/versions?path=../etc/passwd")) == (400, "invalid_field")
    assert code(admin.get("/users/ada/history/version?path=a.ipynb&rev=zz")) == \
        (400, "invalid_field")
    assert requests.put(raw, headers=h).headers["Allow"] == "GET, POST"
