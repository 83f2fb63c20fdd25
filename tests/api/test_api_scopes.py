"""The scope rules of personal tokens (ipydoc.access.tokens): what each includes, and
which a new token may have."""

from __future__ import annotations

import pytest

from ipydoc.access.tokens import BadScopes, checked_scopes, effective


def test_each_scope_includes_the_lesser_ones():
    assert effective(["read"]) == {"read"}
    assert effective(["servers"]) == {"read", "servers"}
    assert effective(["admin"]) == {"read", "servers", "admin"}
    assert effective(["nonsense"]) == frozenset()


def test_new_tokens_get_known_scopes_in_order_and_admin_only_for_admins():
    assert checked_scopes(["servers", "read"], admin=False) == ("read", "servers")
    assert checked_scopes(["admin"], admin=True) == ("admin",)
    for bad, admin in (([], False), (["root"], True), (["admin"], False)):
        with pytest.raises(BadScopes):
            checked_scopes(bad, admin=admin)
