"""``next=`` after login stays on this site."""

import pytest

from ipydoc.edge.redirects import safe_next

DEFAULT = "/user/alice/lab"


@pytest.mark.parametrize("target", ["/user/alice/lab", "/hub/home", "/user/alice/tree?x=1#y",
                                    "/user/alice/files/100%25.ipynb",
                                    "/user/alice/tree/my%20notes/%C3%A9t%C3%A9.ipynb"])
def test_local_paths_pass(target):
    assert safe_next(target, DEFAULT) == target


@pytest.mark.parametrize("target", [
    "//evil.example", "/\\evil.example", "\\\\evil.example", "https://evil.example",
    "https:evil.example", "javascript:alert(1)", "evil.example", "%2F%2Fevil.example",
    "/%2F%2Fevil.example", "/%5Cevil.example", "/%09/evil.example", "/\t/evil.example",
    "/%252F%252Fevil.example", "/./\\evil.example", "", None,
    "/%25252F%25252Fevil.example", "/%2525252F%2525252Fevil.example", "/%2e/%5cevil.example",
    " /evil.example", "/\u3000/evil.example", "/\uff0f/evil.example", "/user/a/lab\r\n",
    "/%2525252525252F%2525252525252Fevil.example",
])
def test_other_sites_are_refused(target):
    assert safe_next(target, DEFAULT) == DEFAULT
