"""OpenID Connect login (Google, GitLab, Keycloak, Azure AD, Dex, ...).

Authorisation code flow with PKCE (S256), ``state`` and ``nonce``.  The discovery
document (``{issuer}/.well-known/openid-configuration``) is read once and kept; the ID
token's signature is checked with PyJWT against the provider's JWKS (:mod:`.jwks`, which
follows key rotation), and ``iss``, ``aud`` (and ``azp`` when there are several
audiences), ``exp``/``iat`` (with ``leeway``), ``nonce`` and the algorithm (from the
configured list; ``none`` and HMAC are never accepted) are checked before any claim is
believed.  The user name comes from ``username_claim`` through the one name validator.
"""

from __future__ import annotations

import base64
import hmac
from typing import Any
from urllib.parse import quote, urlencode

import jwt
from twisted.logger import Logger

from ipydoc.auth.base import HTTP, Identity, Refused
from ipydoc.auth.jwks import KeyNotFound, KeySet
from ipydoc.config.auth import OidcAuth
from ipydoc.names import InvalidName, validate_name

PROVIDER_ERROR = "The login provider could not complete the login; try again later."
BAD_TOKEN = "The login provider's answer could not be verified, so you were not logged in."


def _claim_values(value: Any) -> list[str]:
    """A claim as a list of strings (a list claim such as ``groups``, or one value)."""
    items = value if isinstance(value, list) else [value]
    return [str(v).lower() if isinstance(v, bool) else str(v) for v in items if v is not None]


def _true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


class OidcProvider:
    log = Logger()

    def __init__(self, pid: str, settings: OidcAuth, secret: str, http: HTTP,
                 now: Any) -> None:
        self.id = pid
        self.settings = settings
        self.display_name = settings.display_name or pid
        self._secret = secret
        self.http = http
        self._now = now
        self._discovery: dict[str, Any] | None = None
        self.keys = KeySet(self._fetch_jwks, now, settings.jwks_refetch_interval)

    @property
    def issuer(self) -> str:
        return self.settings.issuer.rstrip("/")

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            reply = await self.http.request("GET", url)
        except Exception as e:  # noqa: BLE001 - any transport failure is a provider error
            raise Refused(PROVIDER_ERROR, f"{what}: {e.__class__.__name__}: {e}") from None
        data = reply.json()
        if reply.code != 200 or not isinstance(data, dict):
            raise Refused(PROVIDER_ERROR, f"{what}: HTTP {reply.code}")
        return data

    async def discovery(self) -> dict[str, Any]:
        if self._discovery is None:
            doc = await self._get_json(self.issuer + "/.well-known/openid-configuration",
                                       "discovery document")
            if str(doc.get("issuer", "")).rstrip("/") != self.issuer:
                raise Refused(PROVIDER_ERROR, f"discovery document names the issuer "
                                              f"{doc.get('issuer')!r}, not {self.issuer!r}")
            for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(doc.get(key), str):
                    raise Refused(PROVIDER_ERROR, f"discovery document lacks {key}")
            self._discovery = doc
        return self._discovery

    async def _fetch_jwks(self) -> dict[str, Any]:
        return await self._get_json((await self.discovery())["jwks_uri"], "JWKS")

    async def authorize_url(self, redirect_uri: str, state: str, nonce: str,
                            challenge: str) -> str:
        endpoint = (await self.discovery())["authorization_endpoint"]
        query = urlencode({
            "response_type": "code", "client_id": self.settings.client_id,
            "redirect_uri": redirect_uri, "scope": " ".join(self.settings.scopes),
            "state": state, "nonce": nonce, "code_challenge": challenge,
            "code_challenge_method": "S256"})
        return endpoint + ("&" if "?" in endpoint else "?") + query

    async def complete(self, code: str, redirect_uri: str, nonce: str,
                       verifier: str) -> Identity:
        claims = await self.verify(await self._exchange(code, redirect_uri, verifier), nonce)
        return self.identity(claims)

    async def _exchange(self, code: str, redirect_uri: str, verifier: str) -> str:
        """The ID token for ``code`` (client_secret_basic, as RFC 6749 2.3.1 encodes it)."""
        endpoint = (await self.discovery())["token_endpoint"]
        basic = base64.b64encode(f"{quote(self.settings.client_id, safe='')}:"
                                 f"{quote(self._secret, safe='')}".encode()).decode()
        try:
            reply = await self.http.request(
                "POST", endpoint, headers={"Authorization": f"Basic {basic}"},
                data={"grant_type": "authorization_code", "code": code,
                      "redirect_uri": redirect_uri, "code_verifier": verifier})
        except Exception as e:  # noqa: BLE001
            raise Refused(PROVIDER_ERROR, f"token endpoint: {e.__class__.__name__}") from None
        data = reply.json()
        if reply.code != 200 or not isinstance(data, dict) or \
                not isinstance(data.get("id_token"), str):
            error = data.get("error") if isinstance(data, dict) else None
            raise Refused(PROVIDER_ERROR,
                          f"token endpoint: HTTP {reply.code}, error {str(error)[:80]!r}")
        return data["id_token"]

    async def verify(self, token: str, nonce: str) -> dict[str, Any]:
        """The ID token's claims, after every check; else Refused."""
        s = self.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise Refused(BAD_TOKEN, f"ID token unreadable: {e}") from None
        alg = header.get("alg")
        if alg not in s.algorithms:
            raise Refused(BAD_TOKEN, f"ID token algorithm {alg!r} not allowed")
        try:
            key = await self.keys.key_for(header.get("kid"), alg)
        except KeyNotFound as e:
            raise Refused(BAD_TOKEN, f"ID token: {e}") from None
        try:
            claims = jwt.decode(
                token, key.key, algorithms=[alg], audience=s.client_id,
                issuer=(await self.discovery())["issuer"],
                leeway=s.leeway, options={"require": ["iss", "aud", "exp", "iat", "sub"]})
        except jwt.ExpiredSignatureError:
            raise Refused(BAD_TOKEN, "ID token expired") from None
        except jwt.InvalidSignatureError:
            raise Refused(BAD_TOKEN, "ID token signature does not verify") from None
        except jwt.PyJWTError as e:
            raise Refused(BAD_TOKEN, f"ID token invalid: {e}") from None
        aud = claims["aud"]
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != s.client_id:
            raise Refused(BAD_TOKEN, "ID token azp is not this client")
        if not isinstance(claims.get("nonce"), str) or \
                not hmac.compare_digest(claims["nonce"].encode(), nonce.encode()):
            raise Refused(BAD_TOKEN, "ID token nonce does not match this login")
        return claims

    def identity(self, claims: dict[str, Any]) -> Identity:
        """Apply the allow rules and derive the name; Refused says which rule failed."""
        s = self.settings
        who = str(claims.get(s.username_claim) or claims["sub"])[:100]
        email_used = s.username_claim == "email" or "email" in s.allow or "hd" in s.allow
        if s.require_email_verified and email_used and not _true(claims.get("email_verified")):
            raise Refused("Your e-mail address is not verified at the login provider; "
                          "verify it there, then log in again.",
                          f"{who}: email_verified is not true")
        for claim, wanted in s.allow.items():
            have = _claim_values(claims.get(claim))
            if not set(have) & set(wanted):
                raise Refused(f"Your account at {self.display_name} is not allowed here: it "
                              f"needs {claim} {' or '.join(wanted)}.",
                              f"{who}: {claim} is {have!r}, needs one of {wanted!r}")
        raw = claims.get(s.username_claim)
        if not isinstance(raw, str) or not raw:
            raise Refused(f"{self.display_name} did not send a user name ({s.username_claim}).",
                          f"sub {claims['sub']!r}: no {s.username_claim} claim")
        if s.username_claim == "email":
            raw = raw.partition("@")[0]
        try:
            name = validate_name(raw.strip().lower())
        except InvalidName as e:
            raise Refused(f"Your user name {raw!r} cannot be used here: {e}.",
                          f"{s.username_claim} {raw!r} is not a valid name") from None
        admin = None
        if s.admin_claim:
            admin = bool(set(_claim_values(claims.get(s.admin_claim))) & set(s.admin_values))
        return Identity(self.id, str(claims["sub"]), name, admin, f"{s.username_claim} {raw}",
                        self.groups(claims))

    def groups(self, claims: dict[str, Any]) -> tuple[str, ...] | None:
        """The ipydoc groups of the ``groups_claim`` (None: not configured).  Values not
        starting with ``groups_prefix`` are ignored (the prefix is removed); with
        ``groups_map`` only mapped values count, else a value is the group's name and
        one that is not a valid name is ignored."""
        s = self.settings
        if not s.groups_claim:
            return None
        out = set()
        for value in _claim_values(claims.get(s.groups_claim))[:1000]:
            if not value.startswith(s.groups_prefix):
                continue
            value = value[len(s.groups_prefix):]
            if s.groups_map:
                if value in s.groups_map:
                    out.add(s.groups_map[value])
                continue
            try:
                out.add(validate_name(value.lower()))
            except InvalidName:
                continue
        return tuple(sorted(out))
