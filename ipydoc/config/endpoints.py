"""Endpoint strings in the configuration (``server.listen``, ``control.listen_tls``, …):
their form is checked here, with no reactor.

The CLI reads the same file as the daemon, and importing the global reactor would install
it in every process that reads a config.  ``serverFromString`` only stores the reactor in
the endpoint it builds, so a stand-in without any of its methods is enough to parse; the
daemon parses each string again with its own reactor when it listens (:mod:`ipydoc.tap`).
"""

from __future__ import annotations

from twisted.internet import endpoints

from ipydoc.config.errors import ConfigError


class _ParseOnly:
    """Given to ``serverFromString`` as the reactor: stored, never called."""


def check_endpoint(key: str, spec: str) -> None:
    """ConfigError naming ``key`` unless ``spec`` is a stream server endpoint string."""
    if spec.startswith("systemd:"):
        # The descriptor exists only in the process systemd started; the CLI reads this
        # same file, so check the form here and leave the descriptor to the daemon.
        opts = dict(part.split("=", 1) for part in spec.split(":")[1:] if "=" in part)
        if opts.get("domain") not in ("INET", "INET6", "UNIX") or \
                ("index" in opts) == ("name" in opts) or \
                ("index" in opts and not opts["index"].isdigit()):
            raise ConfigError(f"{key}: bad endpoint string {spec!r}: use "
                              "systemd:domain=INET:index=N (or :name=NAME)")
        return
    try:
        endpoints.serverFromString(_ParseOnly(), spec)
    except Exception as e:  # noqa: BLE001 - any parse failure is a config error
        raise ConfigError(f"{key}: bad endpoint string {spec!r}: {e}") from None
