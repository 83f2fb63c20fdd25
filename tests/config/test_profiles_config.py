"""``[[profiles]]``, ``[groups]`` and the login providers' group keys: what is accepted,
and that each mistake is refused with an error naming the key."""

from __future__ import annotations

import tomllib

import pytest

from ipydoc.config.errors import ConfigError
from ipydoc.config.load import from_dict, load
from ipydoc.config.profiles import Profile, ProfileVolume

BASE = {"name": "course", "image": "ipydoc-test-notebook:latest"}


def cfg(*profiles: dict, **groups: object):
    data: dict = {"profiles": list(profiles)}
    if groups:
        data["groups"] = groups
    return from_dict(data)


def refused(match: str, *profiles: dict, **groups: object) -> None:
    with pytest.raises(ConfigError, match=match):
        cfg(*profiles, **groups)


def test_example_profile_block_shows_every_key_with_its_default():
    lines = open("etc/ipydoc.toml").read().splitlines()
    start = lines.index("# [[profiles]]")
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        if not line.startswith("# #") and (" = " in line or line.startswith("# [[")):
            block.append(line[2:].split("  #")[0])
    shown = tomllib.loads("\n".join(block))["profiles"][0]
    defaults = Profile()
    for key in ("display_name", "description", "mem_limit", "cpu_limit", "pids_limit",
                "gpus", "environment"):
        assert shown[key] == getattr(defaults, key), key
    # uncommented and given an image, the example is a valid profile
    c = from_dict({"profiles": [{**shown, "image": "x:1"}]})
    assert c.profiles[0].volumes == [ProfileVolume("/srv/course-material",
                                                   "/home/jovyan/course")]


def test_no_profiles_is_the_implicit_default():
    c = load("etc/ipydoc.toml")
    assert c.profiles == []
    assert c.groups.profiles_for_everyone == ["default"]
    assert c.groups.default_profile == "default"


def test_a_full_profile_is_read():
    c = cfg({**BASE, "name": "default"},
            {**BASE, "display_name": "Course", "description": "d", "mem_limit": "1G",
             "cpu_limit": 0.5, "pids_limit": 200, "gpus": 1,
             "environment": {"COURSE": "stats"},
             "volumes": [{"source": "/srv/material", "target": "/home/jovyan/material"},
                         {"source": "shared-data", "target": "/data"}]},
            profiles_for_everyone=["default"])
    p = c.profiles[1]
    assert (p.title, p.mem_bytes, p.cpu_limit, p.pids_limit, p.gpus) == \
        ("Course", 1 << 30, 0.5, 200, 1)
    assert p.environment == {"COURSE": "stats"}
    assert [v.source for v in p.volumes] == ["/srv/material", "shared-data"]


@pytest.mark.parametrize("profile, match", [
    ({"name": "Bad Name"}, r"profiles\[0\]\.name"),
    ({"image": ""}, r"image must name an image"),
    ({"mem_limit": "lots"}, r"profiles\[0\]\.mem_limit"),
    ({"cpu_limit": -2}, r"cpu_limit"),
    ({"pids_limit": -5}, r"pids_limit"),
    ({"gpus": -3}, r"gpus"),
    ({"environment": {"1BAD": "x"}}, r"environment: '1BAD'"),
    ({"environment": {"JUPYTER_TOKEN": "x"}}, r"environment: 'JUPYTER_TOKEN'"),
    ({"environment": {"A": 1}}, r"environment\.A must be a string"),
    ({"volumes": [{"source": "/srv/x", "target": "rel/path"}]}, r"clean absolute path"),
    ({"volumes": [{"source": "/srv/x", "target": "/home/jovyan/../x"}]}, r"clean absolute"),
    ({"volumes": [{"source": "/srv/x", "target": "/etc"}]}, r"system directory"),
    ({"volumes": [{"source": "/srv/x", "target": "/home/jovyan"}]}, r"user's files"),
    ({"volumes": [{"source": "/etc/ssl", "target": "/data"}]}, r"source '/etc/ssl'"),
    ({"volumes": [{"source": "/var/run/docker.sock", "target": "/data"}]}, r"system dir"),
    ({"volumes": [{"source": "/", "target": "/data"}]}, r"system directory"),
    ({"volumes": [{"source": "bad name!", "target": "/data"}]}, r"volume name"),
    ({"volumes": [{"source": "a", "target": "/d"}, {"source": "b", "target": "/d"}]},
     r"mounted twice"),
    ({"volumes": [{"source": "a", "target": "/d", "mode": "rw"}]},
     r"unknown key profiles\[0\]\.volumes\[0\]\.mode"),
    ({"volumes": {"source": "a"}}, r"array of tables"),
    ({"nope": 1}, r"unknown key profiles\[0\]\.nope"),
])
def test_profile_mistakes_are_refused(profile: dict, match: str):
    refused(match, {**BASE, **profile}, profiles_for_everyone=["course"],
            default_profile="course")


def test_profiles_must_be_an_array_of_tables_and_names_unique():
    with pytest.raises(ConfigError, match="array of tables"):
        from_dict({"profiles": {"name": "x"}})
    refused("used twice", BASE, BASE, profiles_for_everyone=["course"],
            default_profile="course")


def test_groups_must_name_existing_profiles():
    refused(r"profiles_for_everyone names 'gpu'", {**BASE, "name": "default"},
            profiles_for_everyone=["gpu"])
    refused(r"default_profile 'gpu' is no profile", {**BASE, "name": "default"},
            default_profile="gpu")
    # with profiles but none called "default", the defaults of [groups] must be changed
    refused(r"profiles_for_everyone names 'default'", BASE)
    with pytest.raises(ConfigError, match="unknown key groups.nope"):
        from_dict({"groups": {"nope": 1}})


def test_provider_group_keys():
    github = {"client_id": "c", "client_secret": "s", "orgs": ["o"]}
    c = from_dict({"auth": {"github": {**github, "group_teams": {"o/teachers": "teachers"}}}})
    assert c.auth.github.group_teams == {"o/teachers": "teachers"}
    with pytest.raises(ConfigError, match="group_teams entries"):
        from_dict({"auth": {"github": {**github, "group_teams": {"teachers": "t"}}}})
    with pytest.raises(ConfigError, match="group_teams.o/t: the group name 'Bad Group'"):
        from_dict({"auth": {"github": {**github, "group_teams": {"o/t": "Bad Group"}}}})
    oidc = {"issuer": "https://id.example.org", "client_id": "c", "client_secret": "s",
            "allow_all": True}
    c = from_dict({"auth": {"oidc": {"lab": {**oidc, "groups_claim": "groups",
                                             "groups_prefix": "ipydoc-",
                                             "groups_map": {"x": "y"}}}}})
    assert c.auth.oidc["lab"].groups_claim == "groups"
    with pytest.raises(ConfigError, match="groups_claim must be set"):
        from_dict({"auth": {"oidc": {"lab": {**oidc, "groups_prefix": "p-"}}}})
    with pytest.raises(ConfigError, match="groups_map.x: the group name"):
        from_dict({"auth": {"oidc": {"lab": {**oidc, "groups_claim": "g",
                                             "groups_map": {"x": "no way"}}}}})
