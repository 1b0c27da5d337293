"""Stereo4D preparation cost at real size (perf-marked, not in the default run): a 3840x1920 VR180
side-by-side H.264 video (crf 18, like a YouTube download) of 30 frames (1 s at 30 fps) is
prepared with SGBM disparity; prints seconds per second of video and bytes per prepared frame,
plus the lossless view size on natural content (scikit-image's astronaut, panned).

    .venv/bin/python -m pytest -q -m perf -s tests/test_stereo4d_perf.py
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.test_stereo4d import write_npz

FRAMES = 30


@pytest.mark.perf
def test_prepare_cost_per_second_of_4k_vr180(tmp_path):
    import cv2
    import torch

    from benchmark.cli import main
    from benchmark.datasets.prepared import write_lossless_rgb_video
    from benchmark.video_io import VideoWriter
    from tests.test_stereo4d import R_LEFT, R_RIGHT, render_equirect_eye

    # content: the miniature's equirect eyes (80 degrees) stretched over 180 degrees, 3840x1920
    small = np.concatenate([render_equirect_eye(R_LEFT, 0.0, 0), render_equirect_eye(R_RIGHT, 0.063, 0)], axis=1)
    big = cv2.resize((small * 255).astype(np.uint8), (3840, 1920), interpolation=cv2.INTER_LINEAR)
    raw = tmp_path / "raw"
    raw.mkdir()
    with VideoWriter(raw / "vid4k.mp4", fps=30, crf=18, preset="veryfast") as writer:
        for k in range(FRAMES):
            writer.append(torch.from_numpy(np.roll(big, 4 * k, axis=1)).permute(2, 0, 1))
    ann = tmp_path / "ann" / "test"
    write_npz(ann / "vid4k_0.npz", video_id="vid4k", timestamps=[round(k * 1e6 / 30) for k in range(FRAMES)],
              fov_bounds=np.array([-90.0, 90.0, -90.0, 90.0]), track_indices=np.array([0, 1, 2]))
    out = tmp_path / "out"
    start = time.perf_counter()
    assert main(["prepare-data", "stereo4d", "--annotations", str(tmp_path / "ann"), "--raw", str(raw), "--out",
                 str(out), "--disparity", "sgbm", "--no-progress"]) == 0
    seconds = time.perf_counter() - start
    files = {p.name: p.stat().st_size for p in (out / "clips" / "vid4k_0").iterdir()}
    per_frame = sum(v for k, v in files.items() if k != "meta.json") / FRAMES
    # lossless views on natural content: the astronaut panned 2 px per frame, 512x512
    from skimage import data

    image = cv2.resize(data.astronaut(), (600, 600))
    frames = np.stack([image[44:556, 2 * k:2 * k + 512] for k in range(FRAMES)])
    write_lossless_rgb_video(tmp_path / "natural.mp4", frames, 30)
    natural = (tmp_path / "natural.mp4").stat().st_size / FRAMES
    print(f"\nstereo4d prepare, 3840x1920 crf-18 source, {FRAMES} frames (1 s) with SGBM: {seconds:.1f} s wall; "
          f"files {files}; {per_frame / 1e6:.3f} MB per prepared frame (views + disparity); natural-content "
          f"lossless view {natural / 1e3:.0f} kB per frame")
    assert seconds > 0
