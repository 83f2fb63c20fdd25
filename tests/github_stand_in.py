"""A small loopback stand-in of the GitHub endpoints ipydoc uses (authorize,
access_token, /user, organisation and team memberships).  It answers as GitHub
documents; what ipydoc decides is what the tests check.
"""

from __future__ import annotations

import json
import re
import secrets
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlencode, urlsplit

# login → (id, {org: membership state or HTTP status}, {org/team: state or status})
PEOPLE = {
    "Octo-Cat": (101, {"acme": "active"}, {"acme/admins": "active"}),
    "stranger": (102, {"acme": 404}, {}),
    "invitee": (103, {"acme": "pending"}, {}),
    "flaky": (104, {"acme": 502}, {}),
    "teamie": (105, {"acme": 404}, {"acme/lab": "active"}),
}


class GitHubStandIn(BaseHTTPRequestHandler):
    codes: dict[str, str] = {}
    tokens: dict[str, str] = {}
    next_login = "Octo-Cat"
    scopes: list[str] = []

    def log_message(self, *args):  # quiet
        pass

    def reply(self, code: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def who(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return self.tokens.get(auth.removeprefix("Bearer "))

    def do_GET(self):  # noqa: N802
        u = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        if u.path == "/login/oauth/authorize":
            code = secrets.token_hex(10)
            self.codes[code] = type(self).next_login
            type(self).scopes.append(q.get("scope", ""))
            self.reply(302, {}, {"Location": q["redirect_uri"] + "?" + urlencode(
                {"code": code, "state": q["state"]})})
            return
        login = self.who()
        if login is None:
            self.reply(401, {"message": "Bad credentials"})
            return
        uid, orgs, teams = PEOPLE[login]
        if u.path == "/api/user":
            self.reply(200, {"login": login, "id": uid})
            return
        m = re.fullmatch(r"/api/user/memberships/orgs/([^/]+)", u.path)
        t = re.fullmatch(r"/api/orgs/([^/]+)/teams/([^/]+)/memberships/([^/]+)", u.path)
        if m:
            answer = orgs.get(m.group(1), 404)
        elif t and t.group(3) == login:
            answer = teams.get(f"{t.group(1)}/{t.group(2)}", 404)
        else:
            answer = 404
        if isinstance(answer, int):
            self.reply(answer, {"message": "Not Found" if answer == 404 else "Server Error"})
        else:
            self.reply(200, {"state": answer, "role": "member"})

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        form = {k: v[0] for k, v in parse_qs(body).items()}
        if self.path != "/login/oauth/access_token" or form.get("client_secret") != "gh-secret":
            self.reply(200, {"error": "incorrect_client_credentials"})
            return
        login = self.codes.pop(form.get("code", ""), None)
        if login is None:
            self.reply(200, {"error": "bad_verification_code"})
            return
        token = "gho_" + secrets.token_hex(16)
        self.tokens[token] = login
        self.reply(200, {"access_token": token, "token_type": "bearer", "scope": "read:org"})
