"""A hung Redis: the API answers 503 ``unavailable`` in the one error shape (with
``Retry-After``), never a traceback, and works again once Redis does."""

from __future__ import annotations

import os
import signal

import requests
from api_support import API, check_answer, make_token, openapi

from support import wait_for


def test_hung_redis_is_a_503_in_the_error_shape(make_daemon):
    d = make_daemon(auth={"start_on_login": False})
    d.start()
    d.add_user("hal", "hal-password-1")
    doc = openapi(d.url)
    headers = {"Authorization": "token " + make_token(d, doc, "hal", "hal-password-1",
                                                      ["read"])}
    pid = int((d.root / "state" / "redis" / "redis.pid").read_text().strip())
    os.kill(pid, signal.SIGSTOP)
    try:
        r = requests.get(d.url + API + "/users/hal", headers=headers, timeout=30)
        check_answer(doc, "GET", API + "/users/hal", r)
        assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
        assert r.headers["Retry-After"] == "5"
        assert "Traceback" not in r.text
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: requests.get(d.url + API + "/users/hal", headers=headers,
                                  timeout=10).status_code == 200, timeout=30, interval=0.2)
