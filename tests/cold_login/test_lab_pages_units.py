"""The kept lab page's pure parts: the start-watch script goes in as data, never as
markup, and Jupyter's page counter does not count as a change."""

from __future__ import annotations

import json
import re

from ipydoc.servers.lab_pages import LabPage, comparable, main_bundle, with_start_watch

PAGE = (b'<!doctype html><html><head><script id="jupyter-config-data" type="application/json">'
        b'{"baseUrl": "/user/alice/", "store_id": 3}</script>'
        b'<script defer="defer" src="/user/alice/static/lab/main.efd36b46f3b45eb8.js'
        b'?v=efd36b46f3b45eb8"></script></head><body></body></html>')


def test_the_watch_script_sits_before_the_head_end_and_carries_only_data():
    hostile = "/hub/spawn/alice?next=</script><script>alert(1)</script>&x"
    out = with_start_watch(PAGE, "/hub/api/users/alice/server/progress", hostile, 30.0)
    head, _, rest = out.partition(b"</head>")
    assert rest == b"<body></body></html>" and head.startswith(PAGE.split(b"</head>")[0])
    added = head[len(PAGE.split(b"</head>")[0]):].decode()
    assert added.count("<script>") == 1 and added.count("</script>") == 1
    config = json.loads(re.search(r"var c=(\{.*?\});", added).group(1))
    assert config == {"progress": "/hub/api/users/alice/server/progress", "start": hostile,
                      "ms": 30000}


def test_only_the_page_counter_may_differ():
    assert comparable(PAGE) == comparable(PAGE.replace(b'"store_id": 3', b'"store_id": 17'))
    assert comparable(PAGE) != comparable(PAGE.replace(b"/user/alice/", b"/user/bob/"))
    assert main_bundle(LabPage(PAGE, "", "sha256:x", 1.0, 2.0)) == "main.efd36b46f3b45eb8.js"
