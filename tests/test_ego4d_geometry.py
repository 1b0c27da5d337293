"""benchmark.dataprep.ego4d geometry on rendered frames (no video files): portrait resize, eye
split, rectification with a published-format homography JSON and with an estimate, the valid
crop, and the horizontal shift (intended rule vs M2SVid's half shift)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmark.dataprep import ego4d as E
from benchmark.errors import StereobenchError
from tests.ego4d_scene import (
    H_LEFT,
    H_RIGHT,
    Scene,
    ego4d_frames,
    grid,
    render_pair,
    warp_points,
)

EYE_W, EYE_H = 160, 120


def _corners(gray: np.ndarray) -> np.ndarray:
    """Sub-pixel corner positions (N, 2) of a checkerboard image."""
    import cv2

    pts = cv2.goodFeaturesToTrack(gray, maxCorners=400, qualityLevel=0.05, minDistance=6, blockSize=5)
    pts = cv2.cornerSubPix(gray, pts.astype(np.float32), (4, 4), (-1, -1),
                           (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-4)).reshape(-1, 2)
    h, w = gray.shape
    inside = (pts[:, 0] > 6) & (pts[:, 0] < w - 7) & (pts[:, 1] > 6) & (pts[:, 1] < h - 7)
    return pts[inside]                                   # image borders are not checkerboard corners


def _gray(img):
    import cv2

    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def test_portrait_frames_are_stretched_not_rotated():
    """M2SVid's ``Resize([w, h], antialias=True)``: torch's antialiased bilinear, which matches
    PIL's bilinear resize (an independent implementation) within one grey level."""
    from PIL import Image

    rng = np.random.default_rng(0)
    portrait = rng.integers(0, 256, (2, 40, 18, 3), dtype=np.uint8)        # h > w
    out = E.resize_portrait(portrait)
    assert out.shape == (2, 18, 40, 3) and out.dtype == np.uint8
    ref = np.stack([np.asarray(Image.fromarray(f).resize((40, 18), Image.BILINEAR)) for f in portrait])
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1
    rotated = np.rot90(portrait, axes=(1, 2))                              # what a rotation would give
    assert np.abs(out.astype(int) - rotated.astype(int)).mean() > 20
    landscape = rng.integers(0, 256, (1, 18, 40, 3), dtype=np.uint8)
    assert E.resize_portrait(landscape) is landscape
    left, right = E.split_eyes(landscape)
    np.testing.assert_array_equal(np.concatenate([left, right], axis=2), landscape)


def test_side_by_side_check_uses_the_aspect():
    E.check_side_by_side(2 * 160, 120, "v")            # two 4:3 eyes
    E.check_side_by_side(2 * 1280, 720, "v")           # two 16:9 eyes
    with pytest.raises(StereobenchError, match=r"1920x1080 \(aspect 1.78\).*not side-by-side"):
        E.check_side_by_side(1920, 1080, "video x")


def test_valid_region_is_inside_both_warped_frames_and_even():
    import cv2

    crop = E.compute_valid_region(H_LEFT, H_RIGHT, (EYE_W, EYE_H))
    x0, y0, x1, y1 = crop
    assert (x1 - x0) % 2 == 0 and (y1 - y0) % 2 == 0
    assert 0 <= x0 < x1 <= EYE_W and 0 <= y0 < y1 <= EYE_H
    assert (x1 - x0) > 0.85 * EYE_W and (y1 - y0) > 0.85 * EYE_H
    ones = np.full((EYE_H, EYE_W), 255, np.uint8)
    for H in (H_LEFT, H_RIGHT):                                   # an independent check: warp a white frame
        covered = cv2.warpPerspective(ones, H, (EYE_W, EYE_H))
        assert covered[y0:y1, x0:x1].min() > 0
    assert E.compute_valid_region(np.eye(3), np.eye(3), (EYE_W, EYE_H)) == (0, 0, EYE_W, EYE_H)
    shifted = np.array([[1, 0, 3.4], [0, 1, -2.2], [0, 0, 1.0]])
    assert E.compute_valid_region(shifted, np.eye(3), (EYE_W, EYE_H)) == (4, 0, EYE_W, EYE_H - 4)
    assert E.even_crop((1, 2, 10, 9)) == (1, 2, 9, 8)


@pytest.fixture(scope="module")
def checker_frames():
    scene = Scene(d0=5.0, gx=0.01, gy=0.0, box=(0, 0, 0, 0), checker=12)
    raw = ego4d_frames(scene, 2, EYE_H, EYE_W, pan=0.0)
    return scene, raw


@pytest.mark.parametrize("portrait", [False, True])
def test_json_rectification_recovers_rows_on_a_checkerboard(checker_frames, tmp_path, portrait):
    """Raw eyes made with known homographies (and, for the portrait variant, stored stretched to
    height > width): the published-format JSON rectification puts every corresponding checkerboard
    corner on the same row within 0.5 px, and the left corners where the scene has them."""
    scene, raw = checker_frames
    if portrait:
        raw = ego4d_frames(scene, 1, EYE_H, EYE_W, pan=0.0, portrait=True)
        assert raw.shape[1] > raw.shape[2]
    crop = E.compute_valid_region(H_LEFT, H_RIGHT, (EYE_W, EYE_H))
    path = tmp_path / "v.mp4.json"
    path.write_text(json.dumps({"homography_left": H_LEFT.tolist(), "homography_right": H_RIGHT.tolist(),
                                "croping": list(crop)}))
    rect = E.load_homography_json(path, (EYE_W, EYE_H))
    assert rect.crop == crop and rect.origin == "published"
    left, right = E.rectify_frames(*E.split_eyes(E.resize_portrait(raw[:1])), rect)
    x0, y0 = crop[:2]
    cl, cr = _corners(_gray(left[0])), _corners(_gray(right[0]))
    assert len(cl) > 40
    s = scene.checker
    # Left corners lie on the scene's corner grid (multiples of the square size) in scene coordinates.
    gx, gy = cl[:, 0] + x0, cl[:, 1] + y0
    assert np.abs(gx - np.round(gx / s) * s).max() < 0.5 and np.abs(gy - np.round(gy / s) * s).max() < 0.5
    # Each left corner's partner in the right view sits d pixels to the left, on the same row.
    d = scene.disparity(gx, gy)
    dy = []
    for (xl, yl), dd in zip(cl, d):
        dist = np.hypot(cr[:, 0] - (xl - dd), cr[:, 1] - yl)
        if dist.min() < 2.0:
            dy.append(abs(cr[dist.argmin(), 1] - yl))
    assert len(dy) > 30
    assert max(dy) < 0.5


def test_estimated_rectification_aligns_rows():
    """SIFT + iterated RANSAC + stereoRectifyUncalibrated on a textured slanted plane and box: the
    rectified true correspondences share a row within 1 px (median < 0.35 px)."""
    scene = Scene(d0=6.0, gx=0.03, gy=0.015, box=(60, 40, 110, 90), d_box=18.0)
    raw = ego4d_frames(scene, 4, EYE_H, EYE_W, pan=7.0)
    rect = E.estimate_rectification(*E.split_eyes(raw))
    assert rect.origin == "estimated" and rect.stats["inliers"] > 200
    x, y = grid(EYE_H, EYE_W)
    keep = ~scene.occluded_left(x, y) & (x - scene.disparity(x, y) >= 0)
    x, y = x[keep][::7], y[keep][::7]
    rl = warp_points(np.linalg.inv(H_LEFT), x, y)                       # raw left pixel of scene point
    rr = warp_points(np.linalg.inv(H_RIGHT), x - scene.disparity(x, y), y)
    inside = (rl[0] >= 0) & (rl[0] < EYE_W) & (rl[1] >= 0) & (rl[1] < EYE_H) & \
             (rr[0] >= 0) & (rr[0] < EYE_W) & (rr[1] >= 0) & (rr[1] < EYE_H)
    ul = warp_points(rect.homography_left, rl[0][inside], rl[1][inside])
    ur = warp_points(rect.homography_right, rr[0][inside], rr[1][inside])
    dy = np.abs(ul[1] - ur[1])
    assert np.median(dy) < 0.35
    assert np.percentile(dy, 99) < 1.0
    x0, y0, x1, y1 = rect.crop
    assert x1 - x0 > EYE_W // 2 and y1 - y0 > EYE_H // 2


def _low_quantile(left, right, q=0.02):
    p1, p2 = E.feature_matches(left, right)
    return float(np.quantile(p1[:, 0] - p2[:, 0], q))


def _true_min_after(scene, truth, added, width):
    """Smallest true disparity of the left pixels whose partner is inside the cropped right view."""
    x, y = grid(*truth.shape)
    d = truth + added
    keep = (x - d >= 0) & (x < width) & ~scene.occluded_left(x, y)
    return float(d[keep].min())


def test_shift_rules_on_a_pair_with_negative_disparity():
    """Disparities -6..-2.3 px and a box at +8: the intended rule adds the full shift, so the
    smallest true disparity of the cropped pair is 1 +- 0.5 px; M2SVid's crop adds only half of
    its shift. Both are measured on the cropped images (feature matches), not assumed."""
    scene = Scene(d0=-6.0, gx=0.02, gy=0.01, box=(60, 40, 110, 90), d_box=8.0)
    frames = [render_pair(scene, EYE_H, EYE_W, shift=5.0 * t) for t in range(3)]
    left = np.stack([f[0] for f in frames])
    right = np.stack([f[1] for f in frames])
    truth = frames[0][2]
    before = E.robust_min_disparity(left, right)
    assert abs(before["robust_min"] - truth.min()) < 0.35               # the 0.1 % quantile finds the minimum
    low_before = _low_quantile(left, right)

    s = E.shift_for(before["robust_min"], "intended")
    assert s == int(np.floor(1 - before["robust_min"] + 0.5))
    l2, r2, added = E.apply_shift(left, right, s, "intended")
    assert added == s and l2.shape == r2.shape and l2.shape[2] % 2 == 0
    assert _low_quantile(l2, r2) == pytest.approx(low_before + s, abs=0.15)          # the full shift
    assert abs(_true_min_after(scene, truth, added, l2.shape[2]) - 1.0) <= 0.5

    s4 = E.shift_for(before["robust_min"], "m2svid-compat")
    assert s4 % 4 == 0 and s4 >= 1 - before["robust_min"]
    l3, r3, added3 = E.apply_shift(left, right, s4, "m2svid-compat")
    assert added3 == s4 // 2
    assert _low_quantile(l3, r3) == pytest.approx(low_before + s4 / 2, abs=0.15)     # half of it
    official_min = _true_min_after(scene, truth, added3, l3.shape[2])
    assert official_min < 0.0                                                          # so not ~1 px
    assert official_min == pytest.approx((truth.min() + 1) / 2, abs=2.0)   # ~ (robust_min + 1) / 2 (ceil to 4)
    # the official crop with shift 0 keeps the views (the official slice [:-0] would empty them)
    l4, _r4, added4 = E.apply_shift(left, right, 0, "m2svid-compat")
    assert added4 == 0 and l4.shape == left.shape


def test_shift_for_values():
    assert E.shift_for(-5.78, "intended") == 7            # min ends at 1.22
    assert E.shift_for(-5.4, "intended") == 6             # min ends at 0.6
    assert E.shift_for(3.0, "intended") == 0              # never shrinks disparities
    assert E.shift_for(-5.78, "m2svid-compat") == 8       # adds 4: min ends at -1.78
    assert E.shift_for(0.5, "m2svid-compat") == 4
    assert E.shift_for(None, "intended") == 0
    with pytest.raises(StereobenchError, match="shift rule"):
        E.shift_for(0.0, "bogus")


@pytest.mark.parametrize("content,match", [
    ("{not json", "not valid JSON"),
    ('[1, 2]', "must be an object"),
    ('{"homography_left": [[1,0,0],[0,1,0],[0,0,1]], "croping": [0,0,10,10]}', "lacks homography_right"),
    ('{"homography_left": [[1,0],[0,1]], "homography_right": [[1,0,0],[0,1,0],[0,0,1]], "croping": [0,0,10,10]}',
     "'homography_left' must be a 3x3"),
    (('{"homography_left": [[1,0,0],[0,1,0],[0,0,1]], "homography_right": [[1,0,0],[0,1,0],[0,0,0]], '
     '"croping": [0,0,10,10]}'), "singular"),
    (('{"homography_left": [[1,0,0],[0,1,0],[0,0,1]], "homography_right": [[1,0,0],[0,1,0],[0,0,1]], '
     '"croping": [0,0,500,10]}'), "'croping' must be 4 whole numbers"),
    (('{"homography_left": [[1,0,0],[0,1,0],[0,0,1]], "homography_right": [[1,0,0],[0,1,0],[0,0,1]], '
     '"croping": [0,0,"a",10]}'), "'croping' must be 4 whole numbers"),
])
def test_malformed_homography_json_is_a_one_line_error(tmp_path, content, match):
    path = tmp_path / "bad.mp4.json"
    path.write_text(content)
    with pytest.raises(StereobenchError, match=match) as info:
        E.load_homography_json(path, (EYE_W, EYE_H))
    assert "\n" not in str(info.value) and str(path) in str(info.value)
