"""What the control channel works with: the daemon's collaborators, named and typed.

``tap.py`` builds one :class:`ControlContext` and hands it to the
:class:`~ipydoc.control.server.ControlFactory`; the responders reach the daemon only
through it (and the backend only through its :class:`~ipydoc.backends.base.Backend`
interface), so what a control command can touch is written down here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IReactorTime

from ipydoc.backends.base import Backend
from ipydoc.control.collaborators import CullNow, ExchangeChecker, HistoryReader, StateService
from ipydoc.control.removal import Removal

if TYPE_CHECKING:
    from ipydoc.servers.manager import ServerManager
    from ipydoc.state.store import Store


@dataclass(frozen=True)
class ControlContext:
    """Everything the control responders use, built once in ``tap.py``."""

    reactor: IReactorTime
    state: StateService
    manager: ServerManager
    backend: Backend
    exchanges: ExchangeChecker
    removal: Removal
    history: HistoryReader | None
    cull: CullNow | None
    started_at: float
    config_path: str

    @property
    def store(self) -> Store:
        store = self.state.store
        assert store is not None, "the control channel listens only once Redis is up"
        return store
