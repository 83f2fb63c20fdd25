"""``python -m ipydoc [--config FILE]``: run ipydoc under its supervisor (as ``ipydoc serve``).

The supervisor (:mod:`ipydoc.serve.supervisor`) keeps the listening sockets and the
embedded Redis and runs the daemon in a worker process, which it replaces on SIGHUP,
SIGUSR2 or ``ipydoc restart`` without refusing or failing a request.  Workers are this
same module with ``--worker``: the daemon of ``ipydoc.tap``, without twistd's plugin
discovery.  Plain ``twistd -n ipydoc --config FILE`` still runs the daemon alone.
"""

from __future__ import annotations

import argparse
import sys


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ipydoc",
        description="Run ipydoc: a supervisor process that holds the listening sockets "
                    "(and the embedded Redis) and runs the daemon in a worker process. "
                    "SIGHUP or SIGUSR2 (`systemctl reload ipydoc`, `ipydoc restart`) "
                    "replaces the worker with no failed request; the configuration and "
                    "the installed code are read again. SIGTERM stops everything. The "
                    "same as `ipydoc serve`.")
    p.add_argument("--config", "-c", metavar="FILE",
                   help="configuration file (default: $IPYDOC_CONFIG, "
                        "/etc/ipydoc/ipydoc.toml, ./etc/ipydoc.toml)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.worker:  # started by the supervisor
        from ipydoc import tap
        from ipydoc.serve.worker import run

        return run(tap.Options, tap.makeService,
                   ["--config", args.config] if args.config else [])
    from ipydoc.serve.supervisor import main as supervise

    return supervise(args.config)


if __name__ == "__main__":
    sys.exit(main())
