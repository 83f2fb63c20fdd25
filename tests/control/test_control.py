"""Every control command through the real CLI, over the real 0600 unix socket, against a
running daemon with real Docker and Redis.  One daemon for the module; tests run in order.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import pytest
import requests

from support import CLI, docker, login, wait_for

ALICE_PW = "alice-secret-pw"
BOB_PW = "bob-secret-pw-1"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from support import TEST_IMAGE, Daemon

    if subprocess.run(["docker", "image", "inspect", TEST_IMAGE], capture_output=True).returncode:
        pytest.fail(f"test image {TEST_IMAGE} missing (.ci/run builds it)")
    d = Daemon(tmp_path_factory.mktemp("control"))
    d.start()
    yield d
    d.stop()
    d.cleanup_docker()


def ok(site, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    r = site.cli(*args, input=input)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    return r


def js(site, *args: str, input: str | None = None):
    return json.loads(ok(site, "--json", *args, input=input).stdout)


def fails(site, code: int, *args: str, input: str | None = None) -> str:
    r = site.cli(*args, input=input)
    assert r.returncode == code, (args, r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stderr.startswith("ipydoc: "), r.stderr
    return r.stderr


def redis_cli(site, *args: str, input: str | None = None) -> str:
    sock = site.root / "state" / "redis" / "redis.sock"
    return subprocess.run(["redis-cli", "-s", str(sock), *args], capture_output=True,
                          text=True, input=input, check=True).stdout.strip()


def as_nobody(fn) -> str:
    """Run ``fn()`` (returning a str) in a forked child with uid/gid 65534; its answer."""
    import OpenSSL.SSL  # noqa: F401
    import twisted.internet.endpoints  # noqa: F401
    import twisted.internet.reactor  # noqa: F401
    import twisted.protocols.amp  # noqa: F401

    import ipydoc.cli.main  # noqa: F401 - the child cannot read the modules under /root
    import ipydoc.control.commands  # noqa: F401

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            answer = fn()
        except BaseException as e:  # noqa: BLE001
            answer = f"child failed: {e!r}"
        os.write(w, answer.encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r) as f:
        return f.read()


def test_socket_is_private(site):
    state = site.root / "state"
    sock = state / "control.sock"
    st = sock.stat()
    assert st.st_mode & 0o777 == 0o600 and st.st_uid == os.getuid()
    assert state.stat().st_mode & 0o777 == 0o750

    def connect() -> str:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(str(sock))
            return "connected"
        except PermissionError:
            return "refused"

    def cli() -> str:
        import contextlib
        import io

        from ipydoc.cli.main import main
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["--control", str(sock), "status"])
        return f"{code} {err.getvalue()}"

    assert as_nobody(connect) == "refused"
    answer = as_nobody(cli)
    assert answer.startswith("3 ipydoc: no permission") and "Traceback" not in answer
    # The socket's own mode keeps others out even where they can reach the directory.
    os.chmod(state, 0o755)
    try:
        assert as_nobody(connect) == "refused"
        assert as_nobody(cli).startswith("3 ipydoc: no permission")
    finally:
        os.chmod(state, 0o750)


def test_status(site):
    status = js(site, "status")
    assert status["backend_ok"] and status["redis_ok"]
    assert status["version"] and status["users"] == 0 and status["running_servers"] == 0
    assert status["culler"] is False
    assert "Docker" in status["backend"]
    table = ok(site, "status").stdout
    assert "backend_ok" in table and "uptime" in table


def test_user_add_list_show(site):
    ok(site, "user", "add", "alice", "--password-stdin", input=ALICE_PW + "\n")
    ok(site, "user", "add", "bob", "--admin", "--password-stdin", input=BOB_PW + "\n")
    users = js(site, "user", "list")
    assert [(u["name"], u["admin"], u["disabled"], u["server"]) for u in users] == \
        [("alice", False, False, "stopped"), ("bob", True, False, "stopped")]
    # --json also works after the command
    assert json.loads(ok(site, "user", "list", "--json").stdout) == users
    alice = js(site, "user", "show", "alice")
    assert alice["name"] == "alice" and alice["server"]["state"] == "stopped"
    assert alice["sessions"] == 0 and "password" not in json.dumps(alice)
    assert "alice" in ok(site, "user", "show", "alice").stdout


def test_user_errors_have_exit_codes(site):
    assert "already exists" in fails(site, 1, "user", "add", "alice", "--password-stdin",
                                     input="whatever-pw\n")
    assert "invalid user name" in fails(site, 2, "user", "add", "Alice_1", "--password-stdin",
                                        input="whatever-pw\n")
    assert "invalid user name" in fails(site, 2, "user", "show", "x" * 40)
    assert "at least 8" in fails(site, 2, "user", "add", "carol", "--password-stdin",
                                 input="short\n")
    assert "no password" in fails(site, 2, "user", "add", "carol", "--password-stdin", input="")
    for args in (["user", "show", "nobody"], ["user", "disable", "nobody"],
                 ["user", "enable", "nobody"], ["user", "set-admin", "nobody"],
                 ["user", "remove", "nobody"], ["server", "start", "nobody"],
                 ["server", "stop", "nobody"], ["server", "show", "nobody"],
                 ["server", "logs", "nobody"], ["session", "revoke", "nobody"]):
        assert "nobody" in fails(site, 5, *args)
    assert "no password" in fails(site, 2, "user", "passwd", "nobody", "--password-stdin",
                                  input="")
    # argparse errors are usage errors too
    assert site.cli("user", "frobnicate").returncode == 2


def test_set_admin(site):
    assert js(site, "user", "set-admin", "alice") == \
        {"name": "alice", "admin": True, "changed": True}
    assert js(site, "user", "set-admin", "alice", "--off")["admin"] is False
    assert "unchanged" in ok(site, "user", "set-admin", "alice", "--off").stdout
    assert [u["admin"] for u in js(site, "user", "list")] == [False, True]


def test_server_start_show_logs_route_stop(site):
    started = js(site, "server", "start", "alice")
    assert started["state"] == "running"
    assert len(site.containers("alice", all=False)) == 1
    # reached at its address on the users' network (nothing published: test_isolation.py)
    info = json.loads(docker("inspect", site.containers("alice", all=False)[0]))[0]
    ip = info["NetworkSettings"]["Networks"][f"{site.instance}-users"]["IPAddress"]
    assert started["url"] == f"http://{ip}:8888"
    servers = js(site, "server", "list")
    assert [(s["name"], s["state"]) for s in servers] == [("alice", "running")]
    assert "token" not in json.dumps(servers)
    shown = js(site, "server", "show", "alice")
    assert shown["backend"]["running"] and shown["progress"]["phase"] == "ready"
    assert "token" not in json.dumps(shown)
    routes = js(site, "route", "list")
    assert routes == [{"name": "alice", "target": started["url"], "served": True,
                       "stored": True, "last_activity": None}]
    assert "alice" in ok(site, "route", "list").stdout
    logs = ok(site, "server", "logs", "alice", "--tail", "200").stdout
    assert "Jupyter Server" in logs
    token = redis_cli(site, "HGET", "ipydoc:server:alice", "token")
    assert len(token) == 64 and token not in logs  # jupyter prints "?token=..." only


def test_logs_larger_than_one_amp_value_come_in_chunks(site):
    cid = site.containers("alice", all=False)[0]
    # Write 4,000 numbered lines (~400 KB, with multi-byte UTF-8) to the server's stdout.
    script = 'i=1; while [ $i -le 4000 ]; do echo "line $i ünïcødé € $(printf %070d $i)"; ' \
             'i=$((i+1)); done > /proc/1/fd/1'
    docker("exec", cid, "sh", "-c", script)
    out = ok(site, "server", "logs", "alice", "--tail", "0").stdout
    lines = [ln for ln in out.splitlines() if ln.startswith("line ")]
    assert len(lines) == 4000 and len(out.encode()) > 5 * 65536
    assert [int(ln.split()[1]) for ln in lines] == list(range(1, 4001))
    assert lines[1234] == f"line 1235 ünïcødé € {1235:070d}"
    last = ok(site, "server", "logs", "alice", "-n", "3").stdout.splitlines()
    assert [ln.split()[1] for ln in last] == ["3998", "3999", "4000"]
    as_json = js(site, "server", "logs", "alice", "-n", "0")
    assert as_json["name"] == "alice" and as_json["text"] == out


def test_sessions_list_and_revoke(site):
    a1, r1 = login(site.url, "alice", ALICE_PW)
    a2, r2 = login(site.url, "alice", ALICE_PW)
    b1, r3 = login(site.url, "bob", BOB_PW)
    assert r1.status_code == r2.status_code == r3.status_code == 303
    mine = js(site, "session", "list", "alice")
    assert len(mine) == 2 and {s["user"] for s in mine} == {"alice"}
    assert all(0 < s["expires_in"] <= 14 * 86400 for s in mine)
    everyone = js(site, "session", "list")
    assert sorted(s["user"] for s in everyone) == ["alice", "alice", "bob"]
    cookie = a1.cookies.get("ipydoc-session")
    assert all(cookie not in s["sid"] for s in everyone)  # ids are hashes, not cookies
    table = ok(site, "session", "list").stdout
    assert "SID" in table and table.count("alice") == 2
    assert js(site, "user", "show", "alice")["sessions"] == 2

    def logged_in(s: requests.Session) -> bool:
        return s.get(site.url + "/hub/home", allow_redirects=False).status_code == 200

    assert logged_in(a1) and logged_in(a2) and logged_in(b1)
    # Which of alice's sessions belongs to a1?  Revoke one, see which browser lost it.
    sid = mine[0]["sid"]
    assert js(site, "session", "revoke", "--id", sid[:10]) == {"revoked": 1, "user": "alice"}
    assert [logged_in(a1), logged_in(a2)].count(False) == 1
    assert "no session" in fails(site, 5, "session", "revoke", "--id", sid[:10])
    assert "name a user" in fails(site, 2, "session", "revoke")
    assert fails(site, 5, "session", "revoke", "--id", "zz")
    assert js(site, "session", "revoke", "alice") == {"revoked": 1, "user": "alice"}
    assert not logged_in(a1) and not logged_in(a2) and logged_in(b1)
    assert js(site, "session", "list", "alice") == []


def test_disable_ends_sessions_and_stops_the_server_enable_undoes(site):
    session, r = login(site.url, "alice", ALICE_PW)
    assert r.status_code == 303
    assert len(site.containers("alice", all=False)) == 1
    result = js(site, "user", "disable", "alice")
    assert result == {"name": "alice", "disabled": True, "sessions_revoked": 1,
                      "server_stopped": True}
    assert site.containers("alice") == []
    assert session.get(site.url + "/hub/home", allow_redirects=False).status_code == 302
    _, again = login(site.url, "alice", ALICE_PW)
    assert again.status_code == 403 and "disabled" in again.text
    assert js(site, "user", "show", "alice")["disabled"] is True
    assert "disabled" in fails(site, 1, "server", "start", "alice")
    assert js(site, "user", "enable", "alice")["changed"] is True
    assert js(site, "user", "enable", "alice")["changed"] is False
    _, back = login(site.url, "alice", ALICE_PW)
    assert back.status_code == 303


def test_passwd_changes_the_password_and_ends_sessions(site):
    session, _ = login(site.url, "bob", BOB_PW)
    assert session.get(site.url + "/hub/home", allow_redirects=False).status_code == 200
    r = js(site, "user", "passwd", "bob", "--password-stdin", input="bob-new-password\n")
    assert r["sessions_revoked"] >= 1
    assert session.get(site.url + "/hub/home", allow_redirects=False).status_code == 302
    assert login(site.url, "bob", BOB_PW)[1].status_code == 403
    kept, r2 = login(site.url, "bob", "bob-new-password")
    assert r2.status_code == 303
    js(site, "user", "passwd", "bob", "--keep-sessions", "--password-stdin",
       input="bob-newer-password\n")
    assert kept.get(site.url + "/hub/home", allow_redirects=False).status_code == 200
    assert "at least 8" in fails(site, 2, "user", "passwd", "bob", "--password-stdin",
                                 input="short\n")


def test_server_stop_is_idempotent(site):
    wait_for(lambda: js(site, "server", "show", "alice")["state"] == "running", timeout=60)
    assert js(site, "server", "stop", "alice") == {"name": "alice", "stopped": True}
    assert site.containers("alice") == []
    assert js(site, "server", "stop", "alice") == {"name": "alice", "stopped": False}
    assert [r["name"] for r in js(site, "route", "list")] == ["bob"]  # bob logged in
    assert "no container" in fails(site, 5, "server", "logs", "alice")
    started = js(site, "server", "start", "alice", "--no-wait")
    assert started["state"] in ("starting", "running")
    wait_for(lambda: js(site, "server", "show", "alice")["state"] == "running", timeout=60)


def test_cull_says_no_culler_is_configured(site):
    assert "no idle culler configured" in fails(site, 6, "cull")
    assert "no idle culler configured" in fails(site, 6, "--json", "cull")


def test_events_recent_and_filtered(site):
    events = [json.loads(line) for line in ok(site, "--json", "events", "-n", "200")
              .stdout.splitlines()]
    kinds = [e["kind"] for e in events]
    for kind in ("user-added", "user-admin", "spawn", "login", "stop", "user-disabled",
                 "user-enabled", "user-password", "sessions-revoked"):
        assert kind in kinds, kind
    ids = [tuple(map(int, e["id"].split("-"))) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    only = [json.loads(line) for line in ok(site, "--json", "events", "-n", "50", "--user",
                                            "bob", "--kind", "login").stdout.splitlines()]
    assert only and all(e["user"] == "bob" and e["kind"] == "login" for e in only)
    assert len(ok(site, "events", "-n", "5").stdout.splitlines()) == 5
    assert ok(site, "events", "-n", "0").stdout == ""


def test_events_follow_live(site):
    wait_for(lambda: js(site, "server", "show", "alice")["state"] == "running", timeout=60)
    last = json.loads(ok(site, "--json", "events", "-n", "1").stdout)["id"]
    follower = subprocess.Popen(
        CLI + ["--config", str(site.config_path), "--json", "events", "--follow", "-n", "0",
               "--after", last, "--max", "2", "--for", "90", "--user", "alice"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)  # it is now waiting in a long poll
        t0 = time.monotonic()
        _, r = login(site.url, "alice", ALICE_PW)
        assert r.status_code == 303
        line = follower.stdout.readline()
        login_latency = time.monotonic() - t0
        assert json.loads(line)["kind"] == "login"
        assert login_latency < 2.0  # woken by the event, not by a poll interval
        # A container that dies outside ipydoc is an event too.
        cid = site.containers("alice", all=False)[0]
        docker("rm", "-f", cid)
        gone = json.loads(follower.stdout.readline())
        assert gone["kind"] == "server-gone" and gone["user"] == "alice", gone
        assert follower.wait(30) == 0  # --max 2 reached
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()


def test_events_follow_ends_with_exit_3_when_the_daemon_goes(tmp_path_factory,
                                                            notebook_image):
    from support import Daemon

    d = Daemon(tmp_path_factory.mktemp("events-stop"))
    d.start()
    follower = subprocess.Popen(CLI + ["--config", str(d.config_path), "events", "-f"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        d.stop()
        assert follower.wait(30) == 3
        err = follower.stderr.read()
        assert "lost the connection" in err and "Traceback" not in err
    finally:
        if follower.poll() is None:
            follower.kill()
        d.stop()
        d.cleanup_docker()


def test_user_list_pages_through_5000_users(site):
    # Create them straight in Redis (argon2 for 5,000 passwords would take minutes); the
    # listing goes through the real CLI and control socket.
    hashed = redis_cli(site, "HGET", "ipydoc:user:bob", "password")
    names = [f"u{i:05d}-{'x' * 20}" for i in range(5000)]
    commands = []
    for n in names:
        commands.append(f'HSET ipydoc:user:{n} password "{hashed}" admin 0 disabled 0 '
                        f'created 1700000000.5')
        commands.append(f"ZADD ipydoc:users 0 {n}")
    redis_cli(site, input="\n".join(commands) + "\n")
    t0 = time.monotonic()
    users = js(site, "user", "list")
    elapsed = time.monotonic() - t0
    assert len(users) == 5002
    assert [u["name"] for u in users] == sorted(["alice", "bob", *names])
    assert len(json.dumps(users)) > 4 * 65536  # far more than one AMP value
    table = ok(site, "user", "list").stdout.splitlines()
    assert len(table) == 5003 and table[0].split()[0] == "NAME"
    assert js(site, "status")["users"] == 5002
    print(f"listing 5,002 users took {elapsed:.2f}s")


def test_remove_keeps_files_unless_purged(site):
    vol = f"{site.instance}-home-alice"
    assert docker("volume", "inspect", vol, check=False)
    assert "--yes" in fails(site, 2, "user", "remove", "alice", "--purge")
    removed = js(site, "user", "remove", "bob")
    assert removed["removed"] == "bob" and removed["purged"] is False
    assert "bob" not in {u["name"] for u in js(site, "user", "list")}
    assert fails(site, 5, "user", "show", "bob")
    assert login(site.url, "bob", "bob-newer-password")[1].status_code == 403

    wait_for(lambda: js(site, "server", "show", "alice")["state"] in ("running", "stopped"),
             timeout=60)
    removed = js(site, "user", "remove", "alice", "--purge", "--yes")
    assert removed["purged"] is True
    assert site.containers("alice") == []
    assert docker("volume", "ls", "-q", "--filter", f"name=^{vol}$") == ""
    assert redis_cli(site, "EXISTS", "ipydoc:server:alice") == "0"
    kinds = [json.loads(x)["kind"] for x in
             ok(site, "--json", "events", "-n", "5", "--user", "alice").stdout.splitlines()]
    assert kinds[-2:] == ["files-purged", "user-removed"]
