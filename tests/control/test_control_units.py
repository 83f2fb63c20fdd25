"""The control channel's own logic with no daemon: what ``events -n N`` answers when the
window does not fit one AMP value, and the ``user passwd`` help."""

from __future__ import annotations

import json
from types import SimpleNamespace

from ipydoc.control import commands as c
from ipydoc.control.server import ControlProtocol


class Events:
    """The store's event stream, as the Events responder reads it."""

    def __init__(self, events: list[dict[str, str]]) -> None:
        self.events = events  # oldest first

    async def recent_events(self, count: int = 50) -> list[dict[str, str]]:
        return list(reversed(self.events))[:count]

    async def last_event_id(self) -> str:
        return self.events[-1]["id"]


def answer(events: list[dict[str, str]], limit: int) -> dict:
    proto = ControlProtocol(SimpleNamespace(store=Events(events)))  # type: ignore[arg-type]
    out: list[dict] = []
    proto.events(after="", wait=0.0, limit=limit, user="", kinds="").addBoth(out.append)
    assert isinstance(out[0], dict), out
    return out[0]


def test_the_last_n_events_keep_the_newest_when_they_do_not_fit():
    events = [{"id": f"{i}-0", "time": "1", "kind": "login", "user": "alice",
               "detail": "x" * 1000} for i in range(1, 301)]
    r = answer(events, 300)
    items = json.loads(r["items"])
    assert len(r["items"].encode()) <= c.PAGE_BYTES
    assert 0 < len(items) < 300 and r["omitted"] == 300 - len(items)
    assert [e["id"] for e in items] == [e["id"] for e in events[-len(items):]]  # oldest first
    assert r["last"] == "300-0"


def test_the_last_n_events_all_come_when_they_fit():
    events = [{"id": f"{i}-0", "kind": "login", "user": "bob"} for i in range(1, 11)]
    r = answer(events, 5)
    assert [e["id"] for e in json.loads(r["items"])] == ["6-0", "7-0", "8-0", "9-0", "10-0"]
    assert r["omitted"] == 0


def test_passwd_says_it_revokes_api_tokens():
    import subprocess

    from support import CLI

    top = subprocess.run(CLI + ["user", "--help"], capture_output=True, text=True).stdout
    assert "revokes their API tokens" in " ".join(top.split())
    own = subprocess.run(CLI + ["user", "passwd", "--help"], capture_output=True, text=True)
    text = " ".join(own.stdout.split())
    assert "API token" in text and "nor revoke their API tokens" in text
