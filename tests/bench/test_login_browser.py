"""bench/login_browser.py's scenario list: names expand to server × cache, in order, once."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import login_browser  # noqa: E402


def test_a_bare_server_name_means_both_caches_and_repeats_are_dropped() -> None:
    got = login_browser.parse_scenarios("warm, cold:empty,warm:cached,cold")
    assert got == [("warm", "empty"), ("warm", "cached"), ("cold", "empty"),
                   ("cold", "cached")]
    assert {s for s, _ in login_browser.parse_scenarios("direct,warm,cold,return")} == set(
        login_browser.SERVERS)
    # An empty cache part is the bare name.
    assert login_browser.parse_scenarios("cold:") == [("cold", c) for c in login_browser.CACHES]


@pytest.mark.parametrize("spec", ["tepid", "warm:hot", "direct:warm"])
def test_an_unknown_scenario_is_refused_by_name(spec: str) -> None:
    with pytest.raises(SystemExit, match="unknown scenario"):
        login_browser.parse_scenarios(spec)
