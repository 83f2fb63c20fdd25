"""The daemon's side of the control channel: one AMP protocol answering every command of
:mod:`ipydoc.control.commands` on the 0600 unix socket (and the optional TLS listener).

The commands are answered by group (:mod:`~ipydoc.control.users`,
:mod:`~ipydoc.control.servers`, :mod:`~ipydoc.control.events`,
:mod:`~ipydoc.control.history`, :mod:`~ipydoc.control.restart`); AMP gathers the responders of every base class into
this one protocol.  Each connection gets the :class:`~ipydoc.control.context.ControlContext`
built in ``tap.py``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import Factory

from ipydoc.control.context import ControlContext
from ipydoc.control.events import EventCommands
from ipydoc.control.groups import GroupCommands
from ipydoc.control.history import HistoryCommands
from ipydoc.control.restart import RestartCommands
from ipydoc.control.servers import ServerCommands
from ipydoc.control.shares import ShareCommands
from ipydoc.control.tokens import TokenCommands
from ipydoc.control.users import UserCommands


class ControlProtocol(UserCommands, ServerCommands, EventCommands, HistoryCommands,
                      RestartCommands, GroupCommands, ShareCommands, TokenCommands):
    """One control connection, answering every command group."""


class ControlFactory(Factory):
    def __init__(self, context: ControlContext) -> None:
        self.context = context

    def buildProtocol(self, addr: Any) -> ControlProtocol:
        return ControlProtocol(self.context)
