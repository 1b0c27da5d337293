"""The shared forward warp (left view + disparity -> warped right view + hole mask) and the
hole-mask morphology of the paper's protocol.

Convention (DESIGN.md section 2): disparity belongs to the LEFT view, in pixels, and a left pixel
at column x lands at ``x_R = x - d`` in the right view (larger d = nearer).

Algorithm of :func:`forward_warp` (sub-pixel splatting, z-buffer, coverage rule):

1. Each valid source pixel (finite disparity and colour) lands at the real column
   ``x_R = x - d`` of its own row and splats bilinearly along x: weight ``1 - frac(x_R)`` to
   ``floor(x_R)`` and ``frac(x_R)`` to ``floor(x_R) + 1`` (a tent footprint one pixel wide).
   Targets outside the frame are dropped.
2. Occlusion (nearer wins): a z-buffer keeps, for every target column, the largest disparity
   ``z_max`` among the contributions that reach it. A contribution is accepted only if its
   disparity is within ``occlusion_tolerance`` (default 0.5 px) of ``z_max``: the front surface
   wins and hides everything behind it (no background bleeds through a foreground object),
   while neighbouring pixels of one surface that land on the same target still blend. Why
   half a pixel: two sources of one smooth surface that reach the same target differ in
   disparity by the surface's slope times their distance; a difference above half a pixel
   means a depth step, or a surface compressed so much (more than ~1.25x) that the nearer
   samples describe the target better anyway.
3. The accepted contributions are accumulated (colour x tent weight, tent weight) and
   normalised by their weight, so sub-pixel shifts conserve intensity.
4. Coverage rule (holes): the *coverage* of a target pixel is the sum of the tent weights
   ``1 - |x_R - x|`` of its accepted (front-surface) contributions, i.e. how much of the
   target is covered by the splat footprints of the visible surface (1 for a plain shift,
   ``1 / stretch`` on a stretched surface). A target whose coverage is below ``min_coverage``
   (default 0.5) is a hole: its warped value is 0 and the mask True. 0.5 is the rasteriser's
   pixel-centre rule: one source splat covers the target's centre exactly when its tent weight
   is >= 0.5 (it lands within half a pixel). So the half-covered pixels along a depth edge,
   whose real colour is a mixture of the front surface and what lies next to it (a
   disocclusion, or the background visible beside an occluder's edge), are holes, and a
   surface stretched by more than about 1.5-2x cracks open instead of being smeared. (The
   first version, hole = coverage < 1e-3 with a 1.5 px band and exp(d - z_max) weights, filled
   those edge pixels with the front surface's colour; docs/stereo.md and docs/datasets.md give
   the numbers of both.)

Robustness: NaN/inf disparity and NaN/inf colours mark a source invalid (it is dropped, so its
target may become a hole); negative disparity moves the pixel to the right, as the geometry says
(a point behind the zero-parallax plane); huge finite disparities just leave the frame. The
output never holds NaN or inf.

Everything is vectorised over T*H*W with ``scatter_reduce_`` / ``scatter_add_`` and batched over
frames (in blocks of ~128k pixels on CPU by default, or ``frames_per_chunk`` frames, to bound
temporaries, reuse memory and stay in the CPU caches); the same code runs on CPU and GPU, in
float32 or float64 (the dtype follows ``left``).
"""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F

from benchmark.errors import StereobenchError

DEFAULT_OCCLUSION_TOLERANCE = 0.5
DEFAULT_MIN_COVERAGE = 0.5
DEFAULT_PIXELS_PER_CHUNK = 1 << 17


def check_warp_inputs(left: torch.Tensor, disparity: torch.Tensor) -> None:
    """Raise StereobenchError unless left is (T, C, H, W) and disparity (T, 1, H, W) on one device."""
    if not isinstance(left, torch.Tensor) or left.dim() != 4:
        raise StereobenchError(f"left video must be a (T, 3, H, W) tensor, got {getattr(left, 'shape', type(left))}")
    if not isinstance(disparity, torch.Tensor) or disparity.dim() != 4 or disparity.shape[1] != 1:
        raise StereobenchError(
            f"disparity must be a (T, 1, H, W) tensor, got {tuple(getattr(disparity, 'shape', ()))}")
    t, _, h, w = left.shape
    if disparity.shape[0] != t:
        raise StereobenchError(
            f"disparity has {disparity.shape[0]} frames but the left video has {t}; give one disparity map per frame")
    if tuple(disparity.shape[-2:]) != (h, w):
        raise StereobenchError(
            f"disparity is {disparity.shape[-2]}x{disparity.shape[-1]} but the left video is {h}x{w}; "
            "resize the disparity (and scale its values by the width ratio)")
    if left.device != disparity.device:
        raise StereobenchError(f"left is on {left.device} but disparity on {disparity.device}; move both to one device")


class _Workspace:
    """Buffers for one chunk shape, kept between calls (per thread).

    Large fresh allocations are slow on the reference machine (page faults dominate: a 4 MB
    ``torch.floor`` costs about 8 ms fresh and 0.05 ms into a reused buffer), so the warp writes
    every intermediate into buffers that live as long as the process and are reused by every
    chunk and every call with the same chunk shape.
    """

    def __init__(self, t: int, c: int, h: int, w: int, device: torch.device, dtype: torch.dtype):
        n = t * h * w
        padded_w = w + 4  # two scratch columns on each side catch out-of-frame splats
        self.n_targets = t * h * padded_w + padded_w
        flat = torch.arange(n, device=device)
        column = flat % w
        self.column = column.to(dtype)
        # Flat target index of column 0 of each pixel's row in the padded accumulator.
        self.row_start = (flat // w) * padded_w + 2
        del flat, column
        f = dict(dtype=dtype, device=device)
        self.x_r = torch.empty(n, **f)
        self.floor = torch.empty(n, **f)
        self.frac = torch.empty(n, **f)
        self.one_minus_frac = torch.empty(n, **f)
        self.gathered = torch.empty(n, **f)
        self.weight = torch.empty(n, **f)
        self.source = torch.empty(n, **f)
        self.base = torch.empty(n, dtype=torch.int64, device=device)
        self.target = torch.empty(n, dtype=torch.int64, device=device)
        self.flag = torch.empty(n, dtype=torch.bool, device=device)
        self.z_max = torch.empty(self.n_targets, **f)
        self.accum = torch.empty((c + 1, self.n_targets), **f)
        self.padded_w = padded_w

    _local = threading.local()

    @classmethod
    def get(cls, t, c, h, w, device, dtype) -> "_Workspace":
        cache = getattr(cls._local, "cache", None)
        if cache is None:
            cache = cls._local.cache = {}
        key = (t, c, h, w, str(device), dtype)
        ws = cache.get(key)
        if ws is None:
            if len(cache) >= 4:  # bound the memory kept for odd sizes
                cache.clear()
            ws = cache[key] = cls(t, c, h, w, device, dtype)
        return ws


def clear_workspaces() -> None:
    """Free the buffers kept between warp calls (in this thread)."""
    _Workspace._local.cache = {}


def _warp_chunk(left: torch.Tensor, disparity: torch.Tensor, occlusion_tolerance: float,
                min_coverage: float, warped_out: torch.Tensor, hole_out: torch.Tensor,
                coverage_out: torch.Tensor, pixels_finite: bool) -> None:
    t, c, h, w = left.shape
    n = t * h * w
    ws = _Workspace.get(t, c, h, w, left.device, left.dtype)
    disp = disparity.reshape(n)
    if disp.dtype != left.dtype:
        disp = disp.to(left.dtype)
    # Landing column x_R = x - d, clamped so out-of-frame sources fall into the scratch columns.
    torch.sub(ws.column, disp, out=ws.x_r)
    ws.x_r.clamp_(-2.0, w + 1.0)
    # Fast path: a finite sum means every value is finite (one pass, no allocation).
    all_valid = pixels_finite and bool(torch.isfinite(disp.sum()))
    if not all_valid:
        finite = torch.isfinite(disp)
        if not pixels_finite:
            finite &= torch.isfinite(left).all(dim=1).reshape(n)
        invalid = ~finite
        ws.x_r.masked_fill_(invalid, -2.0)  # lands in a scratch column: dropped
        disp = disp.masked_fill(invalid, 0.0)
    torch.floor(ws.x_r, out=ws.floor)
    torch.sub(ws.x_r, ws.floor, out=ws.frac)
    torch.sub(1.0, ws.frac, out=ws.one_minus_frac)
    ws.base.copy_(ws.floor)
    ws.base.add_(ws.row_start)
    # Second tent target floor + ceil(frac): floor + 1, or the source's own weight-1 target when
    # it lands exactly on a column (frac = 0), so a weight-0 splat never occludes a neighbour.
    torch.ceil(ws.frac, out=ws.gathered)
    ws.target.copy_(ws.gathered)
    ws.target.add_(ws.base)
    # Z-buffer: the largest disparity among the contributions (weight > 0) to each target column.
    ws.z_max.fill_(float("-inf"))
    ws.z_max.scatter_reduce_(0, ws.base, disp, reduce="amax", include_self=True)
    ws.z_max.scatter_reduce_(0, ws.target, disp, reduce="amax", include_self=True)
    ws.accum.zero_()
    coverage = ws.accum[c]
    for offset in (0, 1):
        target = ws.base if offset == 0 else ws.target
        tent = ws.one_minus_frac if offset == 0 else ws.frac
        torch.index_select(ws.z_max, 0, target, out=ws.gathered)
        # gap = d - z_max <= 0 (every contribution, weight-0 ones included, entered the z-buffer).
        torch.sub(disp, ws.gathered, out=ws.gathered)
        # Accepted = the front surface, gap >= -tolerance, as a float 0/1 step: sign(gap + tol) + 1
        # clamped to 1 (bool masks cost 5-10x more than float ops here).
        torch.add(ws.gathered, occlusion_tolerance, out=ws.weight).sign_().add_(1.0).clamp_(max=1.0)
        # Accepted tent weight: both the colour weight and the coverage of the target.
        ws.weight.mul_(tent)
        coverage.scatter_add_(0, target, ws.weight)
        weight_thw = ws.weight.view(t, h, w)
        source_thw = ws.source.view(t, h, w)
        for channel in range(c):
            torch.mul(left[:, channel], weight_thw, out=source_thw)
            if not pixels_finite:
                ws.source.nan_to_num_(0.0, 0.0, 0.0)
            ws.accum[channel].scatter_add_(0, target, ws.source)
    padded = ws.accum[:, : t * h * ws.padded_w].view(c + 1, t, h, ws.padded_w)[..., 2:2 + w]
    coverage_thw = padded[c]
    torch.lt(coverage_thw, min_coverage, out=hole_out[:, 0])
    filled = ws.weight.view(t, h, w)  # 1 where coverage >= min_coverage, else 0 (float step)
    torch.sub(coverage_thw, min_coverage, out=filled).sign_().add_(1.0).clamp_(max=1.0)
    torch.mul(coverage_thw, filled, out=coverage_out[:, 0])
    # filled / coverage: 1 / weight, 0 at holes (the clamp only guards empty targets).
    reciprocal = ws.gathered.view(t, h, w)
    torch.clamp(coverage_thw, min=1e-12, out=reciprocal)
    torch.div(filled, reciprocal, out=reciprocal)
    for channel in range(c):
        torch.mul(padded[channel], reciprocal, out=warped_out[:, channel])


def forward_warp_with_weights(left: torch.Tensor, disparity: torch.Tensor,
                              occlusion_tolerance: float = DEFAULT_OCCLUSION_TOLERANCE,
                              min_coverage: float = DEFAULT_MIN_COVERAGE,
                              frames_per_chunk: int | None = 0,
                              rows_per_chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`forward_warp` that also returns the coverage of every target pixel by the front
    surface (sum of its accepted tent weights, (T, 1, H, W), 0 at holes); see the module
    docstring for the algorithm."""
    check_warp_inputs(left, disparity)
    if not left.is_floating_point():
        raise StereobenchError(f"left video must be floating point in [0, 1], got {left.dtype}")
    t, c, h, w = left.shape
    warped = torch.empty_like(left, memory_format=torch.contiguous_format)
    hole = torch.empty((t, 1, h, w), dtype=torch.bool, device=left.device)
    coverage = torch.empty((t, 1, h, w), dtype=left.dtype, device=left.device)
    if t == 0:
        return warped, hole, coverage
    left = left.contiguous()
    disparity = disparity.contiguous()
    pixels_finite = bool(torch.isfinite(left.sum()))
    # Blocks of whole frames, or of rows of one frame: rows are independent (splats move along x),
    # and blocks of ~128k pixels keep the ~15 working buffers in the CPU caches (memory traffic,
    # not arithmetic, bounds this warp). Every full block has the same shape, so the workspace
    # buffers are reused.
    if frames_per_chunk == 0 and rows_per_chunk is None:  # automatic blocks
        # GPUs want few large launches: up to 8M pixels per block there.
        pixels = DEFAULT_PIXELS_PER_CHUNK if left.device.type == "cpu" else 1 << 23
        if pixels >= h * w:
            frames_per_chunk = pixels // max(h * w, 1)
        else:
            rows_per_chunk = max(1, pixels // max(w, 1))
    if rows_per_chunk is None:
        rows_per_chunk = h
    frames_step = t if frames_per_chunk is None else max(1, min(int(frames_per_chunk), t))
    rows_step = max(1, min(int(rows_per_chunk), h))
    if rows_step < h:
        frames_step = 1
    for start in range(0, t, frames_step):
        stop = min(t, start + frames_step)
        frames = [(start, stop)] if stop - start == frames_step else [(f, f + 1) for f in range(start, stop)]
        for f0, f1 in frames:  # a shorter last frame chunk goes one frame at a time (reused buffers)
            for r0 in range(0, h, rows_step):
                r1 = min(h, r0 + rows_step)
                _warp_chunk(left[f0:f1, :, r0:r1], disparity[f0:f1, :, r0:r1], occlusion_tolerance, min_coverage,
                            warped[f0:f1, :, r0:r1], hole[f0:f1, :, r0:r1], coverage[f0:f1, :, r0:r1],
                            pixels_finite)
    return warped, hole, coverage


def forward_warp(left: torch.Tensor, disparity: torch.Tensor,
                 occlusion_tolerance: float = DEFAULT_OCCLUSION_TOLERANCE,
                 min_coverage: float = DEFAULT_MIN_COVERAGE,
                 frames_per_chunk: int | None = 0,
                 rows_per_chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward-warp the left video to the right camera.

    Args:
        left: float (T, C, H, W) in [0, 1] (C = 3 for video), on any device.
        disparity: (T, 1, H, W) pixels of the LEFT view, x_R = x_L - d, NaN = invalid.
        occlusion_tolerance: disparity margin (px) within which a contribution counts as the
            front surface.
        min_coverage: coverage of a target pixel by the front surface's splats (sum of the
            accepted tent weights, 1 for a plain shift) below which it is a hole; 0.5 = the
            pixel-centre rule (see the module docstring), a tiny value such as 1e-3 = fill
            every pixel that any front-surface splat touches.
        frames_per_chunk: frames processed together (bounds temporary memory); None = all;
            0 (default) = automatic: blocks of about ``DEFAULT_PIXELS_PER_CHUNK`` (128k) pixels
            on CPU (rows of one frame, or whole frames), 8M pixels on GPU.
        rows_per_chunk: rows per block (overrides the default block height; 1 frame per block
            when < H). The result does not depend on the blocking.

    Returns:
        (warped, hole_mask): warped float (T, C, H, W) with 0 at holes, and hole_mask bool
        (T, 1, H, W), True where the front surface covers less than ``min_coverage`` of the
        pixel (nothing landed, or only the rim of a splat). Never NaN.
    """
    warped, hole, _ = forward_warp_with_weights(left, disparity, occlusion_tolerance, min_coverage,
                                                frames_per_chunk, rows_per_chunk)
    return warped, hole


def _check_mask(mask: torch.Tensor) -> None:
    if not isinstance(mask, torch.Tensor) or mask.dim() != 4 or mask.shape[1] != 1:
        raise StereobenchError(f"mask must be a (T, 1, H, W) tensor, got {tuple(getattr(mask, 'shape', ()))}")


def _max_filter(x: torch.Tensor, kernel_size: int, pad_value: float) -> torch.Tensor:
    """Separable k x k max filter of float (T, 1, H, W) with OpenCV's anchor (k // 2) and a
    constant border ``pad_value``."""
    before, after = kernel_size // 2, kernel_size - 1 - kernel_size // 2
    x = F.pad(x, (before, after, 0, 0), value=pad_value)
    x = F.max_pool2d(x, kernel_size=(1, kernel_size), stride=1)
    x = F.pad(x, (0, 0, before, after), value=pad_value)
    return F.max_pool2d(x, kernel_size=(kernel_size, 1), stride=1)


def dilate_mask(mask: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Dilate a bool (T, 1, H, W) mask with a ``kernel_size`` square (pixels outside the frame
    count as False, like OpenCV's default border); ``kernel_size <= 1`` returns the mask."""
    _check_mask(mask)
    if kernel_size <= 1:
        return mask.bool()
    return _max_filter(mask.to(torch.float32), int(kernel_size), 0.0) > 0.5


def erode_mask(mask: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Erode a bool (T, 1, H, W) mask with a ``kernel_size`` square (the frame border does not
    erode, like OpenCV's default border)."""
    _check_mask(mask)
    if kernel_size <= 1:
        return mask.bool()
    return _max_filter((~mask.bool()).to(torch.float32), int(kernel_size), 0.0) < 0.5


def close_hole_mask(mask: torch.Tensor, kernel_size: int = 11) -> torch.Tensor:
    """Morphological closing (dilate, then erode) of a bool (T, 1, H, W) hole mask with a
    ``kernel_size`` x ``kernel_size`` rectangle, as ``cv2.morphologyEx(MORPH_CLOSE)`` does:
    fills cracks and small gaps between holes narrower than the kernel; 0 or 1 = no change."""
    _check_mask(mask)
    if kernel_size <= 1:
        return mask.bool()
    return erode_mask(dilate_mask(mask, kernel_size), kernel_size)
