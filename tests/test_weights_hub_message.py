"""A missing hub id names `huggingface-cli download <id>` once, even when the caller's own hint repeats it."""

from __future__ import annotations

import pytest

from benchmark.errors import StereobenchError
from benchmark.weights import resolve_weights


@pytest.mark.parametrize("hint, tail", [
    ("huggingface-cli download org/absent-model, or give a local folder with --weights-depth",
     "; or give a local folder with --weights-depth"),
    ("huggingface-cli download org/absent-model", "reachable"),
    ("set $MY_ENV to a folder", "; set $MY_ENV to a folder"),
])
def test_the_download_command_is_named_once(tmp_path, monkeypatch, hint, tail):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(StereobenchError) as info:
        resolve_weights("org/absent-model", what="test weights", how_to_get=hint)
    message = str(info.value)
    assert message.count("huggingface-cli download org/absent-model") == 1, message
    assert message.endswith(tail), message
