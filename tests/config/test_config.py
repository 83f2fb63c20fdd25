"""Configuration mistakes stop the daemon with a message that names the key."""

from __future__ import annotations

import subprocess

import pytest

from ipydoc.config.errors import ConfigError
from ipydoc.config.load import from_dict, load
from ipydoc.config.types import parse_size

from support import CLI, TWISTD


@pytest.mark.parametrize("text, message", [
    ('[spawn]\nimgae = "x"\n', "unknown key spawn.imgae"),
    ('[spwan]\nimage = "x"\n', "unknown section [spwan]"),
    ('[spawn]\nstart_timeout = "soon"\n', "spawn.start_timeout must be a number"),
    ('[auth]\nstop_on_logout = "yes"\n', "auth.stop_on_logout must be true or false"),
    ('[server]\nlisten = "tcp:eighty"\n', "server.listen: bad endpoint string 'tcp:eighty'"),
    ('[server]\nlisten = "carrier-pigeon:1"\n', "server.listen: bad endpoint string"),
    ('[spawn]\nmem_limit = "lots"\n', "spawn.mem_limit: not a size"),
    ('[docker]\nstorage = "tape"\n', "docker.storage must be 'volume' or 'bind'"),
    ('[docker]\nstorage = "bind"\n', "docker.bind_root must be set"),
    ('[redis]\nurl = "http://x"\n', "redis.url must be"),
    ('[server]\naccess_log = "access.log"\n', "server.access_log must be"),
    ("[spawn\n", "not valid TOML"),
])
def test_daemon_refuses_bad_config_naming_the_key(tmp_path, text, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    out = subprocess.run(TWISTD + ["-n", "--pidfile=", "ipydoc", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode != 0
    assert message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load(cfg)


def test_missing_config_file(tmp_path):
    out = subprocess.run(TWISTD + ["-n", "--pidfile=", "ipydoc", "--config",
                                   str(tmp_path / "nope.toml")],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode != 0 and "no such configuration file" in out.stderr


def test_example_config_is_valid_and_documents_every_key():
    from dataclasses import fields

    from ipydoc.config.load import Config
    cfg = load("etc/ipydoc.toml")
    text = open("etc/ipydoc.toml").read()
    defaults = Config()
    for section in fields(Config):
        if section.name == "path":
            continue
        assert f"[{section.name}]" in text
        for key in fields(getattr(defaults, section.name)):
            if (section.name, key.name) in NESTED_TABLES:
                continue  # commented-out example tables: the next test
            assert f"\n{key.name} = " in text, f"{section.name}.{key.name} undocumented"
            # the example shows each default
            assert getattr(getattr(cfg, section.name), key.name) == \
                getattr(getattr(defaults, section.name), key.name), key.name


NESTED_TABLES = {("auth", "github"): "auth.github", ("auth", "oidc"): "auth.oidc.NAME"}


def test_example_config_documents_login_provider_tables():
    """[auth.github] and [auth.oidc.NAME] are commented-out examples in etc/ipydoc.toml:
    uncommented, each shows every key of its table with its default."""
    import tomllib
    from dataclasses import asdict

    from ipydoc.config.auth import GithubAuth, OidcAuth
    lines = open("etc/ipydoc.toml").read().splitlines()
    for header, cls in (("auth.github", GithubAuth), ("auth.oidc.NAME", OidcAuth)):
        start = lines.index(f"# [{header}]") + 1
        block = []
        for line in lines[start:]:
            if not line.startswith("#") or line.startswith("# ["):
                break
            if not line.startswith("# #") and " = " in line:
                block.append(line[2:])
        shown = tomllib.loads("\n".join(block))
        assert shown == asdict(cls()), header
        # and the example, uncommented, is a valid table of the real parser
        from_dict({"auth": {"github": {**shown, "client_secret": "s", "client_id": "c",
                                       "orgs": ["o"]}}} if cls is GithubAuth else
                  {"auth": {"oidc": {"name": {**shown, "client_secret": "s", "client_id": "c",
                                              "issuer": "https://id.example.org",
                                              "allow_all": True}}}})


def test_sizes():
    assert parse_size("2G") == 2 * 1024 ** 3
    assert parse_size("512M") == 512 * 1024 ** 2
    assert parse_size("1.5g") == int(1.5 * 1024 ** 3)
    assert parse_size("1024") == 1024
    with pytest.raises(ValueError):
        parse_size("2 lots")


def test_listen_accepts_one_string_or_a_list():
    assert from_dict({"server": {"listen": "tcp:9000"}}).server.listen == ["tcp:9000"]
    assert from_dict({"server": {"listen": ["tcp:9000", "tcp:9001"]}}).server.listen == \
        ["tcp:9000", "tcp:9001"]


def test_cli_without_daemon_says_so(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[server]\nstate_dir = "{tmp_path}/state"\n')
    out = subprocess.run(CLI + ["--config", str(cfg), "user", "list"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 3
    assert "ipydoc is not running" in out.stderr and "Traceback" not in out.stderr
    bad = subprocess.run(CLI + ["--config", str(tmp_path / "none.toml"), "user", "list"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 4 and "no such configuration file" in bad.stderr
