"""A layout typo suggests the closest name, the short aliases (anaglyph, sbs, tb, cross) included."""

from __future__ import annotations

import pytest

from benchmark.errors import StereobenchError
from benchmark.layouts import get_layout


@pytest.mark.parametrize("typo, suggestion", [("anaglph", "anaglyph"), ("half-sbbs", "half-sbs"), ("crosss", "cross")])
def test_typo_suggests_the_closest_name_or_alias(typo, suggestion):
    with pytest.raises(StereobenchError) as info:
        get_layout(typo)
    assert f"Did you mean {suggestion!r}?" in str(info.value)
    assert "anaglyph, anaglyph-color" in str(info.value)  # the alias is listed among the choices


def test_aliases_resolve():
    assert get_layout("anaglyph").name == "anaglyph-dubois" and get_layout("SBS").name == "full-sbs"
