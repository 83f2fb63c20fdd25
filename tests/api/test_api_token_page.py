"""Scopes on the tokens page (/hub/token): the form's boxes choose them, admin is offered
to admins only, none ticked is refused, a form without the boxes gets the default; the
list shows each token's scopes; the API sees the same."""

from __future__ import annotations

import re

import pytest
from api_support import Client, openapi

from support import Daemon, csrf_of, login


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("token-page"), {"auth": {"start_on_login": False}})
    d.start()
    try:
        d.add_user("ann", "ann-password-1")
        d.add_user("root", "root-password-1", admin=True)
        yield d
    finally:
        d.stop()
        d.cleanup_docker()


def made(session, site, **fields):
    csrf = csrf_of(session, site.url)
    return session.post(site.url + "/hub/token", data={"_csrf": csrf, "note": "n",
                                                       "expires_in": "3600", **fields},
                        headers={"Origin": site.url})


def test_scopes_are_chosen_on_the_tokens_page(site):
    ann, _ = login(site.url, "ann", "ann-password-1")
    page = ann.get(site.url + "/hub/token").text
    boxes = re.findall(r'name="scope" value="(\w+)"( checked)?', page)
    assert boxes == [("read", " checked"), ("servers", " checked")]   # no admin for ann
    r = made(ann, site, scopes_shown="1", scope="read")
    assert r.status_code == 200 and "<code>read</code>." in r.text
    token = re.search(r'id="new-token" readonly value="(ipd_[^"]+)"', r.text)[1]
    assert Client(site.url, openapi(site.url), token).get("/user").json()["scopes"] == ["read"]
    assert made(ann, site, scopes_shown="1").status_code == 400            # none ticked
    assert made(ann, site, scopes_shown="1", scope="admin").status_code == 400
    old_form = made(ann, site)                                             # no boxes at all
    assert "<code>read</code>, <code>servers</code>." in old_form.text
    listed = re.findall(r'data-label="Scopes">([^<]*)<', ann.get(site.url + "/hub/token").text)
    assert sorted(listed) == ["read", "read servers"]


def test_admins_are_offered_the_admin_scope(site):
    root, _ = login(site.url, "root", "root-password-1")
    assert 'value="admin"' in root.get(site.url + "/hub/token").text
    r = made(root, site, scopes_shown="1", scope="admin")
    assert r.status_code == 200 and "<code>admin</code>." in r.text
