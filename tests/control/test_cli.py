"""The CLI on its own: help, finding the control socket, clear errors and exit codes
when there is no daemon (the commands themselves are tested in test_control*.py)."""

from __future__ import annotations

import argparse
import os
import subprocess

import pytest

from ipydoc.cli.parser import build_parser

from support import CLI


def every_command() -> list[list[str]]:
    """Every command and subcommand the parser offers (so a new one cannot miss its help)."""
    out: list[list[str]] = []

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs and prefix:
            out.append(prefix)
        for action in subs:
            for name, child in action.choices.items():
                walk(child, prefix + [name])

    walk(build_parser(), [])
    return out


COMMANDS = every_command()


def cli(*args: str, env: dict[str, str] | None = None, cwd: str = "/"):
    full = {k: v for k, v in os.environ.items() if not k.startswith("IPYDOC_")}
    full.update(env or {})
    return subprocess.run(CLI + list(args), capture_output=True, text=True, env=full,
                          timeout=60, cwd=cwd)


def test_help_lists_every_command_and_exit_codes():
    r = cli("--help")
    assert r.returncode == 0
    for group in ("status", "user", "server", "route", "session", "cull", "events", "image"):
        assert f"    {group}" in r.stdout
    assert "exit codes" in r.stdout and "6 not available" in r.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command):
    r = cli(*command, "--help")
    assert r.returncode == 0 and r.stdout.startswith(f"usage: ipydoc {' '.join(command)}")
    assert len(r.stdout.splitlines()) >= 4


def test_usage_errors_exit_2():
    assert cli().returncode == 2
    assert cli("user").returncode == 2
    r = cli("server", "logs", "alice", "--tail", "many")
    assert r.returncode == 2 and "invalid int" in r.stderr


def test_invalid_names_are_refused_before_connecting(tmp_path):
    sock = tmp_path / "nothing-here.sock"
    for args in (["user", "show", "Bad_Name"], ["server", "start", "x-"],
                 ["session", "list", "a" * 33], ["events", "--user", "UPPER"]):
        r = cli("--control", str(sock), *args)
        assert r.returncode == 2 and "invalid user name" in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr


def test_socket_from_config_env_and_option(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[server]\nstate_dir = "{tmp_path}/state"\n')
    r = cli("--config", str(cfg), "status")
    assert r.returncode == 3 and f"{tmp_path}/state/control.sock" in r.stderr
    r = cli("status", env={"IPYDOC_CONFIG": str(cfg)})
    assert r.returncode == 3 and f"{tmp_path}/state/control.sock" in r.stderr
    cfg.write_text(f'[control]\nsocket = "{tmp_path}/ctl.sock"\n')
    r = cli("--config", str(cfg), "user", "list")
    assert r.returncode == 3 and f"{tmp_path}/ctl.sock" in r.stderr
    r = cli("status", env={"IPYDOC_CONTROL": f"{tmp_path}/env.sock"})
    assert r.returncode == 3 and f"{tmp_path}/env.sock" in r.stderr
    r = cli("--control", f"unix:{tmp_path}/opt.sock", "status",
            env={"IPYDOC_CONTROL": f"{tmp_path}/env.sock"})
    assert r.returncode == 3 and f"{tmp_path}/opt.sock" in r.stderr
    # --config wins over $IPYDOC_CONTROL (you asked for that daemon)
    r = cli("--config", str(cfg), "status", env={"IPYDOC_CONTROL": f"{tmp_path}/env.sock"})
    assert f"{tmp_path}/ctl.sock" in r.stderr


def test_stale_socket_means_not_running(tmp_path):
    import socket

    path = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()  # the file stays, nobody listens: a daemon that was killed
    r = cli("--control", str(path), "status")
    assert r.returncode == 3 and "not running or not answering" in r.stderr
    assert "Traceback" not in r.stderr


def test_config_errors_exit_4(tmp_path):
    r = cli("--config", str(tmp_path / "none.toml"), "status")
    assert r.returncode == 4 and "no such configuration file" in r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[spawn]\nimgae = 1\n")
    r = cli("--config", str(bad), "user", "list")
    assert r.returncode == 4 and "unknown key spawn.imgae" in r.stderr
    r = cli("status", cwd=str(tmp_path))  # no config anywhere
    assert r.returncode == 4 and "no configuration file" in r.stderr


def test_a_socket_activated_config_is_usable_by_the_cli(tmp_path):
    """The CLI reads the daemon's config, which under systemd names a systemd: endpoint
    whose descriptor only the daemon has; that must not make the file 'invalid'."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[server]\nstate_dir = "{tmp_path}/state"\n'
                   'listen = ["systemd:domain=INET6:index=0"]\n')
    r = cli("--config", str(cfg), "status")
    assert r.returncode == 3 and "not running" in r.stderr, r.stderr
    cfg.write_text('[server]\nlisten = ["systemd:domain=INET"]\n')
    r = cli("--config", str(cfg), "status")
    assert r.returncode == 4 and "systemd:domain=INET:index=N" in r.stderr


def test_purge_needs_confirmation(tmp_path):
    r = cli("--control", str(tmp_path / "x.sock"), "user", "remove", "alice", "--purge")
    assert r.returncode == 2 and "--yes" in r.stderr
