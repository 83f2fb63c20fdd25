"""External login providers: GitHub (organisation/team/user allow-lists) and any OpenID
Connect provider.  ``settings`` holds their configuration tables (no Twisted import, the
config loader uses it); ``routes`` puts /hub/oauth/<id>/start and /callback into the Hub.
"""
