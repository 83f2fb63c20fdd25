"""External login providers: GitHub (organisation/team/user allow-lists) and any OpenID
Connect provider.  ``base`` is what every provider offers the hub, ``registry`` builds the
configured ones; their configuration tables are in :mod:`ipydoc.config.auth`.
"""
