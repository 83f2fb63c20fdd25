"""Logins through a provider (the GitHub stand-in) are counted by provider and outcome."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer

import requests
from prometheus_client.parser import text_string_to_metric_families

from github_stand_in import GitHubStandIn
from support import free_port


def logins(url: str) -> dict[tuple[str, str], float]:
    text = requests.get(url, timeout=10).text
    return {(s.labels["provider"], s.labels["outcome"]): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "ipydoc_logins_total"}


def test_provider_logins_by_outcome(make_daemon):
    server = ThreadingHTTPServer(("127.0.0.1", 0), GitHubStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    port = free_port()
    try:
        site = make_daemon(**{
            "auth": {"start_on_login": False, "local": False},
            "auth.github": {"client_id": "gh-client", "client_secret": "gh-secret",
                            "url": base, "api_url": base + "/api", "orgs": ["acme"]},
            "metrics": {"listen": f"tcp:{port}:interface=127.0.0.1"}})
        site.start()
        url = f"http://127.0.0.1:{port}/metrics"
        before = logins(url)
        outcomes = []
        for who in ("Octo-Cat", "stranger", "stranger"):  # a member, then a non-member twice
            GitHubStandIn.next_login = who
            r = requests.Session().get(site.url + "/hub/oauth/github/start",
                                       params={"next": "/hub/home"})
            outcomes.append("ok" if r.status_code == 200 else "refused")
        assert outcomes == ["ok", "refused", "refused"]
        after = logins(url)
        for outcome in ("ok", "refused"):
            assert after.get(("github", outcome), 0) - before.get(("github", outcome), 0) == \
                outcomes.count(outcome), outcome
        assert all(provider == "github" for provider, _ in after)
        assert "stranger" not in requests.get(url, timeout=10).text
    finally:
        server.shutdown()
