"""OpenID Connect login against a real provider on loopback (the npm package
``oidc-provider``, tests/oidc/provider.mjs) and the real daemon.

The provider's development interactions log in whoever the form names, so a login is
driven with plain HTTP as a browser would: ipydoc's start → the provider's /auth →
its login form → the redirect to ipydoc's callback.  Every refusal asserted here comes
from ipydoc's own checks (state, browser binding, nonce, signature, expiry, claims).
One provider and one daemon for the module; tests run in file order (key rotation last).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from support import Daemon, free_port, wait_for

OIDC_DIR = Path(__file__).parents[1] / "oidc"
SECRET = "ipydoc-secret"


def rsa_jwk(kid: str, private: bool = True) -> dict:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key if private else key.public_key()))
    jwk.pop("key_ops", None)
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


class Provider:
    """The node process of tests/oidc/provider.mjs; restartable with other keys."""

    def __init__(self, root: Path, redirect_uri: str) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.redirect_uri = redirect_uri
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, keys: list[dict], published: list[dict] | None = None) -> None:
        self.stop()
        path = self.root / "keys.json"
        path.write_text(json.dumps({"keys": keys, **({"published": published}
                                                      if published else {})}))
        env = {**os.environ, "OIDC_PORT": str(self.port), "OIDC_KEYS": str(path),
               "OIDC_REDIRECT_URI": self.redirect_uri}
        self.proc = subprocess.Popen(["node", "provider.mjs"], cwd=OIDC_DIR, env=env,
                                     stdout=open(self.root / "provider.log", "ab"),
                                     stderr=subprocess.STDOUT)

        def up() -> bool:
            assert self.proc.poll() is None, (self.root / "provider.log").read_text()
            try:
                return requests.get(self.url + "/jwks", timeout=1).ok
            except requests.RequestException:
                return False
        wait_for(up, 30)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if shutil.which("node") is None or not (OIDC_DIR / "node_modules").is_dir():
        pytest.fail("node and tests/oidc/node_modules are needed (scripts/bootstrap.sh --test)")
    root = tmp_path_factory.mktemp("oidc")
    daemon = Daemon(root / "ipydoc")
    provider = Provider(root, f"{daemon.url}/hub/oauth/lab/callback")
    provider.start([rsa_jwk("k1")])
    daemon.overrides = {
        "auth": {"start_on_login": False},
        "auth.oidc.lab": {
            "issuer": provider.url, "client_id": "ipydoc", "client_secret": SECRET,
            "scopes": ["openid", "email", "profile", "groups"],
            "allow.groups": ["lab"], "admin_claim": "groups", "admin_values": ["staff"],
            "display_name": "Lab ID", "leeway": 0.0, "jwks_refetch_interval": 1.0},
    }
    daemon.start()
    yield daemon, provider
    daemon.stop()
    daemon.cleanup_docker()
    provider.stop()


def to_provider(daemon: Daemon, nxt: str = "/hub/token",
                browser: requests.Session | None = None) -> tuple[requests.Session, str]:
    """Start a login at ipydoc; the browser and the provider URL it is sent to."""
    s = browser or requests.Session()
    r = s.get(daemon.url + "/hub/oauth/lab/start", params={"next": nxt},
              allow_redirects=False)
    assert r.status_code == 302, r.text
    return s, r.headers["Location"]


def at_provider(provider: Provider, s: requests.Session, auth_url: str, who: str) -> str:
    """Log ``who`` in at the provider; the callback URL it sends the browser to."""
    r = s.get(auth_url, allow_redirects=False)
    assert r.status_code == 303, r.text
    r = s.post(provider.url + r.headers["Location"], data={"prompt": "login", "login": who},
               allow_redirects=False)
    assert r.status_code == 303, r.text
    r = s.get(r.headers["Location"], allow_redirects=False)
    assert r.status_code == 303, r.text
    return r.headers["Location"]


def with_param(url: str, **changes: str) -> str:
    u = urlsplit(url)
    q = {k: v[0] for k, v in parse_qs(u.query).items()}
    return urlunsplit(u._replace(query=urlencode({**q, **changes})))


def oidc_login(site, who: str, nxt: str = "/hub/token") -> tuple[requests.Session, requests.Response, str]:
    daemon, provider = site
    s, auth_url = to_provider(daemon, nxt)
    callback = at_provider(provider, s, auth_url, who)
    return s, s.get(callback, allow_redirects=False), callback


def refused(r: requests.Response, words: str) -> None:
    assert r.status_code == 403, r.text
    assert words in r.text.replace("&#39;", "'"), r.text


def test_login_page_offers_the_provider_and_the_local_form(site):
    daemon, _ = site
    page = requests.get(daemon.url + "/hub/login?next=/hub/token").text
    assert 'href="/hub/oauth/lab/start?next=/hub/token"' in page
    assert "Log in with Lab ID" in page and 'name="password"' in page


def test_allowed_user_gets_in_with_an_account_made_at_first_login(site):
    daemon, _ = site
    s, r, _ = oidc_login(site, "alice", nxt="/hub/token")
    assert r.status_code == 303 and r.headers["Location"] == "/hub/token"
    home = s.get(daemon.url + "/hub/home")
    assert home.status_code == 200 and 'title="Logged in as alice"' in home.text
    assert s.get(daemon.url + "/hub/admin").status_code == 200  # groups has "staff"
    listed = json.loads(daemon.cli("user", "show", "alice", "--json").stdout)
    assert listed["admin"] is True and listed["disabled"] is False
    # the binding cookie was used up; the password form cannot log into this account
    r = requests.post(daemon.url + "/hub/login", data={"username": "alice", "password": ""})
    assert r.status_code == 403


def test_next_stays_on_this_site(site):
    _, r, _ = oidc_login(site, "alice", nxt="//evil.example/x")
    assert r.status_code == 303 and r.headers["Location"].startswith("/")
    assert "evil.example" not in r.headers["Location"]


def test_user_not_in_the_group_is_refused_with_the_reason(site):
    daemon, _ = site
    s, r, callback = oidc_login(site, "bob")
    refused(r, "Your account at Lab ID is not allowed here: it needs groups lab.")
    assert s.get(daemon.url + "/hub/home", allow_redirects=False).status_code == 302
    log = daemon.log()
    assert "groups is ['other'], needs one of ['lab']" in log
    code = parse_qs(urlsplit(callback).query)["code"][0]
    assert SECRET not in log and code not in log


def test_tampered_state_is_refused(site):
    daemon, provider = site
    s, auth_url = to_provider(daemon)
    callback = at_provider(provider, s, auth_url, "alice")
    state = parse_qs(urlsplit(callback).query)["state"][0]
    r = s.get(with_param(callback, state=state[:-2] + ("AA" if state[-2:] != "AA" else "BB")),
              allow_redirects=False)
    refused(r, "This login has expired or was started in another browser")
    assert s.get(daemon.url + "/hub/home", allow_redirects=False).status_code == 302


def test_callback_in_another_browser_is_refused(site):
    """Login CSRF: a code/state pair from someone else's login does not log you in."""
    daemon, provider = site
    attacker, auth_url = to_provider(daemon)
    callback = at_provider(provider, attacker, auth_url, "alice")
    victim = requests.Session()
    refused(victim.get(callback, allow_redirects=False), "started in another browser")
    assert victim.get(daemon.url + "/hub/home", allow_redirects=False).status_code == 302


def test_replayed_code_is_refused(site):
    daemon, _ = site
    s, r, callback = oidc_login(site, "alice")
    assert r.status_code == 303
    refused(s.get(callback, allow_redirects=False), "This login has expired")
    # the used code under a fresh state of the same browser: the provider refuses it
    _, fresh = to_provider(daemon, browser=s)
    state = parse_qs(urlsplit(fresh).query)["state"][0]
    refused(s.get(with_param(callback, state=state), allow_redirects=False),
            "The login provider could not complete the login")
    assert "token endpoint: HTTP 400, error 'invalid_grant'" in daemon.log()


def test_wrong_nonce_is_refused(site):
    daemon, provider = site
    s, auth_url = to_provider(daemon)
    callback = at_provider(provider, s, with_param(auth_url, nonce="not-the-nonce"), "alice")
    refused(s.get(callback, allow_redirects=False), "could not be verified")
    assert "ID token nonce does not match this login" in daemon.log()


def test_expired_id_token_is_refused(site):
    daemon, provider = site
    requests.post(provider.url + "/__test/expired?on=1").raise_for_status()
    try:
        s, r, _ = oidc_login(site, "alice")
    finally:
        requests.post(provider.url + "/__test/expired?on=0").raise_for_status()
    refused(r, "could not be verified")
    assert "ID token expired" in daemon.log()


def test_name_of_a_local_account_is_not_taken_over(site):
    daemon, _ = site
    daemon.add_user("carol", "carol-local-password-1")
    _, r, _ = oidc_login(site, "carol")
    refused(r, "The user name carol already belongs to another account on this site")
    listed = json.loads(daemon.cli("user", "show", "carol", "--json").stdout)
    assert listed["admin"] is False


def test_disabled_user_loses_sessions_and_cannot_log_in(site):
    daemon, _ = site
    s, r, _ = oidc_login(site, "alice")
    assert s.get(daemon.url + "/hub/home", allow_redirects=False).status_code == 200
    out = daemon.cli("user", "disable", "alice")
    assert out.returncode == 0, out.stderr
    assert s.get(daemon.url + "/hub/home", allow_redirects=False).status_code == 302
    _, r, _ = oidc_login(site, "alice")
    refused(r, "This account is disabled.")
    assert daemon.cli("user", "enable", "alice").returncode == 0
    assert oidc_login(site, "alice")[1].status_code == 303


def test_key_rotation_is_followed(site):
    daemon, provider = site
    assert oidc_login(site, "alice")[1].status_code == 303  # k1 is cached by now
    provider.start([rsa_jwk("k2")])  # the provider now signs with a key ipydoc never saw
    time.sleep(1.1)  # jwks_refetch_interval
    s, r, _ = oidc_login(site, "alice")
    assert r.status_code == 303, r.text
    assert 'title="Logged in as alice"' in s.get(daemon.url + "/hub/home").text


def test_wrongly_signed_id_token_is_refused(site):
    daemon, provider = site
    # signs with k3, but the JWKS it publishes holds another key under the name k3
    impostor = {k: v for k, v in rsa_jwk("k3").items() if k in ("kty", "n", "e", "kid", "use",
                                                                   "alg")}
    provider.start([rsa_jwk("k3")], published=[impostor])
    time.sleep(1.1)
    _, r, _ = oidc_login(site, "alice")
    refused(r, "could not be verified")
    assert "ID token signature does not verify" in daemon.log()
