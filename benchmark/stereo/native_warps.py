"""The three methods' own ("native") forward warps, vectorised in PyTorch, plus slow literal
NumPy re-implementations of the official loops (``reference_*_numpy``) to test and benchmark
against.

Every warp takes ``(left, disparity)`` in the PROJECT convention: left float (T, C, H, W) in
[0, 1], disparity (T, 1, H, W) in left-view pixels with x_R = x_L - d, and returns
``(warped, hole_mask)`` (hole pixels of ``warped`` are 0, ``hole_mask`` bool (T, 1, H, W)).
Each method's own depth -> disparity rule is NOT inside its warp: apply it first with
:mod:`benchmark.stereo.disparity` (its module docstring lists the three rules). NaN/inf
disparities are dropped sources in all three (the official code never sees them).

- :func:`warp_m2svid` reproduces ``m2svid/warping/warping.py:scatter_image`` (direction -1,
  scale 1): each source splits its weight linearly between columns ``x - trunc(d)`` (weight
  ``1 - (d - trunc(d))``) and ``x - trunc(d + 1)`` (weight ``d - trunc(d)``), truncation toward
  zero as NumPy's ``astype(int32)``. The official code accumulates with NumPy fancy-index ``+=``,
  which does NOT add duplicate targets: for each target the LAST source in row-major scan order
  wins each of the two passes. Here that is the source with the largest x per target and pass
  (``scatter_reduce(amax)`` of the source column), which is what "scan order decides, no
  z-buffer" means. Output = value / weight where the weight is non-zero; hole = zero weight.
  The official code runs on uint8 frames and casts the result back to uint8 (truncation); this
  version stays in float.
- :func:`warp_stereocrafter` reproduces StereoCrafter's ``ForwardWarpStereo`` with the
  ``Forward_Warp`` CUDA package (bilinear): weights ``w = 1.414 ** (d - min d)`` (min over the
  whole clip here; the official code takes it over its batch of frames), output
  ``splat(image * w) / max(splat(w), 1e-6)``, mask ``1 - clamp(splat(1), 0, 1)`` (a soft mask;
  a pixel is a hole where it is > 0.5). Like the CUDA kernel, a source splats only if all four
  bilinear neighbours are inside the frame, which drops the bottom row entirely (its lower
  neighbours are outside) and sources that land on the last column exactly; both are official
  quirks, kept.
- :func:`warp_svg` reproduces SVG's ``create_frame_matrix.py``: ``forward_projection``
  (rounded landing column ``round(x - d)``, half to even as ``np.round``; z-buffer where the
  nearest point wins) and ``remove_cracks_isolated_points`` (4 depth planes split at the
  median; per plane: drop isolated points (3x3 mean of the mask x mask > 0.5), fill cracks with
  a normalised 3x3 Gaussian blur where its weight > 0.2; composite far to near). The planes are
  split in depth ``Z = 1 / d`` (SVG's own rule always gives d > 0); a clip with d <= 0 is split in
  ``1 / (d - min d + 1)`` instead, and sources with d <= 0 still warp.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.stereo.warp import check_warp_inputs


# --------------------------------------------------------------------------------------------
# M2SVid
# --------------------------------------------------------------------------------------------

def warp_m2svid(left: torch.Tensor, disparity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """M2SVid's official scatter (see the module docstring), vectorised over T*H*W."""
    check_warp_inputs(left, disparity)
    t, c, h, w = left.shape
    n = t * h * w
    device, dtype = left.device, left.dtype
    disp = disparity.reshape(n).to(torch.float32)  # the official code casts disparity to float32
    valid = torch.isfinite(disp)
    disp = torch.where(valid, disp, torch.zeros_like(disp))
    trunc = torch.trunc(disp)
    frac = (disp - trunc).to(dtype)  # weight_for_plus1 (negative for negative disparities)
    trunc_plus1 = torch.trunc(disp + 1.0)
    flat = torch.arange(n, device=device)
    column = flat % w
    row_start = flat - column
    pixels = left.permute(0, 2, 3, 1).reshape(n, c)
    accum = torch.zeros((n + 1, c + 1), dtype=dtype, device=device)
    for shift, weight in ((trunc, 1.0 - frac), (trunc_plus1, frac)):
        col = column - shift.to(torch.int64)
        inside = valid & (col >= 0) & (col < w)
        target = torch.where(inside, row_start + col, n)
        # Last writer in scan order = the source with the largest flat index per target.
        winner = torch.full((n + 1,), -1, dtype=torch.int64, device=device)
        winner.scatter_reduce_(0, target, flat, reduce="amax", include_self=True)
        src = winner[:n]
        has = src >= 0
        src_safe = src.clamp(min=0)
        wsel = torch.where(has, weight[src_safe], torch.zeros((), dtype=dtype, device=device))
        accum[:n, :c] += pixels[src_safe] * wsel.unsqueeze(1)
        accum[:n, c] += wsel
    total = accum[:n, c]
    filled = total != 0
    warped = torch.where(filled.unsqueeze(1), accum[:n, :c] / torch.where(filled, total, torch.ones_like(total)).unsqueeze(1),
                         torch.zeros((), dtype=dtype, device=device))
    warped = warped.reshape(t, h, w, c).permute(0, 3, 1, 2).contiguous()
    return warped, (~filled).reshape(t, 1, h, w)


def reference_m2svid_scatter_numpy(frame: np.ndarray, disparity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Literal NumPy re-implementation of the official ``scatter_image`` for one frame
    (direction -1, scale 1, float input kept as float). ``frame`` (H, W, C), ``disparity`` (H, W)
    in pixels. Returns (warped (H, W, C) float32, hole mask (H, W) bool)."""
    h, w = frame.shape[:2]
    disparity_map = disparity.astype(np.float32)
    disparity_map_int = disparity_map.astype(np.int32)
    weight_for_plus1 = disparity_map - disparity_map_int.astype(np.float32)
    disparity_map_int_plus1 = (disparity_map + 1.0).astype(np.int32)
    x_coords, _ = np.meshgrid(np.arange(w), np.arange(h))
    reproj_x = x_coords - disparity_map_int
    reproj_x1 = x_coords - disparity_map_int_plus1
    img = np.zeros(frame.shape, dtype=np.float32)
    weight = np.zeros(frame.shape, dtype=np.float32)
    vy, vx = np.where((reproj_x >= 0) & (reproj_x < w))
    vy1, vx1 = np.where((reproj_x1 >= 0) & (reproj_x1 < w))
    rx, rx1 = reproj_x[vy, vx], reproj_x1[vy1, vx1]
    # Fancy-index += : duplicates do not accumulate, the last one in scan order wins (as in the
    # official code).
    img[vy, rx] += frame[vy, vx] * (1.0 - weight_for_plus1[vy, vx])[:, None]
    weight[vy, rx] += (1.0 - weight_for_plus1[vy, vx])[:, None]
    img[vy1, rx1] += frame[vy1, vx1] * weight_for_plus1[vy1, vx1][:, None]
    weight[vy1, rx1] += weight_for_plus1[vy1, vx1][:, None]
    filled = (weight != 0)[:, :, 0]
    img[weight != 0] /= weight[weight != 0]
    return img, ~filled


# --------------------------------------------------------------------------------------------
# StereoCrafter
# --------------------------------------------------------------------------------------------

def _splat_bilinear_x(values: torch.Tensor, disparity: torch.Tensor) -> torch.Tensor:
    """Forward_Warp's bilinear splat with flow (-d, 0): (T, C, H, W) -> (T, C, H, W).

    A source at x lands at x - d; it splats only if floor and floor + 1 are inside the frame and
    its row has a row below (y + 1 < H), as the CUDA kernel requires all four neighbours inside.
    The lower neighbours get weight 0 (the flow has no vertical part), so only the upper two
    receive anything.
    """
    t, c, h, w = values.shape
    n = t * h * w
    device = values.device
    d = disparity.reshape(n)
    flat = torch.arange(n, device=device)
    column = flat % w
    row = (flat // w) % h
    x = column.to(values.dtype) - d.to(values.dtype)
    valid = torch.isfinite(x)
    x = torch.where(valid, x, torch.full_like(x, -10.0)).clamp(-10.0, w + 10.0)
    x0 = torch.floor(x)
    frac = x - x0
    col0 = x0.to(torch.int64)
    ok = valid & (col0 >= 0) & (col0 + 1 < w) & (row + 1 < h)
    target0 = torch.where(ok, flat - column + col0, n)
    vals = values.permute(0, 2, 3, 1).reshape(n, c)
    out = torch.zeros((n + 1, c), dtype=values.dtype, device=device)
    out.index_add_(0, target0, vals * (1.0 - frac).unsqueeze(1))
    out.index_add_(0, torch.where(ok, target0 + 1, n), vals * frac.unsqueeze(1))
    return out[:n].reshape(t, h, w, c).permute(0, 3, 1, 2)


def warp_stereocrafter(left: torch.Tensor, disparity: torch.Tensor,
                       return_soft_mask: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """StereoCrafter's softmax splatting (see the module docstring).

    Returns (warped, hole_mask) with hole_mask = soft mask > 0.5, or (warped, soft mask float
    (T, 1, H, W) in [0, 1]) with ``return_soft_mask=True``.
    """
    check_warp_inputs(left, disparity)
    disp = disparity.to(left.dtype)
    finite = torch.isfinite(disp)
    min_disp = disp[finite].min() if bool(finite.any()) else torch.zeros((), dtype=disp.dtype)
    disp = torch.where(finite, disp, torch.full_like(disp, float("nan")))
    weights = torch.pow(torch.tensor(1.414, dtype=disp.dtype, device=disp.device),
                        torch.where(finite, disp - min_disp, torch.zeros_like(disp)))
    weights = torch.where(finite, weights, torch.zeros_like(weights))
    stacked = torch.cat([left * weights, weights, finite.to(left.dtype)], dim=1)
    splat = _splat_bilinear_x(stacked, disp)
    c = left.shape[1]
    warped = splat[:, :c] / splat[:, c:c + 1].clamp(min=1e-6)
    soft_mask = 1.0 - splat[:, c + 1:c + 2].clamp(0.0, 1.0)
    warped = warped.contiguous()
    if return_soft_mask:
        return warped, soft_mask
    hole = soft_mask > 0.5
    return warped.masked_fill(hole, 0.0), hole


# --------------------------------------------------------------------------------------------
# SVG
# --------------------------------------------------------------------------------------------

_GAUSS_1D = (math.exp(-0.5), 1.0, math.exp(-0.5))  # scipy.signal.windows.gaussian(3, std=1)


def _svg_depth(disparity: torch.Tensor) -> torch.Tensor:
    """Depth used to split SVG's planes: 1/d, or 1/(d - min d + 1) if some valid d <= 0."""
    finite = torch.isfinite(disparity)
    d = torch.where(finite, disparity, torch.ones_like(disparity))
    if bool((d[finite] <= 0).any()):
        d = d - d[finite].min() + 1.0
    return 1.0 / d


def _filter3x3(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """cv2.filter2D (correlation, BORDER_REFLECT_101) with a 3x3 kernel on (N, 1, H, W)."""
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    return F.conv2d(padded, kernel.view(1, 1, 3, 3).to(x))


def _median_lower_upper(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """np.median over the masked entries of each row of (N, M) (mean of the two middle values)."""
    big = torch.where(mask, values, torch.full_like(values, float("inf")))
    ordered = torch.sort(big, dim=1).values
    count = mask.sum(dim=1)
    lo = ((count - 1).clamp(min=0) // 2).unsqueeze(1)
    hi = (count // 2).clamp(max=values.shape[1] - 1).unsqueeze(1)
    return 0.5 * (ordered.gather(1, lo) + ordered.gather(1, hi)).squeeze(1)


def _svg_cleanup(image: torch.Tensor, mask: torch.Tensor, depth: torch.Tensor, num_planes: int = 4,
                 threshold_isolated: float = 0.5, threshold_crack: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """remove_cracks_isolated_points, batched over frames. image (T, C, H, W), mask (T, 1, H, W)
    float {0, 1}, depth (T, 1, H, W) (0 where no point landed)."""
    t, c, h, w = image.shape
    dtype = torch.float64
    image, mask, depth = image.to(dtype), mask.to(dtype), depth.to(dtype)
    flat_depth, flat_mask = depth.reshape(t, -1), mask.reshape(t, -1) > 0
    has_points = flat_mask.any(dim=1)
    median = _median_lower_upper(flat_depth, flat_mask)
    d_max = torch.where(flat_mask, flat_depth, torch.full_like(flat_depth, float("-inf"))).amax(dim=1)
    d_min = torch.where(flat_mask, flat_depth, torch.full_like(flat_depth, float("inf"))).amin(dim=1)
    n1 = num_planes // 2
    n2 = num_planes - n1
    step1, step2 = (median - d_min) / n1, (d_max - median) / n2
    splits = [d_min + (i + 1) * step1 for i in range(n1)] + [median + (i + 1) * step2 for i in range(n2)]
    mean_kernel = torch.full((3, 3), 1.0 / 9.0, dtype=dtype)
    gauss = torch.tensor(_GAUSS_1D, dtype=dtype)
    gauss_kernel = torch.outer(gauss, gauss) / (2.0 * math.pi)
    layers, layer_masks = [], []
    for i, split in enumerate(splits):
        split = split.view(t, 1, 1, 1)
        if i == 0:
            in_plane = depth <= split
        else:
            in_plane = (depth > splits[i - 1].view(t, 1, 1, 1)) & (depth <= split)
        layer_mask = mask * in_plane.to(dtype)
        layer = image * layer_mask
        # Remove isolated points.
        frame_weight = layer_mask * _filter3x3(layer_mask, mean_kernel)
        layer_mask = (frame_weight > threshold_isolated).to(dtype)
        layer = layer * layer_mask
        # Fill cracks with a normalised Gaussian blur.
        image_weight = _filter3x3(layer_mask, gauss_kernel)
        image_blur = _filter3x3(layer.reshape(t * c, 1, h, w), gauss_kernel).reshape(t, c, h, w)
        image_blur = image_blur / (image_weight + 1e-6)
        new_mask = (image_weight > threshold_crack).to(dtype)
        kept = new_mask * layer_mask
        layer = layer * kept + image_blur * (new_mask - kept)
        layers.append(layer)
        layer_masks.append(new_mask)
    out_image, out_mask = layers[-1], layer_masks[-1]
    for i in range(len(layers) - 2, -1, -1):  # far to near: nearer planes overwrite
        update = layer_masks[i] > 0
        out_mask = torch.where(update, layer_masks[i], out_mask)
        out_image = torch.where(update, layers[i], out_image)
    keep = has_points.view(t, 1, 1, 1)
    out_image = torch.where(keep, out_image, image)
    out_mask = torch.where(keep, out_mask, mask)
    return out_image, out_mask


def warp_svg(left: torch.Tensor, disparity: torch.Tensor, cleanup: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """SVG's rounded z-buffer warp with crack / isolated-point clean-up (module docstring)."""
    check_warp_inputs(left, disparity)
    t, c, h, w = left.shape
    n = t * h * w
    device = left.device
    disp = disparity.reshape(n).to(torch.float64)
    flat = torch.arange(n, device=device)
    column = flat % w
    valid = torch.isfinite(disp)
    u = torch.round(column.to(torch.float64) - torch.where(valid, disp, torch.zeros_like(disp)))
    inside = valid & (u >= 0) & (u < w)
    target = torch.where(inside, flat - column + u.clamp(0, w - 1).to(torch.int64), n)
    # Z-buffer: the largest disparity (nearest) per target; among equal disparities, one source
    # (the largest index) deterministically.
    z = torch.full((n + 1,), float("-inf"), dtype=torch.float64, device=device)
    z.scatter_reduce_(0, target, torch.where(inside, disp, torch.full_like(disp, float("-inf"))), reduce="amax")
    is_front = inside & (disp == z[target])
    winner = torch.full((n + 1,), -1, dtype=torch.int64, device=device)
    winner.scatter_reduce_(0, torch.where(is_front, target, n), flat, reduce="amax")
    src = winner[:n]
    landed = src >= 0
    src_safe = src.clamp(min=0)
    pixels = left.permute(0, 2, 3, 1).reshape(n, c)
    image = torch.where(landed.unsqueeze(1), pixels[src_safe], torch.zeros((), dtype=left.dtype, device=device))
    image = image.reshape(t, h, w, c).permute(0, 3, 1, 2)
    mask = landed.reshape(t, 1, h, w)
    if not cleanup:
        return image.contiguous(), ~mask
    depth_all = _svg_depth(disparity.to(torch.float64)).reshape(n)
    depth = torch.where(landed, depth_all[src_safe], torch.zeros((), dtype=torch.float64, device=device))
    image, mask_f = _svg_cleanup(image, mask.to(torch.float64), depth.reshape(t, 1, h, w))
    hole = mask_f <= 0
    image = image.to(left.dtype).masked_fill(hole, 0.0)
    return image.contiguous(), hole


def reference_svg_warp_numpy(frame: np.ndarray, disparity: np.ndarray, cleanup: bool = True,
                             depth_for_planes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Literal NumPy/OpenCV re-implementation of SVG's ``forward_projection`` +
    ``remove_cracks_isolated_points`` for one frame, with the camera shift expressed as the
    disparity (x_R = round(x - d)). ``frame`` (H, W, 3) float, ``disparity`` (H, W) > 0.
    ``depth_for_planes`` defaults to 1/d. Returns (image (H, W, 3), hole mask (H, W) bool)."""
    import cv2

    h, w = frame.shape[:2]
    depth_src = 1.0 / disparity if depth_for_planes is None else depth_for_planes
    xs = np.tile(np.arange(w, dtype=np.float64), h)
    u_float = np.round(xs - disparity.reshape(-1).astype(np.float64))
    v = np.repeat(np.arange(h), w)
    image = frame.reshape(-1, 3)
    depth = depth_src.reshape(-1).astype(np.float64)
    sort_idx = np.argsort(-depth)  # far first, so the nearest is written last
    depth, image, u_float, v = depth[sort_idx], image[sort_idx], u_float[sort_idx], v[sort_idx]
    valid_u = np.where((u_float < w) & (u_float >= 0))[0]
    u = u_float[valid_u].astype(np.int64)
    img_new = np.zeros((h, w, 3))
    img_new[v[valid_u], u, :] = image[valid_u]
    depth_new = np.zeros((h, w))
    depth_new[v[valid_u], u] = depth[valid_u]
    mask_new = np.zeros((h, w))
    mask_new[v[valid_u], u] = 1
    if not cleanup:
        return img_new, mask_new <= 0
    depth_t = depth_new[:, :, None]
    mask = mask_new[..., None]
    img = img_new
    num_planes = 4
    depth_median = np.median(depth_t[np.where(mask > 0)])
    depth_max = np.max(depth_t[np.where(mask > 0)])
    depth_min = np.min(depth_t[np.where(mask > 0)])
    n1 = num_planes // 2
    interval1 = (depth_median - depth_min) / n1
    n2 = num_planes - n1
    interval2 = (depth_max - depth_median) / n2
    splits = [depth_min + (i + 1) * interval1 for i in range(n1)] + \
             [depth_median + (i + 1) * interval2 for i in range(n2)]
    gauss1d = np.array(_GAUSS_1D)
    gauss2d = np.outer(gauss1d, gauss1d) / (2 * np.pi)
    mean_k = np.ones((3, 3), np.float32) / 9
    layers, layer_masks = [], []
    for i in range(len(splits)):
        if i == 0:
            lv, lu, _ = np.where(depth_t <= splits[i])
        else:
            lv, lu, _ = np.where((depth_t > splits[i - 1]) & (depth_t <= splits[i]))
        lm = np.zeros_like(mask)
        lm[lv, lu, :] = 1
        lm = mask * lm
        layer = img * lm
        # remove isolated points
        fw = lm[:, :, 0] * cv2.filter2D(lm, -1, mean_k)
        m2 = np.zeros_like(lm)
        m2[np.where(fw > 0.5)] = 1
        layer = layer * m2
        # fill cracks
        iw = cv2.filter2D(m2, -1, gauss2d)[..., None]
        blur = cv2.filter2D(layer, -1, gauss2d) / (iw + 1e-6)
        m3 = np.zeros_like(m2)
        m3[np.where(iw > 0.2)] = 1.0
        kept = m3 * m2
        layer = layer * kept + blur * (m3 - kept)
        layers.append(layer)
        layer_masks.append(m3)
    out, out_m = layers[-1] + 0, layer_masks[-1] + 0
    for j in range(len(layers) - 1):
        i = len(layers) - 2 - j
        upd = np.zeros_like(out_m)
        upd[np.where(layer_masks[i] > 0)] = 1
        out_m = (1 - upd) * out_m + upd * layer_masks[i]
        out = (1 - upd) * out + upd * layers[i]
    return out, out_m[:, :, 0] <= 0
