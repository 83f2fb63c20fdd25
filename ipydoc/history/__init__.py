"""Versioning of users' files: every save seen by the proxy becomes a git commit (see
:mod:`ipydoc.history.service`)."""
