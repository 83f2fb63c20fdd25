"""Every user's server is hostile (issue 12, items 1-3 and the history-queue cap of 9).

A user controls their home, so a ``~/.jupyter/jupyter_server_config.py`` there replaces
Jupyter by any program: here :mod:`hostile_server`, which runs in the real image, in the
user's real container, started by the real daemon, and answers what its mode file says:
gzip bombs, endless or trickling bodies, lying lengths, malformed status JSON.  Each test
shows the daemon, the other users and their data untouched.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import threading
import time
import zlib
from pathlib import Path

import requests

from hostile_server import CONFIG
from support import TEST_IMAGE, docker, follow_progress, login, peak_rss, wait_for

PW = "hostile-test-password"
HOSTILE = Path(__file__).parents[1] / "hostile_server.py"
MiB = 1024 * 1024
_bomb: list[bytes] = []


def bomb() -> bytes:
    """2 MB of gzip that inflates to 2 GiB of zeros (made once per test run)."""
    if not _bomb:
        c = zlib.compressobj(9, zlib.DEFLATED, 31)
        zeros = bytes(MiB)
        _bomb.append(b"".join([c.compress(zeros) for _ in range(2048)] + [c.flush()]))
    return _bomb[0]


def install_hostile(d, name: str, mode: str = "normal", with_bomb: bool = False) -> None:
    """Put the hostile server and the config that runs it into NAME's home (the volume
    ipydoc mounts at /home/jovyan), as the user could from a terminal of their own."""
    vol = f"{d.instance}-home-{name}"
    docker("volume", "create", "--label", f"ipydoc.user={name}", "--label",
           "ipydoc.managed=1", vol)
    files = {".jupyter/hostile_server.py": HOSTILE.read_bytes(),
             ".jupyter/jupyter_server_config.py": CONFIG.encode(),
             ".jupyter/hostile_mode": mode.encode()}
    if with_bomb:
        files[".jupyter/bomb.gz"] = bomb()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    out = subprocess.run(
        ["docker", "run", "-i", "--rm", "-v", f"{vol}:/home/jovyan", "--entrypoint", "python",
         TEST_IMAGE, "-c", "import sys, tarfile; tarfile.open(fileobj=sys.stdin.buffer, "
         "mode='r|').extractall('/home/jovyan')"], input=buf.getvalue(), capture_output=True)
    assert out.returncode == 0, out.stderr


def ready(d, name: str) -> requests.Session:
    session, r = login(d.url, name, PW)
    assert r.status_code == 303, r.text
    steps = follow_progress(session, d.url, name)
    assert steps[-1]["phase"] == "ready", steps
    return session


def set_mode(session, d, name: str, mode: str) -> None:
    r = session.post(f"{d.url}/user/{name}/hostile/mode", data=mode,
                     headers={"Origin": d.url})
    assert r.status_code == 200, r.text


def put_file(session, d, name: str, path: str, text: str) -> None:
    r = session.put(f"{d.url}/user/{name}/api/contents/{path}",
                    json={"type": "file", "format": "text", "content": text},
                    headers={"Origin": d.url}, timeout=30)
    assert r.status_code in (200, 201), r.text


def events(d, kind: str) -> list[dict]:
    """The newest of the last 100 events of ``kind`` (an AMP answer holds ~64 KiB)."""
    out = d.cli("--json", "events", "--count", "100", "--kind", kind)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def event_about(d, kind: str, text: str, timeout: float = 60) -> dict:
    return wait_for(lambda: next((e for e in events(d, kind) if text in e["detail"]), None),
                    timeout=timeout, interval=0.5)


def versioned(d, name: str) -> set[str]:
    r = d.cli("--json", "history", "list", name)
    if r.returncode == 5:
        return set()
    assert r.returncode == 0, r.stderr
    return {f["path"] for f in json.loads(r.stdout)}


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def server_state(d, name: str) -> str:
    r = d.cli("--json", "server", "show", name)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["state"]


# -- 2. readiness -------------------------------------------------------------------------
def test_a_trickling_readiness_answer_holds_no_start_slot(make_daemon):
    d = make_daemon(spawn={"concurrency": 1, "start_timeout": 20.0})
    d.start()
    for name in ("mallory", "bob", "carol", "dave"):
        d.add_user(name, PW)
    install_hostile(d, "mallory", mode="status-trickle")

    # mallory's start holds the only slot while her /api/status trickles; bob queues.
    mallory, _ = login(d.url, "mallory", PW)
    wait_for(lambda: d.containers("mallory"), timeout=60)
    bob, _ = login(d.url, "bob", PW)
    steps = follow_progress(mallory, d.url, "mallory")
    assert steps[-1]["phase"] == "failed" and steps[-1]["error_kind"] == "timeout", steps
    assert "spawn.start_timeout" in steps[-1]["message"]
    assert "deadline" in steps[-1]["message"]  # each poll was cut, none waited it out
    assert follow_progress(bob, d.url, "bob")[-1]["phase"] == "ready"
    wait_for(lambda: not d.containers("mallory"), timeout=30)  # cleaned up

    # A stop during the wedged start ends it at once: carol, queued behind, starts.
    r = d.cli("server", "start", "mallory", "--no-wait")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: d.containers("mallory"), timeout=60)
    carol, _ = login(d.url, "carol", PW)
    r = d.cli("server", "stop", "mallory")
    assert r.returncode == 0, r.stderr
    steps = follow_progress(mallory, d.url, "mallory")
    assert steps[-1]["phase"] == "stopped" or steps[-1].get("error_kind") == "stopped", steps
    assert not any(s.get("error_kind") == "timeout" for s in steps)  # it did not wait it out
    assert server_state(d, "mallory") == "stopped"
    assert follow_progress(carol, d.url, "carol")[-1]["phase"] == "ready"
    wait_for(lambda: not d.containers("mallory"), timeout=30)

    # So does `user disable`.
    r = d.cli("server", "start", "mallory", "--no-wait")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: d.containers("mallory"), timeout=60)
    dave, _ = login(d.url, "dave", PW)
    r = d.cli("--json", "user", "disable", "mallory")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["server_stopped"] is True
    failed = [e for e in events(d, "spawn-failed") if e["user"] == "mallory"]
    assert "stopped while it was starting" in failed[-1]["detail"]
    assert follow_progress(dave, d.url, "dave")[-1]["phase"] == "ready"
    wait_for(lambda: not d.containers("mallory"), timeout=30)
    assert d.proc.poll() is None


# -- 3. culler ----------------------------------------------------------------------------
def test_malformed_status_answers_do_not_stop_the_culler(make_daemon):
    d = make_daemon(cull={"idle_timeout": 6.0, "interval": 1.0})
    d.start()
    for name, mode in (("mallory", "status-list"), ("mike", "status-string")):
        d.add_user(name, PW)
        install_hostile(d, name, mode=mode)
        ready(d, name)
    d.add_user("alice", PW)
    ready(d, "alice")
    # The idle normal server is culled although two servers answer nonsense, and those
    # two are judged on the proxy's activity alone (idle too).
    for name in ("alice", "mallory", "mike"):
        culled = wait_for(lambda n=name: [e for e in events(d, "cull") if e["user"] == n],
                          timeout=60, interval=0.5)
        assert "cull.idle_timeout" in culled[0]["detail"]
    wait_for(lambda: not d.containers(all=False), timeout=30)
    assert "judged on the proxy's activity alone" in d.log()


# -- 1. history ---------------------------------------------------------------------------
ATTACKS = {"gzip": "encoding", "endless": "too-large", "trickle": "deadline",
           "lie": "bad-response"}


def test_history_worker_survives_hostile_answers_and_memory_stays_bounded(make_daemon):
    d = make_daemon(auth={"stop_on_logout": False},
                    history={"coalesce_seconds": 0.5, "fetch_timeout": 5.0,
                             "max_attempts": 3})
    d.start()
    for name in ("mallory", "alice", "bob", "carol"):
        d.add_user(name, PW)
    install_hostile(d, "mallory", with_bomb=True)
    mallory = ready(d, "mallory")
    alice = ready(d, "alice")
    put_file(mallory, d, "mallory", "honest.txt", "fine")
    wait_for(lambda: "honest.txt" in versioned(d, "mallory"), timeout=30)
    time.sleep(2)
    baseline = rss(d.proc.pid)

    # Each attack: the change is a dead letter with its reason; alice goes on.
    for mode, reason in ATTACKS.items():
        set_mode(mallory, d, "mallory", mode)
        put_file(mallory, d, "mallory", f"{mode}.txt", "x")
        put_file(alice, d, "alice", f"during-{mode}.txt", "alice's work")
        e = event_about(d, "history-dead-letter", f"{mode}.txt")
        assert reason in e["detail"], e
        wait_for(lambda m=mode: f"during-{m}.txt" in versioned(d, "alice"), timeout=30)

    # 60 s of the worst, while others log in and start servers.
    logins: dict[str, str] = {}

    def others() -> None:
        for name in ("bob", "carol"):
            session, _ = login(d.url, name, PW)
            logins[name] = follow_progress(session, d.url, name)[-1]["phase"]

    thread = threading.Thread(target=others)
    end = time.monotonic() + 60
    n = 0
    thread.start()
    while time.monotonic() < end:
        mode = ("gzip", "endless", "lie")[n % 3]
        set_mode(mallory, d, "mallory", mode)
        put_file(mallory, d, "mallory", f"flood-{n}.txt", "x")
        if n % 10 == 0:
            put_file(alice, d, "alice", "steady.txt", f"version {n}")
        n += 1
        time.sleep(0.2)
    thread.join(120)
    assert logins == {"bob": "ready", "carol": "ready"}
    assert d.proc.poll() is None
    peak = peak_rss(d.proc.pid)
    print(f"daemon RSS: baseline {baseline / MiB:.0f} MiB, peak {peak / MiB:.0f} MiB "
          f"after {n} hostile saves")
    assert peak - baseline < 100 * MiB, (peak, baseline)
    wait_for(lambda: "steady.txt" in versioned(d, "alice"), timeout=30)

    # Admins see the dead letters with their reasons (the newest 100 are kept); so does
    # mallory on her page.  Their events are capped (10 a minute, then a summary).
    def dead_letters() -> dict[str, dict]:
        r = d.cli("--json", "history", "dead-letters", "mallory")
        assert r.returncode == 0, r.stderr
        return {x["path"]: x for x in json.loads(r.stdout)}

    dead = wait_for(lambda: (x := dead_letters()) and f"flood-{n - 1}.txt" in x and x,
                    timeout=60, interval=0.5)  # the worker kept up
    assert len(dead) == 100 and "honest.txt" not in dead
    event_about(d, "history-dead-letter", "the rest this minute are listed by")
    assert len([e for e in events(d, "history-dead-letter") if "flood-" in e["detail"]]) <= 30
    assert {x["reason"].split(":")[1].strip() for x in dead.values()} == {
        "encoding", "too-large", "bad-response"}
    page = mallory.get(f"{d.url}/hub/history/mallory")
    assert page.status_code == 200 and "Not recorded" in page.text and "flood-" in page.text
    human = d.cli("history", "dead-letters", "mallory")
    assert "REASON" in human.stdout and "Content-Encoding" in human.stdout

    # A restart with a poisoned queue: the daemon comes up, gives up on it, goes on.
    set_mode(mallory, d, "mallory", "trickle")
    put_file(mallory, d, "mallory", "restart.txt", "x")
    assert d.stop() in (0, -15)  # twistd ends by re-raising SIGTERM
    assert d.log().rstrip().endswith("Server Shut Down.")
    d.start()
    e = event_about(d, "history-dead-letter", "restart.txt")
    assert "deadline" in e["detail"]
    set_mode(mallory, d, "mallory", "normal")
    put_file(mallory, d, "mallory", "after.txt", "ok")
    put_file(alice, d, "alice", "after-restart.txt", "ok")
    wait_for(lambda: "after.txt" in versioned(d, "mallory"), timeout=30)
    wait_for(lambda: "after-restart.txt" in versioned(d, "alice"), timeout=30)
    assert len([x for x in events(d, "history-dead-letter") if "restart.txt" in x["detail"]]) == 1
    assert d.proc.poll() is None


# -- 9 (half). the history queue cap --------------------------------------------------------
def test_a_full_history_queue_says_so_and_loses_nothing_queued(make_daemon):
    d = make_daemon(history={"coalesce_seconds": 0.5, "fetch_timeout": 10.0, "max_queue": 5})
    d.start()
    d.add_user("mallory", PW)
    install_hostile(d, "mallory")
    mallory = ready(d, "mallory")
    # The worker is held (up to fetch_timeout) by a trickling read of the first save...
    set_mode(mallory, d, "mallory", "trickle")
    put_file(mallory, d, "mallory", "q0.txt", "0")
    time.sleep(1.5)
    # ...while the server answers every save at once: the queue fills up.
    for i in range(1, 5):
        put_file(mallory, d, "mallory", f"q{i}.txt", f"{i}")
    put_file(mallory, d, "mallory", "q2.txt", "2, saved again")  # covered by queued q2
    for i in range(5, 9):
        put_file(mallory, d, "mallory", f"q{i}.txt", f"{i}")    # refused: not queued
    full = event_about(d, "history-queue-full", "history.max_queue = 5", timeout=10)
    assert "q5.txt" in full["detail"]
    assert "is full" in d.log()
    set_mode(mallory, d, "mallory", "normal")
    event_about(d, "history-dead-letter", "q0.txt", timeout=30)
    # Nothing that was queued is lost; the coalesced save is in q2's version.
    wait_for(lambda: {f"q{i}.txt" for i in range(1, 5)} <= versioned(d, "mallory"),
             timeout=30)
    assert not {f"q{i}.txt" for i in range(5, 9)} & versioned(d, "mallory")
    r = d.cli("--json", "history", "list", "mallory", "q2.txt")
    assert r.returncode == 0 and len(json.loads(r.stdout)) == 1
    repo = d.root / "state" / "history" / "mallory.git"
    shown = subprocess.run(["git", "--git-dir", str(repo), "show", "main:q2.txt"],
                           capture_output=True, text=True)
    assert shown.stdout == "2, saved again"
    # Once the queue has room, the next save of a refused file is versioned.
    put_file(mallory, d, "mallory", "q5.txt", "5 again")
    wait_for(lambda: "q5.txt" in versioned(d, "mallory"), timeout=30)

