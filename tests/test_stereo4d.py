"""Stereo4D preparation on a miniature written here in the official formats: a VR180 side-by-side
equirect video of a known scene (textured plane + box at known depths, small known rectified2rig)
and an npz with the real key names. Preparation must recover the geometry: rows aligned, pinhole
views close to views rendered directly from the scene, disparity of the plane == f * 0.063 / Z.

The scene renderer below is written from the format's definition (equirect rows = tilt, columns =
yaw over fov_bounds; rig ray = rectified2rig @ rectified ray; pinhole pixel centres at +0.5),
independently of benchmark.dataprep.stereo4d.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest

from benchmark.dataprep import stereo4d as s4d
from benchmark.datasets.prepared import (
    PreparedDataset,
    read_split,
    write_lossless_rgb_video,
)

F = 0.5 * 512 / math.tan(math.radians(30))  # 443.405
B = 0.063
Z_PLANE, Z_BOX = 2.5, 1.2
FOV = (-40.0, 40.0, -40.0, 40.0)
EYE = 640  # equirect eye is EYE x EYE over 80 x 80 degrees (458 px / rad, about f)
FPS = 30.0
N_VIDEO = 4
PICK = [1, 2]  # annotated frames


def rot(axis: str, deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]), "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


R_LEFT = rot("x", 0.6) @ rot("y", -1.0)
R_RIGHT = rot("x", -1.2) @ rot("z", 0.8) @ rot("y", 1.5)


def texture(x, y, phase):
    out = []
    for c in range(3):
        p = phase + 1.7 * c
        v = (0.5 + 0.16 * np.sin(2 * np.pi * (3.1 * x + 1.3 * y) + p) + 0.12 * np.sin(2 * np.pi * (1.7 * x - 4.3 * y) + 2 * p)
             + 0.1 * np.sin(2 * np.pi * (11.3 * x + 7.1 * y) + 3 * p) + 0.08 * np.sin(2 * np.pi * (-9.7 * x + 13.9 * y) + p))
        out.append(v)
    return np.clip(np.stack(out, -1), 0, 1)


_PLANE: dict = {}


def shade(rays, centre_x, frame, key=None):
    """Colour, surface id (1 plane, 2 box, 0 none) and depth along z of rays (..., 3) in the
    rectified frame from a camera at (centre_x, 0, 0). The plane's colour (the same in every
    frame) is cached under ``key``; only the moving box is shaded per frame."""
    rz = rays[..., 2]
    ok = rz > 1e-6
    safe = np.where(ok, rz, 1.0)
    if key is None or key not in _PLANE:
        sp = Z_PLANE / safe
        plane = np.where(ok[..., None], texture(centre_x + sp * rays[..., 0], sp * rays[..., 1], 0.0), 0.0)
        if key is not None:
            _PLANE[key] = plane
    else:
        plane = _PLANE[key]
    sb = Z_BOX / safe
    xb, yb = centre_x + sb * rays[..., 0], sb * rays[..., 1]
    box_x0 = -0.18 + 0.03 * frame
    in_box = ok & (xb > box_x0) & (xb < box_x0 + 0.32) & (yb > -0.12) & (yb < 0.2)
    colour = plane.copy()
    colour[in_box] = texture(xb[in_box], yb[in_box], 0.7)
    surface = np.where(in_box, 2, np.where(ok, 1, 0))
    depth = np.where(in_box, Z_BOX, Z_PLANE)
    return colour, surface, depth


def render_equirect_eye(rect2rig, centre_x, frame):
    yaw0, yaw1, tilt0, tilt1 = np.radians(FOV)
    lon, lat = np.meshgrid(np.linspace(yaw0, yaw1, EYE), np.linspace(tilt0, tilt1, EYE))
    rig = np.stack([np.cos(lat) * np.sin(lon), np.sin(lat), np.cos(lat) * np.cos(lon)], -1)
    rect = rig @ rect2rig  # rect = R^T rig, row-vector form
    colour, _, _ = shade(rect, centre_x, frame, key=("eq", centre_x))
    return colour


_PINHOLE: dict = {}


def render_pinhole(centre_x, frame, ss=2, size=512):
    """Directly rendered pinhole view (2x2 supersampled), the surface of each pixel (0 on an
    edge) and its depth."""
    if (centre_x, frame) in _PINHOLE:
        return _PINHOLE[(centre_x, frame)]
    off = (np.arange(ss) + 0.5) / ss
    coords = ((np.arange(size)[:, None] + off[None]).reshape(-1) - size / 2) / (F * size / 512)
    x, y = np.meshgrid(coords, coords)
    rays = np.stack([x, y, np.ones_like(x)], -1)
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    colour, surface, depth = shade(rays, centre_x, frame, key=("pin", centre_x))
    colour = colour.reshape(size, ss, size, ss, 3).mean(axis=(1, 3))
    surface = surface.reshape(size, ss, size, ss)
    pure = (surface == surface[:, :1, :, :1]).all(axis=(1, 3))  # pixels on one surface only
    out = colour, np.where(pure, surface[:, 0, :, 0], 0), depth.reshape(size, ss, size, ss)[:, 0, :, 0]
    _PINHOLE[(centre_x, frame)] = out
    return out


def to_u8(x):
    return np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)


def write_npz(path, *, video_id, timestamps, drop=(), float32=False, **override):
    t = len(timestamps)
    geo = np.float32 if float32 else np.float64
    data = {
        "name": np.array(path.stem), "video_id": np.array(video_id),
        "timestamps": np.asarray(timestamps, dtype=np.int32 if float32 else np.int64),
        "camera2world": np.tile(np.eye(3, 4, dtype=geo), (t, 1, 1)),
        "rectified2rig": np.stack([R_LEFT, R_RIGHT]).astype(geo), "fov_bounds": np.array(FOV, dtype=geo),
        "track_lengths": np.array([2, 1], dtype=np.int32 if float32 else np.int64),
        "track_indices": np.array([0, 1, 1]), "track_coordinates": np.arange(9, dtype=geo).reshape(3, 3),
    }
    data.update(override)
    for key in drop:
        data.pop(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **data)
    return path


_SCENE_CACHE: dict = {}


def sbs_frames(n=N_VIDEO):
    if n not in _SCENE_CACHE:
        frames = []
        for k in range(n):
            left = render_equirect_eye(R_LEFT, 0.0, k)
            right = render_equirect_eye(R_RIGHT, B, k)
            frames.append(to_u8(np.concatenate([left, right], axis=1)))
        _SCENE_CACHE[n] = np.stack(frames)
    return _SCENE_CACHE[n]


def timestamps_us(frames=PICK):
    return [round(k * 1e6 / FPS) for k in frames]


def make_miniature(root: Path, video_id="vidA", clip="vidA_33333", split="test", frames=PICK, **npz):
    raw = root / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    video = raw / f"{video_id}.mp4"
    if not video.exists():
        write_lossless_rgb_video(video, sbs_frames(), FPS)
    write_npz(root / "ann" / split / f"{clip}.npz", video_id=video_id, timestamps=timestamps_us(frames), **npz)
    return root / "ann", raw


def psnr(a, b, mask=None):
    a, b = a.astype(np.float64), b.astype(np.float64)
    err = (a - b) ** 2
    if mask is not None:
        err = err[mask]
    return 10 * np.log10(255.0 ** 2 / err.mean())


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from benchmark.cli import main

    root = tmp_path_factory.mktemp("s4d")
    ann, raw = make_miniature(root)
    out = root / "out"
    code = main(["prepare-data", "stereo4d", "--annotations", str(ann), "--raw", str(raw), "--out", str(out),
                 "--min-height", "0", "--disparity", "sgbm", "--max-disparity", "48", "--no-progress"])
    assert code == 0
    return root, out


def _views(out, clip="vidA_33333"):
    c = PreparedDataset(out).load_clip(clip)
    left = np.rint(c.left.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    right = np.rint(c.right.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    return c, left, right


def test_views_match_direct_pinhole_renders(prepared):
    _, out = prepared
    clip, left, right = _views(out)
    assert left.shape == (len(PICK), 512, 512, 3) and clip.fps == pytest.approx(30.0)
    for i, k in enumerate(PICK):
        want_left, _, _ = render_pinhole(0.0, k)
        want_right, _, _ = render_pinhole(B, k)
        # stated bound: 30 dB (bilinear resampling of a 458 px/rad equirect into 443 px/rad views)
        assert psnr(left[i], to_u8(want_left)) > 30.0
        assert psnr(right[i], to_u8(want_right)) > 30.0
        if i:  # the annotated frame, not its neighbour (the box moves 3 cm per frame)
            wrong, _, _ = render_pinhole(0.0, k - 1)
            assert psnr(left[i], to_u8(want_left)) > psnr(left[i], to_u8(wrong)) + 3


def test_rows_are_aligned_after_rectification(prepared):
    import cv2

    _, out = prepared
    _, left, right = _views(out)
    gl, gr = cv2.cvtColor(left[0], cv2.COLOR_RGB2GRAY), cv2.cvtColor(right[0], cv2.COLOR_RGB2GRAY)
    _, surface, _ = render_pinhole(0.0, PICK[0])
    # features inside one surface, away from occlusion edges (LK is unreliable across them)
    interior = cv2.erode((surface > 0).astype(np.uint8), np.ones((31, 31), np.uint8))
    pts = cv2.goodFeaturesToTrack(gl, 400, 0.01, 8, mask=interior)

    def track(target):
        moved, status, _ = cv2.calcOpticalFlowPyrLK(gl, target, pts, None, winSize=(21, 21), maxLevel=3)
        back, status2, _ = cv2.calcOpticalFlowPyrLK(target, gl, moved, None, winSize=(21, 21), maxLevel=3)
        ok = (status[:, 0] == 1) & (status2[:, 0] == 1) & (np.linalg.norm(back - pts, axis=-1)[:, 0] < 0.1)
        return (moved - pts)[ok, 0]

    shift = track(gr)
    assert len(shift) > 100
    # stated bound: rows agree within 0.5 px for 95 % of tracked features (median under 0.1 px)
    assert np.median(np.abs(shift[:, 1])) < 0.1 and np.percentile(np.abs(shift[:, 1]), 95) < 0.5
    assert (shift[:, 0] < 0).mean() > 0.95  # x_R = x_L - d with d > 0
    # without the rectified2rig rotation the rows would be ~9 px apart: the test can fail
    raw_right = s4d.rectify_eye(sbs_frames()[PICK[0]][:, EYE:], s4d.EyeMaps.build((EYE, EYE), np.array(FOV), np.eye(3)))
    assert np.median(np.abs(track(cv2.cvtColor(raw_right, cv2.COLOR_RGB2GRAY))[:, 1])) > 3


def test_sgbm_disparity_of_plane_and_box_is_f_b_over_z(prepared):
    _, out = prepared
    clip, _, _ = _views(out)
    d = clip.disparity[0, 0].numpy()
    _, surface, _ = render_pinhole(0.0, PICK[0])
    import cv2

    interior = cv2.erode((surface > 0).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    for sid, z in ((1, Z_PLANE), (2, Z_BOX)):
        region = interior & (surface == sid) & np.isfinite(d)
        region[:, :64] = False  # SGBM's search range at the left border
        expected = F * B / z  # 11.17 px for the plane, 23.28 px for the box
        err = np.abs(d[region] - expected)
        # stated bound: median error under 0.25 px, 90 % of valid pixels within 1 px
        assert region.sum() > 2000 and np.median(err) < 0.25 and np.mean(err < 1.0) > 0.9
    assert np.isfinite(d[interior]).mean() > 0.8


def test_splits_manifest_and_source_metadata(prepared):
    _, out = prepared
    assert read_split(out, "test") == ["vidA_33333"]
    ds = PreparedDataset(out, split="test")
    source = ds.provenance()["sources"]["vidA_33333"]
    assert source["npz"] == "vidA_33333.npz" and source["split"] == "test" and source["disparity"] == "sgbm"
    assert source["max_frame_offset_s"] < 1e-3 and source["focal_px"] == pytest.approx(443.405, abs=1e-3)
    assert source["remap"] == "composed"
    assert set(ds.checksums["vidA_33333"]) == {"left.mp4", "right.mp4", "disparity.npy"}


def test_two_pass_matches_composed_within_resampling(tmp_path):
    frame = sbs_frames()[PICK[0]][:, :EYE]
    one = s4d.rectify_eye(frame, s4d.EyeMaps.build((EYE, EYE), np.array(FOV), R_LEFT))
    two = s4d.rectify_eye(frame, s4d.EyeMaps.build((EYE, EYE), np.array(FOV), R_LEFT, two_pass=True))
    want, _, _ = render_pinhole(0.0, PICK[0])
    assert psnr(one, two) > 30
    assert psnr(one, to_u8(want)) > psnr(two, to_u8(want))  # one interpolation fewer is sharper


def test_annotation_loader_casts_dtypes_and_unpacks_tracks(tmp_path):
    for float32 in (False, True):
        path = write_npz(tmp_path / f"a{int(float32)}" / "x_1.npz", video_id="x", timestamps=[10, 20, 30],
                         float32=float32)
        ann = s4d.load_annotation(path)
        assert ann.timestamps.dtype == np.int64 and ann.rectified2rig.dtype == np.float64
        assert ann.camera2world.dtype == np.float64 and ann.track_indices.dtype == np.int64
        assert ann.track_coordinates.dtype == np.float32 and ann.video_id == "x" and ann.name == "x_1"
        tracks = ann.tracks3d()
        assert tracks.shape == (2, 3, 3)
        assert np.array_equal(tracks[0, :2], np.arange(6).reshape(2, 3)) and np.isnan(tracks[0, 2]).all()
        assert np.array_equal(tracks[1, 1], [6, 7, 8]) and np.isnan(tracks[1, [0, 2]]).all()
        assert ann.meta_fov["end_tilt_in_degrees"] == 40.0
        assert np.allclose(ann.extrs_rectified[:, :, :3], np.eye(3))


# --------------------------------------------------------------------------- flow validity rules

def reference_flow_disparity(fwd, bwd, f=F):
    """Loop transcription of track_optimization.load_rgbd_cam_from_pkl for flows whose sampling
    positions are integers (the bicubic warp is then exact) or invalid anyway (|fwd_y| > 1)."""
    t, h, w, _ = fwd.shape
    depth = np.zeros((t, h, w), np.float64)
    disp = np.zeros((t, h, w), np.float64)
    for k in range(t):
        for y in range(h):
            for x in range(w):
                fx, fy = float(fwd[k, y, x, 0]), float(fwd[k, y, x, 1])
                d = max(-fx, 0.0)
                disp[k, y, x] = d
                z = f * B / d if d > 0 else np.inf
                if abs(fy) > 1:
                    z = 0.0
                else:
                    xs, ys = x + fx, y + fy
                    assert xs == int(xs) and ys == int(ys)
                    back = bwd[k, int(ys), int(xs)] if 0 <= xs < w and 0 <= ys < h else np.zeros(2)
                    if math.hypot(back[0] + fx, back[1] + fy) > 1:
                        z = 0.0
                if z > 20 or z < 0:
                    z = 0.0
                depth[k, y, x] = z
    drop = np.zeros_like(depth, dtype=bool)
    for k in range(t):
        for y in range(h):
            for x in range(w):
                z = depth[k, y, x]
                if z == 0:
                    continue
                left, right = depth[k, y, max(x - 1, 0)], depth[k, y, min(x + 1, w - 1)]
                up, down = depth[k, max(y - 1, 0), x], depth[k, min(y + 1, h - 1), x]
                drop[k, y, x] = abs(right - left) > 0.03 * z or abs(down - up) > 0.03 * z
    valid = (depth > 0) & ~drop
    return np.where(valid, disp, np.nan)


def synthetic_flows():
    t, h, w = 2, 24, 512  # 512 wide: the toolkit takes f from the width (443.405 px)
    d = np.full((t, h, w), 6.0)
    d[:, :, 20:30] = 4.0  # a farther band (4 px = 7.0 m)
    d[:, 5:9, 8:14] = 1.0  # far: 27.9 m > 20 m
    d[:, 12:15, 30:36] = -2.0  # negative disparity
    d[1, 16:20, 10:16] = 7.0  # a second frame differs
    fwd = np.zeros((t, h, w, 2), np.float32)
    fwd[..., 0] = -d
    fwd[:, 18:21, 24:28, 1] = 1.5  # vertical flow beyond 1 px
    fwd[:, 2:4, 37:40, 1] = -1.0  # exactly 1 px: still valid
    bwd = np.zeros_like(fwd)
    bwd[..., 0] = d  # consistent where a band maps into itself
    bwd[:, 10:13, 2:6, 0] += 3.0  # occlusion: inconsistent backward flow in the right view
    bwd[:, 1:3, 31:34, 1] = 1.0  # consistent with fwd_y = -1 above
    return fwd, bwd


def test_flow_validity_mask_is_exact(tmp_path):
    fwd, bwd = synthetic_flows()
    want = reference_flow_disparity(fwd, bwd)
    flows = [{"fwd": fwd[k], "bwd": bwd[k]} for k in range(len(fwd))]
    path = tmp_path / "clip-flows_stereo.pkl"
    with open(path, "wb") as handle:
        pickle.dump(flows, handle)
    got = s4d.disparity_from_flows(s4d.load_flow_pickle(path))
    assert got.dtype == np.float32
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(got[~np.isnan(got)], want[~np.isnan(want)].astype(np.float32))
    # every rule fired somewhere, and something stayed valid
    assert np.isnan(got[:, 5:9, 9:13]).all()  # far
    assert np.isnan(got[:, 12:15, 31:35]).all()  # negative
    assert np.isnan(got[:, 18:21, 24:28]).all()  # |flow_y| > 1
    assert np.isnan(got[0, 10:13, 2 + 6:6 + 6]).any()  # occluded: left pixels mapping onto the bad bwd
    assert np.isfinite(got[:, 2:4, 38]).all()  # |flow_y| == 1 is kept
    assert np.isnan(got[:, 0:5, 19]).all() and np.isnan(got[:, 0:5, 20]).all()  # depth gradient at the band edge
    assert np.isfinite(got).mean() > 0.5
    assert got[0, 0, 38] == pytest.approx(6.0) and np.isnan(got[:, :, :6]).all()  # x - d outside: occluded


def test_flow_pickle_loader_refuses_code(tmp_path):
    path = tmp_path / "evil-flows_stereo.pkl"
    with open(path, "wb") as handle:
        pickle.dump([{"fwd": Path("/"), "bwd": np.zeros((2, 2, 2))}], handle)
    from benchmark.errors import StereobenchError

    with pytest.raises(StereobenchError, match="not allowed"):
        s4d.load_flow_pickle(path)


def test_prepare_from_flow_pickles_gives_f_b_over_z(tmp_path):
    from benchmark.cli import main

    ann, raw = make_miniature(tmp_path, frames=PICK[:2])
    flows_dir = tmp_path / "flows"
    flows_dir.mkdir()
    flows = []
    for k in PICK[:2]:
        _, surface, depth = render_pinhole(0.0, k)
        d = (F * B / depth).astype(np.float32)
        fwd = np.stack([-d, np.zeros_like(d)], -1)
        flows.append({"fwd": fwd, "bwd": np.stack([d, np.zeros_like(d)], -1)})
    with open(flows_dir / "vidA_33333-flows_stereo.pkl", "wb") as handle:
        pickle.dump(flows, handle)
    out = tmp_path / "out"
    assert main(["prepare-data", "stereo4d", "--annotations", str(ann), "--raw", str(raw), "--flows", str(flows_dir),
                 "--out", str(out), "--min-height", "0", "--no-progress"]) == 0
    clip = PreparedDataset(out).load_clip("vidA_33333")
    disp = clip.disparity[0, 0].numpy()
    _, surface, _ = render_pinhole(0.0, PICK[0])
    plane = np.isfinite(disp) & (surface == 1)
    assert plane.sum() > 10000
    assert np.allclose(disp[plane], F * B / Z_PLANE, atol=1e-4)  # 11.1738 px
    assert clip.metadata["source"]["disparity"] == "flows"
