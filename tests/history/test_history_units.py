"""The parts of history that need no daemon: the git repository (real git), the notebook
diff, which proxied responses count as saves, coalescing, output trimming, config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ipydoc.config.errors import ConfigError
from ipydoc.config.history import HistorySection
from ipydoc.config.load import from_dict
from ipydoc.history.mirror import Pusher
from ipydoc.history.nbdiff import file_diff, render_text
from ipydoc.history.queue import _superseded
from ipydoc.history.repo import Change, GitRepo, blob_id, check_path
from ipydoc.history.service import History


def nb(*cells: tuple[str, str], ids: bool = True) -> bytes:
    return json.dumps({"cells": [
        {"cell_type": t, **({"id": f"c{i}"} if ids else {}), "source": s, "metadata": {},
         **({"outputs": [], "execution_count": None} if t == "code" else {})}
        for i, (t, s) in enumerate(cells)], "metadata": {}, "nbformat": 4,
        "nbformat_minor": 5}).encode()


def test_repo_commits_moves_deletes_and_skips_no_op(tmp_path: Path):
    repo = GitRepo(tmp_path / "alice.git")
    c1 = repo.commit([Change("a.ipynb", repo.write_blob(b"one")),
                      Change("dir/x.txt", repo.write_blob(b"x"))],
                     author="alice", message="first", when=1000)
    assert c1 and repo.head() == c1
    assert repo.commit([Change("a.ipynb", repo.write_blob(b"one"))], author="alice",
                       message="same", when=1001) is None
    repo.commit([], moves=[("dir", "moved")], author="alice", message="mv", when=1002)
    assert set(repo.files()) == {"a.ipynb", "moved/x.txt"}
    repo.commit([Change("a.ipynb")], author="alice", message="rm", when=1003)
    assert repo.read(c1, "a.ipynb") == b"one" and repo.read(repo.head(), "a.ipynb") is None
    log = repo.log("a.ipynb")
    assert [(v.message, v.change, v.author) for v in log] == [("rm", "D", "alice"),
                                                              ("first", "A", "alice")]
    assert repo.resolve(c1[:6]) == c1 and repo.resolve("zz") is None
    assert blob_id(b"one") == repo.write_blob(b"one")
    summary = repo.summary()
    assert summary["a.ipynb"]["present"] is False and summary["moved/x.txt"]["present"]


def test_a_reader_never_sees_a_half_made_repository(tmp_path: Path):
    """``git init`` writes HEAD before objects/: a read in between once failed with "not a
    git repository" (CI, a re-added user's first save).  ensure() builds it aside and
    renames it into place, so each read finds no repository or a whole one."""
    import threading

    failures: list[BaseException] = []
    for round_ in range(20):
        path = tmp_path / f"u{round_}.git"
        made = threading.Event()

        def read(path: Path = path, made: threading.Event = made) -> None:
            reader = GitRepo(path)
            while not made.is_set():
                try:
                    reader.head()
                    reader.resolve("abcd")
                except BaseException as e:  # noqa: BLE001 - collected, asserted below
                    failures.append(e)
                    return

        def make(path: Path = path) -> None:
            GitRepo(path).ensure()

        readers = [threading.Thread(target=read) for _ in range(2)]
        makers = [threading.Thread(target=make) for _ in range(2)]
        for t in readers + makers:
            t.start()
        for t in makers:
            t.join()
        made.set()
        for t in readers:
            t.join()
        assert GitRepo(path).exists() and GitRepo(path).head() is None
    assert failures == []
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(f"u{i}.git" for i in range(20))  # no building folder left


@pytest.mark.parametrize("bad", ["", "/etc/passwd", "../x", "a/../b", "a//b", ".git/config",
                                 "x/.GIT/y", "a\\b"])
def test_paths_that_cannot_be_versioned(bad):
    with pytest.raises(ValueError):
        check_path(bad)


def test_notebook_diff_by_cell_ids():
    old = nb(("markdown", "# Title"), ("code", "x = 1"), ("code", "gone()"))
    new = json.loads(nb(("markdown", "# Title"), ("code", "x = 2")))
    new["cells"].append({"cell_type": "code", "id": "fresh", "source": "new()", "metadata": {},
                         "outputs": [], "execution_count": None})
    d = file_diff("n.ipynb", old, json.dumps(new).encode())
    assert [(c.label, c.status) for c in d.cells] == [
        ("Cell 1 (markdown)", "unchanged"), ("Cell 2 (code)", "changed"),
        ("Cell 3 (code)", "added"), ("Old cell 3 (code)", "removed")]
    assert d.summary == "1 cell added, 1 cell removed, 1 cell changed"
    text = render_text(d)
    assert "-x = 1" in text and "+x = 2" in text and "Cell 2 (code): changed" in text


def test_notebook_diff_without_ids_aligns_sources():
    d = file_diff("n.ipynb", nb(("code", "a"), ("code", "b"), ids=False),
                  nb(("code", "a"), ("code", "inserted"), ("code", "b"), ids=False))
    assert [(c.label, c.status) for c in d.cells] == [
        ("Cell 1 (code)", "unchanged"), ("Cell 2 (code)", "added"), ("Cell 3 (code)", "unchanged")]


def test_text_binary_and_new_files():
    assert file_diff("a.py", b"x\n", b"y\n").summary == "1 lines added, 1 removed"
    assert file_diff("a.bin", b"\xff\x00", b"\xfe").kind == "binary"
    assert file_diff("n.ipynb", None, nb(("code", "x"))).cells[0].status == "added"
    assert file_diff("n.ipynb", b"not json", b"still not").kind == "text"


def _history(**cfg) -> History:
    return History(HistorySection(**cfg), Path("/nonexistent"), None, None, None,
                   secret=b"s" * 64)


def test_which_responses_are_saves():
    h = _history()
    seen = []
    h.queue.enqueue = lambda user, entry: seen.append((user, entry["op"], entry["path"]))
    h.note("alice", b"PUT", b"/user/alice/api/contents/a%20b/n.ipynb", 200)
    h.note("alice", b"PATCH", b"/user/alice/api/contents/n.ipynb", 200)
    h.note("alice", b"DELETE", b"/user/alice/api/contents/old.txt", 204)
    h.note("alice", b"POST", b"/user/alice/api/contents/n.ipynb/checkpoints/checkpoint", 204)
    # not saves: failures, reads, checkpoint bookkeeping, other paths, traversal
    h.note("alice", b"PUT", b"/user/alice/api/contents/n.ipynb", 409)
    h.note("alice", b"GET", b"/user/alice/api/contents/n.ipynb", 200)
    h.note("alice", b"POST", b"/user/alice/api/contents/n.ipynb/checkpoints", 201)
    h.note("alice", b"DELETE", b"/user/alice/api/contents/n.ipynb/checkpoints/checkpoint", 204)
    h.note("alice", b"PUT", b"/user/alice/api/kernels/x", 200)
    h.note("alice", b"PUT", b"/user/alice/api/contents/..%2F..%2Fetc", 200)
    assert seen == [("alice", "save", "a b/n.ipynb"), ("alice", "rename", "n.ipynb"),
                    ("alice", "delete", "old.txt"), ("alice", "save", "n.ipynb")]


def test_coalescing_stops_at_a_rename_or_delete():
    s = lambda p: {"op": "save", "path": p}  # noqa: E731
    assert _superseded([s("a"), s("b"), s("a")])
    assert not _superseded([s("a"), {"op": "rename", "path": "a"}, s("a")])
    assert not _superseded([s("d/a"), {"op": "delete", "path": "d"}, s("d/a")])
    assert not _superseded([s("a"), s("b")])


def test_big_outputs_are_trimmed_small_ones_kept():
    h = _history(max_output_size="1K")
    cell = {"cell_type": "code", "source": "x", "metadata": {}, "execution_count": 1,
            "outputs": [{"output_type": "stream", "name": "stdout", "text": "y" * 5000},
                        {"output_type": "stream", "name": "stdout", "text": "small"}]}
    raw = json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4,
                      "nbformat_minor": 5}).encode()
    out = json.loads(h.contents.trim("n.ipynb", raw))["cells"][0]["outputs"]
    assert "not kept in the history" in "".join(out[0]["text"]) and out[1]["text"] == "small"
    assert h.contents.trim("data.json", raw) == raw
    assert h.contents.trim("n.ipynb", b"{broken") == b"{broken"


@pytest.mark.parametrize("values, message", [
    ({"max_file_size": "huge"}, "history.max_file_size"),
    ({"remote": "https://github.com/org/repo.git"}, "must contain {name}"),
    ({"create_repo": True, "remote": "https://x/{name}.git"}, "create_repo needs"),
    ({"coalesce_seconds": -1}, "coalesce_seconds"),
    ({"max_queue": 0}, "history.max_queue"),
    ({"max_queue": "1000"}, "history.max_queue"),
    ({"fetch_timeout": 0}, "history.fetch_timeout"),
    ({"max_attempts": 0}, "history.max_attempts"),
])
def test_bad_history_config_names_the_key(values, message):
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")):
        from_dict({"history": values})


def test_pusher_url_from_template():
    p = Pusher(HistorySection(remote="https://github.com/acme/{name}.git"), None, None, None)
    assert p.url("alice") == "https://github.com/acme/alice.git"


def _loose_and_packed(repo: GitRepo) -> tuple[int, int]:
    counts = dict(line.split(": ") for line in repo.run("count-objects", "-v").decode().splitlines())
    return int(counts["count"]), int(counts["in-pack"])


def test_commits_pack_loose_objects_once_there_are_enough(tmp_path: Path):
    """The plumbing never runs git's auto gc, so commit() does: reads stay fast.

    ``git gc --auto`` estimates the loose objects from the ``objects/17`` fan-out folder
    (more than gc.auto/256 there): the test saves contents whose blobs land in it."""
    repo = GitRepo(tmp_path / "alice.git")
    contents = (f"cell {i}\n".encode() for i in range(100_000))
    in_17 = [data for data in contents if blob_id(data).startswith("17")][:3]
    first = repo.commit([Change("a.txt", repo.write_blob(in_17[0]))], author="alice",
                        message="one", when=1_700_000_000)
    loose, packed = _loose_and_packed(repo)
    assert packed == 0 and loose >= 3  # blob, tree, commit: below the threshold
    last = repo.commit([Change("b.txt", repo.write_blob(in_17[1])),
                        Change("c.txt", repo.write_blob(in_17[2]))], author="alice",
                       message="two", when=1_700_000_001)
    loose, packed = _loose_and_packed(repo)
    assert loose == 0 and packed >= 6
    assert repo.head() == last and repo.parent(last) == first
    assert repo.read(first, "a.txt") == in_17[0] and repo.read(last, "c.txt") == in_17[2]
