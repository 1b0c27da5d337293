"""benchmark.fileio: atomic writes keep the old file on failure and leave no temp file; SHA-256
agrees with hashlib and with the published digest of a known string."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from benchmark import fileio
from benchmark.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text, file_sha256


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_round_trips_and_parent_creation(tmp_path):
    target = tmp_path / "a" / "b" / "blob.bin"
    data = bytes(range(256)) * 3
    assert atomic_write_bytes(target, data) == target
    assert target.read_bytes() == data

    text_path = tmp_path / "new" / "note.txt"
    atomic_write_text(text_path, "ünïcode\nline 2\r\n")
    assert text_path.read_bytes() == "ünïcode\nline 2\r\n".encode("utf-8")  # no newline translation

    json_path = tmp_path / "deep" / "m.json"
    obj = {"b": [1, 2.5, None], "a": "x"}
    atomic_write_json(json_path, obj, indent=2, sort_keys=True)
    assert json_path.read_text() == json.dumps(obj, indent=2, sort_keys=True)  # exactly json.dumps
    assert json.loads(json_path.read_text()) == obj

    atomic_write_json(json_path, [3])  # overwrite in place
    assert json.loads(json_path.read_text()) == [3]
    for folder in (target.parent, text_path.parent, json_path.parent):
        assert _leftovers(folder) == []
    umask = os.umask(0)
    os.umask(umask)
    assert (json_path.stat().st_mode & 0o777) == (0o666 & ~umask)  # not mkstemp's 0600


def test_unserialisable_json_keeps_old_file(tmp_path):
    target = tmp_path / "state.json"
    atomic_write_json(target, {"step": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"step": object()})
    assert json.loads(target.read_text()) == {"step": 1}
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("writer, payload", [
    (atomic_write_bytes, b"new bytes"), (atomic_write_text, "new text"), (atomic_write_json, {"new": True}),
])
def test_failed_replace_keeps_old_file_and_removes_temp(tmp_path, monkeypatch, writer, payload):
    target = tmp_path / "out.dat"
    target.write_bytes(b"old content")
    seen = []

    def failing_replace(src, dst):
        seen.append(os.path.exists(src))  # the temp file was fully written before the rename
        raise OSError("simulated failure at rename time")

    monkeypatch.setattr(fileio.os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated"):
        writer(target, payload)
    assert seen == [True]
    assert target.read_bytes() == b"old content"
    assert _leftovers(tmp_path) == []


def test_interrupt_during_write_removes_temp(tmp_path, monkeypatch):
    target = tmp_path / "x.bin"

    def interrupted_fsync(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio.os, "fsync", interrupted_fsync)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"data")
    assert not target.exists()
    assert _leftovers(tmp_path) == []


def test_file_sha256_matches_hashlib_and_known_digest(tmp_path):
    path = tmp_path / "abc.txt"
    path.write_bytes(b"abc")
    # FIPS 180-2 test vector for "abc".
    assert file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert file_sha256(empty) == hashlib.sha256(b"").hexdigest()

    big = tmp_path / "big.bin"
    data = os.urandom(10_000) * 7
    big.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    for chunk in (1, 4096, 1 << 20):  # chunk size never changes the digest
        assert file_sha256(big, chunk_size=chunk) == expected


def test_old_names_are_thin_aliases(tmp_path):
    from benchmark.results import write_json_atomic, write_text_atomic
    from study_app.analysis import report

    assert report.atomic_write_bytes is atomic_write_bytes  # the report writes through the one atomic writer
    write_text_atomic(tmp_path / "t.txt", "hi")
    write_text_atomic(tmp_path / "b.bin", b"\x00\x01")
    write_json_atomic(tmp_path / "r.json", {"v": float("nan")})
    assert (tmp_path / "t.txt").read_text() == "hi"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "r.json").read_text() == '{\n  "v": "nan"\n}\n'
