"""ipydoc: a multi-user Jupyter service in one Twisted daemon."""

__version__ = "0.1.0"
