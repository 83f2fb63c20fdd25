"""Every usual way of installing ipydoc gives working entry points (issue 17 §4):
``pip install .``, ``pip install -e .`` (PEP 660's default mode), a built wheel and
``pipx install``, each into a fresh venv in a temp dir.  ``twistd ipydoc`` must find the
plugin (the default editable mode once hid it), ``ipydoc``, ``ipydoc serve`` and
``python -m ipydoc`` must answer ``--help``.  The wheel's daemon (``twistd -n ipydoc``) and
pipx's (``ipydoc serve``) are started for real and serve their pages and a static file
(the package data made it into the wheel).

No test downloads anything once warm: each venv installs with ``--no-index`` from a
wheelhouse of ipydoc's dependencies (and of pip, setuptools, wheel for the build and for
pipx), built once and kept on disk under a key of the packaging files.  ``scripts/
bootstrap.sh --test`` warms it (``python tests/test_install.py --wheelhouse``)."""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
import requests

from support import Daemon

PROJECT = Path(__file__).resolve().parents[1]
# What decides the dependencies and the build: a change to one of them makes a new wheelhouse.
PACKAGING_FILES = ("setup.py", "pyproject.toml")
CACHE_ROOTS = (Path("/var/cache/ipydoc/wheelhouse"),
               Path.home() / ".cache" / "ipydoc" / "wheelhouse")
# Not part of a checkout that pip would build from: caches, venvs, build output.
SKIP_ANYWHERE = {"__pycache__", "dropin.cache", ".ruff_cache", ".import_linter_cache",
                 ".pytest_cache", "node_modules"}
SKIP_AT_ROOT = {".git", ".venv", "build", "dist", "test-artifacts", "ipydoc.egg-info"}
STEP_TIMEOUT = 600  # one pip install or build, generous for a slow machine
KEEP_WHEELHOUSES = 3  # for checkouts whose packaging files differ (branches, clones)


def packaging_key() -> str:
    """The packaging files' hash, and the week: a warm cache still sees new releases of the
    dependencies and of setuptools (whose editable technique is no documented promise)
    once a week."""
    digest = hashlib.sha256()
    for name in PACKAGING_FILES:
        digest.update(name.encode() + b"\0" + (PROJECT / name).read_bytes() + b"\0")
    year, week, _ = datetime.date.today().isocalendar()
    return f"{digest.hexdigest()[:16]}-{year}w{week:02d}"


def cache_root() -> Path:
    """``$IPYDOC_WHEELHOUSE``, else the first of CACHE_ROOTS that can be written."""
    if os.environ.get("IPYDOC_WHEELHOUSE"):
        return Path(os.environ["IPYDOC_WHEELHOUSE"])
    for root in CACHE_ROOTS:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(root, os.W_OK):
            return root
    raise RuntimeError(f"no writable wheelhouse cache among {CACHE_ROOTS}")


def run(argv: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None,
        timeout: float = STEP_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; fail the test with its output when it fails."""
    out = subprocess.run([str(a) for a in argv], cwd=cwd, env=env or clean_env(),
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, (f"{argv} exited {out.returncode}\n"
                                 f"stdout:\n{out.stdout[-4000:]}\nstderr:\n{out.stderr[-4000:]}")
    return out


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without what would leak this venv or this checkout into another."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.update(extra)
    return env


def stage_project(dest: Path) -> Path:
    """A copy of the checkout as pip would see it (no venv, caches or build output), so that
    builds write into the copy, never into the tree under test."""
    def not_source(folder: str, names: list[str]) -> set[str]:
        skip = {n for n in names if n in SKIP_ANYWHERE or n.endswith(".pyc")}
        if Path(folder) == PROJECT:
            skip |= SKIP_AT_ROOT.intersection(names)
        if Path(folder) == PROJECT / "bench":
            skip |= {"results"}.intersection(names)
        return skip

    shutil.copytree(PROJECT, dest, ignore=not_source, symlinks=True)
    return dest


def ensure_wheelhouse() -> Path:
    """The wheelhouse for the current packaging files, built now when missing."""
    house = cache_root() / packaging_key()
    if (house / ".complete").exists():
        os.utime(house)  # recently used: kept by forget_old_wheelhouses
        return house
    house.parent.mkdir(parents=True, exist_ok=True)
    forget_old_wheelhouses(house.parent, keep=KEEP_WHEELHOUSES - 1)
    with tempfile.TemporaryDirectory(dir=house.parent, prefix=".building-") as tmp:
        wheels = Path(tmp) / "wheels"
        source = stage_project(Path(tmp) / "source")
        pip = [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", wheels]
        run([*pip, source], cwd=Path(tmp))
        run([*pip, "pip", "setuptools", "wheel"], cwd=Path(tmp))
        for own in wheels.glob("ipydoc-*.whl"):
            own.unlink()  # only the dependencies: each test builds ipydoc itself
        (wheels / ".complete").write_text(packaging_key() + "\n")
        try:
            wheels.rename(house)
        except OSError:
            if not (house / ".complete").exists():  # not another session's finished one
                raise
    return house


def forget_old_wheelhouses(root: Path, keep: int) -> None:
    """Remove all but the ``keep`` newest wheelhouses (other checkouts may use those)."""
    houses = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for old in houses[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def offline(wheelhouse: Path) -> dict[str, str]:
    """pip settings (as environment, so pipx's inner pip calls get them too) that install
    from the wheelhouse only, and skip compiling .pyc files (most of an install's CPU)."""
    return clean_env(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheelhouse), PIP_NO_COMPILE="1")


def fresh_venv(path: Path) -> Path:
    """A new venv; without its own pip (seconds saved per venv): pip_install uses this one's
    pip on it, which installs there exactly as the venv's own pip would."""
    python = getattr(sys, "_base_executable", sys.executable)
    run([python, "-m", "venv", "--without-pip", path], cwd=path.parent)
    return path / "bin"


def pip_install(venv_bin: Path, *args: str | Path, cwd: Path, wheelhouse: Path) -> None:
    run([sys.executable, "-m", "pip", "--python", venv_bin / "python", "install", "-q", *args],
        cwd=cwd, env=offline(wheelhouse))


def check_entry_points(venv_bin: Path, away: Path, commands: Path | None = None) -> None:
    """Every way of starting ipydoc answers --help, run from a folder with no checkout in it
    (so nothing is imported from the working directory).  ``commands``: where the
    ``ipydoc`` command is linked, when not in the venv (pipx)."""
    ipydoc = (commands or venv_bin) / "ipydoc"
    twistd = run([venv_bin / "twistd", "ipydoc", "--help"], cwd=away)
    assert "--config" in twistd.stdout, twistd.stdout
    cli = run([ipydoc, "--help"], cwd=away)
    assert "usage" in cli.stdout.lower(), cli.stdout
    serve = run([ipydoc, "serve", "--help"], cwd=away)
    assert "usage: ipydoc serve" in serve.stdout, serve.stdout
    module = run([venv_bin / "python", "-m", "ipydoc", "--help"], cwd=away)
    assert "--config" in module.stdout, module.stdout


def imported_from(python: Path, away: Path) -> Path:
    out = run([python, "-c", "import ipydoc; print(ipydoc.__file__)"], cwd=away)
    return Path(out.stdout.strip()).parent


def serve_installed(d: Daemon, argv: list[str | Path], installed: Path) -> None:
    """Run an installed daemon for real (the daemon's temp config: a free port, a temp state
    dir, the embedded Redis) and see it serve its pages and a static file, which come from
    the installed package data.  The make_daemon fixture stops it and removes what it made."""
    d.root.mkdir(parents=True, exist_ok=True)
    d.write_config()
    with open(d.log_path, "ab") as log:
        d.proc = subprocess.Popen([str(a) for a in argv], stdout=log,
                                  stderr=subprocess.STDOUT, cwd=d.root, env=clean_env())
    d.wait_ready(timeout=90)
    assert requests.get(d.url + "/hub/login", timeout=10).status_code == 200
    style = requests.get(d.url + "/hub/static/style.css", timeout=10)
    assert style.status_code == 200, style.text
    assert style.content == (installed / "web" / "static" / "style.css").read_bytes()


def wheel_via_sdist(source: Path, dist: Path, wheelhouse: Path) -> Path:
    """Build as ``python -m build`` does: the sdist (PEP 517's build_sdist, so MANIFEST.in
    decides what is in it), then the wheel from that sdist alone."""
    tools = fresh_venv(dist.parent / "build-venv")
    pip_install(tools, "setuptools", cwd=source, wheelhouse=wheelhouse)
    run([tools / "python", "-c",
         "import sys, setuptools.build_meta as b; b.build_sdist(sys.argv[1])", dist],
        cwd=source)
    (sdist,) = dist.glob("ipydoc-*.tar.gz")
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", dist, sdist],
        cwd=dist, env=offline(wheelhouse))
    (wheel,) = dist.glob("ipydoc-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheelhouse() -> Path:
    return ensure_wheelhouse()


@pytest.fixture
def away(tmp_path: Path) -> Path:
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


def test_pip_install_from_a_checkout(tmp_path, wheelhouse, away):
    source = stage_project(tmp_path / "src")
    bin_dir = fresh_venv(tmp_path / "venv")
    pip_install(bin_dir, ".", cwd=source, wheelhouse=wheelhouse)
    check_entry_points(bin_dir, away)
    assert imported_from(bin_dir / "python", away).is_relative_to(tmp_path / "venv")


def test_editable_install_in_the_default_mode(tmp_path, wheelhouse, away):
    source = stage_project(tmp_path / "src")
    bin_dir = fresh_venv(tmp_path / "venv")
    pip_install(bin_dir, "-e", ".", cwd=source, wheelhouse=wheelhouse)
    check_entry_points(bin_dir, away)
    # Editable: the code runs from the checkout, and a new plugin module there is found
    # without reinstalling (Twisted looks in the checkout's twisted/plugins/).
    assert imported_from(bin_dir / "python", away) == source / "ipydoc"
    (source / "twisted" / "plugins" / "ipydoc_probe_plugin.py").write_text(
        "from twisted.application.service import ServiceMaker\n"
        "probe = ServiceMaker('ipydoc-probe', 'ipydoc.tap', 'probe', 'ipydoc-probe')\n")
    probe = run([bin_dir / "twistd", "--help"], cwd=away)
    assert "ipydoc-probe" in probe.stdout, probe.stdout


def test_wheel_into_a_fresh_venv_runs_the_daemon(tmp_path, wheelhouse, away, make_daemon):
    source = stage_project(tmp_path / "src")
    wheel = wheel_via_sdist(source, tmp_path / "dist", wheelhouse)
    names = set(zipfile.ZipFile(wheel).namelist())
    for data in (source / "ipydoc").rglob("*"):
        if data.is_file() and data.suffix not in (".py", ".pyc"):
            assert data.relative_to(source).as_posix() in names, f"{data} not in the wheel"
    assert "twisted/plugins/ipydoc_plugin.py" in names
    assert not any(n.endswith("dropin.cache") or n.startswith("twisted/plugins/__init__")
                   for n in names), "the wheel would overwrite Twisted's own files"

    bin_dir = fresh_venv(tmp_path / "venv")
    pip_install(bin_dir, wheel, cwd=away, wheelhouse=wheelhouse)
    check_entry_points(bin_dir, away)
    installed = imported_from(bin_dir / "python", away)
    assert installed.is_relative_to(tmp_path / "venv")

    d: Daemon = make_daemon()
    serve_installed(d, [bin_dir / "twistd", "-n", "--pidfile", d.root / "twistd.pid", "ipydoc",
                        "--config", d.config_path], installed)
    assert d.stop() in (0, -15), d.log()  # twistd re-raises the SIGTERM it handled


def test_pipx_install(tmp_path, wheelhouse, away, make_daemon):
    pipx = shutil.which("pipx")
    assert pipx, "pipx is missing: scripts/bootstrap.sh --test installs it"
    source = stage_project(tmp_path / "src")
    home, bin_dir = tmp_path / "pipx-home", tmp_path / "pipx-bin"
    env = offline(wheelhouse) | {"PIPX_HOME": str(home), "PIPX_BIN_DIR": str(bin_dir),
                                 "PIPX_MAN_DIR": str(tmp_path / "pipx-man")}
    run([pipx, "install", source], cwd=away, env=env)
    venv_bin = home / "venvs" / "ipydoc" / "bin"
    # pipx links the package's own command (ipydoc); twistd stays inside ipydoc's venv.
    check_entry_points(venv_bin, away, commands=bin_dir)
    installed = imported_from(venv_bin / "python", away)
    assert installed.is_relative_to(home)

    # What a pipx user (and etc/ipydoc.service) runs: the plain entry point, supervisor and
    # worker, no plugin lookup.
    d: Daemon = make_daemon()
    serve_installed(d, [bin_dir / "ipydoc", "serve", "--config", d.config_path], installed)
    assert d.stop() in (0, -15), d.log()


if __name__ == "__main__":
    if sys.argv[1:] != ["--wheelhouse"]:
        sys.exit("usage: python tests/test_install.py --wheelhouse  (build the cached wheelhouse)")
    print(ensure_wheelhouse())
