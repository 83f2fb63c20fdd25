"""``backup --volumes`` / ``restore --volumes`` with ``docker.storage = "bind"``: users'
directories under ``docker.bind_root`` go through the same helper containers."""

from __future__ import annotations

import json
import shutil

from support import follow_progress, login

PW = "dora-bind-pw-1"


def test_bind_directories_are_backed_up_and_restored(make_daemon, tmp_path):
    homes = tmp_path / "homes"
    d = make_daemon(docker={"storage": "bind", "bind_root": str(homes)},
                    auth={"stop_on_logout": False})
    d.start()
    d.add_user("dora", PW)
    dora, r = login(d.url, "dora", PW)
    assert r.status_code == 303
    assert follow_progress(dora, d.url, "dora")[-1]["phase"] == "ready"
    r = dora.put(f"{d.url}/user/dora/api/contents/results.txt", headers={"Origin": d.url},
                 json={"type": "file", "format": "text", "content": "42\n"})
    assert r.status_code in (200, 201), r.text
    saved = homes / "dora" / "results.txt"
    owner = (saved.stat().st_uid, saved.stat().st_gid)
    archive = tmp_path / "site.tar"
    r = d.cli("--json", "backup", str(archive), "--volumes")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["volumes"] == ["dora"]

    d.stop()
    d.cleanup_docker()
    shutil.rmtree(d.root / "state")
    shutil.rmtree(homes / "dora")
    r = d.cli("--json", "restore", str(archive), "--volumes")
    assert r.returncode == 0, r.stderr
    assert saved.read_text() == "42\n"
    assert (saved.stat().st_uid, saved.stat().st_gid) == owner
    (d.root / "state").rename(d.root / "state.restored")  # an empty state dir, but...
    r = d.cli("restore", str(archive), "--volumes")  # ...not into files that exist
    assert r.returncode == 1 and "have files already: dora" in r.stderr, r.stderr
    assert not (d.root / "state").exists() or not any((d.root / "state").iterdir())
    shutil.rmtree(d.root / "state", ignore_errors=True)
    (d.root / "state.restored").rename(d.root / "state")
    d.start()
    dora, r = login(d.url, "dora", PW)
    assert follow_progress(dora, d.url, "dora")[-1]["phase"] == "ready"
    r = dora.get(f"{d.url}/user/dora/api/contents/results.txt")
    assert r.status_code == 200 and r.json()["content"] == "42\n"
