"""Run a command with its standard error on a pseudo-terminal (as a person's shell does)."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios


def run_on_terminal(argv: list[str], timeout: float = 300,
                    **kw: object) -> tuple[int, str, str]:
    """(exit code, stdout, what the terminal showed on stderr)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 24x120
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, **kw)  # type: ignore[call-overload]
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the last writer closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    out = proc.stdout.read() if proc.stdout else b""
    code = proc.wait(timeout)
    os.close(master)
    return code, out.decode(errors="replace"), shown.decode(errors="replace")
