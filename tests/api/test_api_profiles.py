"""Starting through the API honours the profile rule of every path (issue 19 §2): a
profile not offered to the user, or unknown, is a 400 with the reason and starts nothing;
an image not on the allow-list too."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from api_support import Client, make_token, openapi

from support import TEST_IMAGE, Daemon


@dataclass
class ProfileDaemon(Daemon):
    profiles: str = ""

    def write_config(self) -> None:
        super().write_config()
        with open(self.config_path, "a") as f:
            f.write(self.profiles)


@pytest.fixture(scope="module")
def site(tmp_path_factory, notebook_image):
    d = ProfileDaemon(tmp_path_factory.mktemp("api-profiles"), {
        "auth": {"start_on_login": False},
        "groups": {"profiles_for_everyone": ["default"], "default_profile": "default"}})
    d.profiles = f"""
[[profiles]]
name = "default"
image = "{TEST_IMAGE}"

[[profiles]]
name = "staff"
image = "{TEST_IMAGE}"
mem_limit = "512M"
"""
    d.start()
    try:
        d.add_user("stu", "student-password-1")
        yield d
    finally:
        d.stop()
        d.cleanup_docker()


def test_a_profile_not_offered_is_refused_on_the_api_path(site):
    doc = openapi(site.url)
    api = Client(site.url, doc, make_token(site, doc, "stu", "student-password-1",
                                           ["servers"]))
    for body in ({"profile": "staff"}, {"profile": "no-such"},
                 {"image": "not-offered:latest"}):
        r = api.post("/users/stu/server", body)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_field"), body
        assert r.json()["error"]["message"]
    assert api.get("/users/stu/server").json()["state"] == "stopped"
    assert not site.containers("stu")
    assert not [e for e in api.get("/events?kind=start-requested").json()["items"]]
