"""The prepared-clip store (benchmark.datasets.prepared): exact round trip, atomic and idempotent
writes, manifest merging, splits, windowed loads and the errors that say what is missing."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from benchmark.datasets import prepared
from benchmark.datasets.prepared import (
    PreparedDataset,
    clip_dir,
    clip_is_prepared,
    read_manifest,
    read_split,
    reconcile_manifest,
    sweep_temp_clip_folders,
    update_manifest,
    write_prepared_clip,
    write_split,
)
from benchmark.errors import StereobenchError
from benchmark.fileio import file_sha256
from benchmark.types import TimeWindow


def _views(t=4, h=24, w=32, seed=0):
    rng = np.random.default_rng(seed)
    left = rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)
    right = rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)
    disparity = np.broadcast_to(np.arange(t, dtype=np.float32)[:, None, None] + 0.25, (t, h, w)).copy()
    disparity[:, :3, :5] = np.nan
    return left, right, disparity


def _snapshot(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, root)] = (file_sha256(path), os.stat(path).st_mtime_ns)
    return out


def test_round_trip_is_exact_and_entry_has_checksums(tmp_path):
    left, right, disparity = _views()
    entry = write_prepared_clip(tmp_path, "abc_123", left=left, right=right, disparity=disparity, fps=30.0,
                                source={"npz": "test/abc_123.npz"})
    assert clip_is_prepared(tmp_path, "abc_123")
    assert entry["num_frames"] == 4 and (entry["height"], entry["width"]) == (24, 32)
    for name in ("left.mp4", "right.mp4", "disparity.npy"):
        assert entry["files"][name]["sha256"] == file_sha256(clip_dir(tmp_path, "abc_123") / name)
    assert read_manifest(tmp_path)["clips"]["abc_123"] == entry
    ds = PreparedDataset(tmp_path, name="mini")
    clip = ds.load_clip("abc_123")
    assert clip.clip_id == "mini/abc_123" and clip.fps == pytest.approx(30.0)
    got_left = np.rint(clip.left.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    got_right = np.rint(clip.right.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    assert np.array_equal(got_left, left) and np.array_equal(got_right, right)  # bit-exact lossless
    d = clip.disparity[:, 0].numpy()
    assert np.array_equal(np.isnan(d), np.isnan(disparity))
    assert np.array_equal(d[~np.isnan(d)], disparity[~np.isnan(disparity)])
    assert ds.checksums["abc_123"]["left.mp4"] == entry["files"]["left.mp4"]["sha256"]
    assert ds.provenance()["sources"]["abc_123"] == {"npz": "test/abc_123.npz"}


def test_rewrite_is_idempotent_and_changed_content_changes_revision(tmp_path):
    left, right, disparity = _views()
    write_prepared_clip(tmp_path, "c1", left=left, right=right, disparity=disparity, fps=30, source={})
    before = _snapshot(tmp_path)
    rev = PreparedDataset(tmp_path).spec.revision
    write_prepared_clip(tmp_path, "c1", left=left, right=right, disparity=disparity, fps=30, source={})
    assert _snapshot(tmp_path) == before  # same bytes and the same modification times: nothing touched
    disparity2 = disparity.copy()
    disparity2[0, 10, 10] = 7.0
    write_prepared_clip(tmp_path, "c1", left=left, right=right, disparity=disparity2, fps=30, source={})
    assert PreparedDataset(tmp_path).spec.revision != rev
    assert not [p for p in (tmp_path / "clips").iterdir() if p.name.startswith(".")]


def test_update_manifest_merges_and_leaves_unchanged_file_alone(tmp_path):
    update_manifest(tmp_path, {"a": {"x": 1}})
    update_manifest(tmp_path, {"b": {"x": 2}})
    assert set(read_manifest(tmp_path)["clips"]) == {"a", "b"}
    stamp = os.stat(tmp_path / "manifest.json").st_mtime_ns
    update_manifest(tmp_path, {"a": {"x": 1}})
    assert os.stat(tmp_path / "manifest.json").st_mtime_ns == stamp
    with pytest.raises(StereobenchError, match="safe folder name"):
        update_manifest(tmp_path, {"../evil": {}})


def test_splits_and_missing_clips_are_listed_with_where(tmp_path):
    left, right, disparity = _views(t=2)
    write_prepared_clip(tmp_path, "have", left=left, right=right, disparity=disparity, fps=5, source={})
    write_split(tmp_path, "test", ["have", "lost_1", "lost_2"])
    assert read_split(tmp_path, "test") == ["have", "lost_1", "lost_2"]
    with pytest.raises(StereobenchError) as err:
        PreparedDataset(tmp_path, split="test")
    message = str(err.value)
    assert "2 of 3 clips" in message and "lost_1, lost_2" in message and str(tmp_path / "clips") in message
    assert "allow_missing=true" in message and "\n" not in message
    ds = PreparedDataset(tmp_path, split="test", allow_missing=True)
    assert ds.clip_names() == ["have"] and ds.missing == ["lost_1", "lost_2"]
    with pytest.raises(StereobenchError, match=r"split 'val' not found: .*val.txt is missing; available splits: test"):
        PreparedDataset(tmp_path, split="val")
    assert PreparedDataset(tmp_path).splits == ["test"]


def test_absent_or_empty_root_says_what_and_how(tmp_path):
    with pytest.raises(StereobenchError, match="does not exist; prepare it with: stereobench prepare-data"):
        PreparedDataset(tmp_path / "nope")
    with pytest.raises(StereobenchError, match=r"manifest.json is missing"):
        PreparedDataset(tmp_path)
    with pytest.raises(StereobenchError, match="needs its prepared folder"):
        PreparedDataset()


def test_killed_write_leaves_no_clip_and_is_swept(tmp_path):
    left, right, disparity = _views(t=2)
    write_prepared_clip(tmp_path, "ok", left=left, right=right, disparity=disparity, fps=5, source={})
    # what a SIGKILLed writer leaves: a hidden temporary folder whose pid no longer exists
    debris = tmp_path / "clips" / f".dead.tmp-999999999-{prepared._HOST}abcdef12"
    debris.mkdir()
    (debris / "left.mp4").write_bytes(b"partial")
    # another machine's temporary folder (shards on a shared filesystem): its pid means nothing here
    foreign = tmp_path / "clips" / ".busy.tmp-999999999-0badc0deabcdef12"
    foreign.mkdir()
    assert not clip_is_prepared(tmp_path, "dead")
    assert PreparedDataset(tmp_path).clip_names() == ["ok"]
    assert sweep_temp_clip_folders(tmp_path) == [debris] and not debris.exists() and foreign.exists()
    old = time.time() - prepared.FOREIGN_TEMP_AGE_S - 10
    os.utime(foreign, (old, old))
    assert sweep_temp_clip_folders(tmp_path) == [foreign]


def test_reconcile_puts_back_a_clip_the_manifest_lost(tmp_path):
    left, right, disparity = _views(t=2)
    entry = write_prepared_clip(tmp_path, "a", left=left, right=right, disparity=disparity, fps=5, source={},
                                update=False)
    update_manifest(tmp_path, {})
    assert read_manifest(tmp_path)["clips"] == {}
    reconcile_manifest(tmp_path, ["a", "never-prepared"])
    assert read_manifest(tmp_path)["clips"] == {"a": entry}
    stamp = os.stat(tmp_path / "manifest.json").st_mtime_ns
    reconcile_manifest(tmp_path, ["a"])
    assert os.stat(tmp_path / "manifest.json").st_mtime_ns == stamp


def test_clip_folder_without_manifest_entry_is_found_and_truncated_file_is_named(tmp_path):
    left, right, disparity = _views(t=2)
    write_prepared_clip(tmp_path, "a", left=left, right=right, disparity=disparity, fps=5, source={}, update=False)
    write_prepared_clip(tmp_path, "b", left=left, right=right, disparity=disparity, fps=5, source={})
    assert PreparedDataset(tmp_path).clip_names() == ["a", "b"]
    path = clip_dir(tmp_path, "a") / "disparity.npy"
    path.write_bytes(path.read_bytes()[:-8])
    assert not clip_is_prepared(tmp_path, "a")
    with pytest.raises(StereobenchError, match=r"missing or truncated files: a;"):
        PreparedDataset(tmp_path)


def test_verify_detects_same_size_corruption(tmp_path):
    left, right, disparity = _views(t=2)
    write_prepared_clip(tmp_path, "a", left=left, right=right, disparity=disparity, fps=5, source={})
    PreparedDataset(tmp_path, verify=True)
    path = clip_dir(tmp_path, "a") / "disparity.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    PreparedDataset(tmp_path)  # size unchanged: the cheap check passes
    with pytest.raises(StereobenchError, match="does not match its checksum"):
        PreparedDataset(tmp_path, verify=True)


def test_windowed_load_reads_the_protocol_frames_and_matching_disparity(tmp_path):
    t = 12
    left, right, disparity = _views(t=t, h=16, w=16)
    write_prepared_clip(tmp_path, "w", left=left, right=right, disparity=disparity, fps=30, source={})
    clip = PreparedDataset(tmp_path).load_clip("w", window=TimeWindow(start_time=None, num_frames=2, fps=5.0))
    # 5 fps out of 30 fps: source frames 0 and 6; the disparity of frame k is k + 0.25
    assert clip.metadata["source_frame_indices"] == [0, 6]
    assert np.nanmax(clip.disparity[1].numpy()) == pytest.approx(6.25)
    got = np.rint(clip.left.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    assert np.array_equal(got, left[[0, 6]])


def test_bad_arguments_are_one_line_errors(tmp_path):
    left, right, disparity = _views(t=2)
    with pytest.raises(StereobenchError, match="does not match left"):
        write_prepared_clip(tmp_path, "x", left=left, right=right[:1], disparity=disparity, fps=5, source={})
    with pytest.raises(StereobenchError, match="safe folder name"):
        write_prepared_clip(tmp_path, "../x", left=left, right=right, disparity=disparity, fps=5, source={})
    with pytest.raises(StereobenchError, match="JSON"):
        write_prepared_clip(tmp_path, "x", left=left, right=right, disparity=disparity, fps=5, source={"a": object()})
    with pytest.raises(StereobenchError, match="fps"):
        write_prepared_clip(tmp_path, "x", left=left, right=right, disparity=disparity, fps=0, source={})
    assert not (tmp_path / "clips" / "x").exists()
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(StereobenchError, match="not a stereobench prepared-data manifest"):
        PreparedDataset(tmp_path)
