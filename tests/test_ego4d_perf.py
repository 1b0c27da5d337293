"""Disk and time of `prepare-data ego4d` on a miniature clip (docs/datasets.md, "Disk and time
per hour of video"). Run it with

    .venv/bin/python -m pytest -m perf -s tests/test_ego4d_perf.py

One clip of 150 frames at 30 fps, 640x240 side-by-side source (eyes 320x240), published-format
homographies. Prints wall and CPU seconds (CPU time is the steadier figure on a shared box), the
per-stage CPU seconds and the bytes of each prepared file, and the per-hour extrapolation."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.dataprep import ego4d as E
from benchmark.dataprep.sgbm import sgbm_disparity
from tests.ego4d_scene import (
    Scene,
    ego4d_frames,
    homography,
    homography_json,
    write_sbs_video,
)

W, H, FPS, T = 320, 240, 30, 150


@pytest.mark.perf
def test_prepare_one_clip_disk_and_time(tmp_path):
    from benchmark.video_io import read_video

    scene = Scene(d0=-6.0, gx=0.02, gy=0.01, box=(120, 80, 220, 180), d_box=10.0)
    h_left = homography(angle_deg=1.2, tx=1.5, ty=-2.0, scale=1.02, px=1e-5, center=(160, 120))
    h_right = homography(angle_deg=-0.8, tx=-1.0, ty=2.5, scale=0.99, py=-1.5e-5, center=(160, 120))
    write_sbs_video(tmp_path / "videos" / "m.mp4", ego4d_frames(scene, T, H, W, pan=1.0, H_left=h_left,
                                                                 H_right=h_right), FPS, lossless=False)
    homography_json(tmp_path / "homs" / "m.mp4.json", h_left, h_right, E.compute_valid_region(h_left, h_right, (W, H)))
    wall, cpu = time.perf_counter(), time.process_time()
    rc = main(["prepare-data", "ego4d", "--videos", str(tmp_path / "videos"), "--homographies",
               str(tmp_path / "homs"), "--out", str(tmp_path / "out"), "--no-progress"])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert rc == 0
    clip = tmp_path / "out" / "clips" / "m_clip_0000"
    sizes = {p.name: p.stat().st_size for p in sorted(clip.iterdir())}
    meta = json.loads((clip / "meta.json").read_text())
    assert sizes["disparity.npy"] == 4 * meta["height"] * meta["width"] * T + 128       # float32 + npy header

    def frames(name):
        return (read_video(clip / name).frames.numpy() * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)

    left, right = frames("left.mp4"), frames("right.mp4")
    t = time.process_time()
    sgbm_disparity(left, right, min_disparity=-4, max_disparity=32, workers=1)
    sgbm_cpu = time.process_time() - t
    t = time.process_time()
    E.robust_min_disparity(left[::8], right[::8])
    features_cpu = time.process_time() - t
    clip_mb = sum(v for k, v in sizes.items() if k != "meta.json") / 1e6
    clips_per_hour = 3600 * FPS / T
    print(json.dumps({
        "load_average": os.getloadavg(), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
        "eye_after_crop": [meta["width"], meta["height"]], "bytes": sizes,
        "sgbm_cpu_s": round(sgbm_cpu, 2), "shift_features_cpu_s_19_pairs": round(features_cpu, 2),
        "per_hour": {"clips": clips_per_hour, "disk_gb": round(clips_per_hour * clip_mb / 1e3, 1),
                     "cpu_hours": round(clips_per_hour * cpu / 3600, 2)},
    }, indent=1))
