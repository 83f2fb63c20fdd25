"""Progress bars for the CLI's long work (backup, restore, ``image build``).

Bars go to standard error, and only when it is a terminal and ``--json`` was not asked
for: scripts and pipes see nothing but the command's answer.  ``tqdm`` draws them (rate,
size, time left) so no terminal code is written here.
"""

from __future__ import annotations

import argparse
import os
import selectors
import subprocess
import sys
from typing import Any


class _Quiet:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def shown(args: argparse.Namespace) -> bool:
    """Whether this command may draw bars."""
    return not getattr(args, "json", False) and sys.stderr.isatty()


def meters(args: argparse.Namespace) -> Any:
    """A factory ``(description, total, unit="B") -> meter`` (``update(n)``, ``close()``)."""
    if not shown(args):
        return lambda description, total, unit="B": _Quiet()
    from tqdm import tqdm

    def make(description: str, total: int | None, unit: str = "B") -> Any:
        scaled = unit == "B"
        return tqdm(total=total, desc=description, unit=unit, unit_scale=scaled,
                    unit_divisor=1024 if scaled else 1000, file=sys.stderr, leave=True,
                    dynamic_ncols=True)
    return make


#: The steps of ``image/build.sh``, each recognised by the command that starts it in the
#: script's ``bash -x`` trace (which goes to a pipe of its own: ``BASH_XTRACEFD``).
BUILD_STEPS = (("debootstrap ", "Debian base system"), ("cp -a ", "copy of the base"),
               ("chroot ", "Python packages (pip)"), ("docker import", "docker import"))


def step_of(line: str, steps: tuple[tuple[str, str], ...] = BUILD_STEPS) -> int | None:
    """The index of the step a trace line starts, or None."""
    command = line.lstrip("+").lstrip(" ")
    return next((i for i, (start, _) in enumerate(steps) if command.startswith(start)), None)


def run_script(args: argparse.Namespace, argv: list[str],
               steps: tuple[tuple[str, str], ...] = BUILD_STEPS) -> int:
    """Run a bash script (``argv``: bash, script, arguments); on a terminal under a bar of
    its steps, its own output printed above the bar.  Otherwise as is.  Its exit code."""
    if not shown(args):
        return subprocess.run(argv).returncode
    from tqdm import tqdm

    bar = tqdm(total=len(steps), desc="starting", unit="step", file=sys.stderr,
               bar_format="{desc:<24} {n_fmt}/{total_fmt} |{bar}| {elapsed}",
               mininterval=0, miniters=1)  # four updates in all: show each one
    trace_r, trace_w = os.pipe()
    proc = subprocess.Popen([argv[0], "-x", *argv[1:]], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, pass_fds=(trace_w,),
                            env=dict(os.environ, BASH_XTRACEFD=str(trace_w)))
    os.close(trace_w)
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout.fileno(), selectors.EVENT_READ, "out")
    sel.register(trace_r, selectors.EVENT_READ, "trace")
    pending = {"out": b"", "trace": b""}
    while sel.get_map():
        for key, _ in sel.select():
            chunk = os.read(key.fd, 65536)
            if not chunk:
                sel.unregister(key.fd)
                chunk = b"\n" if pending[key.data] else b""
            *lines, pending[key.data] = (pending[key.data] + chunk).split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace")
                if key.data == "out":
                    bar.write(line, file=sys.stderr)
                elif (step := step_of(line, steps)) is not None and step >= bar.n:
                    bar.set_description_str(steps[step][1], refresh=step == bar.n)
                    bar.update(step - bar.n)
    os.close(trace_r)
    code = proc.wait()
    if code == 0:
        bar.set_description_str("built", refresh=False)
        bar.update(len(steps) - bar.n)
    bar.close()
    return code
