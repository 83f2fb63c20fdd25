"""The reverse proxy: user traffic (HTTP and WebSocket) to user servers."""
