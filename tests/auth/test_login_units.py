"""Login-provider pieces that need no provider: the JWKS cache's rotation rule, the
config tables' errors, the README example and the access-log scrubbing."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import jwt
import pytest
import pytest_twisted
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet.task import Clock

from ipydoc.auth.jwks import KeyNotFound, KeySet
from ipydoc.config.errors import ConfigError
from ipydoc.config.load import from_dict
from ipydoc.edge.access_log import scrub_uri


def rsa_jwk(kid: str) -> dict:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key)), "kid": kid, "use": "sig",
            "alg": "RS256"}


def public(jwk: dict) -> dict:
    return {k: jwk[k] for k in ("kty", "n", "e", "kid", "use", "alg")}


@pytest_twisted.ensureDeferred
async def test_unknown_kid_refetches_once_per_interval():
    clock = Clock()
    published = {"keys": [public(rsa_jwk("k1"))]}
    fetched = []

    async def fetch():
        fetched.append(clock.seconds())
        return published

    keys = KeySet(fetch, clock.seconds, refetch_interval=30)
    assert (await keys.key_for("k1", "RS256")).key_id == "k1"
    published = {"keys": [public(rsa_jwk("k2"))]}
    clock.advance(5)
    with pytest.raises(KeyNotFound):  # too soon after the last fetch: no refetch
        await keys.key_for("k2", "RS256")
    assert len(fetched) == 1
    clock.advance(30)
    assert (await keys.key_for("k2", "RS256")).key_id == "k2"  # rotated: refetched once
    assert len(fetched) == 2
    with pytest.raises(KeyNotFound):
        await keys.key_for("k2", "ES256")  # the key is for RS256 only


GOOD_OIDC = {"issuer": "https://id.example.org", "client_id": "c", "client_secret": "s",
             "allow": {"groups": ["lab"]}}


@pytest.mark.parametrize("auth, message", [
    ({"github": {"client_id": "c", "client_secret": "s"}}, "auth.github: set orgs, teams or users"),
    ({"github": {"client_id": "c", "client_secret": "s", "orgs": ["o"], "teams": ["lab"]}},
     'auth.github.teams entries are "org/team-slug"'),
    ({"github": {"client_id": "c", "orgs": ["o"]}}, "auth.github.client_secret (or client_secret_file) must be set"),
    ({"github": {"client_id": "c", "client_secret": "s", "orgs": ["o"], "url": "http://gh.example"}},
     "auth.github.url must be an https:// URL"),
    ({"github": {"client_id": "c", "client_secret_file": "/nonexistent/secret", "orgs": ["o"]}},
     "auth.github.client_secret_file: cannot read"),
    ({"oidc": {"kc": {**GOOD_OIDC, "allow": {}}}}, "auth.oidc.kc: set allow"),
    ({"oidc": {"kc": {**GOOD_OIDC, "algorithms": ["none"]}}}, "auth.oidc.kc.algorithms must"),
    ({"oidc": {"kc": {**GOOD_OIDC, "scopes": ["email"]}}}, 'auth.oidc.kc.scopes must contain "openid"'),
    ({"oidc": {"Bad_Id": GOOD_OIDC}}, "[auth.oidc.Bad_Id]: a provider id is"),
    ({"oidc": {"kc": {**GOOD_OIDC, "isuer": "x"}}}, "unknown key auth.oidc.kc.isuer"),
    ({"local": False}, "auth.local = false needs a login provider"),
])
def test_provider_tables_refuse_mistakes_naming_the_key(auth, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        from_dict({"auth": auth})


def test_readme_example_is_a_valid_config(tmp_path):
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Login providers", 1)[1]
    example = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    example = re.sub(r'"/etc/ipydoc/[a-z-]+secret"', f'"{secret}"', example)
    cfg = from_dict(tomllib.loads(example))
    assert cfg.auth.github.teams == ["acme/data-lab"]
    assert cfg.auth.oidc["keycloak"].allow == {"groups": ["data-lab"]}
    assert cfg.auth.oidc["google"].allow == {"hd": ["example.org"]}


def test_access_log_masks_codes_and_tokens():
    uri = b"/hub/oauth/github/callback?code=abc123&state=xyz&x=1&token=t0k"
    assert scrub_uri(uri) == b"/hub/oauth/github/callback?code=...&state=...&x=1&token=..."
