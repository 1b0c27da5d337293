"""Disparity of a rectified stereo pair with OpenCV's semi-global block matching, validated by a
left-right consistency check.

:func:`sgbm_disparity` returns the disparity of the LEFT view in pixels under the project's
convention (``x_R = x_L - d``, larger = nearer), float32, NaN where it is not trusted:

1. OpenCV ``StereoSGBM`` (``MODE_SGBM_3WAY``, 1/16-pixel output) matches left against right;
2. the same matcher on the mirrored pair (``fliplr(right)`` against ``fliplr(left)``) gives the
   disparity of the RIGHT view (mirroring turns ``x_L - x_R`` into the same positive number);
3. a left pixel is kept only if the matcher found a disparity there, its match ``x - d`` falls
   inside the right image, and the right view's disparity at the match (linearly interpolated)
   agrees within ``lr_check`` pixels. Occluded pixels (seen by one eye only) and mismatches fail
   this test; so do pixels whose match would leave the right image. Both views are padded on
   the left before matching, so OpenCV's empty band of ``numDisparities`` columns on the left
   edge does not cost valid pixels.

Frames are matched independently (the matcher has no temporal term), two matcher calls per
frame run on a thread pool (OpenCV releases the GIL), and the consistency check runs once,
vectorised over every frame and pixel.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from benchmark.errors import StereobenchError

__all__ = ["default_max_disparity", "sgbm_disparity"]


def default_max_disparity(width: int) -> int:
    """The search range used when none is given: a quarter of the image width, at least 16."""
    return max(16, int(width) // 4)


def _as_gray_uint8(images: np.ndarray, what: str) -> np.ndarray:
    """(T, H, W) uint8 luminance of (H, W), (H, W, 3) or (T, H, W, 3) uint8 / float-in-[0, 1] input."""
    import cv2

    arr = np.asarray(images)
    if arr.ndim == 2:
        arr = arr[None, ..., None]
    elif arr.ndim == 3 and arr.shape[-1] in (1, 3):
        arr = arr[None]
    elif arr.ndim == 4 and arr.shape[-1] in (1, 3):
        pass
    else:
        raise StereobenchError(f"sgbm_disparity: {what} must be (H, W), (H, W, 3) or (T, H, W, 3), got shape "
                               f"{tuple(arr.shape)}")
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.floating):
            raise StereobenchError(f"sgbm_disparity: {what} must be uint8 or float in [0, 1], got {arr.dtype}")
        arr = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    if arr.shape[-1] == 1:
        return np.ascontiguousarray(arr[..., 0])
    # One vectorised colour conversion over every frame (RGB order, as the suite stores frames).
    t, h, w, _ = arr.shape
    gray = cv2.cvtColor(np.ascontiguousarray(arr.reshape(t * h, w, 3)), cv2.COLOR_RGB2GRAY)
    return gray.reshape(t, h, w)


def _matcher(min_disparity: int, num_disparities: int, block_size: int):
    import cv2

    return cv2.StereoSGBM_create(
        minDisparity=int(min_disparity),
        numDisparities=int(num_disparities),
        blockSize=int(block_size),
        P1=8 * block_size * block_size,
        P2=32 * block_size * block_size,
        disp12MaxDiff=-1,          # OpenCV's own (integer) check is off: ours below is sub-pixel
        preFilterCap=63,
        uniquenessRatio=10,
        speckleWindowSize=100,
        speckleRange=2,
        mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY,
    )


def sgbm_disparity(left, right, *, max_disparity: int | None = None, lr_check: float | None = 1.0,
                   min_disparity: int = 0, block_size: int = 5, workers: int | None = None) -> np.ndarray:
    """Disparity of the left view of a rectified pair, float32 pixels, NaN = invalid.

    Args:
        left, right: the rectified views, uint8 (or float in [0, 1]) of shape (H, W), (H, W, 3) or
            (T, H, W, 3), RGB; both the same shape.
        max_disparity: the largest disparity searched, in pixels (default
            :func:`default_max_disparity`: a quarter of the width). The search range is rounded up
            to OpenCV's multiple of 16.
        lr_check: keep a pixel only if the right view's disparity at its match agrees within this
            many pixels; None switches the consistency check off (only the matcher's own
            "no match" pixels are then NaN).
        min_disparity: the smallest disparity searched (negative for pairs that are not shifted
            so that every disparity is positive).
        block_size: odd matching block size.
        workers: threads for the matcher calls (default: the number of CPUs, at most 8).

    Returns:
        float32 (H, W) for a single pair, (T, H, W) for videos.
    """
    import cv2

    shape = np.shape(left)
    single = len(shape) == 2 or (len(shape) == 3 and shape[-1] in (1, 3))
    lg = _as_gray_uint8(left, "left")
    rg = _as_gray_uint8(right, "right")
    if lg.shape != rg.shape:
        raise StereobenchError(f"sgbm_disparity: left {tuple(lg.shape)} and right {tuple(rg.shape)} differ in shape; "
                               "give a rectified pair of equal size")
    t, _, w = lg.shape
    if block_size < 1 or block_size % 2 == 0:
        raise StereobenchError(f"sgbm_disparity: block_size must be a positive odd number, got {block_size}")
    if max_disparity is None:
        max_disparity = default_max_disparity(w)
    if max_disparity <= min_disparity:
        raise StereobenchError(f"sgbm_disparity: max_disparity ({max_disparity}) must exceed min_disparity "
                               f"({min_disparity})")
    num = int(math.ceil((max_disparity - min_disparity + 1) / 16.0) * 16)
    if lr_check is not None and not (lr_check > 0 and math.isfinite(lr_check)):
        raise StereobenchError(f"sgbm_disparity: lr_check must be a positive number of pixels or None, got {lr_check}")

    pad = num + max(min_disparity, 0)

    def match(args):
        a, b = args
        # OpenCV leaves the first minDisparity + numDisparities columns empty; padding both views
        # on the left lets it match every pixel whose partner lies inside the image (the check
        # below drops the rest). A matcher per call: StereoSGBM objects are not shared across threads.
        a = cv2.copyMakeBorder(a, 0, 0, pad, 0, cv2.BORDER_REPLICATE)
        b = cv2.copyMakeBorder(b, 0, 0, pad, 0, cv2.BORDER_REPLICATE)
        return _matcher(min_disparity, num, block_size).compute(a, b)[:, pad:]

    jobs = [(lg[i], rg[i]) for i in range(t)]
    if lr_check is not None:
        # Mirrored pair: the left image of the mirrored pair is the mirrored right view.
        jobs += [(np.ascontiguousarray(rg[i, :, ::-1]), np.ascontiguousarray(lg[i, :, ::-1])) for i in range(t)]
    workers = workers or min(8, os.cpu_count() or 1)
    if workers > 1 and len(jobs) > 1:
        with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            raw = list(pool.map(match, jobs))
    else:
        raw = [match(job) for job in jobs]
    raw = np.stack(raw).astype(np.int16, copy=False)

    invalid_raw = min_disparity * 16  # OpenCV writes (minDisparity - 1) * 16 where it found nothing
    disp_all = raw.astype(np.float32) / 16.0
    disp_all[raw < invalid_raw] = np.nan
    disp_left = disp_all[:t]
    if lr_check is None:
        out = disp_left
    else:
        disp_right = disp_all[t:, :, ::-1]
        out = _lr_consistent(disp_left, disp_right, float(lr_check))
    return out[0] if single else out


def _lr_consistent(disp_left: np.ndarray, disp_right: np.ndarray, tol: float) -> np.ndarray:
    """``disp_left`` with NaN where the right view's disparity at ``x - d`` (linear interpolation
    between the two neighbouring right pixels; NaN if either is NaN) differs by more than ``tol``."""
    w = disp_left.shape[-1]
    xs = np.arange(w, dtype=np.float32)[None, None, :]
    xr = xs - disp_left                                         # NaN stays NaN
    inside = np.isfinite(xr) & (xr >= 0) & (xr <= w - 1)
    xr_safe = np.where(inside, xr, 0.0)
    x0 = np.floor(xr_safe).astype(np.int64)
    x1 = np.minimum(x0 + 1, w - 1)
    frac = (xr_safe - x0).astype(np.float32)
    d0 = np.take_along_axis(disp_right, x0, axis=2)
    d1 = np.take_along_axis(disp_right, x1, axis=2)
    # Linear between the two neighbours (NaN if either is NaN); a match on a pixel centre reads it alone.
    d_at_match = np.where(frac == 0, d0, d0 * (1.0 - frac) + d1 * frac)
    with np.errstate(invalid="ignore"):
        ok = inside & (np.abs(d_at_match - disp_left) <= tol)
    return np.where(ok, disp_left, np.nan).astype(np.float32)
