"""The one profile rule (:mod:`ipydoc.servers.profiles`) and what a profile puts into the
Docker and Swarm bodies, on the real config loader and the real body builders."""

from __future__ import annotations

import pytest

from ipydoc.backends.base import ServerSpec, SharedVolume
from ipydoc.backends.docker_body import ContainerBody
from ipydoc.backends.swarm_body import ServiceBody
from ipydoc.config.load import from_dict
from ipydoc.servers.profiles import Catalogue, Profile, ProfileRefused, effective_limits
from ipydoc.state.groups import Group

CONFIG = {
    "profiles": [
        {"name": "default", "image": "base:1"},
        {"name": "course", "display_name": "Course", "image": "course:1", "mem_limit": "1G",
         "environment": {"COURSE": "stats"},
         "volumes": [{"source": "/srv/material", "target": "/home/jovyan/material"},
                     {"source": "datasets", "target": "/data"}]},
        {"name": "gpu", "image": "gpu:1", "gpus": 1, "cpu_limit": 4.0},
    ],
    "groups": {"profiles_for_everyone": ["default"], "default_profile": "default"},
}


@pytest.fixture
def catalogue() -> Catalogue:
    cfg = from_dict(CONFIG)
    return Catalogue.build(cfg.profiles, cfg.groups)


def test_offered_is_everyone_plus_the_groups(catalogue):
    assert [p.name for p in catalogue.offered([])] == ["default"]
    students = Group("students", profiles=("course",))
    gpu = Group("gpu-users", profiles=("gpu", "course", "no-such-profile"))
    assert [p.name for p in catalogue.offered([students])] == ["default", "course"]
    assert [p.name for p in catalogue.offered([students, gpu])] == ["default", "course", "gpu"]


def test_resolve_refuses_what_is_not_offered(catalogue):
    students = [Group("students", profiles=("course",))]
    assert catalogue.resolve(students, "course").image == "course:1"
    with pytest.raises(ProfileRefused) as e:
        catalogue.resolve(students, "gpu")
    assert e.value.kind == "bad_profile" and "not offered to you" in e.value.message
    with pytest.raises(ProfileRefused, match="there is no profile 'nope'"):
        catalogue.resolve(students, "nope")


def test_resolve_without_a_request(catalogue):
    students = [Group("students", profiles=("course",))]
    assert catalogue.resolve(students, None).name == "default"
    assert catalogue.resolve(students, None, previous="course").name == "course"
    # the last profile is no longer offered: the default
    assert catalogue.resolve([], None, previous="course").name == "default"
    nobody = Catalogue(catalogue.profiles, for_everyone=(), default="default")
    with pytest.raises(ProfileRefused, match="no profile is offered to you"):
        nobody.resolve([], None)
    assert nobody.resolve(students, None).name == "course"  # the first offered


def test_no_profiles_is_one_implicit_default():
    cfg = from_dict({})
    c = Catalogue.build(cfg.profiles, cfg.groups)
    assert [p.name for p in c.profiles] == ["default"] and c.profiles[0].image == ""
    assert c.resolve([], None).name == "default"


def test_limits_order(catalogue):
    course = catalogue.by_name["course"]
    spawn = {"mem": 2 << 30, "cpu": 1.0, "pids": 1024}
    groups = [Group("a", cpu=2.0, pids=100), Group("b", cpu=0.5, pids=0)]
    # profile's mem, groups' cpu (most generous), groups' pids (0 = no limit wins)
    assert effective_limits(course, groups, {}, spawn) == \
        {"mem": 1 << 30, "cpu": 2.0, "pids": None}
    assert effective_limits(course, [], {}, spawn) == {"mem": 1 << 30, "cpu": 1.0, "pids": 1024}
    # an admin's per-user override beats them all
    assert effective_limits(course, groups, {"mem": 3 << 30, "cpu": None}, spawn) == \
        {"mem": 3 << 30, "cpu": None, "pids": None}


def body() -> ContainerBody:
    return ContainerBody(notebook_dir="/home/jovyan", cmd=["jupyter", "lab"], port=8888,
                         volume_prefix="t-home-", storage="volume", bind_root=None, uid=1000,
                         gid=100, name_prefix="t-", network=None, extra_labels={})


def spec_of(p: Profile) -> ServerSpec:
    return ServerSpec(name="alice", image=p.image, base_url="/user/alice/", token="tok",
                      mem_limit=p.mem_limit, env=dict(p.env), volumes=p.volumes, gpus=p.gpus)


def test_docker_body_carries_the_profile(catalogue):
    b = body()
    made = b.body(spec_of(catalogue.by_name["course"]), b.mount("alice"))
    mounts = made["HostConfig"]["Mounts"]
    assert mounts[0]["Source"] == "t-home-alice" and not mounts[0].get("ReadOnly")
    assert mounts[1] == {"Type": "bind", "Source": "/srv/material",
                         "Target": "/home/jovyan/material", "ReadOnly": True}
    assert mounts[2]["Type"] == "volume" and mounts[2]["ReadOnly"] is True
    assert "COURSE=stats" in made["Env"] and made["HostConfig"]["Memory"] == 1 << 30
    assert "DeviceRequests" not in made["HostConfig"]
    gpu = b.body(spec_of(catalogue.by_name["gpu"]), b.mount("alice"))
    assert gpu["HostConfig"]["DeviceRequests"] == [
        {"Driver": "", "Count": 1, "Capabilities": [["gpu"]]}]


def test_swarm_spec_carries_the_profile(catalogue):
    service = ServiceBody(body(), stop_timeout=10)
    made = service.spec(spec_of(catalogue.by_name["course"]), "course:1", None)
    mounts = made["TaskTemplate"]["ContainerSpec"]["Mounts"]
    assert [m.get("ReadOnly", False) for m in mounts] == [False, True, True]
    assert made["TaskTemplate"]["Resources"] == {"Limits": {"MemoryBytes": 1 << 30}}
    gpu = service.spec(spec_of(catalogue.by_name["gpu"]), "gpu:1", None)
    assert gpu["TaskTemplate"]["Resources"]["Reservations"] == {"GenericResources": [
        {"DiscreteResourceSpec": {"Kind": "gpu", "Value": 1}}]}
    assert SharedVolume("/x", "/y").is_bind and not SharedVolume("vol", "/y").is_bind
