"""The programs a bench drives, checked before it starts anything.

Without this a bench on a fresh machine would build a daemon, log in, start a container
and only then die with ``FileNotFoundError: 'wrk'``.  ``require`` says at once what is
missing and which Debian package brings it.
"""

from __future__ import annotations

import shutil
import sys

#: Program → the Debian package that installs it.
PACKAGES = {"wrk": "wrk", "nginx": "nginx", "taskset": "util-linux", "chrt": "util-linux",
            "docker": "docker.io"}


def require(*programs: str) -> None:
    """Exit with one clear line per missing program (status 2) unless all are on PATH."""
    missing = [p for p in programs if shutil.which(p) is None]
    if not missing:
        return
    packages = " ".join(sorted({PACKAGES.get(p, p) for p in missing}))
    sys.exit(f"{sys.argv[0]}: needs {', '.join(missing)} on PATH; on Debian: "
             f"apt-get install -y {packages}")
