"""The AMP control channel: commands, the daemon's responder, and the CLI's client."""
