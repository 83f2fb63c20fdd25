"""Every Redis key is built in :mod:`ipydoc.state.keys`, documented in its schema table,
and names secrets only by their digests."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import ipydoc
import ipydoc.state.keys as keys

ARG = "Alice.Secret-1"


def _documented() -> set[str]:
    return {re.sub(r"\{[^}]*\}", "{}", k) for k in re.findall(r"``(ipydoc:[^`]+)``", keys.__doc__)}


def _built() -> dict[str, str]:
    """Each key builder and constant of the module, with the family of key it makes."""
    out = {}
    for name, value in vars(keys).items():
        if name.endswith("_key") and inspect.isfunction(value):
            n = len(inspect.signature(value).parameters)
            key = value(*[ARG] * n)
            out[name] = key.replace(keys.digest(ARG), "{}").replace(ARG, "{}")
        elif name.isupper() and isinstance(value, str) and value.startswith(keys.P) \
                and "*" not in value and not value.endswith(":"):
            out[name] = value
    return out


def test_every_key_is_documented_in_the_schema():
    built = _built()
    assert len(built) >= 25
    undocumented = {name: family for name, family in built.items()
                    if family not in _documented()}
    assert undocumented == {}


def test_secrets_appear_in_keys_only_as_digests():
    for builder in (keys.session_key, keys.handoff_key, keys.host_session_key,
                    keys.login_state_key):
        assert ARG not in builder(ARG) and builder(ARG).endswith(keys.digest(ARG))
    assert ARG not in keys.identity_key("github", ARG)
    assert keys.tail(keys.session_key(ARG)) == keys.digest(ARG)


def test_no_module_outside_state_builds_a_key():
    root = Path(ipydoc.__file__).parent
    literal = re.compile(r"""["']ipydoc:[a-z{]""")
    found = [str(p.relative_to(root)) for p in root.rglob("*.py")
             if p.parent.name != "state" and literal.search(p.read_text())]
    assert found == []
