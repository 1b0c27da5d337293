"""`stereobench prepare-data ego4d` end to end on a miniature Ego4D written by the test: tiny
side-by-side H.264 videos made by applying known homographies to a rendered rectified scene
(tests/ego4d_scene.py), one stored portrait (height > width), one without a homography JSON.
Checks the prepared views against the scene, the SGBM disparity against the known disparity, the
shift, the dataset API in the paper protocol, idempotent re-runs, resume and the test split."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.dataprep import ego4d as E
from tests.ego4d_scene import (
    H_LEFT,
    H_RIGHT,
    Scene,
    ego4d_frames,
    grid,
    homography_json,
    warp_points,
    write_sbs_video,
)

EYE_W, EYE_H, FPS = 160, 120, 5
TEXTURED = Scene(d0=-6.0, gx=0.02, gy=0.01, box=(60, 40, 110, 90), d_box=8.0)
CHECKER = Scene(d0=5.0, gx=0.01, gy=0.0, box=(0, 0, 0, 0), checker=12, tint=True)
ESTIMATED = Scene(d0=6.0, gx=0.03, gy=0.015, box=(60, 40, 110, 90), d_box=18.0, seed=1)
PAN = 1.0


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _prepare(videos: Path, out: Path, *extra: str) -> int:
    return main(["prepare-data", "ego4d", "--videos", str(videos), "--out", str(out), "--clip-frames", "16",
                 "--no-progress", *extra])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    base = tmp_path_factory.mktemp("ego4d")
    videos, homs, out = base / "videos", base / "homographies", base / "out"
    crop = E.compute_valid_region(H_LEFT, H_RIGHT, (EYE_W, EYE_H))
    write_sbs_video(videos / "vid-land.mp4", ego4d_frames(TEXTURED, 32, EYE_H, EYE_W, pan=PAN), FPS)
    write_sbs_video(videos / "vid-port.mp4", ego4d_frames(CHECKER, 16, EYE_H, EYE_W, pan=0.0, portrait=True), FPS)
    write_sbs_video(videos / "vid-est.mp4", ego4d_frames(ESTIMATED, 16, EYE_H, EYE_W, pan=5.0), FPS)
    homography_json(homs / "vid-land.mp4.json", H_LEFT, H_RIGHT, crop)
    homography_json(homs / "vid-port.mp4.json", H_LEFT, H_RIGHT, crop)
    rc = _prepare(videos, out, "--homographies", str(homs))
    return {"rc": rc, "out": out, "videos": videos, "homs": homs, "crop": crop, "base": base}


def _source(out: Path, clip_id: str) -> dict:
    return json.loads((out / "clips" / clip_id / "meta.json").read_text())["source"]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / mse))


def test_every_video_is_prepared_and_loads_in_the_paper_protocol(prepared):
    from benchmark.datasets import get_dataset
    from benchmark.stereo.protocol import apply_protocol

    assert prepared["rc"] == 0
    ds = get_dataset("ego4d", root=str(prepared["out"]))
    assert sorted(ds.clip_names()) == ["vid-est_clip_0000", "vid-land_clip_0000", "vid-land_clip_0001",
                                       "vid-port_clip_0000"]
    assert ds.spec.default_protocol == "paper" and ds.spec.revision.startswith("sha256:")
    clip = apply_protocol(ds.load_clip("vid-land_clip_0001"), "paper")
    assert tuple(clip.left.shape) == (16, 3, 512, 512) and tuple(clip.right.shape) == (16, 3, 512, 512)
    assert tuple(clip.disparity.shape) == (16, 1, 512, 512)
    assert clip.metadata.get("padded_frames", 0) == 0
    assert clip.clip_id == "ego4d/vid-land_clip_0001"
    assert set(ds.checksums["vid-land_clip_0001"]) == {"left.mp4", "right.mp4", "disparity.npy"}


def test_json_rectification_and_shift_reproduce_the_scene(prepared):
    """The prepared views equal the rectified scene (crop offset; right view moved by the shift)
    within 30 dB PSNR, and the shift brings the smallest true disparity to 1 +- 0.5 px."""
    from benchmark.video_io import read_video

    out, (x0, y0, _, _) = prepared["out"], prepared["crop"]
    src = _source(out, "vid-land_clip_0001")
    assert src["rectification"] == "published" and src["homography_file"] == "vid-land.mp4.json"
    assert src["shift_rule"] == "intended" and src["disparity_added_px"] == src["shift"] > 0
    s = src["shift"]
    folder = out / "clips" / "vid-land_clip_0001"
    left = (read_video(folder / "left.mp4").frames.numpy() * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)
    right = (read_video(folder / "right.mp4").frames.numpy() * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)
    t = 3
    h, w = left.shape[1:3]
    x, y = grid(h, w, (x0, y0))
    shift_t = PAN * (16 + t)
    want_left = np.clip(np.rint(TEXTURED.left(x, y, shift_t) * 255), 0, 255)
    want_right = np.clip(np.rint(TEXTURED.right(x + s, y, shift_t) * 255), 0, 255)
    assert _psnr(left[t, 2:-2, 2:-2], want_left[2:-2, 2:-2]) > 30
    assert _psnr(right[t, 2:-2, 2:-2], want_right[2:-2, 2:-2]) > 30
    truth = TEXTURED.disparity(x, y) + s
    matchable = (x - x0 - truth >= 0) & ~TEXTURED.occluded_left(x, y)
    assert abs(truth[matchable].min() - 1.0) <= 0.5


def test_sgbm_disparity_of_a_prepared_clip_is_within_the_stated_error(prepared):
    """Over valid, non-occluded pixels: median error < 0.25 px, 95th percentile < 0.6 px, under 3%
    off by more than 1 px, and at least 70% of the matchable pixels valid."""
    out, (x0, y0, _, _) = prepared["out"], prepared["crop"]
    s = _source(out, "vid-land_clip_0000")["shift"]
    disp = np.load(out / "clips" / "vid-land_clip_0000" / "disparity.npy")
    assert disp.dtype == np.float32 and disp.shape[0] == 16
    x, y = grid(*disp.shape[1:], (x0, y0))
    truth = TEXTURED.disparity(x, y) + s
    matchable = (x - x0 - truth >= 0) & ~TEXTURED.occluded_left(x, y)
    valid = np.isfinite(disp) & matchable[None]
    assert valid.sum() / (matchable.sum() * len(disp)) > 0.7
    err = np.abs(disp - truth[None])[valid]
    assert np.median(err) < 0.25 and np.percentile(err, 95) < 0.6 and (err > 1).mean() < 0.03


def test_portrait_video_rows_align_on_the_checkerboard(prepared):
    import cv2

    from benchmark.video_io import read_video

    out = prepared["out"]
    src = _source(out, "vid-port_clip_0000")
    assert src["portrait_resized"] is True
    folder = out / "clips" / "vid-port_clip_0000"
    left = (read_video(folder / "left.mp4", max_frames=1).frames[0].numpy() * 255).round().astype(np.uint8)
    right = (read_video(folder / "right.mp4", max_frames=1).frames[0].numpy() * 255).round().astype(np.uint8)
    grays = [cv2.cvtColor(np.ascontiguousarray(v.transpose(1, 2, 0)), cv2.COLOR_RGB2GRAY) for v in (left, right)]
    corners = []
    for g in grays:
        pts = cv2.goodFeaturesToTrack(g, maxCorners=400, qualityLevel=0.05, minDistance=6, blockSize=5)
        pts = cv2.cornerSubPix(g, pts.astype(np.float32), (4, 4), (-1, -1),
                               (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-4)).reshape(-1, 2)
        h, w = g.shape
        corners.append(pts[(pts[:, 0] > 6) & (pts[:, 0] < w - 7) & (pts[:, 1] > 6) & (pts[:, 1] < h - 7)])
    (x0, y0, _, _), s = prepared["crop"], src["shift"]
    dy = []
    for xl, yl in corners[0]:
        d = CHECKER.disparity(np.float64(xl + x0), np.float64(yl + y0)) + s
        dist = np.hypot(corners[1][:, 0] - (xl - d), corners[1][:, 1] - yl)
        if dist.min() < 2.0:
            dy.append(abs(corners[1][dist.argmin(), 1] - yl))
    assert len(dy) > 30
    assert max(dy) < 0.5


def test_estimated_rectification_is_saved_and_aligns_rows(prepared):
    out = prepared["out"]
    src = _source(out, "vid-est_clip_0000")
    assert src["rectification"] == "estimated"
    saved = out / "ego4d" / "rectification" / "vid-est.mp4.json"
    rect = E.load_homography_json(saved, (EYE_W, EYE_H))            # the published format, reusable
    assert rect.origin == "estimated" and rect.stats["inliers"] > 100
    x, y = grid(EYE_H, EYE_W)
    keep = ~ESTIMATED.occluded_left(x, y) & (x - ESTIMATED.disparity(x, y) >= 0)
    x, y = x[keep][::5], y[keep][::5]
    rl = warp_points(np.linalg.inv(H_LEFT), x, y)
    rr = warp_points(np.linalg.inv(H_RIGHT), x - ESTIMATED.disparity(x, y), y)
    ok = (rl[0] >= 0) & (rl[0] < EYE_W) & (rl[1] >= 0) & (rl[1] < EYE_H) & \
         (rr[0] >= 0) & (rr[0] < EYE_W) & (rr[1] >= 0) & (rr[1] < EYE_H)
    dy = np.abs(warp_points(rect.homography_left, rl[0][ok], rl[1][ok])[1]
                - warp_points(rect.homography_right, rr[0][ok], rr[1][ok])[1])
    assert np.median(dy) < 0.35 and np.percentile(dy, 99) < 1.0
    disp = np.load(out / "clips" / "vid-est_clip_0000" / "disparity.npy")
    assert np.isfinite(disp).mean() > 0.5
    # disparities are all positive here (>= ~4 px): no shift, and SGBM's low end agrees with the matches'
    assert src["shift"] == 0 and src["robust_min_hor_disp"] > 1.5
    assert abs(np.nanquantile(disp, 0.005) - src["robust_min_hor_disp"]) < 1.0


def test_rerun_changes_no_file_and_a_killed_run_resumes(prepared, capsys):
    out, videos, homs = prepared["out"], prepared["videos"], prepared["homs"]
    before = _snapshot(out)
    capsys.readouterr()
    assert _prepare(videos, out, "--homographies", str(homs)) == 0
    assert "0 done, 3 already done" in capsys.readouterr().out
    assert _snapshot(out) == before
    # A run killed after vid-land's first clip: the second clip and the video's record are gone.
    shutil.rmtree(out / "clips" / "vid-land_clip_0001")
    (out / "ego4d" / "videos" / "vid-land.json").unlink()
    assert _prepare(videos, out, "--homographies", str(homs)) == 0
    assert "1 done, 2 already done" in capsys.readouterr().out
    after = _snapshot(out)
    assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in before.items()}   # same bytes again
    untouched = [k for k in before if k.startswith("clips/vid-land_clip_0000/")]
    assert untouched and all(after[k] == before[k] for k in untouched)                    # not rewritten


def test_official_test_split_selects_only_its_clips(prepared, capsys):
    """`--split test` prepares only the test video's listed clips; the dataset's test split names
    exactly what is missing, and allow_missing runs the present ones."""
    from benchmark.datasets import get_dataset
    from benchmark.errors import StereobenchError

    uid = E.official_test_clips()["video_uid"]
    base = prepared["base"]
    videos, out = base / "test-videos", base / "test-out"
    write_sbs_video(videos / f"{uid}.mp4", ego4d_frames(TEXTURED, 24, EYE_H, EYE_W, pan=PAN), FPS)
    write_sbs_video(videos / "other.mp4", ego4d_frames(TEXTURED, 8, EYE_H, EYE_W), FPS)
    capsys.readouterr()
    rc = main(["prepare-data", "ego4d", "--videos", str(videos), "--out", str(out), "--split", "test",
               "--clip-frames", "8", "--min-clip-seconds", "1.6", "--no-progress"])
    text = capsys.readouterr()
    assert rc == 1                                     # the video is shorter than the 201 clips of the split
    assert "lie beyond its end" in text.out + text.err
    assert sorted(p.name for p in (out / "clips").iterdir()) == [f"{uid}_clip_{i:04d}" for i in range(3)]
    with pytest.raises(StereobenchError, match=r"197 of 200 clips of split 'test'"):
        get_dataset("ego4d", root=str(out), split="test")
    ds = get_dataset("ego4d", root=str(out), split="test", allow_missing=True)
    assert sorted(ds.clip_names()) == [f"{uid}_clip_{i:04d}" for i in range(3)]
    assert len(ds.missing) == 197


def test_user_disparity_files_replace_sgbm(prepared, capsys):
    """``--disparity-dir``: ``<clip_id>.npy`` of the prepared clip's shape is stored as given; a file
    of another shape fails that video with a one-line reason naming both shapes."""
    base, videos, homs = prepared["base"], prepared["videos"], prepared["homs"]
    shape = np.load(prepared["out"] / "clips" / "vid-port_clip_0000" / "disparity.npy").shape
    user = base / "user-disparity"
    user.mkdir()
    mine = np.full(shape, 3.25, np.float32)
    mine[:, :4] = np.nan
    np.save(user / "vid-port_clip_0000.npy", mine)
    out = base / "out-user"
    assert _prepare(videos, out, "--homographies", str(homs), "--video-uids", "vid-port",
                    "--disparity-dir", str(user)) == 0
    np.testing.assert_array_equal(np.load(out / "clips" / "vid-port_clip_0000" / "disparity.npy"), mine)
    assert _source(out, "vid-port_clip_0000")["disparity"] == "file"
    np.save(user / "vid-port_clip_0000.npy", mine[:, 1:])
    capsys.readouterr()
    assert _prepare(videos, base / "out-user2", "--homographies", str(homs), "--video-uids", "vid-port",
                    "--disparity-dir", str(user)) == 1
    assert f"has shape {mine[:, 1:].shape}; the prepared clip needs {shape}" in capsys.readouterr().out
