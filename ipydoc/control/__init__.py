"""The AMP control channel: its commands, the daemon's responders (by command group, over a
typed context), account removal and its TLS; the client side is :mod:`ipydoc.cli`."""
