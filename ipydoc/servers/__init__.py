"""Users' servers: the server manager (start, stop: ``manager``), its start queue
(``queue``), reconciling with the backend (``reconcile``), the route table (``routes``),
start progress (``progress``), activity (``activity``) and the idle culler (``culler``)."""
