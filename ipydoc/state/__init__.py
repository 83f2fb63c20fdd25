"""Redis: the connection, the embedded redis-server, and every key ipydoc stores."""
