"""`stereobench run` on footage without ground truth: a folder of left-only videos with a depth
source runs every method, saves their outputs for the study builder, writes no score rows and
says so; the depth phase is timed; bad depth flags end in one clean line."""

from __future__ import annotations

import json

import numpy as np

from benchmark import video_io
from benchmark.depth import write_depth_files
from tests.badinput import assert_clean_error


def _rows(run_dir):
    rows = []
    for path in run_dir.glob("rows*.jsonl"):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def test_run_without_ground_truth_saves_outputs_and_writes_no_scores(footage, tmp_path, capsys):
    from benchmark.cli import main

    config = tmp_path / "run.yaml"
    config.write_text(
        f"datasets: [{{name: folder, options: {{root: {footage}}}}}]\n"
        "methods: [left-copy, background-fill]\n"
        "protocol: {name: qualitative, size: [32, 48], num_frames: 4}\n"
        "metrics: [psnr]\n"
        f"out: {tmp_path / 'runs'}\ncache: {tmp_path / 'cache'}\ndevice: cpu\n")
    code = main(["run", "--config", str(config), "--depth", "files", "--depth-option", "d_max_percent=4",
                 "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 clip(s) without a ground-truth right view" in out and "no scores for them" in out
    run_dir = next((tmp_path / "runs").iterdir())
    rows = _rows(run_dir)
    assert rows, "the pairs are recorded (timings, completion markers)"
    assert {r["kind"] for r in rows} == {"timing", "marker"}, "no score rows for clips without ground truth"
    assert {r["method"] for r in rows} == {"left-copy", "background-fill"}
    assert any(str(r.get("metric", "")).startswith("time_depth") for r in rows), "the depth phase is timed"
    for clip in ("beach", "street"):
        folder = run_dir / "videos"
        saved = {p.stem for p in folder.rglob(f"*{clip}*/*.mp4")}
        assert {"left", "warped", "mask", "left-copy", "background-fill"} <= saved, saved
        video = video_io.read_video(next(folder.rglob(f"*{clip}*/background-fill.mp4"))).frames
        assert video.shape == (4, 3, 32, 48)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["config"]["depth"] == {"name": "files", "d_max_percent": 4}


def test_missing_depth_names_the_fix(footage, tmp_path, capsys):
    for f in footage.glob("*_depth.npy"):
        f.unlink()
    assert_clean_error(["run", "--dataset", str(footage), "--method", "left-copy", "--out", str(tmp_path / "r"),
                        "--cache", str(tmp_path / "c"), "--no-progress"], capsys, contains="name a depth source")


def test_bad_depth_flags(footage, tmp_path, capsys):
    base = ["run", "--dataset", str(footage), "--method", "left-copy", "--out", str(tmp_path / "r"), "--no-progress"]
    assert_clean_error([*base, "--depth", "depth-anyting-v2"], capsys, contains="Did you mean 'depth-anything-v2'")
    assert_clean_error([*base, "--weights-depth", str(tmp_path)], capsys, contains="need a depth source")
    assert_clean_error([*base, "--depth", "files", "--depth-option", "d_max_percent"], capsys, contains="KEY=VALUE")


def test_depth_files_that_do_not_match_are_named_on_the_command_line(footage, tmp_path, capsys):
    write_depth_files(footage / "beach_depth.npy", np.zeros((3, 32, 48), np.float32), fmt="npy")
    assert_clean_error(["run", "--dataset", str(footage), "--method", "left-copy", "--depth", "files",
                        "--out", str(tmp_path / "r"), "--cache", str(tmp_path / "c"), "--no-progress"], capsys,
                       contains=["beach_depth.npy", "hold 3 frames but the video has 4"])
