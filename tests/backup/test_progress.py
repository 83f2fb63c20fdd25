"""Progress bars (ipydoc.cli.progress): on a terminal only, never with --json, and the
steps of a build script followed from its trace while its own output stays visible."""

from __future__ import annotations

import sys
from pathlib import Path

from backup_terminal import run_on_terminal

SCRIPT = """\
set -euo pipefail
debootstrap() { echo "I: Retrieving packages"; }
chroot() { echo "pip says hello"; }
docker() { cat > /dev/null; echo "sha256:0123"; }
debootstrap --variant=minbase bookworm /tmp/x
cp -a "$0" "$0.copy"
chroot /tmp/x /bin/sh -ec "
  multi-line
  script"
echo tarball | docker import - tag
echo "built tag"
"""

RUN = """\
import argparse, sys
from ipydoc.cli.progress import run_script
sys.exit(run_script(argparse.Namespace(json={json}), ["bash", sys.argv[1]]))
"""


def _script(tmp_path: Path) -> Path:
    script = tmp_path / "build.sh"
    script.write_text(SCRIPT)
    return script


def test_build_steps_are_a_bar_on_a_terminal(tmp_path):
    script = _script(tmp_path)
    code, out, shown = run_on_terminal(
        [sys.executable, "-c", RUN.format(json=False), str(script)], cwd=tmp_path)
    assert code == 0, shown
    assert "4/4" in shown and "built" in shown  # every step passed, the bar ended
    assert "Python packages (pip)" in shown and "docker import" in shown
    assert "I: Retrieving packages" in shown and "pip says hello" in shown
    assert "multi-line" not in shown and "+ cp -a" not in shown  # the trace stays hidden
    assert "built tag" in shown  # the script's stdout is shown above the bar


def test_no_bar_with_json_or_without_a_terminal(tmp_path):
    script = _script(tmp_path)
    code, out, shown = run_on_terminal(
        [sys.executable, "-c", RUN.format(json=True), str(script)], cwd=tmp_path)
    assert code == 0
    assert "built tag" in out and "4/4" not in shown and "steps" not in shown
    import subprocess
    r = subprocess.run([sys.executable, "-c", RUN.format(json=False), str(script)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and "built tag" in r.stdout and "4/4" not in r.stderr


def test_a_failing_script_keeps_its_exit_code(tmp_path):
    script = tmp_path / "fail.sh"
    script.write_text("set -e\necho 'about to fail' >&2\nexit 7\n")
    code, _, shown = run_on_terminal([sys.executable, "-c", RUN.format(json=False), str(script)])
    assert code == 7 and "about to fail" in shown
