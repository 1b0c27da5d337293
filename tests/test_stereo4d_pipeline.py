"""Stereo4D preparation at scale on the miniature: re-running changes no file, a SIGKILLed
preparation resumes to the same bytes, parallel workers and --shard give the same result, the
`stereo4d` dataset runs through `stereobench run --split test` with checksums in the run
manifest, and M2SVid's layout imports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.datasets.prepared import (
    PreparedDataset,
    read_manifest,
    read_split,
    write_lossless_rgb_video,
)
from tests.badinput import assert_clean_error
from tests.test_stereo4d import FPS, make_miniature

REPO = Path(__file__).resolve().parents[1]
CLIPS = {"vidA_33333": [1, 2], "vidA_66667": [2, 3], "uYSQlA0gDjw_100000": [0, 1]}  # the last is on M2SVid's test list


def miniature(root: Path) -> tuple[Path, Path]:
    for clip, frames in CLIPS.items():
        video_id = clip.rsplit("_", 1)[0]
        ann, raw = make_miniature(root, video_id=video_id, clip=clip, frames=frames)
    return ann, raw


def prepare_argv(ann, raw, out, *extra):
    return ["prepare-data", "stereo4d", "--annotations", str(ann), "--raw", str(raw), "--out", str(out),
            "--min-height", "0", "--disparity", "sgbm", "--max-disparity", "32", "--no-progress", *extra]


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    import hashlib

    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.startswith(".manifest.lock"):
            out[str(path.relative_to(root))] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    return out


def content(snap):
    """Checksums of the published files (hidden temporary files of a killed writer left out: the
    loader never reads them and the next writer sweeps them once their process is gone)."""
    return {k: v[0] for k, v in snap.items() if not any(part.startswith(".") for part in Path(k).parts)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("s4dref")
    ann, raw = miniature(root)
    out = root / "out"
    assert main(prepare_argv(ann, raw, out)) == 0
    return ann, raw, out


def test_rerun_changes_no_file(reference):
    ann, raw, out = reference
    before = snapshot(out)
    assert set(read_manifest(out)["clips"]) == set(CLIPS)
    assert main(prepare_argv(ann, raw, out)) == 0
    assert snapshot(out) == before  # same bytes, same modification times


def test_splits_and_m2svid_match_are_recorded(reference):
    _, _, out = reference
    assert sorted(read_split(out, "test")) == sorted(CLIPS)
    assert read_split(out, "m2svid-test") == ["uYSQlA0gDjw_100000"]
    matches = json.loads((out / "stereo4d_m2svid_matches.json").read_text())
    assert matches["m2svid-test"]["uYSQlA0gDjw-clip1"] == "uYSQlA0gDjw_100000"
    assert sum(v is None for v in matches["m2svid-test"].values()) == 387
    entry = read_manifest(out)["clips"]["uYSQlA0gDjw_100000"]
    assert entry["source"]["m2svid_ids"] == ["m2svid-test:uYSQlA0gDjw-clip1", "m2svid-val64:uYSQlA0gDjw-clip1"]
    assert entry["source"]["npz"] == "uYSQlA0gDjw_100000.npz"


@pytest.mark.slow
def test_parallel_and_shards_give_the_same_bytes(reference, tmp_path):
    ann, raw, out = reference
    want = content(snapshot(out))
    parallel = tmp_path / "parallel"
    assert main(prepare_argv(ann, raw, parallel, "--workers", "2")) == 0
    assert content(snapshot(parallel)) == want
    sharded = tmp_path / "sharded"
    for shard in ("0/2", "1/2"):
        assert main(prepare_argv(ann, raw, sharded, "--shard", shard)) == 0
    assert content(snapshot(sharded)) == want


@pytest.mark.slow
def test_killed_preparation_resumes_to_the_same_result(reference, tmp_path):
    ann, raw, out = reference
    target = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "benchmark.cli", *prepare_argv(ann, raw, target)], cwd=REPO,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    clips = target / "clips"
    try:
        while time.time() < deadline and proc.poll() is None:
            if clips.is_dir() and any(not p.name.startswith(".") for p in clips.iterdir()):
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    done_before = {p.name for p in clips.iterdir() if not p.name.startswith(".")} if clips.is_dir() else set()
    stamps = {n: (clips / n / "left.mp4").stat().st_mtime_ns for n in done_before}
    assert len(done_before) < len(CLIPS)  # it was killed part-way
    assert main(prepare_argv(ann, raw, target)) == 0
    assert content(snapshot(target)) == content(snapshot(out))
    assert {n: (clips / n / "left.mp4").stat().st_mtime_ns for n in done_before} == stamps  # not redone
    assert not [p for p in clips.iterdir() if p.name.startswith(".")]  # debris swept


def test_run_split_test_records_checksums_in_the_run_manifest(reference, tmp_path, capsys):
    _, _, out = reference
    runs = tmp_path / "runs"
    code = main(["run", "--dataset", "stereo4d", "--option", f"root={out}", "--split", "m2svid-test", "--method",
                 "left-copy", "--metrics", "psnr", "--out", str(runs), "--no-leaderboard", "--no-progress",
                 "--cache", str(tmp_path / "cache"), "--protocol", "quick"])  # quick: the 512 px warp costs ~15 s here
    assert code == 0
    manifest = json.loads(next(runs.glob("*/manifest.json")).read_text())
    ds = manifest["datasets"]["stereo4d"]
    assert ds["clips"] == ["uYSQlA0gDjw_100000"] and ds["split"] == "m2svid-test"
    entry = read_manifest(out)["clips"]["uYSQlA0gDjw_100000"]
    assert ds["checksums"]["uYSQlA0gDjw_100000"]["left.mp4"] == entry["files"]["left.mp4"]["sha256"]
    assert "not guaranteed" in ds["m2svid_note"] and len(ds["m2svid_unmatched"]) == 387
    assert manifest["protocol"]["name"] == "quick"


def test_prepared_datasets_default_to_the_paper_protocol():
    from benchmark.cli import build_parser
    from benchmark.commands.run import build_config

    def config(*argv):
        return build_config(build_parser("run").parse_args(["run", *argv]))

    assert config("--dataset", "stereo4d", "--split", "test").protocol == "paper"
    assert config("--dataset", "stereo4d", "--split", "test").datasets[0].options == {"split": "test"}
    assert config("--dataset", "stereo4d", "--protocol", "quick").protocol == "quick"
    assert config("--dataset", "synthetic").protocol == "quick"  # bundled data keeps the config default
    assert config("--dataset", "stereo4d", "--dataset", "synthetic").protocol == "quick"  # they disagree


def test_run_says_what_is_missing_and_where(reference, tmp_path, capsys):
    _, _, out = reference
    missing = tmp_path / "nothing"
    assert_clean_error(["run", "--dataset", "stereo4d", "--option", f"root={missing}", "--split", "test",
                        "--method", "left-copy", "--out", str(tmp_path / "runs")], capsys,
                       contains=[str(missing), "does not exist", "prepare-data stereo4d"])
    assert_clean_error(["run", "--dataset", "stereo4d", "--option", f"root={out}", "--split", "tset",
                        "--method", "left-copy", "--out", str(tmp_path / "runs")], capsys,
                       contains=["did you mean 'test'"])
    partial = tmp_path / "partial"
    import shutil

    shutil.copytree(out, partial)
    shutil.rmtree(partial / "clips" / "vidA_66667")
    assert_clean_error(["run", "--dataset", "stereo4d", "--option", f"root={partial}", "--split", "test",
                        "--method", "left-copy", "--out", str(tmp_path / "runs")], capsys,
                       contains=["1 of 3 clips", "vidA_66667", str(partial / "clips"), "allow_missing=true"])


def test_m2svid_layout_import(reference, tmp_path):
    _, _, out = reference
    ds = PreparedDataset(out)
    clip = ds.load_clip("vidA_33333")
    left = np.rint(clip.left.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    right = np.rint(clip.right.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    layout = tmp_path / "m2svid"
    (layout / "disparity").mkdir(parents=True)
    (layout / "left_rectified").mkdir()
    (layout / "right_rectified").mkdir()
    write_lossless_rgb_video(layout / "left_rectified" / "uYSQlA0gDjw-clip1-left_rectified.mp4", left, FPS)
    write_lossless_rgb_video(layout / "right_rectified" / "uYSQlA0gDjw-clip1-right_rectified.mp4", right, FPS)
    np.save(layout / "disparity" / "uYSQlA0gDjw-clip1.npy", clip.disparity[:, 0].numpy())
    # the toolkit's processed/<vid>/ layout in the same folder
    (layout / "vidB_5").mkdir()
    write_lossless_rgb_video(layout / "vidB_5" / "vidB_5-left_rectified.mp4", left, FPS)
    write_lossless_rgb_video(layout / "vidB_5" / "vidB_5-right_rectified.mp4", right, FPS)
    target = tmp_path / "imported"
    assert main(["prepare-data", "m2svid", "--root", str(layout), "--out", str(target), "--no-progress",
                 "--max-disparity", "32"]) == 0
    got = PreparedDataset(target, split="m2svid-test")
    assert got.clip_names() == ["uYSQlA0gDjw-clip1"]
    back = got.load_clip("uYSQlA0gDjw-clip1")
    assert np.array_equal(np.rint(back.left.numpy() * 255), np.rint(clip.left.numpy() * 255))
    d0, d1 = back.disparity.numpy(), clip.disparity.numpy()
    assert np.array_equal(np.isnan(d0), np.isnan(d1)) and np.array_equal(d0[~np.isnan(d0)], d1[~np.isnan(d1)])
    assert read_manifest(target)["clips"]["vidB_5"]["source"]["disparity"] == "sgbm"
    assert sorted(read_split(target, "all")) == ["uYSQlA0gDjw-clip1", "vidB_5"]


def test_clips_come_out_in_the_paper_protocols_shape(reference):
    from benchmark.datasets import get_dataset, load_clip
    from benchmark.stereo.protocol import apply_protocol

    _, _, out = reference
    ds = get_dataset("stereo4d", root=str(out), split="test")
    clip = apply_protocol(load_clip(ds, "vidA_33333", "paper"), "paper")
    assert clip.left.shape == clip.right.shape == (16, 3, 512, 512) and clip.disparity.shape == (16, 1, 512, 512)
    assert clip.fps == 5.0 and clip.clip_id == "stereo4d/vidA_33333"
    assert ds.spec.default_protocol == "paper" and ds.spec.revision.startswith("sha256:")
