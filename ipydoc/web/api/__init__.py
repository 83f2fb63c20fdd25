"""The hub's REST API (``/hub/api/``, issue 19): see :mod:`.endpoints` for the table every
route and the OpenAPI document are built from, and ``docs/api.md`` for its users."""
