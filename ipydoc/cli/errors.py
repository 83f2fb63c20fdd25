"""The CLI's exit codes (scripts rely on them) and the error that carries one."""

from __future__ import annotations

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_CONFIG = 0, 1, 2, 3, 4
EXIT_NOT_FOUND, EXIT_NOT_AVAILABLE = 5, 6

EXIT_CODES = """exit codes: 0 done; 1 refused or failed in the daemon; 2 bad input; 3 daemon
unreachable (not running, no permission, TLS refused); 4 configuration error; 5 no such
user, server or session; 6 not available (e.g. no idle culler)"""


class CliError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code

