"""Backends run one Jupyter server per user; see :mod:`ipydoc.backends.base`."""
