"""The public edge: listening site, strict HTTP/1.1 front end, TLS, routing of hosts and paths, access log."""
