"""Pixel metrics on videos: PSNR, MS-SSIM (3-D and per frame, with region masks), temporal
stability and stereo consistency, plus input validation and the paper protocol's whitening.

Conventions (DESIGN.md section 2): videos are float32 (T, 3, H, W) in [0, 1] RGB; the hole mask
is bool (T, 1, H, W), True where the warp left a hole; disparity is float32 (T, 1, H, W) in
pixels of the LEFT view with x_R = x_L - d, NaN (or inf) invalid.

Region weights are float tensors (T, 1, H, W) in [0, 1] (1 = pixel in the region). ``None``
means the whole frame. Every function here is pure torch, vectorised over frames, and runs
on the device of its inputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from benchmark.errors import StereobenchError

PSNR_CAP_DB = 100.0
"""PSNR of identical videos (MSE = 0) and the upper bound of every PSNR value: 100 dB is an MSE
of 1e-10, far below float32 rounding of [0, 1] video data, so no real difference is capped."""

MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""Per-scale exponents of MS-SSIM (Wang et al. 2003), as in ``pytorch_msssim``."""
MSSSIM_WIN_SIZE = 11
MSSSIM_WIN_SIGMA = 1.5
MSSSIM_MIN_SIDE = (MSSSIM_WIN_SIZE - 1) * 2 ** 4 + 1
"""MS-SSIM with 5 scales and an 11-tap window needs min(H, W) > 160 (pytorch_msssim's rule)."""
MSSSIM_MIN_FRAMES = 9
"""The 5-D MS-SSIM pools T four times; pytorch_msssim fails below 9 frames (a single frame is
treated as a 2-D image, as pytorch_msssim does)."""

RANGE_TOLERANCE = 1e-4
"""Videos may exceed [0, 1] by this much (float rounding of decoders) before being rejected."""


# --------------------------------------------------------------------------------------------
# validation and regions


def validate_inputs(pred: torch.Tensor, gt: torch.Tensor, hole_mask: torch.Tensor | None = None,
                    left: torch.Tensor | None = None, disparity: torch.Tensor | None = None) -> None:
    """Raise :class:`StereobenchError` (one line, naming the fix) for inputs that break the contract."""
    for name, video in (("prediction", pred), ("ground truth", gt)) + ((("left view", left),) if left is not None else ()):
        if not isinstance(video, torch.Tensor) or video.ndim != 4 or video.shape[1] != 3:
            shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
            raise StereobenchError(f"{name} video must be a (T, 3, H, W) tensor, got {shape}; pass RGB frames")
        if not video.is_floating_point():
            raise StereobenchError(f"{name} video must be float in [0, 1], got {video.dtype}; divide uint8 frames by 255")
    if pred.shape != gt.shape:
        what = "frame count" if pred.shape[0] != gt.shape[0] else "frame size"
        raise StereobenchError(
            f"prediction and ground truth differ in {what}: {tuple(pred.shape)} vs {tuple(gt.shape)} (T, C, H, W); "
            f"resize or trim the prediction to the ground truth")
    for name, video in (("prediction", pred), ("ground truth", gt)):
        lo, hi = float(video.min()), float(video.max())
        if math.isnan(lo) or math.isnan(hi) or lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            raise StereobenchError(
                f"{name} video values must lie in [0, 1], found [{lo:.4g}, {hi:.4g}]; scale 8-bit frames by 1/255 "
                f"and remove NaNs")
    T, _, H, W = gt.shape
    if hole_mask is not None:
        if hole_mask.dtype != torch.bool:
            raise StereobenchError(f"hole mask must be a bool tensor (True = hole), got {hole_mask.dtype}")
        if tuple(hole_mask.shape) != (T, 1, H, W):
            raise StereobenchError(
                f"hole mask has shape {tuple(hole_mask.shape)} but the videos need ({T}, 1, {H}, {W}); "
                f"give a mask with the same frame count and size as the ground truth")
    if left is not None and left.shape != gt.shape:
        raise StereobenchError(f"left view has shape {tuple(left.shape)}, expected {tuple(gt.shape)} like the ground truth")
    if disparity is not None and tuple(disparity.shape) != (T, 1, H, W):
        raise StereobenchError(f"disparity has shape {tuple(disparity.shape)}, expected ({T}, 1, {H}, {W})")


def region_mask(hole_mask: torch.Tensor | None, region: str) -> torch.Tensor | None:
    """Bool (T, 1, H, W) mask of ``region`` ("full" -> None, "inside" = holes, "outside" = not holes)."""
    if region == "full":
        return None
    if hole_mask is None:
        raise StereobenchError(f"region {region!r} needs a hole mask; pass --mask (white = hole)")
    if region == "inside":
        return hole_mask
    if region == "outside":
        return ~hole_mask
    from benchmark.errors import did_you_mean

    raise did_you_mean(region, ("full", "inside", "outside"), "region")


def whiten_outside(video: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The paper protocol: ``video`` with every pixel outside ``mask`` set to 1.0 (white)."""
    if mask is None:
        return video
    return torch.where(mask, video, torch.ones((), dtype=video.dtype, device=video.device))


# --------------------------------------------------------------------------------------------
# PSNR


def psnr_from_mse(mse: torch.Tensor | float) -> float:
    """PSNR in dB for data range 1, capped at :data:`PSNR_CAP_DB` (NaN stays NaN)."""
    mse = float(mse)
    if math.isnan(mse):
        return math.nan
    if mse <= 10 ** (-PSNR_CAP_DB / 10):
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, -10.0 * math.log10(mse))


def psnr(pred: torch.Tensor, gt: torch.Tensor, weight: torch.Tensor | None = None) -> float:
    """PSNR (dB, data range 1) from the MSE over the whole video (C x T x H x W).

    With ``weight`` (T, 1, H, W) the MSE is the weighted mean of the squared error over the
    region's pixels and all channels (the strict protocol); an empty region gives NaN.
    """
    squared_error = (pred - gt).square_()
    if weight is None:
        return psnr_from_mse(squared_error.mean(dtype=torch.float64))
    total = weight.sum(dtype=torch.float64) * pred.shape[1]
    if total == 0:
        return math.nan
    return psnr_from_mse((squared_error * weight).sum(dtype=torch.float64) / total)


# --------------------------------------------------------------------------------------------
# MS-SSIM with optional region weights (own implementation; equals pytorch_msssim when the
# weight is None or all ones, which the tests check)


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float32, device=device) - size // 2
    window = torch.exp(-(coords ** 2) / (2 * sigma ** 2))
    return (window / window.sum()).to(dtype)


def _blur_valid(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur without padding along every spatial dim of ``x`` (N, C, *S) that
    is at least as long as the window (shorter dims are left alone, as pytorch_msssim does).

    Written as a sum of shifted slices: on CPU this is 4-10x faster than a single-channel
    depthwise conv2d/conv3d with a 1-D kernel (measured, docs/performance.md)."""
    taps = window.tolist()
    size = len(taps)
    out = x
    for dim in range(2, x.ndim):
        length = out.shape[dim] - size + 1
        if length <= 0:
            continue
        blurred = out.narrow(dim, 0, length) * taps[0]
        for k in range(1, size):
            blurred.add_(out.narrow(dim, k, length), alpha=taps[k])
        out = blurred
    return out


def _ssim_cs_maps(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor, data_range: float):
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    # One batched blur of the five statistics.
    stats = _blur_valid(torch.cat([x, y, x * x, y * y, x * y], dim=1), window)
    mu_x, mu_y, xx, yy, xy = stats.chunk(5, dim=1)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    cs_map = (2 * (xy - mu_xy) + c2) / ((xx - mu_xx) + (yy - mu_yy) + c2)
    ssim_map = (2 * mu_xy + c1) / (mu_xx + mu_yy + c1) * cs_map
    return ssim_map, cs_map


def _pool_images(x: torch.Tensor) -> torch.Tensor:
    padding = [s % 2 for s in x.shape[2:]]
    pool = F.avg_pool2d if x.ndim == 4 else F.avg_pool3d
    return pool(x, kernel_size=2, padding=padding)


def _pool_weights(w: torch.Tensor) -> torch.Tensor:
    # Same grid as the images, but padding does not dilute the weights: an all-ones weight
    # stays all ones, so the strict protocol equals the standard one on a full mask.
    padding = [s % 2 for s in w.shape[2:]]
    pool = F.avg_pool2d if w.ndim == 4 else F.avg_pool3d
    return pool(w, kernel_size=2, padding=padding, count_include_pad=False)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, weights: list[torch.Tensor | None] | None = None,
            data_range: float = 1.0) -> torch.Tensor:
    """MS-SSIM of batches ``x``, ``y`` (N, C, H, W) or (N, C, T, H, W), one value per item and weight.

    ``weights`` is a list of region weights (N, 1, *S) in [0, 1] or ``None`` (whole frame);
    default ``[None]``. Returns (len(weights), N), each the channel mean of
    prod_s cs_s^w_s * ssim_S^w_S. With a weight, the SSIM/CS maps of each scale are averaged
    with the weight pooled to that scale (2x2 average pooling) and then blurred with the same
    Gaussian window as the images, i.e. each window counts by how much of it lies in the region.
    An empty region gives NaN. Matches ``pytorch_msssim.ms_ssim`` for ``None`` or all-ones weights.
    """
    if weights is None:
        weights = [None]
    if min(x.shape[-2:]) < MSSSIM_MIN_SIDE:
        raise StereobenchError(
            f"MS-SSIM needs frames larger than {MSSSIM_MIN_SIDE - 1} px on the short side, got "
            f"{tuple(x.shape[-2:])}; score at a higher resolution or skip msssim")
    window = _gaussian_window(MSSSIM_WIN_SIZE, MSSSIM_WIN_SIGMA, x.dtype, x.device)
    exponents = torch.tensor(MSSSIM_WEIGHTS, dtype=torch.float64, device=x.device)
    levels = len(MSSSIM_WEIGHTS)
    spatial = tuple(range(2, x.ndim))
    per_level: list[torch.Tensor] = []  # each (len(weights), N, C)
    ws = [None if w is None else w.to(x.dtype) for w in weights]
    for level in range(levels):
        ssim_map, cs_map = _ssim_cs_maps(x, y, window, data_range)
        chosen = ssim_map if level == levels - 1 else cs_map
        pooled = []
        for w in ws:
            if w is None:
                pooled.append(chosen.mean(dim=spatial, dtype=torch.float64))
            else:
                w_blur = _blur_valid(w, window)
                num = (chosen * w_blur).sum(dim=spatial, dtype=torch.float64)
                den = w_blur.sum(dim=spatial, dtype=torch.float64)
                pooled.append(num / den)  # 0/0 -> NaN for an empty region
        per_level.append(torch.relu(torch.stack(pooled)))
        if level < levels - 1:
            x, y = _pool_images(x), _pool_images(y)
            ws = [None if w is None else _pool_weights(w) for w in ws]
    stacked = torch.stack(per_level)  # (levels, K, N, C)
    value = torch.prod(stacked ** exponents.view(-1, 1, 1, 1), dim=0)
    return value.mean(dim=-1)


def msssim_video(pred: torch.Tensor, gt: torch.Tensor, weights: list[torch.Tensor | None] | None = None) -> list[float]:
    """Spatio-temporal MS-SSIM on the 5-D (1, C, T, H, W) video, as the M2SVid code computes it
    with ``pytorch_msssim.ms_ssim(ref, gen, data_range=1.0)`` (the Gaussian window also runs
    along T where T >= 11, and T halves at each scale). One value per weight."""
    if 1 < gt.shape[0] < MSSSIM_MIN_FRAMES:
        raise StereobenchError(
            f"3-D MS-SSIM needs at least {MSSSIM_MIN_FRAMES} frames (T halves at each of 4 scales), got "
            f"{gt.shape[0]}; use msssim_2d for short clips")
    x = gt.permute(1, 0, 2, 3).unsqueeze(0)
    y = pred.permute(1, 0, 2, 3).unsqueeze(0)
    if x.shape[2] == 1:  # pytorch_msssim squeezes a singleton T to a 2-D image
        x, y = x[:, :, 0], y[:, :, 0]
        ws = [None if w is None else w.permute(1, 0, 2, 3).unsqueeze(0)[:, :, 0].float() for w in (weights or [None])]
    else:
        ws = [None if w is None else w.permute(1, 0, 2, 3).unsqueeze(0).float() for w in (weights or [None])]
    return [float(v) for v in ms_ssim(x, y, ws)[:, 0]]


def msssim_frames(pred: torch.Tensor, gt: torch.Tensor, weights: list[torch.Tensor | None] | None = None,
                  batch_size: int = 4) -> list[float]:
    """Mean over frames of 2-D MS-SSIM (one value per weight). With a weight, frames whose
    region is empty are left out of the mean (NaN when every frame's region is empty)."""
    weights = weights or [None]
    chunks = []
    for start in range(0, gt.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        chunks.append(ms_ssim(gt[sl], pred[sl], [None if w is None else w[sl].float() for w in weights]))
    per_frame = torch.cat(chunks, dim=1)  # (K, T)
    return [float(v) if not math.isnan(v) else math.nan for v in per_frame.nanmean(dim=1).tolist()]


# --------------------------------------------------------------------------------------------
# stereo-specific extras


def temporal_instability(pred: torch.Tensor, gt: torch.Tensor, weight: torch.Tensor | None = None) -> float:
    """Mean |(pred_{t+1} - pred_t) - (gt_{t+1} - gt_t)| over consecutive frames, pixels, channels.

    0 when the prediction changes over time exactly as the ground truth does (flicker and
    frozen content both raise it). With ``weight`` (T, 1, H, W), a frame pair counts a pixel with
    the larger of its two weights (a pixel in the region in either frame). NaN for T < 2 or an
    empty region.
    """
    if pred.shape[0] < 2:
        return math.nan
    change = ((pred[1:] - pred[:-1]) - (gt[1:] - gt[:-1])).abs_()
    if weight is None:
        return float(change.mean(dtype=torch.float64))
    pair_weight = torch.maximum(weight[1:], weight[:-1])
    total = pair_weight.sum(dtype=torch.float64) * pred.shape[1]
    if total == 0:
        return math.nan
    return float((change * pair_weight).sum(dtype=torch.float64) / total)


def warp_right_to_left(right: torch.Tensor, disparity: torch.Tensor) -> torch.Tensor:
    """Sample the right view at x_L - d for every left pixel (bilinear, (T, C, H, W)).

    Left pixels whose source lies outside the right frame are set to NaN.
    """
    T, _, H, W = right.shape
    xs = torch.arange(W, dtype=right.dtype, device=right.device).view(1, 1, W)
    ys = torch.arange(H, dtype=right.dtype, device=right.device).view(1, H, 1)
    d = disparity[:, 0]
    x_src = xs - d
    # align_corners=True: -1 and 1 are the centres of the first and last pixels.
    grid = torch.stack([2 * x_src / max(W - 1, 1) - 1, (2 * ys / max(H - 1, 1) - 1).expand(T, H, W)], dim=-1)
    grid = torch.nan_to_num(grid, nan=-2.0, posinf=-2.0, neginf=-2.0)
    warped = F.grid_sample(right, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    outside = ~((x_src >= 0) & (x_src <= W - 1))
    return warped.masked_fill(outside.unsqueeze(1), float("nan"))


def left_visible_in_right(disparity: torch.Tensor, tolerance: float = 1.0) -> torch.Tensor:
    """Bool (T, 1, H, W): left pixels with valid disparity that are not occluded in the right view.

    A left pixel lands at column round(x - d) of the right view; it is visible if no other pixel
    of the same row landing there is nearer by more than ``tolerance`` px of disparity (z-test
    by a per-row scatter of the maximum disparity).
    """
    T, _, H, W = disparity.shape
    d = disparity[:, 0]
    valid = torch.isfinite(d)
    xs = torch.arange(W, device=d.device, dtype=d.dtype).view(1, 1, W)
    target = torch.round(xs - torch.where(valid, d, torch.zeros_like(d)))
    inside = valid & (target >= 0) & (target <= W - 1)
    index = target.clamp(0, W - 1).long()
    nearest = torch.full_like(d, -math.inf)
    nearest.scatter_reduce_(2, index, torch.where(inside, d, torch.full_like(d, -math.inf)), reduce="amax")
    visible = inside & (d >= torch.gather(nearest, 2, index) - tolerance)
    return visible.unsqueeze(1)


def stereo_consistency_error(pred_right: torch.Tensor, left: torch.Tensor, disparity: torch.Tensor,
                             right_region: torch.Tensor | None = None) -> float:
    """Mean absolute error between the left view and the predicted right view warped back to
    the left with the ground-truth disparity, over left pixels with valid disparity that are
    visible in the right view (z-test) and whose right-view source lies in ``right_region``
    (bool (T, 1, H, W) in right-view coordinates, e.g. outside the holes; None = anywhere).
    Values in [0, 1]; NaN when no pixel qualifies."""
    warped = warp_right_to_left(pred_right, disparity)
    keep = left_visible_in_right(disparity)
    if right_region is not None:
        region_at_source = warp_right_to_left(right_region.to(pred_right.dtype), disparity)
        keep = keep & (torch.nan_to_num(region_at_source, nan=0.0) >= 0.5)
    keep = keep & torch.isfinite(warped).all(dim=1, keepdim=True)
    count = keep.sum(dtype=torch.float64) * pred_right.shape[1]
    if count == 0:
        return math.nan
    error = torch.nan_to_num(warped - left, nan=0.0).abs_() * keep
    return float(error.sum(dtype=torch.float64) / count)
