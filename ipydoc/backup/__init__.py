"""`ipydoc backup` / `ipydoc restore`: one archive of a site (Redis snapshot, history, secret, config, volumes)."""
