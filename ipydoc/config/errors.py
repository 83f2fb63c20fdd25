"""The one error of the configuration: its own module so every section can raise it."""

from __future__ import annotations


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the file and key."""
