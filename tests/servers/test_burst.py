"""Spawn bursts: 30 users log in at the same moment with spawn.concurrency = 4.

Every one gets a working server and nobody an error; at most 4 starts run at once, the
others wait with their queue position shown (and updated as it moves); a double click
still gives one container.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from support import csrf_of, follow_progress, login

N = 30
CONCURRENCY = 4
PW = "burst-password-1"


def _add_users(d, names):
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: d.add_user(n, PW), names))


def _log_in_and_wait(d, name):
    s, r = login(d.url, name, PW)
    assert r.status_code == 303, r.text
    steps = follow_progress(s, d.url, name, timeout=600)
    ok = steps[-1]["phase"] == "ready" and \
        s.get(f"{d.url}/user/{name}/api/status").status_code == 200
    return name, steps, ok


def test_thirty_users_at_once_all_get_a_server(make_daemon):
    d = make_daemon(spawn={"concurrency": CONCURRENCY, "start_timeout": 300.0,
                           "mem_limit": "512M", "cpu_limit": 0.0})
    d.start()
    names = [f"burst{i:02d}" for i in range(N)]
    _add_users(d, names)
    with ThreadPoolExecutor(N) as pool:
        results = list(pool.map(lambda n: _log_in_and_wait(d, n), names))
    failed = [(n, steps[-1]) for n, steps, ok in results if not ok]
    assert not failed, failed
    assert all(len(d.containers(n, all=False)) == 1 for n in names)

    # The bound held: never more than CONCURRENCY starts between "creating" and the end.
    spans = []
    for _, steps, _ in results:
        created = [s["at"] for s in steps if s["phase"] == "creating"]
        if created:
            spans.append((created[0], steps[-1]["at"]))
    assert len(spans) == N
    edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans],
                   key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, delta in edges:
        running += delta
        peak = max(peak, running)
    assert peak <= CONCURRENCY, peak

    # Those who waited saw their position, counting down towards the front.
    queued = [[s["position"] for s in steps if s["phase"] == "queued" and s["position"]]
              for _, steps, _ in results]
    waited = [q for q in queued if q]
    assert len(waited) >= N - CONCURRENCY - 2  # a few may find a slot free at once
    assert max(q[0] for q in waited) > N // 2
    for q in waited:
        assert q == sorted(q, reverse=True) and q[-1] == 1, q


def test_double_click_gives_one_server(make_daemon):
    d = make_daemon(auth={"start_on_login": False})
    d.start()
    d.add_user("clicker", PW)
    s, _ = login(d.url, "clicker", PW)
    csrf = csrf_of(s, d.url)

    def click(_):
        return s.post(f"{d.url}/hub/spawn/clicker", data={"_csrf": csrf},
                      headers={"Origin": d.url}, allow_redirects=False).status_code

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(click, range(4))) == [303] * 4
    assert follow_progress(s, d.url, "clicker")[-1]["phase"] == "ready"
    assert len(d.containers("clicker")) == 1
    spawns = d.cli("events", "--kind", "spawn").stdout
    assert spawns.count("clicker") == 1
