"""Helpers of the API tests: a client that checks every answer against the daemon's own
OpenAPI document (the schema of the status it answered with), and tokens made the way a
user makes them (their session, CSRF and Origin)."""

from __future__ import annotations

import subprocess
from typing import Any

import jsonschema
import requests

from support import Daemon, csrf_of, login, progress_steps

API = "/hub/api"


def openapi(base: str) -> dict[str, Any]:
    r = requests.get(base + API + "/openapi.json", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def operation(doc: dict[str, Any], method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The document's path template and operation for a concrete ``path``."""
    for template, ops in doc["paths"].items():
        parts, concrete = template.split("/"), path.split("?")[0].split("/")
        if len(parts) == len(concrete) and all(
                p == c or (p.startswith("{") and p.endswith("}")) for p, c in
                zip(parts, concrete)) and method.lower() in ops:
            return template, ops[method.lower()]
    raise AssertionError(f"{method} {path} is not in the OpenAPI document")


def validate(doc: dict[str, Any], schema: dict[str, Any], value: Any) -> None:
    """``value`` against ``schema`` (a ``$ref`` into the document's components)."""
    jsonschema.Draft202012Validator({**doc, **schema}).validate(value)


def check_answer(doc: dict[str, Any], method: str, path: str, r: requests.Response) -> None:
    """The answer is what the document says for its status: the declared schema, or the
    one error shape for every failure."""
    _, op = operation(doc, method, path)
    declared = op["responses"].get(str(r.status_code))
    assert declared is not None, (method, path, r.status_code, r.text)
    if "$ref" in declared:
        declared = doc["components"]["responses"][declared["$ref"].split("/")[-1]]
    content = declared.get("content", {})
    if not content:
        assert r.content == b"", r.content
        return
    media = r.headers["Content-Type"].split(";")[0]
    assert media in content, (media, list(content))
    if media == "application/json":
        validate(doc, content[media]["schema"], r.json())
    if r.status_code >= 400:
        error = r.json()["error"]
        assert error["status"] == r.status_code and error["code"] and error["message"]


class Client:
    """Calls the API as one caller and checks every answer against the document."""

    def __init__(self, base: str, doc: dict[str, Any], token: str = "",
                 session: requests.Session | None = None, csrf: str = "") -> None:
        self.base, self.doc = base, doc
        self.http = session or requests.Session()
        self.headers = {"Authorization": f"token {token}"} if token else {}
        if csrf:
            self.headers.update({"X-CSRF-Token": csrf, "Origin": base})

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> requests.Response:
        headers = {**self.headers, **kw.pop("headers", {})}
        r = self.http.request(method, self.base + API + path, json=body, headers=headers,
                              timeout=kw.pop("timeout", 60), **kw)
        check_answer(self.doc, method, API + path, r)
        return r

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> requests.Response:
        return self.call("POST", path, body, **kw)

    def patch(self, path: str, body: Any = None, **kw: Any) -> requests.Response:
        return self.call("PATCH", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.call("DELETE", path, **kw)


def session_client(d: Daemon, doc: dict[str, Any], name: str, password: str) -> Client:
    s, r = login(d.url, name, password)
    assert r.status_code == 303, r.text
    return Client(d.url, doc, session=s, csrf=csrf_of(s, d.url))


def make_token(d: Daemon, doc: dict[str, Any], name: str, password: str,
               scopes: list[str]) -> str:
    """A token made by its user through the API with their login session."""
    r = session_client(d, doc, name, password).post(
        f"/users/{name}/tokens", {"note": "test", "scopes": scopes, "expires_in": 3600})
    assert r.status_code == 201, r.text
    assert r.json()["info"]["scopes"] == scopes
    return r.json()["token"]


def follow(base: str, name: str, headers: dict[str, str], timeout: float = 120) -> list[dict]:
    """The progress stream's steps until a final one."""
    return progress_steps(f"{base}{API}/users/{name}/server/progress", headers=headers,
                          timeout=timeout)


def redis_cli(d: Daemon, *args: str) -> str:
    sock = d.root / "state" / "redis" / "redis.sock"
    return subprocess.run(["redis-cli", "-s", str(sock), *args], capture_output=True,
                          text=True, check=True).stdout.strip()
