"""A small loopback stand-in of the GitHub endpoints ipydoc uses (authorize,
access_token, /user, organisation and team memberships, repositories and git push over
smart HTTP).  It answers as GitHub documents; what ipydoc decides is what the tests check.

Repositories (issue 18): ``POST /api/user/repos`` makes a bare repository under
:attr:`GitHubStandIn.git_root` (set it to a temporary directory first), ``GET
/api/repos/{owner}/{repo}`` reads one, and ``/{owner}/{repo}.git/...`` runs the real
``git http-backend`` as CGI behind the token (``Authorization: Basic`` with the token as
password, as git sends it, or ``Bearer``).  Tests revoke a token (:meth:`revoke`), delete
a repository (:meth:`delete_repo`) and count git requests (:attr:`git_requests`).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

# login → (id, {org: membership state or HTTP status}, {org/team: state or status})
PEOPLE = {
    "Octo-Cat": (101, {"acme": "active"}, {"acme/admins": "active"}),
    "stranger": (102, {"acme": 404}, {}),
    "invitee": (103, {"acme": "pending"}, {}),
    "flaky": (104, {"acme": 502}, {}),
    "teamie": (105, {"acme": 404}, {"acme/lab": "active"}),
}

_GIT = re.compile(r"/([A-Za-z0-9-]+)/([A-Za-z0-9._-]+)\.git(/.*)")


class GitHubStandIn(BaseHTTPRequestHandler):
    codes: dict[str, str] = {}
    tokens: dict[str, str] = {}  # token → login (OAuth and fine-grained alike)
    next_login = "Octo-Cat"
    scopes: list[str] = []
    git_root: Path | None = None  # bare repositories: {git_root}/{owner}/{repo}.git
    git_requests: list[tuple[str, str, int]] = []  # (repo "owner/name", path, status)
    protected: set[str] = set()  # "owner/name" whose main refuses every push

    def log_message(self, *args):  # quiet
        pass

    # -- what tests do to the stand-in ----------------------------------------------------
    @classmethod
    def revoke(cls, token: str) -> None:
        cls.tokens.pop(token, None)

    @classmethod
    def delete_repo(cls, owner: str, repo: str) -> None:
        assert cls.git_root is not None
        shutil.rmtree(cls.git_root / owner / f"{repo}.git", ignore_errors=True)

    @classmethod
    def make_repo(cls, owner: str, repo: str) -> Path:
        assert cls.git_root is not None
        path = cls.git_root / owner / f"{repo}.git"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
            hook = path / "hooks" / "pre-receive"
            hook.write_text("#!/bin/sh\n[ -e \"$GIT_DIR/protected\" ] && "
                            "{ echo 'protected branch hook declined' >&2; exit 1; }\nexit 0\n")
            hook.chmod(0o755)
        return path

    @classmethod
    def requests_to(cls, full_name: str) -> int:
        return sum(1 for repo, _, _ in cls.git_requests if repo == full_name)

    # -- answers ---------------------------------------------------------------------------
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
        if auth.startswith("Basic "):
            try:
                _, _, token = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return None
            return self.tokens.get(token)
        return self.tokens.get(auth.removeprefix("Bearer "))

    def body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def do_GET(self):  # noqa: N802
        u = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        if _GIT.fullmatch(u.path):
            self.git(u.path, u.query, b"")
            return
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
        r = re.fullmatch(r"/api/repos/([^/]+)/([^/]+)", u.path)
        if r:
            path = self.git_root / r.group(1) / f"{r.group(2)}.git" if self.git_root else None
            if r.group(1) == login and path is not None and path.exists():
                self.reply(200, {"name": r.group(2), "full_name": f"{login}/{r.group(2)}",
                                 "private": True})
            else:
                self.reply(404, {"message": "Not Found"})
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
        u = urlsplit(self.path)
        if _GIT.fullmatch(u.path):
            self.git(u.path, u.query, self.body())
            return
        raw = self.body()
        if u.path == "/api/user/repos":
            login = self.who()
            if login is None:
                self.reply(401, {"message": "Bad credentials"})
                return
            name = json.loads(raw).get("name", "")
            if not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", name):
                self.reply(422, {"message": "Repository creation failed."})
                return
            if (self.git_root / login / f"{name}.git").exists():
                self.reply(422, {"message": "Repository creation failed.", "errors": [
                    {"message": "name already exists on this account"}]})
                return
            self.make_repo(login, name)
            self.reply(201, {"name": name, "full_name": f"{login}/{name}", "private": True})
            return
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        if self.path != "/login/oauth/access_token" or form.get("client_secret") != "gh-secret":
            self.reply(200, {"error": "incorrect_client_credentials"})
            return
        login = self.codes.pop(form.get("code", ""), None)
        if login is None:
            self.reply(200, {"error": "bad_verification_code"})
            return
        token = "gho_" + secrets.token_hex(16)
        self.tokens[token] = login
        self.reply(200, {"access_token": token, "token_type": "bearer",
                         "scope": self.scopes[-1] if self.scopes else "read:org"})

    # -- git smart HTTP ------------------------------------------------------------------
    def git(self, path: str, query: str, body: bytes) -> None:
        owner, repo, rest = _GIT.fullmatch(path).groups()
        full = f"{owner}/{repo}"
        login = self.who()
        where = self.git_root / owner / f"{repo}.git" if self.git_root else None
        if login is None:
            status = 401
        elif login != owner or where is None or not where.exists():
            status = 404
        else:
            status = 0
        if status:
            type(self).git_requests.append((full, rest, status))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if full in self.protected:
            (where / "protected").touch()
        else:
            (where / "protected").unlink(missing_ok=True)
        env = {"PATH": os.environ.get("PATH", ""), "GIT_PROJECT_ROOT": str(self.git_root),
               "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": f"/{owner}/{repo}.git{rest}",
               "QUERY_STRING": query, "REQUEST_METHOD": self.command, "REMOTE_USER": login,
               "REMOTE_ADDR": "127.0.0.1", "CONTENT_LENGTH": str(len(body)),
               "CONTENT_TYPE": self.headers.get("Content-Type", ""),
               "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
               "GIT_HTTP_MAX_REQUEST_BUFFER": "100M"}
        out = subprocess.run(["git", "http-backend"], input=body, env=env,
                             capture_output=True, timeout=120).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = out.partition(b"\n\n")
        headers = [line.split(b":", 1) for line in head.splitlines() if b":" in line]
        status = 200
        for k, v in headers:
            if k.strip().lower() == b"status":
                status = int(v.split()[0])
        type(self).git_requests.append((full, rest, status))
        self.send_response(status)
        for k, v in headers:
            if k.strip().lower() != b"status":
                self.send_header(k.strip().decode(), v.strip().decode())
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
