"""The hub's pages and JSON endpoints (Klein), mounted at ``/hub/``."""
