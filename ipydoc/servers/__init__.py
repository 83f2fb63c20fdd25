"""Users' servers: the server manager (start, stop, reconcile), start progress, the idle culler."""
