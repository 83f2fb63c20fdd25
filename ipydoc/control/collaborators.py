"""The parts of the daemon the control channel uses, as Protocols of the calls it makes.

They are also used elsewhere (the gate, the history service, the Redis service), so the
control channel depends on these few calls, not on their classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol

from twisted.internet.defer import Deferred

if TYPE_CHECKING:
    from ipydoc.state.store import Store


class StateService(Protocol):
    """The Redis service: its ``store`` exists once the service has started."""

    store: Store | None

    def describe(self) -> str: ...


class ExchangeChecker(Protocol):
    """The access gate, as far as the control channel needs it."""

    def recheck_exchanges(self) -> Deferred[None]:
        """Cut open exchanges whose credential no longer holds (after a revocation)."""


class HistoryReader(Protocol):
    """The history service's read side and its restore (history may be switched off)."""

    def repo(self, name: str) -> Any: ...

    def forget(self, name: str) -> None: ...

    async def files(self, name: str) -> list[dict[str, Any]]: ...

    async def versions(self, name: str, path: str) -> list[Any]: ...

    async def dead_letters(self, name: str) -> list[dict[str, Any]]: ...

    async def restore(self, name: str, path: str, rev: str, by: str = "") -> str: ...


#: The idle culler's "run now": fires with the names whose servers it stopped.
CullNow = Callable[[], "Deferred[list[str]]"]
