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
        if section.name in ("path", "profiles"):  # [[profiles]]: test_profiles_example
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


@pytest.mark.parametrize("value, ok", [(0, True), (10, True), (2.5, True), (-1, False),
                                       (7200, False)])
def test_drain_timeout_is_checked(value, ok):
    """``server.drain_timeout``: seconds of graceful drain on stop (docs/drain.md)."""
    if ok:
        assert from_dict({"server": {"drain_timeout": value}}).server.drain_timeout == value
    else:
        with pytest.raises(ConfigError, match="server.drain_timeout must be between 0"):
            from_dict({"server": {"drain_timeout": value}})


@pytest.mark.parametrize("content, mode, message", [
    ("t" * 32, 0o644, "readable by everyone"),
    ("", 0o600, "is empty"),
    ("short-token", 0o600, "shorter than 16 characters"),
    ("two words here, long enough", 0o600, "contains whitespace"),
    (None, 0o600, "cannot read"),
])
def test_metrics_token_file_is_checked(tmp_path, content, mode, message):
    """``metrics.token_file``: readable, not world-readable, a token of 16+ characters."""
    path = tmp_path / "metrics-token"
    if content is not None:
        path.write_text(content + "\n")
        path.chmod(mode)
    with pytest.raises(ConfigError, match=f"metrics.token_file: .*{message}"):
        from_dict({"metrics": {"token_file": str(path)}})


def test_metrics_section_defaults_off_and_checks_listen(tmp_path):
    cfg = from_dict({})
    assert (cfg.metrics.listen, cfg.metrics.token_file, cfg.metrics.per_user) == ("", "", False)
    with pytest.raises(ConfigError, match="metrics.listen: bad endpoint string 'tcp:nine'"):
        from_dict({"metrics": {"listen": "tcp:nine"}})
    good = tmp_path / "metrics-token"
    good.write_text("t" * 40 + "\n")
    good.chmod(0o640)
    cfg = from_dict({"metrics": {"listen": "tcp:9102:interface=127.0.0.1",
                                 "token_file": str(good), "per_user": True}})
    assert cfg.metrics.per_user and cfg.metrics.token_file == str(good)


@pytest.mark.parametrize("cull, message", [
    ({"pause_after": -1}, "cull.pause_after must be 0 (never pause) or positive"),
    ({"pause_after": 600, "idle_timeout": 300}, "cull.pause_after (600 s) must be shorter "
                                               "than cull.idle_timeout (300 s)"),
    ({"pause_after": 60, "idle_timeout": 3600}, None),
    ({"pause_after": 60}, None),
])
def test_cull_pause_after_is_checked(cull, message):
    if message is None:
        assert from_dict({"cull": cull}).cull.pause_after == cull["pause_after"]
    else:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            from_dict({"cull": cull})
    assert from_dict({}).cull.pause_after == 0.0  # the default: never pause


def test_history_user_repo_keys_default_and_are_checked():
    """``history.user_repos`` (on) and ``history.user_repo_allow_http`` (off): issue 18."""
    cfg = from_dict({})
    assert (cfg.history.user_repos, cfg.history.user_repo_allow_http) == (True, False)
    cfg = from_dict({"history": {"user_repos": False, "user_repo_allow_http": True}})
    assert (cfg.history.user_repos, cfg.history.user_repo_allow_http) == (False, True)
    for key in ("user_repos", "user_repo_allow_http"):
        with pytest.raises(ConfigError, match=f"history.{key} must be true or false"):
            from_dict({"history": {key: "yes"}})


def test_proxy_front_end_defaults_and_is_checked():
    """``proxy.front_end``: "lean" or "twisted" (docs/front_end.md, issue 16)."""
    assert from_dict({}).proxy.front_end == "lean"
    assert from_dict({"proxy": {"front_end": "twisted"}}).proxy.front_end == "twisted"
    with pytest.raises(ConfigError, match="proxy.front_end must be one of 'lean', 'twisted'"):
        from_dict({"proxy": {"front_end": "nginx"}})


def test_spawn_cold_login_keys_default_and_are_checked():
    """``spawn.static_cache``, ``start_wait``, ``prestart_on_home`` (docs/cold_login.md)."""
    spawn = from_dict({}).spawn
    assert (spawn.static_cache, spawn.start_wait, spawn.prestart_on_home) == (True, 30.0, False)
    spawn = from_dict({"spawn": {"static_cache": False, "start_wait": 0,
                                 "prestart_on_home": True}}).spawn
    assert (spawn.static_cache, spawn.start_wait, spawn.prestart_on_home) == (False, 0, True)
    with pytest.raises(ConfigError, match="spawn.start_wait must be 0"):
        from_dict({"spawn": {"start_wait": -1}})
    for key in ("static_cache", "prestart_on_home", "prestart_on_login"):
        with pytest.raises(ConfigError, match=f"spawn.{key} must be true or false"):
            from_dict({"spawn": {key: "yes"}})


def test_spawn_prestart_on_login_keys_default_and_are_checked():
    """``spawn.prestart_on_login`` (on) and ``prestart_grace`` (120 s, positive)."""
    spawn = from_dict({}).spawn
    assert (spawn.prestart_on_login, spawn.prestart_grace) == (True, 120.0)
    spawn = from_dict({"spawn": {"prestart_on_login": False, "prestart_grace": 5}}).spawn
    assert (spawn.prestart_on_login, spawn.prestart_grace) == (False, 5)
    for bad, says in ((0, "a positive number"), (-1, "a positive number"),
                      ("soon", "a number"), (True, "a number")):
        with pytest.raises(ConfigError, match=f"spawn.prestart_grace must be {says}"):
            from_dict({"spawn": {"prestart_grace": bad}})


def test_spawn_max_named_servers_defaults_and_is_checked():
    """``spawn.max_named_servers`` (issue 19): 5 by default, 0 turns named servers off."""
    assert from_dict({}).spawn.max_named_servers == 5
    assert from_dict({"spawn": {"max_named_servers": 0}}).spawn.max_named_servers == 0
    assert from_dict({"spawn": {"max_named_servers": 12}}).spawn.max_named_servers == 12
    for bad in (-1, 2.5, "5"):
        with pytest.raises(ConfigError, match="spawn.max_named_servers"):
            from_dict({"spawn": {"max_named_servers": bad}})
