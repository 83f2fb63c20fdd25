"""Versioning of users' files: every save seen by the proxy becomes a git commit.  The
map of the package is in :mod:`ipydoc.history.service`."""
