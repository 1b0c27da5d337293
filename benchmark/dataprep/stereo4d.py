"""Stereo4D preparation: a VR180 side-by-side equirectangular video + its annotation npz ->
rectified 60-degree 512x512 pinhole left/right views + disparity of the left view, written to the
prepared store (:mod:`benchmark.datasets.prepared`).

What it does (facts from the official toolkit, google/stereo4d-code ``rectify.py``, ``utils.py``,
``track_optimization.py``; docs/datasets.md has the file:line references):

1. Reads ``<split>/<ytid>_<first_ts>.npz`` with every key the toolkit reads (``name``,
   ``video_id``, ``timestamps`` in microseconds, ``camera2world`` (T,3,4), ``rectified2rig``
   (2,3,3), ``fov_bounds`` (4,) degrees, ``track_lengths``, ``track_indices``,
   ``track_coordinates``), casting dtypes on load (float64 geometry, int64 times and indices,
   float32 track coordinates); a missing key is named.
2. Opens ``<raw>/<video_id>.mp4`` (the user's download); refuses a height under 1920 px like the
   toolkit (with the yt-dlp format hint) and a frame whose aspect is not that of two eyes side by
   side (``2 * yaw range / tilt range`` from ``fov_bounds``, within 20 %).
3. Takes the frame nearest to each annotated timestamp (the toolkit seeks with
   ``CAP_PROP_POS_MSEC = ts / 1000``, which OpenCV's FFmpeg backend turns into frame
   ``round(t * fps)``: the nearest frame on a constant-rate video); a video that ends before the
   last timestamp is refused. Frames are decoded in one pass from a seek to the first timestamp
   and only the annotated ones are converted and kept (as 512x512 views, not 4K frames).
4. Per eye (left = ``frame[:, :W//2]``, right = ``frame[:, W//2:]``), ray of output pixel
   ``(x, y)``: ``d = normalize(((x + 0.5 - 256) / f, (y + 0.5 - 256) / f, 1))`` with
   ``f = 0.5 * 512 / tan(30 deg) = 443.405``; rotated into the rig by ``rectified2rig[eye]``;
   ``lon = atan2(r_x, r_z)``, ``lat = arcsin(r_y)``;
   ``u = (lon - yaw0) / (yaw1 - yaw0) * (We - 1)``, ``v = (lat - tilt0) / (tilt1 - tilt0) * (H - 1)``;
   ``cv2.remap`` bilinear, black border. The default composes the toolkit's two remaps (raw ->
   rectified equirect -> pinhole) into this one map (one interpolation, exact same geometry);
   ``--two-pass`` runs the toolkit's two remaps for bit-level comparison with its videos.
5. Disparity of the left view, either from the toolkit's SEA-RAFT flow pickle
   (``<vid>-flows_stereo.pkl``: a list, one ``{'fwd': (H,W,2), 'bwd': (H,W,2)}`` per frame,
   fwd = left to right) with every validity rule of ``track_optimization.load_rgbd_cam_from_pkl``
   (:func:`disparity_from_flows`), or here with OpenCV SGBM and a left-right check
   (:func:`benchmark.dataprep.sgbm.sgbm_disparity`).

Clip id: the npz stem ``<ytid>_<first_ts>``; fps 30 (what the toolkit writes and M2SVid's
evaluation reads; the rate measured from the timestamps is recorded in the clip's source
metadata). Splits written: ``train`` / ``test`` (the annotation folders), ``m2svid-test`` and
``m2svid-val64`` (M2SVid's id lists, matched by YouTube id: clip identity is not guaranteed,
see docs/datasets.md).

Example::

    stereobench prepare-data stereo4d --annotations stereo4d_npz/ --raw raw/ --flows processed/ \\
        --out data/stereo4d --workers 4
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.datasets.prepared import (
    clip_is_prepared,
    reconcile_manifest,
    valid_clip_id,
    write_prepared_clip,
    write_split,
)
from benchmark.errors import StereobenchError

__all__ = ["BASELINE_M", "FOCAL_PX", "MIN_HEIGHT", "OUTPUT_HFOV_DEG", "OUTPUT_SIZE", "REQUIRED_KEYS",
           "Stereo4DAnnotation", "Stereo4DJob", "add_arguments", "disparity_from_flows", "equirect_rectification_map",
           "find_annotations", "focal_length", "load_annotation", "load_flow_pickle", "m2svid_lists",
           "perspective_map", "rectify_eye", "run", "ytid_of"]

REQUIRED_KEYS = ("name", "video_id", "timestamps", "camera2world", "rectified2rig", "fov_bounds",
                 "track_lengths", "track_indices", "track_coordinates")
OUTPUT_SIZE = 512
OUTPUT_HFOV_DEG = 60.0
BASELINE_M = 0.063
MIN_HEIGHT = 1920  # rectify.py: "Expected equirectangular video height >= 1920 pixels for VR180 format"
MAX_DEPTH_M = 20.0
GRADIENT_THRESHOLD = 0.03
TOOLKIT_FPS = 30.0
ASPECT_TOLERANCE = 0.2
YTDLP_HINT = ("download the VR180 side-by-side stream of the video, e.g. `yt-dlp -f 313 --cookies cookies.txt "
              "https://youtu.be/<id>` (3840x2160; stereo4d-code issue #6 reports format 313 or 136 with "
              "cookies, at least 1440p)")


def focal_length(size: int = OUTPUT_SIZE, hfov_deg: float = OUTPUT_HFOV_DEG) -> float:
    """``0.5 * size / tan(hfov / 2)``: 443.405 px for 512 px and 60 degrees."""
    return 0.5 * size / math.tan(math.radians(hfov_deg) / 2.0)


FOCAL_PX = focal_length()


# ------------------------------------------------------------------------------------- annotation

@dataclass
class Stereo4DAnnotation:
    """One annotation npz, with the dtypes cast (float64 geometry, int64 times and indices)."""

    path: Path
    name: str
    video_id: str
    timestamps: np.ndarray  # (T,) int64 microseconds
    camera2world: np.ndarray  # (T, 3, 4) float64, world-from-camera of the rectified left camera
    rectified2rig: np.ndarray  # (2, 3, 3) float64, [0] left, [1] right
    fov_bounds: np.ndarray  # (4,) float64 degrees: start_yaw, end_yaw, start_tilt, end_tilt
    track_lengths: np.ndarray  # (N,) int64
    track_indices: np.ndarray  # (sum lengths,) int64 frame indices
    track_coordinates: np.ndarray  # (sum lengths, 3) float32
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.timestamps.shape[0])

    @property
    def meta_fov(self) -> dict[str, float]:
        """The toolkit's ``meta_fov`` dict (degrees)."""
        keys = ("start_yaw_in_degrees", "end_yaw_in_degrees", "start_tilt_in_degrees", "end_tilt_in_degrees")
        return {k: float(v) for k, v in zip(keys, self.fov_bounds)}

    @property
    def extrs_rectified(self) -> np.ndarray:
        """World-to-camera (T, 3, 4): ``[R^T | -R^T t]`` of ``camera2world`` (``utils.load_dataset_npz``)."""
        rot = self.camera2world[:, :, :3]
        rot_t = np.transpose(rot, (0, 2, 1))
        return np.concatenate([rot_t, -rot_t @ self.camera2world[:, :, 3:]], axis=-1)

    def tracks3d(self) -> np.ndarray:
        """(N, T, 3) float64 track positions, NaN where a track is not visible (the toolkit's unpacking)."""
        tracks = np.full((len(self.track_lengths), self.num_frames, 3), np.nan)
        tracks[np.repeat(np.arange(len(self.track_lengths)), self.track_lengths), self.track_indices] = \
            self.track_coordinates
        return tracks


def _cast(path: Path, key: str, value: np.ndarray, dtype, shape: tuple) -> np.ndarray:
    try:
        array = np.asarray(value).astype(dtype)
    except (TypeError, ValueError):
        raise StereobenchError(f"{path.name}: key {key!r} has dtype {np.asarray(value).dtype}, expected numbers "
                               f"({np.dtype(dtype).name})") from None
    if len(shape) != array.ndim or any(s is not None and s != a for s, a in zip(shape, array.shape)):
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise StereobenchError(f"{path.name}: key {key!r} has shape {array.shape}, expected {want}")
    return array


def load_annotation(path: str | os.PathLike) -> Stereo4DAnnotation:
    """Read a Stereo4D annotation npz (every key :data:`REQUIRED_KEYS`, dtypes cast).

    Raises:
        StereobenchError: unreadable file, a missing key (named), wrong shapes, unsorted or
            negative timestamps, inconsistent track arrays.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            raw = {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise StereobenchError(f"annotation {path} does not exist") from None
    except (OSError, ValueError, EOFError) as exc:
        raise StereobenchError(f"cannot read annotation {path} ({type(exc).__name__}: {exc}); download it "
                               f"again from gs://stereo4d/") from None
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise StereobenchError(f"annotation {path.name} lacks key{'s' if len(missing) > 1 else ''} "
                               f"{', '.join(repr(k) for k in missing)} (a Stereo4D npz has {', '.join(REQUIRED_KEYS)}); "
                               f"download it again from gs://stereo4d/")
    timestamps = _cast(path, "timestamps", raw["timestamps"], np.int64, (None,))
    t = len(timestamps)
    if t == 0 or np.any(timestamps < 0) or np.any(np.diff(timestamps) <= 0):
        raise StereobenchError(f"{path.name}: timestamps must be non-negative and increasing microseconds "
                               f"(got {t} values)")
    lengths = _cast(path, "track_lengths", raw["track_lengths"], np.int64, (None,))
    indices = _cast(path, "track_indices", raw["track_indices"], np.int64, (None,))
    coords = _cast(path, "track_coordinates", raw["track_coordinates"], np.float32, (None, 3))
    if np.any(lengths < 0) or int(lengths.sum()) != len(indices) or len(indices) != len(coords) or (
            len(indices) and (indices.min() < 0 or indices.max() >= t)):
        raise StereobenchError(f"{path.name}: track arrays disagree (sum of track_lengths {int(lengths.sum())}, "
                               f"{len(indices)} track_indices, {len(coords)} track_coordinates, frame indices "
                               f"must lie in [0, {t}))")
    fov = _cast(path, "fov_bounds", raw["fov_bounds"], np.float64, (4,))
    if not (np.all(np.isfinite(fov)) and fov[1] > fov[0] and fov[3] > fov[2]):
        raise StereobenchError(f"{path.name}: fov_bounds {fov.tolist()} must be increasing (start_yaw, end_yaw, "
                               f"start_tilt, end_tilt) in degrees")
    return Stereo4DAnnotation(
        path=path, name=str(np.asarray(raw["name"]).reshape(-1)[0]) if np.asarray(raw["name"]).size else path.stem,
        video_id=str(np.asarray(raw["video_id"]).reshape(-1)[0]) if np.asarray(raw["video_id"]).size else "",
        timestamps=timestamps, camera2world=_cast(path, "camera2world", raw["camera2world"], np.float64, (t, 3, 4)),
        rectified2rig=_cast(path, "rectified2rig", raw["rectified2rig"], np.float64, (2, 3, 3)), fov_bounds=fov,
        track_lengths=lengths, track_indices=indices, track_coordinates=coords,
        extra={k: v for k, v in raw.items() if k not in REQUIRED_KEYS})


def ytid_of(clip_name: str) -> str:
    """The YouTube id of ``<ytid>_<first_ts>`` (npz stem) or ``<ytid>-clip<N>`` (M2SVid list id);
    YouTube ids may themselves hold ``_`` and ``-``."""
    if "-clip" in clip_name and clip_name.rsplit("-clip", 1)[1].isdigit():
        return clip_name.rsplit("-clip", 1)[0]
    head, sep, tail = clip_name.rpartition("_")
    return head if sep and tail.isdigit() else clip_name


def m2svid_lists() -> dict[str, list[str]]:
    """M2SVid's Stereo4D id lists shipped with the suite: ``m2svid-test`` (388 ids) and
    ``m2svid-val64`` (64 ids), from google-research/m2svid ``datasets/stereo4d/subsets/``
    (Apache-2.0)."""
    folder = Path(__file__).resolve().parents[1] / "datasets"
    out = {}
    for split, name in (("m2svid-test", "stereo4d_m2svid_test.json"), ("m2svid-val64", "stereo4d_m2svid_val64.json")):
        out[split] = list(json.loads((folder / name).read_text(encoding="utf-8")))
    return out


# --------------------------------------------------------------------------------------- geometry

def _rays_to_uv(rays: np.ndarray, fov_bounds: np.ndarray, eye_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Unit rays (..., 3) -> equirect pixel coordinates (u, v) float32 (rectify.py's formula)."""
    yaw0, yaw1, tilt0, tilt1 = np.radians(np.asarray(fov_bounds, dtype=np.float64))
    lon = np.arctan2(rays[..., 0], rays[..., 2])
    lat = np.arcsin(np.clip(rays[..., 1], -1.0, 1.0))
    u = (lon - yaw0) / (yaw1 - yaw0) * (eye_hw[1] - 1)
    v = (lat - tilt0) / (tilt1 - tilt0) * (eye_hw[0] - 1)
    return u.astype(np.float32), v.astype(np.float32)


def equirect_rectification_map(eye_hw: tuple[int, int], fov_bounds: np.ndarray,
                               rectified2rig: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The toolkit's first remap (``get_equirect_rectification_map``): for each pixel of the
    rectified equirect eye (same grid), where to sample the raw eye."""
    yaw0, yaw1, tilt0, tilt1 = np.radians(np.asarray(fov_bounds, dtype=np.float64))
    lon, lat = np.meshgrid(np.linspace(yaw0, yaw1, eye_hw[1]), np.linspace(tilt0, tilt1, eye_hw[0]))
    rays = np.stack([np.cos(lat) * np.sin(lon), np.sin(lat), np.cos(lat) * np.cos(lon)], axis=-1)
    return _rays_to_uv(rays @ np.asarray(rectified2rig, dtype=np.float64).T, fov_bounds, eye_hw)


def perspective_rays(size: int = OUTPUT_SIZE, hfov_deg: float = OUTPUT_HFOV_DEG) -> np.ndarray:
    """(size, size, 3) unit rays of the pinhole camera: principal point at the centre, pixel
    centres at ``x + 0.5`` (jaxcam's ``pixels_to_rays`` as rectify.py calls it)."""
    f = focal_length(size, hfov_deg)
    coords = (np.arange(size, dtype=np.float64) + 0.5 - 0.5 * size) / f
    x, y = np.meshgrid(coords, coords)
    rays = np.stack([x, y, np.ones_like(x)], axis=-1)
    return rays / np.linalg.norm(rays, axis=-1, keepdims=True)


def perspective_map(eye_hw: tuple[int, int], fov_bounds: np.ndarray, rectified2rig: np.ndarray | None = None,
                    size: int = OUTPUT_SIZE, hfov_deg: float = OUTPUT_HFOV_DEG) -> tuple[np.ndarray, np.ndarray]:
    """Map from the pinhole view to an equirect eye: the rectified equirect when
    ``rectified2rig`` is None (the toolkit's second remap), else the RAW eye through
    ``rectified2rig`` (both remaps composed into one)."""
    rays = perspective_rays(size, hfov_deg)
    if rectified2rig is not None:
        rays = rays @ np.asarray(rectified2rig, dtype=np.float64).T
    return _rays_to_uv(rays, fov_bounds, eye_hw)


def _remap(image: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    import cv2

    return cv2.remap(image, maps[0], maps[1], interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=(0, 0, 0))


@dataclass
class EyeMaps:
    """Precomputed remap tables of one eye (computed once per video, applied to every frame)."""

    composed: tuple[np.ndarray, np.ndarray] | None = None
    rectify: tuple[np.ndarray, np.ndarray] | None = None
    crop: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def build(cls, eye_hw, fov_bounds, rectified2rig, two_pass: bool = False, size: int = OUTPUT_SIZE,
              hfov_deg: float = OUTPUT_HFOV_DEG) -> EyeMaps:
        if two_pass:
            return cls(rectify=equirect_rectification_map(eye_hw, fov_bounds, rectified2rig),
                       crop=perspective_map(eye_hw, fov_bounds, None, size, hfov_deg))
        return cls(composed=perspective_map(eye_hw, fov_bounds, rectified2rig, size, hfov_deg))


def rectify_eye(eye: np.ndarray, maps: EyeMaps) -> np.ndarray:
    """One eye's equirect frame (H, We, 3) uint8 -> its rectified pinhole view (size, size, 3)."""
    if maps.composed is not None:
        return _remap(eye, maps.composed)
    return _remap(_remap(eye, maps.rectify), maps.crop)


# ---------------------------------------------------------------------------------------- flows

class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles lists/dicts of NumPy arrays only (a flow pickle from the internet runs no code)."""

    ALLOWED = frozenset({("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("numpy._core.numeric", "_frombuffer"),
               ("numpy.core.numeric", "_frombuffer"), ("codecs", "encode")})

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a flow pickle")


def load_flow_pickle(path: str | os.PathLike) -> list[dict[str, np.ndarray]]:
    """The toolkit's ``<vid>-flows_stereo.pkl``: a list (one per frame) of ``{'fwd', 'bwd'}``
    (H, W, 2) arrays, fwd = left to right. Only NumPy arrays are unpickled."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            flows = _ArrayUnpickler(handle).load()
    except FileNotFoundError:
        raise StereobenchError(f"flow pickle {path} does not exist") from None
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as exc:
        raise StereobenchError(f"cannot read flow pickle {path} ({type(exc).__name__}: {exc}); expected the "
                               f"toolkit's list of {{'fwd', 'bwd'}} arrays") from None
    if not isinstance(flows, (list, tuple)) or not all(
            isinstance(f, dict) and "fwd" in f and "bwd" in f for f in flows):
        raise StereobenchError(f"{path.name} is not a list of {{'fwd': (H,W,2), 'bwd': (H,W,2)}} dicts "
                               f"(inference_raft.py's flows_stereo layout)")
    return list(flows)


def _gradient_mask(depth: np.ndarray, threshold: float) -> np.ndarray:
    """track_optimization.gradient_check_mask_relative for (T, H, W): central differences with
    edge padding; True where either exceeds ``threshold * depth`` on a non-zero pixel."""
    padded = np.pad(depth, ((0, 0), (1, 1), (1, 1)), mode="edge")
    grad_x = np.abs(padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2])
    grad_y = np.abs(padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1])
    return ((grad_x > threshold * depth) | (grad_y > threshold * depth)) & (depth != 0)


def disparity_from_flows(flows, *, hfov_deg: float = OUTPUT_HFOV_DEG, baseline_m: float = BASELINE_M,
                         max_depth_m: float = MAX_DEPTH_M, gradient_threshold: float = GRADIENT_THRESHOLD
                         ) -> np.ndarray:
    """Disparity of the left view from the toolkit's stereo flows, every validity rule applied.

    Per frame (``track_optimization.load_rgbd_cam_from_pkl``): ``disp = clip(-fwd_x, 0)``,
    ``depth = f * 0.063 / disp`` with ``f = W / tan(hfov / 2) / 2``; invalid (depth 0) where
    ``|bwd warped by fwd + fwd| > 1`` (forward-backward check, bwd sampled with ``cv2.remap``
    bicubic, zero border), where ``|fwd_y| > 1``; then over the clip where depth > 20 m or < 0
    (so disparity 0, negative, or < 443.405 * 0.063 / 20 = 1.397 px is invalid), then
    "floating points": pixels whose depth gradient (central, edge-padded) exceeds 3 % of their
    depth, computed on the depth map with the invalid pixels already at 0.

    Args:
        flows: list of ``{'fwd': (H,W,2), 'bwd': (H,W,2)}`` (or arrays (T,H,W,2) as a dict).

    Returns:
        float32 (T, H, W) disparity in pixels (x_R = x_L - d), NaN where invalid.
    """
    import cv2

    if isinstance(flows, dict):
        fwd_all, bwd_all = np.asarray(flows["fwd"], np.float32), np.asarray(flows["bwd"], np.float32)
    else:
        fwd_all = np.stack([np.asarray(f["fwd"], np.float32) for f in flows])
        bwd_all = np.stack([np.asarray(f["bwd"], np.float32) for f in flows])
    if fwd_all.ndim != 4 or fwd_all.shape[-1] != 2 or bwd_all.shape != fwd_all.shape:
        raise StereobenchError(f"flows must be (T, H, W, 2) fwd and bwd of one shape, got {fwd_all.shape} and "
                               f"{bwd_all.shape}")
    t, h, w, _ = fwd_all.shape
    fx = w / np.tan(np.radians(hfov_deg / 2)) / 2
    grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), axis=-1)
    disp = np.clip(-fwd_all[..., 0], 0, None)
    with np.errstate(divide="ignore"):
        depth = (fx * baseline_m) / disp
    for k in range(t):  # cv2.remap is per image; everything else is vectorised over the clip
        warped = cv2.remap(bwd_all[k], grid + fwd_all[k], None, cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT)
        occluded = np.linalg.norm(warped + fwd_all[k], axis=-1) > 1
        depth[k][occluded] = 0
    depth[np.abs(fwd_all[..., 1]) > 1] = 0
    depth[depth > max_depth_m] = 0
    depth[depth < 0] = 0
    depth[_gradient_mask(depth, gradient_threshold)] = 0
    valid = depth > 0
    return np.where(valid, disp, np.nan).astype(np.float32)


# ---------------------------------------------------------------------------------------- video

def _probe(path: Path) -> tuple[int, int, float]:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise StereobenchError(f"{path} has no video stream; give the VR180 video file")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            return int(stream.width), int(stream.height), float(rate) if rate else TOOLKIT_FPS
    except StereobenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - PyAV raises many types for a bad file
        raise StereobenchError(f"cannot open video {path} ({type(exc).__name__}: {exc}); download it again") from None


def check_video(path: Path, ann: Stereo4DAnnotation, min_height: int = MIN_HEIGHT) -> tuple[int, int, float]:
    """(width, height, fps) of the raw video after the toolkit's height check and an aspect check."""
    width, height, fps = _probe(path)
    if height < min_height:
        raise StereobenchError(
            f"{path.name} is {width}x{height}: an equirect VR180 video must be at least {min_height} px high (the "
            f"toolkit's check: is it in VR180 format?); {YTDLP_HINT}, or pass --min-height {height} to take a lower "
            f"stream that is VR180")
    yaw = float(ann.fov_bounds[1] - ann.fov_bounds[0])
    tilt = float(ann.fov_bounds[3] - ann.fov_bounds[2])
    expected = 2.0 * yaw / tilt
    aspect = width / height
    if abs(aspect / expected - 1.0) > ASPECT_TOLERANCE:
        raise StereobenchError(
            f"{path.name} is {width}x{height} (aspect {aspect:.2f}) but a side-by-side VR180 frame of this clip's "
            f"field of view ({yaw:g} x {tilt:g} degrees per eye) has aspect {expected:.2f}: it is not a side-by-side "
            f"equirect video (top-bottom, mono or a 2D version?); {YTDLP_HINT}")
    return width, height, fps


def read_frames_at(path: Path, timestamps_us: np.ndarray, on_frame) -> list[float]:
    """Decode ``path`` once and call ``on_frame(k, rgb_uint8)`` with the frame nearest to each
    timestamp ``k`` (microseconds), in order; returns the chosen frames' times (s).

    Seeks to the key frame before the first timestamp; only chosen frames are converted to RGB.
    Raises StereobenchError when the video ends before the last timestamp (more than half a
    frame interval after its last frame).
    """
    import av

    targets = np.asarray(timestamps_us, dtype=np.int64) / 1e6
    chosen: list[float] = []

    def frames(seek: bool):
        container = av.open(str(path))
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            base = float(stream.time_base) if stream.time_base else None
            origin = stream.start_time or 0
            if seek and targets[0] > 1.0 and base:
                container.seek(int(origin + (targets[0] - 1.0) / base), stream=stream, backward=True, any_frame=False)
            for count, frame in enumerate(container.decode(stream)):
                t = (frame.pts - origin) * base if frame.pts is not None and base else count / TOOLKIT_FPS
                yield frame, float(t)
        finally:
            container.close()

    def run_through(seek: bool) -> bool:
        chosen.clear()
        k = 0
        previous = None
        last = None
        for frame, t in frames(seek):
            if previous is None and t > targets[0] + 1e-6 and seek:
                return False  # the seek landed after the first timestamp: decode from the start
            while k < len(targets) and t >= targets[k]:
                if previous is not None and targets[k] - previous[1] < t - targets[k]:
                    pick = previous
                else:
                    pick = (frame, t)
                on_frame(k, pick[0].to_ndarray(format="rgb24"))
                chosen.append(pick[1])
                k += 1
            if k == len(targets):
                return True
            previous = (frame, t)
            last = (frame, t)
        if last is None:
            raise StereobenchError(f"{path.name} has no frames; download it again")
        interval = (last[1] - chosen[-1]) if chosen else 0.0
        half = 0.5 / TOOLKIT_FPS if interval <= 0 else 0.5 * interval
        if k < len(targets) and targets[k] - last[1] <= half and targets[-1] - last[1] <= half:
            while k < len(targets):
                on_frame(k, last[0].to_ndarray(format="rgb24"))
                chosen.append(last[1])
                k += 1
            return True
        raise StereobenchError(
            f"{path.name} ends at {last[1]:.2f} s but its annotation needs frames up to {targets[-1]:.2f} s "
            f"({len(targets) - k} of {len(targets)} timestamps are past the end); the download is incomplete or "
            f"another cut: download the full video again")

    try:
        if not run_through(seek=True):
            run_through(seek=False)
    except StereobenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - PyAV decode errors on a corrupt file
        raise StereobenchError(f"cannot decode {path} ({type(exc).__name__}: {exc}); download it again") from None
    return chosen


# ---------------------------------------------------------------------------------------- jobs

def find_annotations(annotations: str | os.PathLike) -> list[tuple[Path, str]]:
    """(npz path, split) of every annotation: ``<dir>/train/*.npz`` and ``<dir>/test/*.npz``
    (the bucket's layout; the folder is the official split), other sub-folders by their name,
    and npz files directly in ``<dir>`` with split ``""`` (none)."""
    root = Path(annotations).expanduser()
    if not root.is_dir():
        raise StereobenchError(f"annotation folder {root} does not exist; download the npz files with "
                               f"`gsutil -m cp -r gs://stereo4d/test gs://stereo4d/train {root}`")
    found = [(p, "") for p in sorted(root.glob("*.npz"))]
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        found += [(p, sub.name) for p in sorted(sub.glob("*.npz"))]
    if not found:
        raise StereobenchError(f"no .npz annotations in {root} or its train/ and test/ folders")
    names = [p.stem for p, _ in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise StereobenchError(f"annotation names appear in more than one folder of {root}: "
                               f"{', '.join(duplicates[:5])}; keep each clip in one split folder")
    return found


def _flow_path(flows: Path | None, clip_id: str) -> Path | None:
    if flows is None:
        return None
    for candidate in (flows / f"{clip_id}-flows_stereo.pkl", flows / clip_id / f"{clip_id}-flows_stereo.pkl"):
        if candidate.is_file():
            return candidate
    return None


@dataclass
class Stereo4DJob:
    """Prepare one clip (picklable; see :func:`benchmark.dataprep.jobs.run_jobs`)."""

    job_id: str
    npz: str
    raw: str
    split: str = ""
    flows: str | None = None
    disparity: str = "auto"  # "flows", "sgbm" or "auto" (flows when the pickle exists, else SGBM)
    min_height: int = MIN_HEIGHT
    two_pass: bool = False
    size: int = OUTPUT_SIZE
    hfov_deg: float = OUTPUT_HFOV_DEG
    fps: float = TOOLKIT_FPS
    max_disparity: int | None = None
    m2svid_ids: list[str] = field(default_factory=list)

    def is_done(self, out_root: Path) -> bool:
        return clip_is_prepared(out_root, self.job_id)

    def run(self, out_root: Path) -> None:
        ann = load_annotation(self.npz)
        video = Path(self.raw) / f"{ann.video_id}.mp4"
        if not video.is_file():
            raise StereobenchError(f"raw video {video} is missing (video_id {ann.video_id!r} of {Path(self.npz).name}); "
                                   f"{YTDLP_HINT}")
        width, height, source_fps = check_video(video, ann, self.min_height)
        flow_file = _flow_path(Path(self.flows) if self.flows else None, self.job_id)
        mode = self.disparity
        if mode == "auto":
            mode = "flows" if flow_file is not None else "sgbm"
        if mode == "flows" and flow_file is None:
            raise StereobenchError(f"no flow pickle {self.job_id}-flows_stereo.pkl under {self.flows}; run the "
                                   f"toolkit's inference_raft.py or use --disparity sgbm")
        eye_hw = (height, width // 2)
        maps = [EyeMaps.build(eye_hw, ann.fov_bounds, ann.rectified2rig[e], self.two_pass, self.size, self.hfov_deg)
                for e in (0, 1)]
        t = ann.num_frames
        left = np.zeros((t, self.size, self.size, 3), np.uint8)
        right = np.zeros_like(left)

        def on_frame(k: int, frame: np.ndarray) -> None:
            left[k] = rectify_eye(frame[:, : width // 2], maps[0])
            right[k] = rectify_eye(frame[:, width // 2:], maps[1])

        chosen = read_frames_at(video, ann.timestamps, on_frame)
        if mode == "flows":
            flows = load_flow_pickle(flow_file)
            if len(flows) != t:
                raise StereobenchError(f"{flow_file.name} holds {len(flows)} frames but {Path(self.npz).name} has {t} "
                                       f"timestamps; compute the flows of this clip again")
            disparity = disparity_from_flows(flows, hfov_deg=self.hfov_deg)
            if disparity.shape[1:] != (self.size, self.size):
                raise StereobenchError(f"{flow_file.name} has flows of {disparity.shape[1:]} but the views are "
                                       f"{self.size}x{self.size}")
        else:
            from benchmark.dataprep.sgbm import sgbm_disparity

            disparity = sgbm_disparity(left, right, max_disparity=self.max_disparity, lr_check=1.0)
        diffs = np.diff(ann.timestamps)
        source = {
            "dataset": "stereo4d", "npz": Path(self.npz).name, "npz_sha256": _sha256(Path(self.npz)),
            "split": self.split, "video": video.name, "video_id": ann.video_id, "name": ann.name,
            "video_size": [width, height], "video_fps": source_fps, "num_timestamps": t,
            "first_timestamp_us": int(ann.timestamps[0]), "last_timestamp_us": int(ann.timestamps[-1]),
            "timestamp_fps": float(1e6 / np.median(diffs)) if len(diffs) else None,
            "max_frame_offset_s": float(np.max(np.abs(np.asarray(chosen) - ann.timestamps / 1e6))),
            "fov_bounds": ann.fov_bounds.tolist(), "rectified2rig": ann.rectified2rig.tolist(),
            "focal_px": focal_length(self.size, self.hfov_deg),
            "baseline_m": BASELINE_M, "size": self.size, "hfov_deg": self.hfov_deg,
            "remap": "two-pass" if self.two_pass else "composed", "disparity": mode,
            "flows": flow_file.name if mode == "flows" else None,
            "m2svid_ids": list(self.m2svid_ids),
        }
        # update=False: the command merges every clip into manifest.json once, after all jobs
        # (one rewrite per clip would cost O(clips^2) on the 100k-clip train split).
        write_prepared_clip(out_root, self.job_id, left=left, right=right, disparity=disparity, fps=self.fps,
                            source=source, update=False)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def plan_jobs(annotations: str | os.PathLike, raw: str | os.PathLike, **options) -> tuple[list[Stereo4DJob], dict]:
    """Jobs of every annotation and the splits (name -> clip ids), with M2SVid's lists matched by
    YouTube id (a test-folder npz first, then sorted name; which one is recorded)."""
    found = find_annotations(annotations)
    splits: dict[str, list[str]] = {}
    by_ytid: dict[str, list[tuple[str, str]]] = {}
    for path, split in found:
        valid_clip_id(path.stem)
        if split:
            splits.setdefault(split, []).append(path.stem)
        by_ytid.setdefault(ytid_of(path.stem), []).append((path.stem, split))
    matches: dict[str, dict[str, str | None]] = {}
    clip_m2svid: dict[str, list[str]] = {}
    for list_name, ids in m2svid_lists().items():
        matches[list_name] = {}
        for m2svid_id in ids:
            candidates = sorted(by_ytid.get(ytid_of(m2svid_id), []), key=lambda c: (c[1] != "test", c[0]))
            clip = candidates[0][0] if candidates else None
            matches[list_name][m2svid_id] = clip
            if clip is not None:
                clip_m2svid.setdefault(clip, []).append(f"{list_name}:{m2svid_id}")
        splits[list_name] = [c for c in matches[list_name].values() if c is not None]
    jobs = [Stereo4DJob(job_id=path.stem, npz=str(path), raw=str(raw), split=split,
                        m2svid_ids=clip_m2svid.get(path.stem, []), **options) for path, split in found]
    return jobs, {"splits": splits, "m2svid_matches": matches}


# ------------------------------------------------------------------------------------------ CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    from benchmark.dataprep.jobs import add_job_arguments

    parser.add_argument("--annotations", required=True, metavar="DIR",
                        help="folder of Stereo4D annotation npz files: DIR/train/*.npz and DIR/test/*.npz as in "
                             "gs://stereo4d/ (the folder is the official split)")
    parser.add_argument("--raw", required=True, metavar="DIR",
                        help="folder of your VR180 side-by-side equirect downloads, <video_id>.mp4")
    parser.add_argument("--flows", metavar="DIR",
                        help="folder of the toolkit's SEA-RAFT flows, <clip>-flows_stereo.pkl or "
                             "<clip>/<clip>-flows_stereo.pkl (disparity with the toolkit's validity rules)")
    parser.add_argument("--disparity", choices=["auto", "flows", "sgbm"], default="auto",
                        help="disparity source: the flow pickles, OpenCV SGBM with a left-right check here, or "
                             "auto = flows where a pickle exists, else SGBM (default)")
    parser.add_argument("--max-disparity", type=int, metavar="PX", help="SGBM search range (default: a quarter of "
                                                                       "the width)")
    parser.add_argument("--two-pass", action="store_true",
                        help="the toolkit's two remaps (raw -> rectified equirect -> pinhole) instead of one composed "
                             "remap (same geometry, one interpolation fewer)")
    parser.add_argument("--min-height", type=int, default=MIN_HEIGHT, metavar="PX",
                        help=f"refuse raw videos lower than this (the toolkit's VR180 check, default {MIN_HEIGHT})")
    parser.add_argument("--split", action="append", metavar="NAME",
                        help="prepare only these splits (train, test, m2svid-test, m2svid-val64; repeatable)")
    add_job_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from benchmark.dataprep.jobs import parse_shard, run_jobs
    from benchmark.fileio import atomic_write_json

    if args.min_height is not None and args.min_height < 0:
        raise StereobenchError(f"--min-height must be >= 0, got {args.min_height}")
    raw = Path(args.raw).expanduser()
    if not raw.is_dir():
        raise StereobenchError(f"raw video folder {raw} does not exist; put your downloads there as <video_id>.mp4")
    flows = Path(args.flows).expanduser() if args.flows else None
    if flows is not None and not flows.is_dir():
        raise StereobenchError(f"flow folder {flows} does not exist")
    if args.disparity == "flows" and flows is None:
        raise StereobenchError("--disparity flows needs --flows DIR (the toolkit's <clip>-flows_stereo.pkl files)")
    jobs, plan = plan_jobs(args.annotations, raw, flows=str(flows) if flows else None, disparity=args.disparity,
                           min_height=args.min_height, two_pass=args.two_pass, max_disparity=args.max_disparity)
    if args.split:
        known = sorted(plan["splits"])
        wanted: set[str] = set()
        for name in args.split:
            if name not in plan["splits"]:
                import difflib

                close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise StereobenchError(f"split {name!r} has no annotations in {args.annotations};{hint} splits found: "
                                       f"{', '.join(known)}")
            wanted |= set(plan["splits"][name])
        jobs = [job for job in jobs if job.job_id in wanted]
    out = Path(args.out).expanduser()
    report = run_jobs(jobs, out_root=out, workers=args.workers, shard=parse_shard(args.shard), desc="stereo4d",
                      progress=not args.no_progress)
    reconcile_manifest(out, [job.job_id for job in jobs])
    for name, ids in plan["splits"].items():
        write_split(out, name, ids)
    matches = plan["m2svid_matches"]
    try:
        previous = json.loads((out / "stereo4d_m2svid_matches.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = None
    if previous != matches:
        atomic_write_json(out / "stereo4d_m2svid_matches.json", matches, indent=1, sort_keys=True)
    print(f"stereo4d: {report.summary()}", file=sys.stderr)
    for list_name, found in matches.items():
        unmatched = [i for i, c in found.items() if c is None]
        print(f"{list_name}: {len(found) - len(unmatched)} of {len(found)} ids matched an annotation by YouTube id"
              + (f"; no npz for {len(unmatched)} (e.g. {', '.join(unmatched[:3])})" if unmatched else ""),
              file=sys.stderr)
    if not report.ok:
        print(f"{len(report.failed)} clip(s) failed (listed above): fix them and rerun the same command (finished "
              f"clips are kept)", file=sys.stderr)
    if report.done or report.skipped:
        print(f"prepared data in {out}; run it with: stereobench run --dataset stereo4d --option root={out} --split "
              f"test --protocol paper", file=sys.stderr)
    return 0 if report.ok else 1
