"""Ego4D stereo: side-by-side videos you downloaded (+ the published per-video homographies)
-> rectified clips with disparity, in the prepared layout that ``--dataset ego4d`` loads.

Steps for each video (one job per video; a bad video is logged and skipped, the others go on):

1. **Select** the stereo videos: ``is_stereo`` in the Ego4D metadata (``ego4d.json``,
   ``{"videos": [{"video_uid": ..., "is_stereo": true}, ...]}``) given with ``--metadata``, else
   every ``<video_uid>.mp4`` in ``--videos``. ``--split test`` keeps only M2SVid's test clips
   (200 clips of one video, shipped with the suite).
2. **Portrait frames** (height > width; some Ego4D videos are stored that way) are resized to
   width x height (the aspect swapped by stretching, antialiased bilinear), as M2SVid's
   ``split_left_right`` does: they are not rotated. A frame that is not at least about twice as
   wide as high then is not side-by-side stereo, and the video is refused.
3. **Eyes**: left = first half of the width, right = second half.
4. **Rectification**: with ``--homographies DIR`` the published JSON of the video
   (``<video_uid>.mp4.json`` in M2SVid's ``datasets/ego4d/recrification_params_loftr_ransac/``:
   ``{"homography_left": 3x3, "homography_right": 3x3, "croping": [x_min, y_min, x_max, y_max]}``)
   warps each eye (``cv2.warpPerspective`` semantics, same size, bilinear) and the crop, rounded to
   even width and height, is cut out. Without a JSON the homographies are estimated here: SIFT
   (or ORB) matches pooled over up to 200 frames spread over the video, ``findFundamentalMat``
   with RANSAC (threshold 3 px) refitted 30 times on the previous round's inliers (M2SVid's
   ``iterative_refinement_ransac``; it matched with LoFTR), ``stereoRectifyUncalibrated``, and the
   crop to the intersection of both warped frames (M2SVid's ``compute_valid_region``); when
   ``stereoRectifyUncalibrated`` folds a nearly rectified pair (epipoles near infinity), a
   vertical affine map per eye fitted to the matches is used instead (recorded). The
   estimate is saved as ``<out>/ego4d/rectification/<video_uid>.mp4.json`` in the published
   format (plus match statistics) and reused on a re-run.
5. **Clips** of ``--clip-frames`` frames (150, M2SVid's) at the source rate, named
   ``<video_uid>_clip_<NNNN>`` as M2SVid names them; a shorter last clip is kept if it lasts at
   least ``--min-clip-seconds`` (3.2 s: the 16 frames at 5 fps the paper protocol reads).
6. **Horizontal shift** per clip so that the smallest disparity is about 1 px: feature matches
   on up to 200 frames of the clip at <= 4 fps, MAGSAC inliers (0.5 px, 0.999, 100000 iterations),
   horizontal disparities ``x_L - x_R``, robust minimum = the 0.1 % quantile of at most 10,000 of
   them (all M2SVid's choices). Shift rules (``--shift-rule``):

   - ``intended`` (default): ``s = max(0, round(1 - robust_min))``, crop ``left[:, :W - s]`` and
     ``right[:, s:]``: every disparity grows by exactly ``s``, so the robust minimum ends in
     [0.5, 1.5) px. One more column is dropped from the right end of both views when ``W - s``
     is odd (that moves nothing).
   - ``m2svid-compat``: the official code, ``s = ceil(max(0, 1 - robust_min) / 4) * 4``, crop
     ``left[:, :-s//2]`` and ``right[:, s//2:]``. Cropping the right end of the left view moves
     no left pixel, and cropping ``s/2`` columns from the left of the right view moves every
     right pixel by ``-s/2``, so disparities grow by only ``s/2``: the minimum ends near
     ``(robust_min + 1) / 2``, not 1, whenever ``robust_min < -1`` (tests/test_ego4d_geometry.py
     shows it on a synthetic pair). With ``s = 0`` the official slice ``[:-0]`` would be empty;
     here it keeps the view.

   Neither rule ever shrinks disparities (a clip whose robust minimum is already above 1.5 px is
   not shifted), as in M2SVid.
7. **Disparity** of the left view: OpenCV SGBM with a left-right consistency check
   (:mod:`benchmark.dataprep.sgbm`; the search range comes from the clip's feature matches), or
   your own files with ``--disparity-dir DIR`` (``<clip_id>.npy``, float32 (T, H, W) for the
   prepared clip's frames and size, pixels, ``x_R = x_L - d``, NaN = invalid). M2SVid used
   BiDAStereo at half resolution; its per-frame PNGs are min-max normalised and cannot be
   imported exactly.
8. **Store** with :func:`benchmark.datasets.prepared.write_prepared_clip` (lossless views,
   float32 disparity, a manifest with checksums); ``splits/test.txt`` is the official test list.

Resumable and idempotent: a video whose clips are all prepared with the same options is not
opened again (``<out>/ego4d/videos/<video_uid>.json`` records them), and a killed run redoes only
the clips that are missing.

Example:
  stereobench prepare-data ego4d --videos ~/ego4d_data/v2/full_scale --metadata ~/ego4d_data/v2/ego4d.json \\
      --homographies m2svid/datasets/ego4d/recrification_params_loftr_ransac --split test --out data/ego4d
  stereobench run --dataset ego4d --option root=data/ego4d --split test --protocol paper
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.errors import StereobenchError

__all__ = [
    "DEFAULTS", "SHIFT_RULES", "Ego4DVideoJob", "Rectification", "add_arguments", "apply_shift", "check_side_by_side",
    "compute_valid_region", "estimate_rectification", "even_crop", "feature_matches", "iterative_ransac",
    "load_homography_json", "official_test_clips", "rectify_frames", "resize_portrait", "robust_min_disparity",
    "run", "select_videos", "shift_for", "split_eyes",
]

SHIFT_RULES = ("intended", "m2svid-compat")
#: A side-by-side frame holds two eyes of aspect >= ~1 next to each other; below this width /
#: height (after the portrait resize) a video is refused as "not side-by-side".
MIN_SBS_ASPECT = 1.9

DEFAULTS: dict[str, Any] = {
    "clip_frames": 150,            # M2SVid's split_ego4d_into_clips.py
    "min_clip_seconds": 3.2,       # the paper protocol reads 16 frames at 5 fps
    "shift_rule": "intended",
    "target_min_disparity": 1.0,   # run_stereo_and_reproject.py --target_min_disparity
    "robust_quantile": 0.001,      # --robust_threshold
    "shift_max_fps": 4.0,          # --max_fps
    "match_frames": 200,           # frames sampled for matching (rectification and shift)
    "detector": "sift",
    "lr_check": 1.0,
    "max_disparity": None,         # None: from the clip's feature matches
    "disparity_dir": None,
}


# ------------------------------------------------------------------------------- frame geometry

def resize_portrait(frames: np.ndarray) -> np.ndarray:
    """M2SVid's handling of Ego4D videos stored with height > width: resize (T, H, W, 3) uint8
    to (T, W, H, 3) by stretching (antialiased bilinear, like torchvision's ``Resize([w, h],
    antialias=True)``); landscape frames are returned unchanged."""
    frames = np.asarray(frames)
    _t, h, w = frames.shape[:3]
    if h <= w:
        return frames
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(w, h), mode="bilinear", antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def check_side_by_side(width: int, height: int, what: str) -> None:
    """Refuse a frame (after the portrait resize) that cannot hold two eyes side by side."""
    aspect = width / max(height, 1)
    if aspect < MIN_SBS_ASPECT:
        raise StereobenchError(
            f"{what} is {width}x{height} (aspect {aspect:.2f}) after the portrait resize: not side-by-side stereo "
            f"(two eyes side by side are at least ~{MIN_SBS_ASPECT:g} times as wide as high); give Ego4D videos "
            f"with is_stereo = true")


def split_eyes(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left = columns [0, W//2), right = [W//2, 2 * (W//2)) of (T, H, W, 3) frames (views)."""
    half = frames.shape[2] // 2
    return frames[:, :, :half], frames[:, :, half:2 * half]


# ------------------------------------------------------------------------------- rectification

@dataclass
class Rectification:
    """Per-video rectification: homographies (raw eye -> rectified eye) and the crop
    ``(x_min, y_min, x_max, y_max)`` of the rectified eyes (even width and height)."""

    homography_left: np.ndarray
    homography_right: np.ndarray
    crop: tuple[int, int, int, int]
    origin: str = "published"          # "published" or "estimated"
    path: str = ""
    stats: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        out = {"homography_left": np.asarray(self.homography_left, dtype=float).tolist(),
               "homography_right": np.asarray(self.homography_right, dtype=float).tolist(),
               "croping": [int(c) for c in self.crop]}
        if self.stats:
            out["stereobench"] = dict(self.stats, origin=self.origin)
        return out


def even_crop(crop) -> tuple[int, int, int, int]:
    """Round a crop down to even width and height from its top-left corner (rectify_videos.py)."""
    x0, y0, x1, y1 = (int(c) for c in crop)
    return x0, y0, x0 + (x1 - x0) // 2 * 2, y0 + (y1 - y0) // 2 * 2


def compute_valid_region(H_left: np.ndarray, H_right: np.ndarray, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The crop both rectified eyes fill: per eye, the four image corners through the homography,
    the box inside them (top = lower of the two top corners, etc.), clipped to the image; the
    intersection of both boxes, with even width and height (M2SVid's ``compute_valid_region``)."""
    import cv2

    w, h = size
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32).reshape(-1, 1, 2)
    boxes = []
    for H in (H_left, H_right):
        p = cv2.perspectiveTransform(corners, np.asarray(H, np.float64)).reshape(-1, 2)
        x_min = max(p[0, 0], p[3, 0], 0.0)
        x_max = min(p[1, 0], p[2, 0], float(w))
        y_min = max(p[0, 1], p[1, 1], 0.0)
        y_max = min(p[2, 1], p[3, 1], float(h))
        boxes.append((int(np.ceil(x_min)), int(np.ceil(y_min)), int(np.floor(x_max)), int(np.floor(y_max))))
    crop = (max(boxes[0][0], boxes[1][0]), max(boxes[0][1], boxes[1][1]),
            min(boxes[0][2], boxes[1][2]), min(boxes[0][3], boxes[1][3]))
    return even_crop(crop)


def _homography(value: Any, key: str, path: Path) -> np.ndarray:
    try:
        H = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        H = None
    if H is None or H.shape != (3, 3) or not np.isfinite(H).all():
        raise StereobenchError(f"homography JSON {path}: {key!r} must be a 3x3 list of finite numbers, got "
                               f"{json.dumps(value)[:60]}; use the file published with M2SVid or delete it to "
                               f"estimate the rectification")
    if abs(np.linalg.det(H)) < 1e-12:
        raise StereobenchError(f"homography JSON {path}: {key!r} is singular (determinant 0); use the file published "
                               f"with M2SVid or delete it to estimate the rectification")
    return H


def load_homography_json(path: str | os.PathLike, eye_size: tuple[int, int]) -> Rectification:
    """Read and check a published per-video JSON for eyes of ``eye_size = (width, height)``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise StereobenchError(f"cannot read homography JSON {path} ({type(exc).__name__}: {exc})") from None
    except ValueError as exc:
        raise StereobenchError(f"homography JSON {path} is not valid JSON ({exc}); use the file published with "
                               f"M2SVid or delete it to estimate the rectification") from None
    if not isinstance(data, dict):
        raise StereobenchError(f"homography JSON {path} must be an object with homography_left, homography_right "
                               f"and croping")
    missing = [k for k in ("homography_left", "homography_right", "croping") if k not in data]
    if missing:
        raise StereobenchError(f"homography JSON {path} lacks {', '.join(missing)} (it needs homography_left, "
                               f"homography_right and croping)")
    H_left = _homography(data["homography_left"], "homography_left", path)
    H_right = _homography(data["homography_right"], "homography_right", path)
    crop = data["croping"]
    w, h = eye_size
    ok = (isinstance(crop, (list, tuple)) and len(crop) == 4
          and all(isinstance(c, (int, float)) and not isinstance(c, bool) and float(c).is_integer() for c in crop))
    if ok:
        x0, y0, x1, y1 = even_crop(crop)
        ok = 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h and x1 - x0 >= 2 and y1 - y0 >= 2
    if not ok:
        raise StereobenchError(f"homography JSON {path}: 'croping' must be 4 whole numbers [x_min, y_min, x_max, "
                               f"y_max] inside the {w}x{h} eye, got {json.dumps(crop)[:60]}")
    stats = data.get("stereobench") if isinstance(data.get("stereobench"), dict) else {}
    return Rectification(H_left, H_right, (x0, y0, x1, y1), origin=stats.get("origin", "published"),
                         path=str(path), stats={k: v for k, v in stats.items() if k != "origin"})


def _warp_maps(H: np.ndarray, crop: tuple[int, int, int, int]):
    """Fixed-point remap maps of ``cv2.warpPerspective(eye, H, size)`` restricted to the crop."""
    import cv2

    x0, y0, x1, y1 = crop
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    Hi = np.linalg.inv(H)
    den = Hi[2, 0] * xs + Hi[2, 1] * ys + Hi[2, 2]
    u = ((Hi[0, 0] * xs + Hi[0, 1] * ys + Hi[0, 2]) / den).astype(np.float32)
    v = ((Hi[1, 0] * xs + Hi[1, 1] * ys + Hi[1, 2]) / den).astype(np.float32)
    return cv2.convertMaps(u, v, cv2.CV_16SC2)


def rectify_frames(left: np.ndarray, right: np.ndarray, rect: Rectification) -> tuple[np.ndarray, np.ndarray]:
    """Warp both eyes (T, h, w, 3) with their homographies and cut the crop: (T, ch, cw, 3) each.

    The maps are computed once for the crop only; one ``cv2.remap`` per frame (OpenCV's remap is
    exact only up to 4 channels, so frames cannot be stacked into one call)."""
    import cv2

    out = []
    for frames, H in ((left, rect.homography_left), (right, rect.homography_right)):
        m1, m2 = _warp_maps(H, rect.crop)
        out.append(np.stack([cv2.remap(np.ascontiguousarray(f), m1, m2, cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_CONSTANT) for f in frames]))
    return out[0], out[1]


def _gray(frames: np.ndarray) -> np.ndarray:
    import cv2

    t, h, w, _ = frames.shape
    return cv2.cvtColor(np.ascontiguousarray(frames.reshape(t * h, w, 3)), cv2.COLOR_RGB2GRAY).reshape(t, h, w)


def feature_matches(left: np.ndarray, right: np.ndarray, detector: str = "sift",
                    ratio: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
    """Matched points (N, 2) float32 in the left and right frames (T, H, W, 3), pooled over frames.

    SIFT (or ORB) key points, brute-force 2-nearest-neighbour matching with Lowe's ratio test.
    """
    import cv2

    if detector == "sift":
        det = cv2.SIFT_create(nfeatures=2000)
        norm = cv2.NORM_L2
    elif detector == "orb":
        det = cv2.ORB_create(nfeatures=3000)
        norm = cv2.NORM_HAMMING
    else:
        raise StereobenchError(f"unknown feature detector {detector!r}; choose sift or orb")
    matcher = cv2.BFMatcher(norm)
    pts1, pts2 = [], []
    for a, b in zip(_gray(left), _gray(right)):
        k1, d1 = det.detectAndCompute(a, None)
        k2, d2 = det.detectAndCompute(b, None)
        if d1 is None or d2 is None or len(k1) < 2 or len(k2) < 2:
            continue
        good = [m for m, n in (p for p in matcher.knnMatch(d1, d2, k=2) if len(p) == 2) if m.distance < ratio * n.distance]
        if good:
            pts1.append(np.float32([k1[m.queryIdx].pt for m in good]))
            pts2.append(np.float32([k2[m.trainIdx].pt for m in good]))
    if not pts1:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    return np.concatenate(pts1), np.concatenate(pts2)


def iterative_ransac(pts1: np.ndarray, pts2: np.ndarray, threshold: float = 3.0, rounds: int = 30):
    """M2SVid's ``iterative_refinement_ransac``: ``findFundamentalMat(FM_RANSAC, threshold)``
    refitted on the previous round's inliers, ``rounds`` times (stopping early once a round keeps
    every point, after which further rounds change nothing). Returns F, inlier pts1, pts2."""
    import cv2

    cv2.setRNGSeed(0)
    F = None
    for _ in range(rounds):
        if len(pts1) < 8:
            break
        F_new, mask = cv2.findFundamentalMat(pts1, pts2, cv2.FM_RANSAC, ransacReprojThreshold=threshold)
        if F_new is None or mask is None:
            break
        F = F_new[:3]
        keep = mask.ravel() == 1
        if keep.all():
            break
        pts1, pts2 = pts1[keep], pts2[keep]
    return F, pts1, pts2


def _affine_rows(in1: np.ndarray, in2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rectification of a nearly rectified pair by a vertical affine map per eye, x unchanged:
    ``y_L' = a1 x + y`` and ``y_R' = a2 x + b2 y + c2``, fitted by least squares so that matched
    points share a row (refitted once without residuals above 1 px). Valid while the epipoles are
    far away (as on a stereo rig); it barely distorts the frames."""
    def fit(p1, p2):
        A = np.stack([p1[:, 0], -p2[:, 0], -p2[:, 1], -np.ones(len(p1))], axis=1).astype(np.float64)
        sol, *_ = np.linalg.lstsq(A, -p1[:, 1].astype(np.float64), rcond=None)
        return sol, np.abs(A @ sol + p1[:, 1])

    sol, res = fit(in1, in2)
    keep = res <= 1.0
    if keep.sum() >= 8 and not keep.all():
        sol, _ = fit(in1[keep], in2[keep])
    a1, a2, b2, c2 = sol
    return (np.array([[1.0, 0, 0], [a1, 1.0, 0], [0, 0, 1.0]]),
            np.array([[1.0, 0, 0], [a2, b2, c2], [0, 0, 1.0]]))


def _rectification_quality(H1, H2, in1, in2, size) -> tuple[tuple[int, int, int, int], float, float]:
    import cv2

    w, h = size
    crop = compute_valid_region(H1, H2, size)
    area = max(0, crop[2] - crop[0]) * max(0, crop[3] - crop[1]) / float(w * h)
    r1 = cv2.perspectiveTransform(in1.reshape(-1, 1, 2).astype(np.float64), H1).reshape(-1, 2)
    r2 = cv2.perspectiveTransform(in2.reshape(-1, 1, 2).astype(np.float64), H2).reshape(-1, 2)
    dy = np.abs(r1[:, 1] - r2[:, 1])
    return crop, area, dy


def estimate_rectification(left: np.ndarray, right: np.ndarray, detector: str = "sift") -> Rectification:
    """Estimate the rectifying homographies of raw eyes (T, h, w, 3) as M2SVid's
    ``compute_rectification_params.py`` does (with OpenCV features instead of LoFTR): pooled
    matches, 30-round refitted RANSAC, ``cv2.stereoRectifyUncalibrated``, the valid crop.

    ``stereoRectifyUncalibrated`` (Hartley's method) is unstable when the epipoles are nearly at
    infinity, i.e. on pairs that are almost rectified already (a stereo rig): it can return
    homographies that fold the frame. Its result is kept when the common crop covers at least
    half of the eye and the matches share rows (95th percentile of the row error <= 1 px); else
    the pair is rectified by a vertical affine map per eye fitted to the matches
    (:func:`_affine_rows`), under the same checks; ``stats["method"]`` says which."""
    import cv2

    h, w = left.shape[1:3]
    pts1, pts2 = feature_matches(left, right, detector)
    F, in1, in2 = iterative_ransac(pts1, pts2)
    if F is None or len(in1) < 8:
        raise StereobenchError(f"cannot estimate the rectification: {len(pts1)} feature matches, {len(in1)} "
                               f"RANSAC inliers (need >= 8); give the published homography JSON with --homographies")
    candidates = []
    ok, H1, H2 = cv2.stereoRectifyUncalibrated(in1.reshape(-1, 1, 2), in2.reshape(-1, 1, 2), F, (w, h))
    if ok:
        candidates.append(("stereoRectifyUncalibrated", np.asarray(H1, np.float64), np.asarray(H2, np.float64)))
    candidates.append(("affine-rows", *_affine_rows(in1, in2)))
    tried = []
    for method, H1, H2 in candidates:
        crop, area, dy = _rectification_quality(H1, H2, in1, in2, (w, h))
        p95 = float(np.percentile(dy, 95))
        tried.append(f"{method}: crop {area:.0%} of the eye, row error p95 {p95:.2f} px")
        if area >= 0.5 and p95 <= 1.0:
            stats = {"method": method, "matches": len(pts1), "inliers": len(in1), "detector": detector,
                     "row_error_median_px": round(float(np.median(dy)), 4), "row_error_p95_px": round(p95, 4),
                     "crop_fraction": round(area, 4)}
            return Rectification(H1, H2, crop, origin="estimated", stats=stats)
    raise StereobenchError("no usable rectification from this video's matches (" + "; ".join(tried)
                           + "); give the published homography JSON with --homographies")


# ------------------------------------------------------------------------------- shift

def robust_min_disparity(left: np.ndarray, right: np.ndarray, detector: str = "sift",
                         quantile: float = 0.001) -> dict:
    """Horizontal disparities ``x_L - x_R`` of MAGSAC-inlier feature matches of rectified frames:
    minimum, robust minimum (M2SVid: the ``quantile`` entry of at most 10,000 random samples,
    sorted), robust maximum (the same from the top), and the number of inliers."""
    import cv2

    pts1, pts2 = feature_matches(left, right, detector)
    if len(pts1) >= 8:
        cv2.setRNGSeed(0)
        _, mask = cv2.findFundamentalMat(pts1, pts2, cv2.USAC_MAGSAC, 0.5, 0.999, 100000)
        if mask is not None:
            keep = mask.ravel() > 0
            pts1, pts2 = pts1[keep], pts2[keep]
    if len(pts1) < 8:
        return {"inliers": len(pts1), "min": None, "robust_min": None, "robust_max": None,
                "max_abs_vertical": None}
    disp = (pts1[:, 0] - pts2[:, 0]).astype(np.float64)
    vert = np.abs(pts1[:, 1] - pts2[:, 1]).astype(np.float64)
    sample = disp
    if len(disp) > 10000:
        sample = np.random.default_rng(0).choice(disp, size=10000, replace=False)
    ordered = np.sort(sample)
    cut = int(len(ordered) * quantile)
    return {"inliers": len(disp), "min": float(disp.min()), "robust_min": float(ordered[cut]),
            "robust_max": float(ordered[len(ordered) - 1 - cut]), "max_abs_vertical": float(vert.max())}


def shift_for(robust_min: float | None, rule: str, target: float = 1.0) -> int:
    """The shift in pixels: ``intended`` adds it to every disparity; ``m2svid-compat`` is the
    official (multiple of 4) value, of which only half reaches the disparities."""
    if robust_min is None:
        return 0
    need = max(0.0, target - robust_min)
    if rule == "intended":
        return math.floor(need + 0.5)
    if rule == "m2svid-compat":
        return math.ceil(need / 4.0) * 4
    raise StereobenchError(f"unknown shift rule {rule!r}; choose one of {', '.join(SHIFT_RULES)}")


def apply_shift(left: np.ndarray, right: np.ndarray, shift: int, rule: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Crop (T, H, W, 3) views by ``shift`` under ``rule``; returns the views and how much every
    disparity grew (``shift`` for ``intended``, ``shift // 2`` for ``m2svid-compat``)."""
    w = left.shape[2]
    if rule == "intended":
        added = shift
        left, right = left[:, :, :w - shift], right[:, :, shift:]
    elif rule == "m2svid-compat":
        added = shift // 2
        if added:
            left, right = left[:, :, :-added], right[:, :, added:]
    else:
        raise StereobenchError(f"unknown shift rule {rule!r}; choose one of {', '.join(SHIFT_RULES)}")
    if left.shape[2] % 2:               # even width for the encoder: trimming the right end moves nothing
        left, right = left[:, :, :-1], right[:, :, :-1]
    if left.shape[2] < 16:
        raise StereobenchError(f"a shift of {shift} px leaves only {left.shape[2]} columns")
    return np.ascontiguousarray(left), np.ascontiguousarray(right), float(added)


# ------------------------------------------------------------------------------- selection

def official_test_clips() -> dict:
    """The shipped M2SVid test split: ``{"video_uid": str, "clips": [200 clip ids]}``."""
    path = Path(__file__).resolve().parents[1] / "datasets" / "ego4d_test.json"
    return json.loads(path.read_text(encoding="utf-8"))


def _video_files(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.glob("*.mp4"))}


def select_videos(videos: Path, metadata: Path | None = None, uids: list[str] | None = None) -> tuple[dict[str, Path], list[str]]:
    """``{video_uid: path}`` of the stereo videos to prepare, and notes about what was left out.

    With ``metadata`` only videos with ``is_stereo`` true (that are present in ``videos``); with
    ``uids`` only those."""
    videos = Path(videos).expanduser()
    if not videos.is_dir():
        raise StereobenchError(f"--videos {videos} is not a folder; give the folder of Ego4D videos "
                               f"(<video_uid>.mp4, e.g. ~/ego4d_data/v2/full_scale)")
    files = _video_files(videos)
    notes: list[str] = []
    wanted = set(files)
    if metadata is not None:
        metadata = Path(metadata).expanduser()
        try:
            data = json.loads(metadata.read_text(encoding="utf-8"))
            stereo = {str(v["video_uid"]) for v in data["videos"] if v.get("is_stereo") is True}
        except FileNotFoundError:
            raise StereobenchError(f"--metadata {metadata} does not exist; give Ego4D's ego4d.json") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StereobenchError(f"--metadata {metadata} is not Ego4D's ego4d.json (need {{\"videos\": [{{"
                                   f"\"video_uid\", \"is_stereo\"}}, ...]}}; {type(exc).__name__}: {exc})") from None
        absent = sorted(stereo - set(files))
        if absent:
            notes.append(f"{len(absent)} stereo video(s) of the metadata are not in {videos}: "
                         + ", ".join(absent[:5]) + (" ..." if len(absent) > 5 else ""))
        wanted &= stereo
    if uids:
        unknown = sorted(set(uids) - set(files))
        if unknown:
            raise StereobenchError(f"video(s) {', '.join(unknown[:5])} not found in {videos} (as <video_uid>.mp4)")
        wanted &= set(uids)
    if not wanted:
        raise StereobenchError(f"no Ego4D stereo videos to prepare in {videos}"
                               + (" that the metadata marks is_stereo" if metadata is not None else "")
                               + " (expected <video_uid>.mp4 files)")
    return {uid: files[uid] for uid in sorted(wanted)}, notes


# ------------------------------------------------------------------------------- the job

def _options_hash(options: dict) -> str:
    return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Ego4DVideoJob:
    """Prepare the clips of one video (picklable: plain fields only)."""

    video_uid: str
    video: str
    homography: str | None
    options: dict
    clip_indices: list[int] | None = None     # None: every clip

    @property
    def job_id(self) -> str:
        return self.video_uid

    def _marker(self, out_root: Path) -> Path:
        return Path(out_root) / "ego4d" / "videos" / f"{self.video_uid}.json"

    def is_done(self, out_root: Path) -> bool:
        from benchmark.datasets.prepared import clip_is_prepared

        try:
            marker = json.loads(self._marker(out_root).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        if marker.get("options_hash") != self.key():
            return False
        return all(clip_is_prepared(out_root, c) for c in marker.get("clips", []))

    def key(self) -> str:
        """Hash of everything that decides this video's clips: options, clip selection and the
        homography file's content (a changed file or option re-prepares the video)."""
        homography = None
        if self.homography:
            try:
                homography = hashlib.sha256(Path(self.homography).read_bytes()).hexdigest()[:16]
            except OSError:
                homography = Path(self.homography).name
        return _options_hash({"options": self.options, "clips": self.clip_indices, "homography": homography})

    def run(self, out_root: Path) -> None:
        prepare_video(self, Path(out_root))


def _clip_done(out_root: Path, clip_id: str, key: str) -> bool:
    from benchmark.datasets.prepared import META, clip_dir, clip_is_prepared

    if not clip_is_prepared(out_root, clip_id):
        return False
    try:
        meta = json.loads((clip_dir(out_root, clip_id) / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return meta.get("source", {}).get("options_hash") == key


def _sample_indices(count: int, wanted: int) -> np.ndarray:
    return np.unique(np.linspace(0, count - 1, num=min(count, wanted)).round().astype(int))


def prepare_video(job: Ego4DVideoJob, out_root: Path) -> list[str]:
    """Every step of the module docstring for one video; returns the clip ids it holds."""
    from benchmark.fileio import atomic_write_json
    from benchmark.video_io import open_source

    opts = {**DEFAULTS, **job.options}
    path = Path(job.video)
    source = open_source(path)
    fps = float(source.native_fps)
    what = f"video {job.video_uid}"
    clip_frames = int(opts["clip_frames"])
    min_frames = max(2, math.ceil(float(opts["min_clip_seconds"]) * fps - 1e-6))
    if source.frame_count is not None and source.frame_count < min_frames:
        raise StereobenchError(f"{what} has {source.frame_count} frames ({source.frame_count / fps:.2f} s at "
                               f"{fps:g} fps); a clip needs at least {opts['min_clip_seconds']:g} s "
                               f"(--min-clip-seconds)")
    if clip_frames < min_frames:
        raise StereobenchError(f"--clip-frames {clip_frames} is {clip_frames / fps:.2f} s at {fps:g} fps, shorter than "
                               f"--min-clip-seconds {float(opts['min_clip_seconds']):g}: no clip of {what} would be "
                               f"kept; raise --clip-frames to at least {min_frames} or lower --min-clip-seconds")
    key = job.key()

    # Geometry from the first frame.
    frames_iter = source.frames()
    first = next(frames_iter, None)
    frames_iter.close()
    if first is None:
        raise StereobenchError(f"{what} has no frames; check the file")
    raw_h, raw_w = first.image.shape[:2]
    portrait = raw_h > raw_w
    sbs_w, sbs_h = (raw_h, raw_w) if portrait else (raw_w, raw_h)
    check_side_by_side(sbs_w, sbs_h, what)
    eye_size = (sbs_w // 2, sbs_h)

    # Rectification: published JSON, an earlier estimate, or a new estimate.
    estimate_path = out_root / "ego4d" / "rectification" / f"{job.video_uid}.mp4.json"
    if job.homography:
        rect = load_homography_json(job.homography, eye_size)
    elif estimate_path.is_file():
        rect = load_homography_json(estimate_path, eye_size)
    else:
        count = source.frame_count
        if count:
            picks = set(_sample_indices(count, int(opts["match_frames"])).tolist())
        else:   # unknown length: M2SVid's rule max(1, 200 / duration) fps becomes 1 fps from the start
            step = max(1, round(fps))
            picks = set(range(0, step * int(opts["match_frames"]), step))
        sampled = [f.image for i, f in enumerate(source.frames()) if i in picks]
        frames = resize_portrait(np.stack(sampled))
        left, right = split_eyes(frames)
        rect = estimate_rectification(left, right, detector=opts["detector"])
        atomic_write_json(estimate_path, rect.to_json(), indent=1)
        rect.path = str(estimate_path)

    # Clips, streamed: only one clip of frames is held at a time.
    wanted = None if job.clip_indices is None else set(job.clip_indices)
    done_clips: list[str] = []
    buffer: list[np.ndarray] = []
    total = 0

    def flush(frames: list[np.ndarray], clip_index: int, start: int) -> None:
        clip_id = f"{job.video_uid}_clip_{clip_index:04d}"
        if (wanted is not None and clip_index not in wanted) or len(frames) < min_frames:
            return
        if not _clip_done(out_root, clip_id, key):
            _prepare_clip(out_root, clip_id, np.stack(frames), fps, rect, opts, key,
                          {"video_uid": job.video_uid, "video": path.name, "clip_index": clip_index,
                           "start_frame": start, "portrait_resized": portrait})
        done_clips.append(clip_id)

    last_needed = max(wanted) if wanted else None
    for frame in source.frames():
        clip_index = total // clip_frames
        if last_needed is not None and clip_index > last_needed:
            break
        total += 1
        if wanted is None or clip_index in wanted:
            buffer.append(frame.image)
        if total % clip_frames == 0:
            flush(buffer, clip_index, clip_index * clip_frames)
            buffer = []
    if buffer:
        flush(buffer, total // clip_frames, (total // clip_frames) * clip_frames)
    if total < min_frames:
        raise StereobenchError(f"{what} has {total} frames ({total / fps:.2f} s at {fps:g} fps); a clip needs at "
                               f"least {opts['min_clip_seconds']:g} s (--min-clip-seconds)")
    if wanted is not None:
        absent = sorted(wanted - {int(c.rsplit('_', 1)[1]) for c in done_clips})
        if absent:
            listed = ", ".join(map(str, absent[:8])) + (", ..." if len(absent) > 8 else "")
            raise StereobenchError(f"{what} ends after {total} frames: {len(absent)} clip(s) of the split ({listed}) "
                                   f"lie beyond its end (or are shorter than --min-clip-seconds); the other "
                                   f"{len(done_clips)} clip(s) are prepared")
    marker = {"video_uid": job.video_uid, "video": path.name, "frames": total, "fps": fps, "clips": done_clips,
              "options_hash": key, "rectification": rect.origin}
    marker_path = job._marker(out_root)
    try:
        if json.loads(marker_path.read_text(encoding="utf-8")) == marker:
            return done_clips
    except (OSError, ValueError):
        pass
    atomic_write_json(marker_path, marker, indent=1, sort_keys=True)
    return done_clips


def _prepare_clip(out_root: Path, clip_id: str, raw: np.ndarray, fps: float, rect: Rectification, opts: dict,
                  key: str, facts: dict) -> None:
    from benchmark.dataprep.sgbm import sgbm_disparity
    from benchmark.datasets.prepared import write_prepared_clip

    frames = resize_portrait(raw)
    left, right = split_eyes(frames)
    left, right = rectify_frames(left, right, rect)

    stride = max(1, math.ceil(fps / float(opts["shift_max_fps"])))
    picks = np.arange(0, len(left), stride)[: int(opts["match_frames"])]
    stats = robust_min_disparity(left[picks], right[picks], opts["detector"], float(opts["robust_quantile"]))
    rule = opts["shift_rule"]
    shift = shift_for(stats["robust_min"], rule, float(opts["target_min_disparity"]))
    left, right, added = apply_shift(left, right, shift, rule)

    if opts.get("disparity_dir"):
        disparity = _user_disparity(Path(opts["disparity_dir"]), clip_id, left.shape[:3])
        disparity_source = "file"
    else:
        if opts.get("max_disparity"):
            lo, hi = 0, int(opts["max_disparity"])
        elif stats["robust_min"] is not None:
            # The clip's range from its matches, with a margin; bounded by the width (an outlier
            # match must not make SGBM search half the frame).
            width = left.shape[2]
            lo = max(math.floor(min(0.0, stats["robust_min"] + added) - 4), -(width // 4))
            hi = min(math.ceil(max(stats["robust_max"] + added, 0.0) * 1.25 + 8), width // 2)
            hi = max(hi, lo + 16)
        else:
            lo, hi = 0, None
        disparity = sgbm_disparity(left, right, min_disparity=lo, max_disparity=hi,
                                   lr_check=float(opts["lr_check"]), workers=1)
        disparity_source = "sgbm"

    def rounded(v):
        return None if v is None else round(float(v), 4)

    source = {
        "dataset": "ego4d", **facts, "num_frames": len(left), "fps": fps, "options_hash": key,
        "rectification": rect.origin, "homography_file": Path(rect.path).name if rect.path else None,
        "crop": [int(c) for c in rect.crop],
        "shift_rule": rule, "shift": int(shift), "disparity_added_px": added,
        "min_hor_disp": rounded(stats["min"]), "robust_min_hor_disp": rounded(stats["robust_min"]),
        "robust_max_hor_disp": rounded(stats["robust_max"]), "max_abs_ver_disp": rounded(stats["max_abs_vertical"]),
        "shift_matches": stats["inliers"], "disparity": disparity_source,
    }
    write_prepared_clip(out_root, clip_id, left=left, right=right, disparity=disparity, fps=fps, source=source)


def _user_disparity(folder: Path, clip_id: str, shape: tuple[int, int, int]) -> np.ndarray:
    path = folder / f"{clip_id}.npy"
    try:
        array = np.load(path)
    except FileNotFoundError:
        raise StereobenchError(f"disparity file {path} is missing (--disparity-dir holds <clip_id>.npy per clip)") from None
    except (OSError, ValueError) as exc:
        raise StereobenchError(f"cannot read disparity file {path} ({type(exc).__name__}: {exc})") from None
    if array.shape != tuple(shape):
        raise StereobenchError(f"disparity file {path} has shape {array.shape}; the prepared clip needs {tuple(shape)} "
                               f"(frames, height, width after rectification and shift)")
    return np.asarray(array, dtype=np.float32)


# ------------------------------------------------------------------------------- command line

def add_arguments(parser) -> None:
    from benchmark.dataprep.jobs import add_job_arguments

    parser.add_argument("--videos", required=True, metavar="DIR",
                        help="folder of Ego4D videos named <video_uid>.mp4 (e.g. ~/ego4d_data/v2/full_scale)")
    parser.add_argument("--metadata", metavar="FILE",
                        help="Ego4D's ego4d.json: only videos with is_stereo = true are prepared (default: every "
                             "<video_uid>.mp4 in --videos)")
    parser.add_argument("--homographies", metavar="DIR",
                        help="M2SVid's published per-video JSONs (datasets/ego4d/recrification_params_loftr_ransac, "
                             "<video_uid>.mp4.json); a video without one is rectified from an estimate")
    parser.add_argument("--split", choices=("all", "test"), default="all",
                        help="test: only M2SVid's test clips (200 clips of video c324287b-...); all (default): every "
                             "clip of every selected video")
    parser.add_argument("--video-uids", nargs="+", metavar="UID", help="prepare only these videos")
    parser.add_argument("--clip-frames", type=int, default=DEFAULTS["clip_frames"], metavar="N",
                        help=f"frames per clip at the source rate (default {DEFAULTS['clip_frames']}, M2SVid's)")
    parser.add_argument("--min-clip-seconds", type=float, default=DEFAULTS["min_clip_seconds"], metavar="S",
                        help="shortest clip kept (default 3.2 s: 16 frames at 5 fps); shorter videos are refused")
    parser.add_argument("--shift-rule", choices=SHIFT_RULES, default=DEFAULTS["shift_rule"],
                        help="intended (default): disparities grow by the full shift so the smallest is ~1 px; "
                             "m2svid-compat: the official crop, which adds only half of it")
    parser.add_argument("--disparity-dir", metavar="DIR",
                        help="use your own disparity: DIR/<clip_id>.npy, float32 (T, H, W) of the prepared clip "
                             "(default: OpenCV SGBM with a left-right check)")
    parser.add_argument("--max-disparity", type=int, metavar="PX",
                        help="SGBM search range 0..PX (default: from the clip's feature matches)")
    parser.add_argument("--lr-check", type=float, default=DEFAULTS["lr_check"], metavar="PX",
                        help="left-right consistency tolerance of the SGBM disparity in pixels (default 1.0)")
    parser.add_argument("--detector", choices=("sift", "orb"), default=DEFAULTS["detector"],
                        help="feature detector for the shift and for estimated rectifications (default sift)")
    add_job_arguments(parser)


def _check_args(args) -> dict:
    if args.clip_frames < 2:
        raise StereobenchError(f"--clip-frames must be at least 2, got {args.clip_frames}")
    if not (args.min_clip_seconds > 0 and math.isfinite(args.min_clip_seconds)):
        raise StereobenchError(f"--min-clip-seconds must be a positive number, got {args.min_clip_seconds}")
    if not (args.lr_check > 0 and math.isfinite(args.lr_check)):
        raise StereobenchError(f"--lr-check must be a positive number of pixels, got {args.lr_check}")
    if args.max_disparity is not None and args.max_disparity < 1:
        raise StereobenchError(f"--max-disparity must be a positive number of pixels, got {args.max_disparity}")
    if args.homographies and not Path(args.homographies).expanduser().is_dir():
        raise StereobenchError(f"--homographies {args.homographies} is not a folder; give M2SVid's "
                               f"datasets/ego4d/recrification_params_loftr_ransac")
    if args.disparity_dir and not Path(args.disparity_dir).expanduser().is_dir():
        raise StereobenchError(f"--disparity-dir {args.disparity_dir} is not a folder")
    return {"clip_frames": int(args.clip_frames), "min_clip_seconds": float(args.min_clip_seconds),
            "shift_rule": args.shift_rule, "lr_check": float(args.lr_check), "detector": args.detector,
            "max_disparity": args.max_disparity,
            "disparity_dir": str(Path(args.disparity_dir).expanduser().resolve()) if args.disparity_dir else None}


def _homography_for(folder: Path | None, uid: str) -> str | None:
    if folder is None:
        return None
    for name in (f"{uid}.mp4.json", f"{uid}.json"):
        if (folder / name).is_file():
            return str(folder / name)
    return None


def build_jobs(args) -> tuple[list[Ego4DVideoJob], list[str]]:
    options = _check_args(args)
    uids = list(args.video_uids or [])
    test = official_test_clips()
    if args.split == "test":
        uids = [test["video_uid"]]
    videos, notes = select_videos(Path(args.videos), Path(args.metadata) if args.metadata else None, uids or None)
    folder = Path(args.homographies).expanduser() if args.homographies else None
    jobs = []
    for uid, path in videos.items():
        clips = None
        if args.split == "test":
            clips = sorted(int(c.rsplit("_", 1)[1]) for c in test["clips"])
        homography = _homography_for(folder, uid)
        if folder is not None and homography is None:
            notes.append(f"{uid}: no homography JSON in {folder}; its rectification is estimated")
        jobs.append(Ego4DVideoJob(uid, str(path.resolve()), homography, options, clips))
    return jobs, notes


def run(args) -> int:
    import sys

    from benchmark.dataprep.jobs import parse_shard, run_jobs
    from benchmark.datasets.prepared import write_split

    jobs, notes = build_jobs(args)
    shard = parse_shard(args.shard)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    out = Path(args.out).expanduser()
    report = run_jobs(jobs, out_root=out, workers=args.workers, shard=shard, desc="ego4d",
                      progress=not args.no_progress)
    write_split(out, "test", official_test_clips()["clips"])
    print(report.summary())
    if not report.ok:
        print(f"{len(report.failed)} video(s) failed (listed above): fix them and rerun the same command (finished "
              f"clips are kept)")
    clips = out / "clips"
    if clips.is_dir() and any(c.is_dir() and not c.name.startswith(".") for c in clips.iterdir()):
        print(f"prepared Ego4D clips under {out}; load them with: stereobench run --dataset ego4d --option "
              f"root={out} [--split test]")
    return 0 if report.ok else 1
