"""twistd plugin: ``twistd -n ipydoc --config FILE``.  Imports nothing heavy."""

from twisted.application.service import ServiceMaker

ipydoc = ServiceMaker(
    "ipydoc",
    "ipydoc.tap",
    "A multi-user Jupyter service: login, per-user Docker servers, proxy, control socket",
    "ipydoc",
)
