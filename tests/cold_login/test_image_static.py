"""The per-image cache of JupyterLab's static files, against the real Docker engine.

The files come from the image (a never-started helper, removed afterwards), only
versioned names are held, and an image change (the same name, a new id) gives the new
files and drops the old ones.
"""

from __future__ import annotations

import http.server
import json
import secrets
import threading
import time

import pytest
import pytest_twisted
from twisted.internet import reactor

from ipydoc.backends.base import BackendError
from ipydoc.backends.docker_api import DockerAPI
from ipydoc.backends.image_static import ImageStaticReader, versioned_hash
from ipydoc.servers.static_cache import StaticCache, url_for

from support import TEST_IMAGE, docker

EXTRA = "zz.0123456789abcdef.js"


def test_versioned_names():
    assert versioned_hash("main.efd36b46f3b45eb8.js") == "efd36b46f3b45eb8"
    assert versioned_hash("0031b1860ea4ad75.woff") == "0031b1860ea4ad75"
    assert versioned_hash("jlab_core.8811dd2733d03721.js") == "8811dd2733d03721"
    for plain in ("index.html", "package.json", "main.js", "build_log.json",
                  "main.efd36b46f3b45eb8.js.map", "../main.efd36b46f3b45eb8.js"):
        assert versioned_hash(plain) is None, plain
    assert url_for("main.efd36b46f3b45eb8.js") == \
        "static/lab/main.efd36b46f3b45eb8.js?v=efd36b46f3b45eb8"


@pytest.fixture
def instance():
    name = "t" + secrets.token_hex(3)
    yield name
    left = docker("ps", "-aq", "--filter", f"label=ipydoc.instance={name}").split()
    if left:
        docker("rm", "-f", *left, check=False)
    assert not left, "the helper container was not removed"


@pytest.fixture
def own_image(tmp_path, instance):
    """A tag of the test image that the test may change."""
    tag = f"{instance}-static:latest"
    docker("tag", TEST_IMAGE, tag)
    yield tag
    docker("rmi", "-f", tag, check=False)


def lab_static_listing() -> dict[str, int]:
    out = docker("run", "--rm", "--entrypoint", "sh", TEST_IMAGE, "-c",
                 "cd /opt/conda/share/jupyter/lab/static && for f in *; do "
                 "echo \"$f $(wc -c < $f)\"; done")
    return {n: int(s) for n, s in (line.split() for line in out.splitlines())}


def extension_listing() -> dict[str, int]:
    """``<package>/static/<name>`` -> size, of the image's prebuilt extensions."""
    out = docker("run", "--rm", "--entrypoint", "sh", TEST_IMAGE, "-c",
                 "cd /opt/conda/share/jupyter/labextensions && for f in */static/* "
                 "@*/*/static/*; do [ -f \"$f\" ] && echo \"$f $(wc -c < $f)\"; done; true")
    return {n: int(s) for n, s in (line.split() for line in out.splitlines())}


@pytest_twisted.ensureDeferred
async def test_cache_reads_the_image_and_follows_a_change(own_image, instance, tmp_path):
    api = DockerAPI(reactor)
    reader = ImageStaticReader(reactor, api, instance=instance)
    cache = StaticCache(reader)
    try:
        await cache.refresh(own_image)
        first_id = cache.images()[own_image]
        listing = lab_static_listing()
        versioned = {n: s for n, s in listing.items() if versioned_hash(n)}
        held = {n: len(cache.get(n)[0]) for n in versioned if cache.get(n)}
        assert held == versioned and len(held) > 100   # every versioned file, same sizes
        assert cache.get("index.html") is None and cache.get("package.json") is None
        main = next(n for n in versioned if n.startswith("main."))
        assert cache.get(main, version=versioned_hash(main)) is not None
        assert cache.get(main, version="0" * 16) is None   # a ?v= naming another version
        assert cache.get(EXTRA) is None
        # The prebuilt extensions' versioned files too, by package (served under
        # lab/extensions/<package>/static/), and nothing else of theirs.
        for path, size in extension_listing().items():
            package, _, filename = path.partition("/static/")
            held_ext = cache.get(f"extensions/{package}/static/{filename}")
            if versioned_hash(filename):
                assert held_ext is not None and len(held_ext[0]) == size, path
            else:
                assert held_ext is None, path
        assert any(n.startswith("remoteEntry.") for n in extension_listing()
                   for n in [n.rsplit("/", 1)[-1]])
        assert url_for("extensions/x/static/remoteEntry.0123456789abcdef0123.js") == \
            "lab/extensions/x/static/remoteEntry.0123456789abcdef0123.js"
        assert cache.startup_files() == [main]             # nothing learned yet: the entry
        # Learning keeps only names the cache holds (a user cannot add others).
        cache.saw("not-held.0123456789abcdef.js")
        cache.saw(main)
        assert cache.startup_files() == [main]

        # The image changes under the same name: the new id's files replace the old.
        (tmp_path / EXTRA).write_text("// new build\n")
        (tmp_path / "Dockerfile").write_text(
            f"FROM {own_image}\nCOPY {EXTRA} /opt/conda/share/jupyter/lab/static/{EXTRA}\n")
        docker("build", "-q", "-t", own_image, str(tmp_path))
        await cache.refresh(own_image)
        assert cache.images()[own_image] != first_id
        assert cache.get(EXTRA) == (b"// new build\n", "application/javascript")
        assert cache.get(main) is not None
    finally:
        await reader.close()
        await api.close()
    # (the instance fixture checks that no helper container is left)


class TricklingEngine(http.server.BaseHTTPRequestHandler):
    """A stand-in Docker engine whose archive answer never ends: a few bytes a second."""

    protocol_version = "HTTP/1.1"
    removed: list[str] = []

    def log_message(self, *args) -> None:
        pass

    def reply(self, code: int, body: dict | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if "/images/" in self.path:
            return self.reply(200, {"Id": "sha256:" + "ab" * 32})
        if "/archive" in self.path:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-tar")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for _ in range(600):  # up to a minute, far past the reader's deadline
                    self.wfile.write(b"1\r\n\0\r\n")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:  # the reader gave up and closed the connection
                return
        return self.reply(404, {"message": "no such thing"})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.reply(201, {"Id": "helper0123", "Warnings": []})

    def do_DELETE(self) -> None:
        TricklingEngine.removed.append(self.path)
        self.send_response(204)
        self.end_headers()


@pytest_twisted.ensureDeferred
async def test_one_deadline_covers_the_whole_archive_read():
    """An archive whose headers come at once and whose body trickles forever: the read
    ends at the deadline (not only the wait for the headers), and the helper is removed."""
    engine = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TricklingEngine)
    threading.Thread(target=engine.serve_forever, daemon=True).start()
    api = DockerAPI(reactor, f"tcp://127.0.0.1:{engine.server_address[1]}")
    reader = ImageStaticReader(reactor, api, instance="tstandin", timeout=1.5)
    try:
        with pytest.raises(BackendError) as e:
            await reader.read("some/image:latest")
        assert "took over 1.5 s" in e.value.message
        assert any("/containers/helper0123" in p for p in TricklingEngine.removed)
    finally:
        await reader.close()
        await api.close()
        engine.shutdown()
        engine.server_close()


@pytest_twisted.ensureDeferred
async def test_helpers_a_killed_daemon_left_are_removed_and_no_others(instance):
    """A daemon killed while it read the image leaves its helper (created, never started);
    the next read of that instance removes helpers older than any read can take, and
    leaves other instances' and other kinds alone."""
    other = "t" + secrets.token_hex(3)
    left = docker("create", "--label", f"ipydoc.instance={instance}", "--label",
                  "ipydoc.helper=static", "--network", "none", TEST_IMAGE, "true").strip()
    theirs = docker("create", "--label", f"ipydoc.instance={other}", "--label",
                    "ipydoc.helper=static", "--network", "none", TEST_IMAGE, "true").strip()
    volume_helper = docker("create", "--label", f"ipydoc.instance={instance}", "--label",
                           "ipydoc.helper=volume", "--network", "none", TEST_IMAGE,
                           "true").strip()
    try:
        reader = ImageStaticReader(reactor, DockerAPI(reactor), instance=instance)
        assert await reader.remove_stale_helpers(older_than=3600) == 0  # too young
        assert await reader.remove_stale_helpers(older_than=-5) == 1
        ids = docker("ps", "-aq", "--no-trunc").split()
        assert left not in ids and theirs in ids and volume_helper in ids
    finally:
        docker("rm", "-f", theirs, volume_helper, check=False)
