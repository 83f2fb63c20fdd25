"""Prometheus metrics of the real daemon (issue 17 §1), read with prometheus_client's own
parser while users log in, start servers, save a file and run a kernel over a WebSocket.

Every expected change is computed from what the test did (the status codes and body
sizes it saw, the logins it tried), compared between two scrapes.  Snapshot gauges (from
Redis) are refreshed every few seconds, so they are waited for, never timed.
"""

from __future__ import annotations

import json
import os
import secrets
from collections import Counter

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from kernel_client import connect, execute, start_kernel
from support import follow_progress, free_port, login, wait_for

ALICE, BOB, CAROL = "mxalice", "mxbob", "mxcarol"
PW = "correct horse battery staple"
TOKEN = secrets.token_hex(24)
#: Long enough that a save is still queued when the refresher looks (it looks every 5 s).
COALESCE = 12.0
NO_GZIP = {"Accept-Encoding": "identity"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape, by (sample name, labels)."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


class Scraper:
    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url, self.headers = url, headers or {}
        self.text = ""

    def __call__(self) -> Samples:
        r = requests.get(self.url, headers=self.headers, timeout=10)
        assert r.status_code == 200, (r.status_code, r.text)
        assert r.headers["Content-Type"].startswith("text/plain")
        self.text = r.text
        return parse(r.text)


def server_states(site) -> Counter[str]:
    """What ``ipydoc --json server list`` says, by state."""
    out = site.cli("--json", "server", "list")
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    items = listed["items"] if isinstance(listed, dict) else listed
    return Counter(item["state"] for item in items)


def states_match(scrape: Scraper, site) -> bool:
    samples, states = scrape(), server_states(site)
    return all(value(samples, "ipydoc_servers", state=s) == states.get(s, 0)
               for s in ("starting", "running", "stopping", "stopped", "failed"))


@pytest.fixture(scope="module")
def site(tmp_path_factory, notebook_image):
    from support import Daemon

    root = tmp_path_factory.mktemp("metrics")
    token_file = root / "metrics-token"
    token_file.write_text(TOKEN + "\n")
    os.chmod(token_file, 0o600)
    port = free_port()
    d = Daemon(root, {"metrics": {"listen": f"tcp:{port}:interface=127.0.0.1",
                                  "token_file": str(token_file)},
                      "history": {"coalesce_seconds": COALESCE}})
    d.metrics_url = f"http://127.0.0.1:{port}/metrics"
    try:
        d.start()
        d.add_user(ALICE, PW)
        d.add_user(BOB, PW)
        yield d
    finally:
        d.stop()
        d.cleanup_docker()


def test_logins_spawns_proxy_and_websocket_move_the_counters(site):
    scrape = Scraper(site.metrics_url)
    before = scrape()

    # Logins: two right passwords, one wrong.
    alice, r = login(site.url, ALICE, PW)
    assert r.status_code == 303
    _, wrong = login(site.url, BOB, "not the password")
    assert wrong.status_code == 403
    bob, r = login(site.url, BOB, PW)
    assert r.status_code == 303
    steps = {name: follow_progress(s, site.url, name)[-1]
             for name, s in ((ALICE, alice), (BOB, bob))}
    assert all(step["phase"] == "ready" for step in steps.values()), steps

    after = scrape()
    assert value(after, "ipydoc_logins_total", provider="local", outcome="ok") - \
        value(before, "ipydoc_logins_total", provider="local", outcome="ok") == 2
    assert value(after, "ipydoc_logins_total", provider="local", outcome="refused") - \
        value(before, "ipydoc_logins_total", provider="local", outcome="refused") == 1
    started = value(after, "ipydoc_spawn_duration_seconds_count", outcome="started") - \
        value(before, "ipydoc_spawn_duration_seconds_count", outcome="started")
    assert started == 2
    assert value(after, "ipydoc_spawn_duration_seconds_sum", outcome="started") > \
        value(before, "ipydoc_spawn_duration_seconds_sum", outcome="started")

    # Servers by state: the same as `ipydoc server list` (once the refresher has looked).
    wait_for(lambda: states_match(scrape, site), timeout=30, interval=0.5)
    assert value(scrape(), "ipydoc_servers", state="running") == 2
    assert value(scrape(), "ipydoc_active_users", window="24h") == 0  # no traffic yet

    # Plain HTTP through the proxy: status classes, count, bytes each way.
    before = scrape()
    seen = [bob.get(f"{site.url}/user/{BOB}/api/status", headers=NO_GZIP)]
    for path in ("api/status", "api/status", "api/contents/no-such-file.txt"):
        seen.append(alice.get(f"{site.url}/user/{ALICE}/{path}", headers=NO_GZIP,
                              allow_redirects=False))
    body = json.dumps({"type": "file", "format": "text", "content": "x" * 5000}).encode()
    seen.append(alice.put(f"{site.url}/user/{ALICE}/api/contents/saved.txt", data=body,
                          headers={**NO_GZIP, "Origin": site.url,
                                   "Content-Type": "application/json"}))
    after = scrape()
    classes = Counter(f"{r.status_code // 100}xx" for r in seen)
    assert classes["4xx"] == 1 and classes["2xx"] == 4, [r.status_code for r in seen]
    for cls in ("1xx", "2xx", "3xx", "4xx", "5xx", "none"):
        assert value(after, "ipydoc_proxy_requests_total", code=cls) - \
            value(before, "ipydoc_proxy_requests_total", code=cls) == classes.get(cls, 0), cls
    assert value(after, "ipydoc_proxy_request_duration_seconds_count") - \
        value(before, "ipydoc_proxy_request_duration_seconds_count") == len(seen)
    assert value(after, "ipydoc_proxy_bytes_total", direction="to_client") - \
        value(before, "ipydoc_proxy_bytes_total", direction="to_client") == \
        sum(len(r.content) for r in seen)
    assert value(after, "ipydoc_proxy_bytes_total", direction="to_server") - \
        value(before, "ipydoc_proxy_bytes_total", direction="to_server") == len(body)

    # Both users had proxied traffic (written to Redis every 5 s, then refreshed).
    wait_for(lambda: value(scrape(), "ipydoc_active_users", window="5m") == 2, timeout=30,
             interval=0.5)

    # The save waits in the history queue (history.coalesce_seconds), then is committed.
    wait_for(lambda: (lambda s: value(s, "ipydoc_history_queue_length") >= 1 and
                      value(s, "ipydoc_history_commit_lag_seconds") > 0)(scrape()),
             timeout=COALESCE, interval=0.5)
    wait_for(lambda: (lambda s: value(s, "ipydoc_history_queue_length") == 0 and
                      value(s, "ipydoc_history_commit_lag_seconds") == 0)(scrape()),
             timeout=90, interval=0.5)

    # A kernel WebSocket: open goes up, bytes flow both ways, open goes down at close.
    kernel = start_kernel(alice, site.url, ALICE)
    before = scrape()
    ws = connect(alice, site.url, ALICE, kernel)
    try:
        assert value(scrape(), "ipydoc_proxy_websockets_open") == \
            value(before, "ipydoc_proxy_websockets_open") + 1
        assert execute(ws, "6*7")["text/plain"] == "42"
    finally:
        ws.close()
    wait_for(lambda: value(scrape(), "ipydoc_proxy_websockets_open") ==
             value(before, "ipydoc_proxy_websockets_open"), timeout=30)
    after = scrape()
    assert value(after, "ipydoc_proxy_websockets_total") - \
        value(before, "ipydoc_proxy_websockets_total") == 1
    for direction in ("to_server", "to_client"):
        assert value(after, "ipydoc_proxy_bytes_total", direction=direction) > \
            value(before, "ipydoc_proxy_bytes_total", direction=direction), direction

    # Round trips and the process, and no user name anywhere (metrics.per_user is off).
    assert value(after, "ipydoc_redis_up") == 1 and value(after, "ipydoc_docker_up") == 1
    assert value(after, "ipydoc_redis_roundtrip_seconds") > 0
    assert value(after, "ipydoc_docker_roundtrip_seconds") > 0
    assert value(after, "process_resident_memory_bytes") > 0
    assert value(after, "process_open_fds") > 0
    for name in (ALICE, BOB):
        assert name not in scrape.text


def test_hub_metrics_answers_the_bearer_token_only(site):
    url = site.url + "/hub/metrics"
    assert requests.get(url).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer " + "x" * len(TOKEN)}
                        ).status_code == 401
    assert requests.get(url, headers={"Authorization": "Basic " + TOKEN}).status_code == 401
    assert requests.get(url + f"?token={TOKEN}").status_code == 401  # never in a URL
    samples = Scraper(url, {"Authorization": "Bearer " + TOKEN})()
    assert value(samples, "ipydoc_redis_up") == 1
    # The listener of metrics.listen answers /metrics only.
    other = site.metrics_url.rsplit("/", 1)[0] + "/hub/login"
    assert requests.get(other).status_code == 404


def test_per_user_series_and_a_failed_start(make_daemon):
    """``metrics.per_user`` adds the user's series; a start that fails is in the spawn
    histogram under the kind of failure the progress reported; no token file: 404."""
    port = free_port()
    site = make_daemon(metrics={"listen": f"tcp:{port}:interface=127.0.0.1", "per_user": True},
                       spawn={"image": "ipydoc-no-such-image:never"})
    site.start()
    site.add_user(CAROL, PW)
    scrape = Scraper(f"http://127.0.0.1:{port}/metrics")
    before = scrape()
    carol, r = login(site.url, CAROL, PW)
    assert r.status_code == 303
    final = follow_progress(carol, site.url, CAROL)[-1]
    assert final["phase"] == "failed", final
    after = scrape()
    kind = final["error_kind"]
    assert value(after, "ipydoc_spawn_duration_seconds_count", outcome=kind) - \
        value(before, "ipydoc_spawn_duration_seconds_count", outcome=kind) == 1
    carol = ("ipydoc_user_server_running", frozenset({("user", CAROL)}))
    wait_for(lambda: carol in scrape(), timeout=30, interval=0.5)
    assert value(scrape(), "ipydoc_user_server_running", user=CAROL) == 0
    assert requests.get(site.url + "/hub/metrics",
                        headers={"Authorization": "Bearer " + TOKEN}).status_code == 404


def test_culled_servers_and_mirror_push_failures(make_daemon, tmp_path):
    """A server the culler stops is counted by reason; a push to a mirror that does not
    exist is counted as a failure; per-user series follow the server (``per_user``)."""
    port = free_port()
    site = make_daemon(metrics={"listen": f"tcp:{port}:interface=127.0.0.1", "per_user": True},
                       cull={"idle_timeout": 8.0, "interval": 1.0,
                             "ignore_kernel_activity": True},
                       history={"coalesce_seconds": 0.5,
                                "remote": f"file://{tmp_path}/no-such-dir/{{name}}.git"})
    site.start()
    site.add_user(CAROL, PW)
    scrape = Scraper(f"http://127.0.0.1:{port}/metrics")
    before = scrape()
    carol, r = login(site.url, CAROL, PW)
    assert r.status_code == 303
    assert follow_progress(carol, site.url, CAROL)[-1]["phase"] == "ready"
    wait_for(lambda: value(scrape(), "ipydoc_user_server_running", user=CAROL) == 1,
             timeout=30, interval=0.5)

    body = json.dumps({"type": "file", "format": "text", "content": "hello"})
    saved = carol.put(f"{site.url}/user/{CAROL}/api/contents/pushed.txt", data=body,
                      headers={"Origin": site.url, "Content-Type": "application/json"})
    assert saved.status_code == 201, saved.text
    wait_for(lambda: value(scrape(), "ipydoc_history_mirror_push_failures_total") >
             value(before, "ipydoc_history_mirror_push_failures_total"), timeout=60,
             interval=0.5)
    assert value(scrape(), "ipydoc_history_mirror_pushes_total") == \
        value(before, "ipydoc_history_mirror_pushes_total")

    # No traffic for cull.idle_timeout: culled, counted as idle, and seen as stopped.
    wait_for(lambda: value(scrape(), "ipydoc_culled_servers_total", reason="idle") -
             value(before, "ipydoc_culled_servers_total", reason="idle") == 1,
             timeout=90, interval=0.5)
    after = scrape()
    assert value(after, "ipydoc_culled_servers_total", reason="max_age") == \
        value(before, "ipydoc_culled_servers_total", reason="max_age")
    wait_for(lambda: states_match(scrape, site) and
             value(scrape(), "ipydoc_user_server_running", user=CAROL) == 0,
             timeout=30, interval=0.5)
    assert value(scrape(), "ipydoc_servers", state="stopped") == 1
