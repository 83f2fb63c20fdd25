"""Password guessing is paused per account and per client address, through the real daemon.

Each daemon here has its own small limits (start_on_login off: no containers needed).
Every request comes from 127.0.0.1, so the per-address limit is set out of the way except
in the test about it.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from support import Daemon, login, wait_for

ALICE_PW = "alice-real-password"
BOB_PW = "bob-real-password"


def daemon(tmp_path_factory, name: str, **auth) -> Daemon:
    d = Daemon(tmp_path_factory.mktemp(name),
               {"auth": {"start_on_login": False, "stop_on_logout": False, **auth}})
    d.start()
    d.add_user("alice", ALICE_PW)
    d.add_user("bob", BOB_PW)
    return d


@pytest.fixture(scope="module")
def short(tmp_path_factory):
    d = daemon(tmp_path_factory, "short", login_attempts_per_account=3,
               login_attempts_per_address=1000, login_window=3)
    yield d
    d.stop()


@pytest.fixture(scope="module")
def long(tmp_path_factory):
    d = daemon(tmp_path_factory, "long", login_attempts_per_account=3,
               login_attempts_per_address=1000, login_window=900)
    d.add_user("carol", "carol-real-password")
    yield d
    d.stop()


def error_of(r) -> str:
    m = re.search(r'<p class="error" role="alert">([^<]*)</p>', r.text)
    return m.group(1) if m else ""


def attempt(site: Daemon, name: str, password: str):
    return login(site.url, name, password)[1]


def test_guessing_pauses_the_account_and_the_right_password_works_after_the_window(short):
    answers = [attempt(short, "alice", f"guess-{i}") for i in range(3)]
    assert [r.status_code for r in answers] == [403, 403, 429]
    assert error_of(answers[0]) == "Wrong user name or password."
    assert "Too many failed logins for this account" in error_of(answers[2])
    assert "try again in" in error_of(answers[2])
    assert 1 <= int(answers[2].headers["Retry-After"]) <= 3

    # paused: even the right password is refused, and no session is made
    session, right = login(short.url, "alice", ALICE_PW)
    assert right.status_code == 429 and "Location" not in right.headers
    assert "Too many failed logins for this account" in error_of(right)
    assert session.get(short.url + "/hub/home", allow_redirects=False).status_code == 302

    # another account from the same address is not affected
    assert attempt(short, "bob", BOB_PW).status_code == 303

    # once the window is over the real user gets in (refused attempts did not extend it)
    ok = wait_for(lambda: (r := login(short.url, "alice", ALICE_PW))[1].status_code == 303
                  and r, timeout=20, interval=0.3)
    session, _ = ok
    assert session.get(short.url + "/hub/home", allow_redirects=False).status_code == 200
    events = short.cli("events", "--user", "alice", "-n", "50").stdout
    assert "login-paused" in events and "login-refused" in events


def test_unknown_names_are_paused_the_same_way(long):
    """The limiter does not tell which names exist: same answers, same words."""
    real = [attempt(long, "carol", f"nope-{i}") for i in range(4)]
    unknown = [attempt(long, "nobody-here", f"nope-{i}") for i in range(4)]
    assert [r.status_code for r in unknown] == [r.status_code for r in real] == \
        [403, 403, 429, 429]
    assert [error_of(r) for r in unknown] == [error_of(r) for r in real]
    assert [r.headers.get("Retry-After") is None for r in unknown] == \
        [r.headers.get("Retry-After") is None for r in real]
    assert attempt(long, "carol", "carol-real-password").status_code == 429


def test_a_success_clears_the_accounts_count(long):
    assert [attempt(long, "alice", f"bad-{i}").status_code for i in range(2)] == [403, 403]
    assert attempt(long, "alice", ALICE_PW).status_code == 303
    # without the reset the second of these would be the third failure, and paused
    assert [attempt(long, "alice", f"bad-{i}").status_code for i in range(2)] == [403, 403]
    assert attempt(long, "alice", ALICE_PW).status_code == 303


def test_names_are_counted_normalised(long):
    answers = [attempt(long, name, "wrong-password") for name in ("Bob", " bob", "BOB ")]
    assert [r.status_code for r in answers] == [403, 403, 429]
    assert attempt(long, "bob", BOB_PW).status_code == 429


def test_admin_password_reset_unpauses_and_ends_sessions(long):
    # bob is paused by the test before (a 900 s window)
    assert attempt(long, "bob", BOB_PW).status_code == 429
    elsewhere, first = login(long.url, "alice", ALICE_PW)
    assert first.status_code == 303
    r = long.cli("user", "passwd", "alice", "--password-stdin", input="alice-new-password\n")
    assert r.returncode == 0, r.stderr
    assert elsewhere.get(long.url + "/hub/home", allow_redirects=False).status_code == 302
    for i in range(3):
        attempt(long, "alice", f"bad-{i}")
    assert attempt(long, "alice", "alice-new-password").status_code == 429
    r = long.cli("user", "passwd", "alice", "--password-stdin",
                 input="alice-newest-password\n")
    assert r.returncode == 0, r.stderr
    assert attempt(long, "alice", "alice-newest-password").status_code == 303
    assert attempt(long, "alice", "alice-new-password").status_code == 403


def test_one_address_guessing_many_names_is_paused(tmp_path_factory):
    d = daemon(tmp_path_factory, "address", login_attempts_per_account=100,
               login_attempts_per_address=4, login_window=900)
    try:
        names = ["carol", "dave", "erin", "frank"]
        answers = [attempt(d, n, "some-guess") for n in names]
        assert [r.status_code for r in answers] == [403, 403, 403, 429]
        assert "Too many failed logins for your network address" in error_of(answers[-1])
        assert int(answers[-1].headers["Retry-After"]) > 800
        # every account, the real ones with their right password too, from this address
        for name, pw in (("alice", ALICE_PW), ("bob", BOB_PW), ("zed", "whatever-pw")):
            r = attempt(d, name, pw)
            assert r.status_code == 429, name
            assert "your network address" in error_of(r)
        assert "login refused for alice from 127.0.0.1" in d.log()
    finally:
        d.stop()


def test_another_address_is_not_paused(tmp_path_factory):
    """The address pause is per address: the same daemon over IPv6 loopback still logs in."""
    import socket

    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        port6 = s.getsockname()[1]
    d = Daemon(tmp_path_factory.mktemp("v6"),
               {"auth": {"start_on_login": False, "login_attempts_per_account": 100,
                         "login_attempts_per_address": 2, "login_window": 900}})
    d.overrides["server"] = {"listen": [f"tcp:{d.port}:interface=127.0.0.1",
                                        f"tcp6:{port6}:interface=\\:\\:1"]}
    d.start()
    try:
        d.add_user("alice", ALICE_PW)
        assert [attempt(d, n, "guess-pw").status_code for n in ("x", "y")] == [403, 429]
        assert attempt(d, "alice", ALICE_PW).status_code == 429
        assert login(f"http://[::1]:{port6}", "alice", ALICE_PW)[1].status_code == 303
        assert "login refused for x from 127.0.0.1" in d.log()
    finally:
        d.stop()


@pytest.mark.parametrize("host, group", [
    ("192.0.2.7", "192.0.2.7"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("::ffff:192.0.2.7", "192.0.2.7"),
    ("fe80::1%eth0", "fe80::/64"),
    ("", "local"),
])
def test_addresses_are_grouped_ipv6_by_64(host, group):
    from ipydoc.access.login_limits import address_group

    assert address_group(host) == group


@pytest.mark.parametrize("key, value, message", [
    ("login_attempts_per_account", -1, "auth.login_attempts_per_account must be 0"),
    ("login_attempts_per_address", "ten", "auth.login_attempts_per_address must be a whole"),
    ("login_window", 0, "auth.login_window must be positive"),
])
def test_bad_limits_stop_the_daemon_naming_the_key(tmp_path, key, value, message):
    from support import TWISTD

    cfg = tmp_path / "bad.toml"
    cfg.write_text(f"[auth]\n{key} = {value!r}\n".replace("'", '"'))
    out = subprocess.run(TWISTD + ["-n", "--pidfile=", "ipydoc", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode != 0 and message in out.stderr, out.stderr
