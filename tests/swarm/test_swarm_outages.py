"""What users see when their server's task dies or its node goes down, on the real swarm:
a ``docker kill`` on the worker is noticed by the daemon by itself (server stopped, route
gone), a worker whose engine stops refuses starts with "your files are on node ...,
which is down", and once the worker is back the user starts again with her files."""

from __future__ import annotations

import os
import signal
import subprocess

from kernel_client import run_code
from support import csrf_of, follow_progress, login, wait_for
from swarm_support import SCRIPT, WORKER, WORKER_HOSTNAME, WORKER_PIDFILE, engine, swarm_up, task_of

PW = "correct horse battery"


def start_both(d) -> dict:
    """alice and bob logged in with running servers (spread: one per node)."""
    sessions = {}
    for name in ("alice", "bob"):
        d.add_user(name, PW)
        session, r = login(d.url, name, PW)
        assert r.status_code == 303, r.text
        assert follow_progress(session, d.url, name, timeout=120)[-1]["phase"] == "ready"
        sessions[name] = session
    return sessions


def on_worker(d, nodes: dict[str, str]) -> str:
    """Which of alice and bob runs on the worker."""
    worker = nodes[WORKER_HOSTNAME]
    names = [n for n in ("alice", "bob") if task_of(d, n)["NodeID"] == worker]
    assert len(names) == 1, names
    return names[0]


def run(d, session, name: str, code: str) -> str:
    return run_code(session, d.url, name, code)


def home(d, session) -> str:
    return session.get(f"{d.url}/hub/home").text


def state_badge(page: str) -> str:
    marker = 'id="state" class="badge state-'
    i = page.index(marker) + len(marker)
    return page[i:page.index('"', i)]


def routed(d, session, name: str) -> bool:
    """Does the proxy still have a route for NAME's server?  (Without one it answers API
    requests itself, "not running", instead of a 502 from a dead backend.)"""
    r = session.get(f"{d.url}/user/{name}/api/status", allow_redirects=False)
    return r.status_code not in (302, 303, 503)


def test_docker_kill_on_the_worker_is_noticed(swarm_daemon, two_node_swarm):
    d = swarm_daemon()
    d.start()
    sessions = start_both(d)
    name = on_worker(d, two_node_swarm)
    session = sessions[name]
    assert routed(d, session, name)
    cid = task_of(d, name)["Status"]["ContainerStatus"]["ContainerID"]
    engine(WORKER, "kill", cid)
    # The daemon notices by itself: the route goes, the page says stopped and why.
    wait_for(lambda: not routed(d, session, name), timeout=30)
    wait_for(lambda: state_badge(home(d, session)) == "stopped", timeout=30)
    page = home(d, session)
    assert "Your server stopped:" in page and f"on node {WORKER_HOSTNAME}" in page, page
    other = "bob" if name == "alice" else "alice"
    assert routed(d, sessions[other], other)  # the other node's server is untouched
    events = d.cli("events", "--user", name)
    assert "server-gone" in events.stdout, events


def stop_worker_engine() -> None:
    os.kill(int(WORKER_PIDFILE.read_text().strip()), signal.SIGTERM)
    wait_for(lambda: subprocess.run(["docker", "-H", WORKER, "info"],
                                    capture_output=True).returncode != 0, timeout=60)


def test_worker_down_refuses_start_with_a_clear_message_then_recovers(swarm_daemon,
                                                                       two_node_swarm):
    d = swarm_daemon()
    d.start()
    sessions = start_both(d)
    name = on_worker(d, two_node_swarm)
    session = sessions[name]
    assert run(d, session, name, "open('kept.txt','w').write('on the worker'); 6*7") == "42"
    down = f"your files are on node {WORKER_HOSTNAME}, which is down"
    try:
        stop_worker_engine()
        # The server is marked stopped (the route goes) once the manager sees it gone.
        wait_for(lambda: not routed(d, session, name), timeout=90)
        wait_for(lambda: state_badge(home(d, session)) in ("stopped", "failed"), timeout=90)
        page = home(d, session)
        assert "Your server stopped:" in page and f"node {WORKER_HOSTNAME}" in page, page
        print("when the worker's engine stopped:",
              page[page.index("Your server stopped:"):].split("</p>")[0])
        # The manager needs a few heartbeats to call the node down; a start until then
        # could not know.  Once it is down, a start is refused with the reason.
        wait_for(lambda: engine(None, "node", "inspect", WORKER_HOSTNAME, "--format",
                                "{{.Status.State}}") == "down", timeout=90)
        r = session.post(f"{d.url}/hub/spawn/{name}", data={"_csrf": csrf_of(session, d.url)},
                         headers={"Origin": d.url}, allow_redirects=False)
        assert r.status_code in (302, 303), r.text
        steps = follow_progress(session, d.url, name, timeout=120)
        assert steps[-1]["phase"] == "failed", steps
        assert down in steps[-1]["message"], steps
        assert "ipydoc server move" in steps[-1]["message"]
        page = home(d, session)
        assert down in page, page
        # Never a fresh home elsewhere: no service of hers runs on the manager.
        assert engine(None, "service", "ls", "-q", "--filter",
                      f"name={d.instance}-{name}") == ""
    finally:
        subprocess.run(["bash", str(SCRIPT), "up"], capture_output=True, timeout=180)
        swarm_up()
    # Back: the next start goes to her node again, with her files, nobody intervening.
    wait_for(lambda: engine(None, "node", "inspect", WORKER_HOSTNAME, "--format",
                            "{{.Status.State}}") == "ready", timeout=90)
    r = session.post(f"{d.url}/hub/spawn/{name}", data={"_csrf": csrf_of(session, d.url)},
                     headers={"Origin": d.url}, allow_redirects=False)
    assert r.status_code in (302, 303), r.text
    steps = follow_progress(session, d.url, name, timeout=120)
    assert steps[-1]["phase"] == "ready", steps
    assert task_of(d, name)["NodeID"] == two_node_swarm[WORKER_HOSTNAME]
    assert run(d, session, name, "open('kept.txt').read()") == "'on the worker'"


def test_a_drained_node_refuses_its_users_start_until_it_is_active(swarm_daemon,
                                                                   two_node_swarm):
    d = swarm_daemon()
    d.start()
    sessions = start_both(d)
    name = on_worker(d, two_node_swarm)
    session = sessions[name]
    r = session.post(f"{d.url}/hub/stop/{name}", data={"_csrf": csrf_of(session, d.url)},
                     headers={"Origin": d.url}, allow_redirects=False)
    assert r.status_code in (302, 303), r.text
    wait_for(lambda: state_badge(home(d, session)) == "stopped", timeout=60)
    engine(None, "node", "update", "--availability", "drain", WORKER_HOSTNAME)
    try:
        r = session.post(f"{d.url}/hub/spawn/{name}", data={"_csrf": csrf_of(session, d.url)},
                         headers={"Origin": d.url}, allow_redirects=False)
        assert r.status_code in (302, 303), r.text
        steps = follow_progress(session, d.url, name, timeout=120)
        assert steps[-1]["phase"] == "failed", steps
        assert f"your files are on node {WORKER_HOSTNAME}, which is drained" in \
            steps[-1]["message"], steps
    finally:
        engine(None, "node", "update", "--availability", "active", WORKER_HOSTNAME)
    r = session.post(f"{d.url}/hub/spawn/{name}", data={"_csrf": csrf_of(session, d.url)},
                     headers={"Origin": d.url}, allow_redirects=False)
    assert follow_progress(session, d.url, name, timeout=120)[-1]["phase"] == "ready"
    assert task_of(d, name)["NodeID"] == two_node_swarm[WORKER_HOSTNAME]
