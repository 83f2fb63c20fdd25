"""The public edge: what listens, how strictly requests are read, and where they go.

* ``site`` — the one listening site: hub pages under ``/hub/``, claimed requests to the
  proxy as soon as their headers are in; ``request_rules`` — the strict HTTP/1.1 channel
  (framing, head limits, timeouts); ``limits`` — its sizes and timeouts; ``refusals`` —
  the rate-limited log of refused requests; ``access_log`` — the batched access log.
* ``listeners`` — the listening endpoints assembled from ``[server]``: ``listen_spec``
  (which entries are TLS), ``certificates`` (loading, SNI, SIGHUP reload), ``hsts``,
  ``https_redirect`` (the plain-HTTP site that sends everything to https).
* ``forwarding`` — the client and scheme behind a trusted proxy; ``routing`` — hosts and
  paths of the hub and users' servers; ``redirects`` — safe ``next=``;
  ``request_args`` — the one request-argument reader.
* ``reactor`` — the daemon's epoll reactor (installed when ipydoc's options are read):
  Twisted's, without a log context pushed per I/O event.

It imports only ``proxy``, ``state`` and ``names`` below it.
"""
