"""Server lifecycle against the real Docker engine: crashes, removal while the daemon is
down, restarts, per-user limits, the global cap and the image choice; files always stay."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
import requests

from support import TEST_IMAGE, csrf_of, docker, follow_progress, login, wait_for

PW = "lifecycle-password"


def ready_user(daemon, name, admin=False):
    daemon.add_user(name, PW, admin=admin)
    session, r = login(daemon.url, name, PW)
    assert r.status_code == 303, r.text
    steps = follow_progress(session, daemon.url, name)
    assert steps[-1]["phase"] == "ready", steps
    return session


def start_again(session, daemon, name, **form):
    r = session.post(f"{daemon.url}/hub/spawn/{name}",
                     data={"_csrf": csrf_of(session, daemon.url), **form},
                     headers={"Origin": daemon.url}, allow_redirects=False)
    assert r.status_code == 303, r.text
    return follow_progress(session, daemon.url, name)


def write_file(session, base, name, path, content):
    r = session.put(f"{base}/user/{name}/api/contents/{path}",
                    json={"type": "file", "format": "text", "content": content},
                    headers={"Origin": base})
    assert r.status_code in (200, 201), r.text


def read_file(session, base, name, path):
    r = session.get(f"{base}/user/{name}/api/contents/{path}")
    assert r.status_code == 200, r.text
    return r.json()["content"]


def redis_cli(daemon, *args):
    sock = daemon.root / "state" / "redis" / "redis.sock"
    return subprocess.run(["redis-cli", "-s", str(sock), *args], capture_output=True,
                          text=True).stdout.strip()


def test_crash_is_noticed_within_a_second_and_files_stay(make_daemon):
    d = make_daemon()
    d.start()
    s = ready_user(d, "crashy")
    write_file(s, d.url, "crashy", "before-crash.txt", "survives the crash")
    (cid,) = d.containers("crashy", all=False)
    docker("kill", cid)
    killed = time.monotonic()
    codes = []
    while True:  # what the user's browser gets, request after request
        r = s.get(f"{d.url}/user/crashy/lab", headers={"Accept": "text/html"},
                  allow_redirects=False)
        codes.append(r.status_code)
        if r.status_code == 302:
            break
        assert time.monotonic() - killed < 5, codes
        time.sleep(0.02)
    noticed = time.monotonic() - killed
    assert noticed < 1.0, (noticed, codes)
    assert r.headers["Location"].startswith("/hub/spawn/crashy")
    api = s.get(f"{d.url}/user/crashy/api/status")
    assert api.status_code == 503 and "not running" in api.json()["message"]
    wait_for(lambda: redis_cli(d, "HGET", "ipydoc:server:crashy", "state") == "stopped", 5)
    assert redis_cli(d, "HEXISTS", "ipydoc:routes", "crashy") == "0"
    gone = d.cli("--json", "events", "--kind", "server-gone").stdout
    assert "outside ipydoc" in gone
    # The start page starts a new server on the same files.
    assert start_again(s, d, "crashy")[-1]["phase"] == "ready"
    assert read_file(s, d.url, "crashy", "before-crash.txt") == "survives the crash"


def test_removed_while_daemon_down_leaves_no_stale_route_and_restart_keeps_files(make_daemon):
    d = make_daemon()
    d.start()
    kept = ready_user(d, "keeper")
    gone = ready_user(d, "goner")
    write_file(kept, d.url, "keeper", "before-restart.txt", "survives the restart")
    write_file(gone, d.url, "goner", "before-rm.txt", "survives docker rm")
    d.stop()
    docker("rm", "-f", *d.containers("goner"))
    d.start()
    assert redis_cli(d, "HEXISTS", "ipydoc:routes", "goner") == "0"
    r = gone.get(f"{d.url}/user/goner/lab", headers={"Accept": "text/html"},
                 allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"].startswith("/hub/spawn/goner")
    assert read_file(kept, d.url, "keeper", "before-restart.txt") == "survives the restart"
    assert start_again(gone, d, "goner")[-1]["phase"] == "ready"
    assert read_file(gone, d.url, "goner", "before-rm.txt") == "survives docker rm"
    # Removing the account keeps the files unless --purge.
    d.cli("server", "stop", "goner")
    r = d.cli("--json", "user", "remove", "goner")
    assert r.returncode == 0 and json.loads(r.stdout)["purged"] is False
    assert docker("volume", "ls", "-q", "--filter", f"name={d.instance}-home-goner")


def test_admin_sets_per_user_limits_applied_at_next_start(make_daemon):
    d = make_daemon(spawn={"mem_limit": "1G", "cpu_limit": 1.0, "pids_limit": 512})
    d.start()
    d.add_user("big", PW)
    r = d.cli("user", "set-limits", "big", "--mem", "1536M", "--cpu", "0.5", "--pids", "256")
    assert r.returncode == 0, r.stderr
    assert "memory 1536M" in r.stdout and "CPUs 0.5" in r.stdout
    bad = d.cli("user", "set-limits", "big", "--mem", "lots")
    assert bad.returncode == 2 and "not a size" in bad.stderr
    assert d.cli("user", "set-limits", "nobody", "--cpu", "1").returncode == 5
    s, _ = login(d.url, "big", PW)
    assert follow_progress(s, d.url, "big")[-1]["phase"] == "ready"
    (cid,) = d.containers("big", all=False)
    hc = json.loads(docker("inspect", cid))[0]["HostConfig"]
    assert hc["Memory"] == 1536 * 1024 ** 2 and hc["NanoCpus"] == 500_000_000
    assert hc["PidsLimit"] == 256
    # --reset brings back the config's values at the next start.
    r = d.cli("--json", "user", "set-limits", "big", "--reset", "all")
    assert json.loads(r.stdout)["overrides"] == {}
    d.cli("server", "stop", "big")
    assert start_again(s, d, "big")[-1]["phase"] == "ready"
    (cid,) = d.containers("big", all=False)
    hc = json.loads(docker("inspect", cid))[0]["HostConfig"]
    assert hc["Memory"] == 1024 ** 3 and hc["PidsLimit"] == 512
    assert "user-limits" in d.cli("events", "--kind", "user-limits").stdout


def test_global_cap_on_running_servers(make_daemon):
    d = make_daemon(spawn={"max_running": 1})
    d.start()
    ready_user(d, "first")
    d.add_user("second", PW)
    s, r = login(d.url, "second", PW)
    step = follow_progress(s, d.url, "second")[-1]
    assert step["phase"] == "failed" and step["error_kind"] == "limit"
    assert "the hub is full" in step["message"] and "spawn.max_running" in step["message"]
    page = s.get(f"{d.url}/hub/spawn/second")
    assert "the hub is full" in page.text
    assert d.containers("second") == []
    d.cli("server", "stop", "first")
    assert start_again(s, d, "second")[-1]["phase"] == "ready"


@pytest.fixture
def alt_image():
    tag = f"ipydoc-test-notebook:alt-{int(time.time() * 1000)}"
    docker("tag", TEST_IMAGE, tag)
    yield tag
    docker("rmi", tag, check=False)


def test_image_choice_from_the_allow_list(make_daemon, alt_image):
    d = make_daemon(spawn={"images": [TEST_IMAGE, alt_image], "start_timeout": 90.0})
    d.start()
    d.add_user("chooser", PW)
    s, r = login(d.url, "chooser", PW)
    assert follow_progress(s, d.url, "chooser")[-1]["phase"] == "ready"
    (cid,) = d.containers("chooser", all=False)
    assert json.loads(docker("inspect", cid))[0]["Config"]["Image"] == TEST_IMAGE
    d.cli("server", "stop", "chooser")
    page = s.get(f"{d.url}/hub/spawn/chooser")
    options = re.findall(r'<option value="([^"]+)"', page.text)
    assert options == [TEST_IMAGE, alt_image]
    refused = s.post(f"{d.url}/hub/spawn/chooser",
                     data={"_csrf": csrf_of(s, d.url), "image": "evil/miner:latest"},
                     headers={"Origin": d.url}, allow_redirects=False)
    assert refused.status_code == 400 and d.containers("chooser") == []
    assert start_again(s, d, "chooser", image=alt_image)[-1]["phase"] == "ready"
    (cid,) = d.containers("chooser", all=False)
    assert json.loads(docker("inspect", cid))[0]["Config"]["Image"] == alt_image
    page = s.get(f"{d.url}/hub/spawn/chooser")  # running: straight to the server
    d.cli("server", "stop", "chooser")
    page = s.get(f"{d.url}/hub/spawn/chooser")
    assert re.search(rf'<option value="{re.escape(alt_image)}" selected>', page.text)


def test_one_image_offers_no_choice(make_daemon):
    d = make_daemon(auth={"start_on_login": False})
    d.start()
    d.add_user("plain", PW)
    s, _ = login(d.url, "plain", PW)
    page = s.get(f"{d.url}/hub/spawn/plain")
    assert "Start my server" in page.text and "<select" not in page.text
    assert requests.get(f"{d.url}/hub/login").status_code == 200
