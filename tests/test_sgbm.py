"""benchmark.dataprep.sgbm: SGBM disparity with a left-right consistency check, against scenes of
known disparity (tests/ego4d_scene.py) and a loop reference of the consistency rule."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.dataprep.sgbm import (
    _lr_consistent,
    default_max_disparity,
    sgbm_disparity,
)
from benchmark.errors import StereobenchError
from tests.ego4d_scene import Scene, grid, render_pair

H, W = 120, 160


@pytest.fixture(scope="module")
def scene_pair():
    scene = Scene()
    left, right, disp = render_pair(scene, H, W)
    x, y = grid(H, W)
    occluded = scene.occluded_left(x, y)
    return scene, left, right, disp, occluded, x


def test_known_disparity_within_stated_error(scene_pair):
    """Slanted plane (6-9.6 px) and a box at 16 px: over valid, non-occluded pixels the median
    error is under 0.2 px, the 95th percentile under 0.5 px and under 2% are off by more than 1 px."""
    _, left, right, truth, occluded, x = scene_pair
    d = sgbm_disparity(left, right, max_disparity=32)
    assert d.shape == (H, W) and d.dtype == np.float32
    matchable = ~occluded & (x - truth >= 0)       # the partner pixel lies inside the right image
    valid = np.isfinite(d)
    assert valid[matchable].mean() > 0.85
    err = np.abs(d - truth)[valid & matchable]
    assert np.median(err) < 0.2
    assert np.percentile(err, 95) < 0.5
    assert (err > 1.0).mean() < 0.02


def test_occluded_and_unmatchable_pixels_are_invalid(scene_pair):
    _, left, right, truth, occluded, x = scene_pair
    d = sgbm_disparity(left, right, max_disparity=32)
    assert np.isfinite(d)[occluded].mean() < 0.15            # the consistency check drops most of them
    assert np.isfinite(d)[x - truth < -1].mean() < 0.01      # partner outside the right image: (almost) never valid
    unchecked = sgbm_disparity(left, right, max_disparity=32, lr_check=None)
    assert np.isfinite(unchecked).sum() > np.isfinite(d).sum()
    both = np.isfinite(d)
    np.testing.assert_array_equal(unchecked[both], d[both])  # the check only removes pixels


def test_integer_shift_pair_is_recovered_exactly():
    """right = left moved 7 px to the left: every valid pixel reads 7 (an independent, trivial truth)."""
    rng = np.random.default_rng(3)
    import cv2

    base = cv2.GaussianBlur(rng.integers(0, 256, (H, W + 7, 3)).astype(np.float32), (0, 0), 1.2)
    base = np.clip(base, 0, 255).astype(np.uint8)
    left, right = base[:, :W], base[:, 7:W + 7]              # right(x) = left(x + 7): x_R = x_L - 7
    d = sgbm_disparity(left, right, max_disparity=16)
    valid = np.isfinite(d)
    assert valid[:, 10:].mean() > 0.9
    inner = valid[:, 10:-3]                                  # the outermost columns may match off by <= 1 px
    assert np.abs(d[:, 10:-3][inner] - 7.0).max() < 0.25
    assert (np.abs(d[valid] - 7.0) < 0.25).mean() > 0.99


def test_negative_disparity_with_min_disparity():
    rng = np.random.default_rng(4)
    import cv2

    base = np.clip(cv2.GaussianBlur(rng.integers(0, 256, (H, W + 5, 3)).astype(np.float32), (0, 0), 1.2), 0, 255)
    base = base.astype(np.uint8)
    left, right = base[:, 5:W + 5], base[:, :W]              # right(x) = left(x - 5): d = -5
    d = sgbm_disparity(left, right, min_disparity=-16, max_disparity=8)
    valid = np.isfinite(d)
    assert valid.mean() > 0.75
    assert np.abs(d[valid] + 5.0).max() < 0.25
    assert np.isfinite(sgbm_disparity(left, right, max_disparity=16)).mean() < 0.3   # a 0..16 search cannot find it


def test_video_input_matches_frame_by_frame(scene_pair):
    scene = scene_pair[0]
    frames = [render_pair(scene, H, W, shift=3.0 * t) for t in range(3)]
    left = np.stack([f[0] for f in frames])
    right = np.stack([f[1] for f in frames])
    video = sgbm_disparity(left, right, max_disparity=32, workers=2)
    assert video.shape == (3, H, W)
    for t in range(3):
        np.testing.assert_array_equal(video[t], sgbm_disparity(left[t], right[t], max_disparity=32, workers=1))
    # float input in [0, 1] is the same as its uint8 form
    np.testing.assert_array_equal(sgbm_disparity(left[0] / 255.0, right[0] / 255.0, max_disparity=32), video[0])


def test_lr_rule_matches_a_loop_reference():
    rng = np.random.default_rng(0)
    t, h, w = 2, 5, 23
    dl = rng.uniform(-1, 9, (t, h, w)).astype(np.float32)
    dr = rng.uniform(-1, 9, (t, h, w)).astype(np.float32)
    dl[rng.random(dl.shape) < 0.1] = np.nan
    dr[rng.random(dr.shape) < 0.1] = np.nan
    dl[0, 0, 12] = 3.0
    dr[0, 0, 9] = 3.4                                        # exact pixel-centre match, within 1 px
    got = _lr_consistent(dl, dr, 1.0)
    want = np.full_like(dl, np.nan)
    for k in range(t):
        for i in range(h):
            for j in range(w):
                d = dl[k, i, j]
                if not np.isfinite(d):
                    continue
                xr = j - d
                if xr < 0 or xr > w - 1:
                    continue
                x0 = int(np.floor(xr))
                f = xr - x0
                other = dr[k, i, x0] if f == 0 else (1 - f) * dr[k, i, x0] + f * dr[k, i, min(x0 + 1, w - 1)]
                if np.isfinite(other) and abs(other - d) <= 1.0:
                    want[k, i, j] = d
    np.testing.assert_allclose(got, want, atol=1e-5, equal_nan=True)
    assert got[0, 0, 12] == 3.0


def test_bad_inputs_are_one_line_errors():
    a = np.zeros((20, 30, 3), np.uint8)
    with pytest.raises(StereobenchError, match="differ in shape"):
        sgbm_disparity(a, np.zeros((20, 31, 3), np.uint8))
    with pytest.raises(StereobenchError, match="must be"):
        sgbm_disparity(np.zeros((2, 3, 20, 30, 3), np.uint8), np.zeros((2, 3, 20, 30, 3), np.uint8))
    with pytest.raises(StereobenchError, match="odd"):
        sgbm_disparity(a, a, block_size=4)
    with pytest.raises(StereobenchError, match="lr_check"):
        sgbm_disparity(a, a, lr_check=0)
    assert default_max_disparity(160) == 40 and default_max_disparity(20) == 16
