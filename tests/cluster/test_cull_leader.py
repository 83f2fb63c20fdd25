"""The idle culler runs on one daemon of the site at a time (its leader lease), and another
daemon leads once the leader is killed."""

from __future__ import annotations

import json

import pytest

from cluster_support import RedisServer, cluster_daemons, stop_all
from support import csrf_of, follow_progress, login, wait_for

PW = "cull-leader-password"
LEADS = "idle culler: this daemon leads"


@pytest.fixture
def pair(tmp_path_factory, notebook_image):
    redis = RedisServer(tmp_path_factory.mktemp("redis"))
    redis.start()
    daemons = cluster_daemons(tmp_path_factory.mktemp("cull"), redis,
                              overrides={"cull": {"idle_timeout": 4.0, "interval": 1.0}})
    for d in daemons:
        d.start()
    yield daemons, redis
    stop_all(daemons)
    redis.stop()


def test_one_daemon_culls_and_another_takes_over_when_it_dies(pair):
    (a, b), redis = pair
    a.add_user("carol", PW)
    session, r = login(b.url, "carol", PW)
    assert r.status_code == 303
    session.post(f"{b.url}/hub/spawn/carol", data={"_csrf": csrf_of(session, b.url)},
                 headers={"Origin": b.url})
    assert follow_progress(session, b.url, "carol")[-1]["phase"] == "ready"
    wait_for(lambda: not a.containers("carol", all=False), 60)
    culls = wait_for(lambda: [json.loads(line) for line in a.cli(
        "--json", "events", "--user", "carol", "--kind", "cull").stdout.splitlines()], 20)
    assert len(culls) == 1, culls
    leaders = [d for d in (a, b) if LEADS in d.log()]
    assert len(leaders) == 1, "exactly one daemon leads the culler"
    culled_by = [d for d in (a, b) if "culling the server of carol" in d.log()]
    assert culled_by == leaders
    holder = redis.cli("GET", "ipydoc:lease:leader:culler")
    assert holder, "the leader holds its lease in Redis"
    # The leader dies (SIGKILL): the other daemon leads within interval + lease_ttl.
    leader, other = leaders[0], (b if leaders[0] is a else a)
    leader.proc.kill()
    leader.proc.wait()
    leader.proc = None
    wait_for(lambda: LEADS in other.log(), 30)
    assert redis.cli("GET", "ipydoc:lease:leader:culler") != holder
