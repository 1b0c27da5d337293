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
    """M2SVid's official scatter (see the module docstring), vectorised over T*H*W.

    Colours are handled channel-planar ((C, T*H*W)), so every gather and accumulation is a 1-D
    ``index_select`` / in-place op (the fast kernels here; (N, C) row gathers were 3-5x slower).
    """
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
    column = torch.arange(w, device=device).expand(t, h, w).reshape(n)
    row_start = flat - column
    planar = left.transpose(0, 1).reshape(c, n)
    accum = torch.zeros((c, n), dtype=dtype, device=device)
    total = torch.zeros(n, dtype=dtype, device=device)
    winner = torch.empty(n + 1, dtype=torch.int64, device=device)
    for shift, weight in ((trunc, 1.0 - frac), (trunc_plus1, frac)):
        col = column - shift.to(torch.int64)
        inside = valid & (col >= 0) & (col < w)
        target = torch.where(inside, row_start + col, n)
        # Last writer in scan order = the source with the largest flat index per target.
        winner.fill_(-1)
        winner.scatter_reduce_(0, target, flat, reduce="amax", include_self=True)
        src = winner[:n]
        has = src >= 0
        src_safe = src.clamp(min=0)
        wsel = torch.index_select(weight, 0, src_safe).mul_(has)
        accum.addcmul_(torch.index_select(planar, 1, src_safe), wsel)
        total.add_(wsel)
    filled = total != 0
    reciprocal = torch.where(filled, total, torch.ones_like(total)).reciprocal_().mul_(filled)
    warped = accum.mul_(reciprocal).view(c, t, h, w).transpose(0, 1).contiguous()
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

def _splat_bilinear_x(planar: torch.Tensor, disparity: torch.Tensor, t: int, h: int, w: int) -> torch.Tensor:
    """Forward_Warp's bilinear splat with flow (-d, 0) of channel-planar values (K, T*H*W) ->
    (K, T*H*W).

    A source at x lands at x - d; it splats only if floor and floor + 1 are inside the frame and
    its row has a row below (y + 1 < H), as the CUDA kernel requires all four neighbours inside.
    The lower neighbours get weight 0 (the flow has no vertical part), so only the upper two
    receive anything. Each channel is a 1-D ``scatter_add_`` (the fast kernel here).
    """
    k = planar.shape[0]
    n = t * h * w
    device = planar.device
    d = disparity.reshape(n)
    flat = torch.arange(n, device=device)
    # Column and row of every source by broadcasting (int64 % and // cost ~7 ms each here).
    column = torch.arange(w, device=device).expand(t, h, w).reshape(n)
    row = torch.arange(h, device=device).view(1, h, 1).expand(t, h, w).reshape(n)
    x = column.to(planar.dtype) - d.to(planar.dtype)
    valid = torch.isfinite(x)
    x = torch.where(valid, x, torch.full_like(x, -10.0)).clamp(-10.0, w + 10.0)
    x0 = torch.floor(x)
    frac = x - x0
    col0 = x0.to(torch.int64)
    ok = valid & (col0 >= 0) & (col0 + 1 < w) & (row + 1 < h)
    target0 = torch.where(ok, flat - column + col0, n)
    target1 = torch.where(ok, target0 + 1, n)
    weight0 = 1.0 - frac
    out = torch.zeros((k, n + 1), dtype=planar.dtype, device=device)
    scratch = torch.empty(n, dtype=planar.dtype, device=device)
    for channel in range(k):
        out[channel].scatter_add_(0, target0, torch.mul(planar[channel], weight0, out=scratch))
        out[channel].scatter_add_(0, target1, torch.mul(planar[channel], frac, out=scratch))
    return out[:, :n]


def warp_stereocrafter(left: torch.Tensor, disparity: torch.Tensor,
                       return_soft_mask: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """StereoCrafter's softmax splatting (see the module docstring).

    Returns (warped, hole_mask) with hole_mask = soft mask > 0.5, or (warped, soft mask float
    (T, 1, H, W) in [0, 1]) with ``return_soft_mask=True``.
    """
    check_warp_inputs(left, disparity)
    t, c, h, w = left.shape
    n = t * h * w
    disp = disparity.to(left.dtype).reshape(n)
    finite = torch.isfinite(disp)
    # min over the finite values without boolean indexing (slow); inf if there are none.
    min_disp = torch.where(finite, disp, torch.full_like(disp, float("inf"))).amin()
    if not bool(torch.isfinite(min_disp)):
        min_disp = torch.zeros((), dtype=disp.dtype, device=disp.device)
    weights = torch.pow(torch.tensor(1.414, dtype=disp.dtype, device=disp.device),
                        torch.where(finite, disp - min_disp, torch.zeros_like(disp)))
    weights.mul_(finite)
    planar = torch.empty((c + 2, n), dtype=left.dtype, device=left.device)
    torch.mul(left.transpose(0, 1).reshape(c, n), weights, out=planar[:c])
    planar[c].copy_(weights)
    planar[c + 1].copy_(finite)
    splat = _splat_bilinear_x(planar, torch.where(finite, disp, torch.full_like(disp, float("nan"))), t, h, w)
    warped = splat[:c] / splat[c].clamp(min=1e-6)
    soft_mask = 1.0 - splat[c + 1].clamp(0.0, 1.0)
    warped = warped.view(c, t, h, w).transpose(0, 1)
    soft_mask = soft_mask.view(t, 1, h, w)
    if return_soft_mask:
        return warped.contiguous(), soft_mask
    hole = soft_mask > 0.5
    return warped.masked_fill(hole, 0.0).contiguous(), hole


# --------------------------------------------------------------------------------------------
# SVG
# --------------------------------------------------------------------------------------------

_GAUSS_1D = (math.exp(-0.5), 1.0, math.exp(-0.5))  # scipy.signal.windows.gaussian(3, std=1)


def _svg_depth(disparity: torch.Tensor) -> torch.Tensor:
    """Depth used to split SVG's planes: 1/d, or 1/(d - min d + 1) if some valid d <= 0."""
    finite = torch.isfinite(disparity)
    d = torch.where(finite, disparity, torch.ones_like(disparity))
    smallest = torch.where(finite, d, torch.full_like(d, float("inf"))).amin()  # no boolean indexing: slow
    if bool(smallest <= 0):
        d = d - smallest + 1.0
    return 1.0 / d


def _filter3x3_separable(x: torch.Tensor, side: float, centre: float = 1.0) -> torch.Tensor:
    """cv2.filter2D (correlation, BORDER_REFLECT_101) of (N, 1, H, W) with the separable 3x3
    kernel ``outer(k, k)``, ``k = (side, centre, side)``, as two 3-tap passes of shifted slices
    (float64 convolutions take PyTorch's slow path: 10x slower here)."""
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    rows = padded[..., 2:] + padded[..., :-2]
    if side != 1.0:
        rows.mul_(side)
    rows.add_(padded[..., 1:-1] if centre == 1.0 else padded[..., 1:-1] * centre)
    out = rows[..., 2:, :] + rows[..., :-2, :]
    if side != 1.0:
        out.mul_(side)
    return out.add_(rows[..., 1:-1, :] if centre == 1.0 else rows[..., 1:-1, :] * centre)


def _median_lower_upper(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """np.median over the masked entries of each row of (N, M) (mean of the two middle values)."""
    with_nan = torch.where(mask, values, torch.full_like(values, float("nan")))
    lower = torch.nanmedian(with_nan, dim=1).values  # torch: the lower of the two middle values
    upper = -torch.nanmedian(-with_nan, dim=1).values  # ... and the upper one
    return 0.5 * (lower + upper)


def _svg_cleanup(image: torch.Tensor, mask: torch.Tensor, depth: torch.Tensor, num_planes: int = 4,
                 threshold_isolated: float = 0.5, threshold_crack: float = 0.2,
                 frames_per_chunk: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """remove_cracks_isolated_points, batched over frames (in chunks of ``frames_per_chunk``, so
    the per-plane temporaries stay in cache). image (T, C, H, W), mask (T, 1, H, W) float
    {0, 1}, depth (T, 1, H, W) (0 where no point landed). The planes are split in float64 (like
    the official NumPy code; plane membership is an exact comparison); colours and masks are
    filtered in the image's dtype: with float64 images that is the official arithmetic, with
    float32 the colours differ by ~1e-7 and the masks are the same (the crack threshold 0.2 is
    >= 0.007 away from every sum of the 3x3 Gaussian weights, and the isolated-point test is an
    integer count)."""
    t = image.shape[0]
    if t > frames_per_chunk:
        parts = [_svg_cleanup(image[i:i + frames_per_chunk], mask[i:i + frames_per_chunk],
                              depth[i:i + frames_per_chunk], num_planes, threshold_isolated, threshold_crack,
                              frames_per_chunk) for i in range(0, t, frames_per_chunk)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    _, c, h, w = image.shape
    dtype = image.dtype if image.is_floating_point() else torch.float64
    image, mask, depth = image.to(dtype), mask.to(dtype), depth.to(torch.float64)
    flat_depth, flat_mask = depth.reshape(t, -1), mask.reshape(t, -1) > 0
    has_points = flat_mask.any(dim=1)
    median = _median_lower_upper(flat_depth, flat_mask)
    d_max = torch.where(flat_mask, flat_depth, torch.full_like(flat_depth, float("-inf"))).amax(dim=1)
    d_min = torch.where(flat_mask, flat_depth, torch.full_like(flat_depth, float("inf"))).amin(dim=1)
    n1 = num_planes // 2
    n2 = num_planes - n1
    step1, step2 = (median - d_min) / n1, (d_max - median) / n2
    splits = [d_min + (i + 1) * step1 for i in range(n1)] + [median + (i + 1) * step2 for i in range(n2)]
    # The 3x3 mean of a 0/1 mask is count / 9 > threshold_isolated: a count threshold.
    min_count = math.floor(9.0 * threshold_isolated) + 1 - 0.5
    gauss_side = _GAUSS_1D[0]
    gauss_scale = 1.0 / (2.0 * math.pi)
    out_image = out_mask = None
    for i in range(len(splits) - 1, -1, -1):  # far to near: nearer planes overwrite
        split = splits[i].view(t, 1, 1, 1)
        in_plane = depth <= split
        if i > 0:
            in_plane &= depth > splits[i - 1].view(t, 1, 1, 1)
        layer_mask = mask * in_plane
        # Remove isolated points: keep a point if its 3x3 neighbourhood (itself included) in
        # this plane holds more than threshold_isolated x 9 points.
        layer_mask = layer_mask * (_filter3x3_separable(layer_mask, 1.0) >= min_count)
        layer = image * layer_mask
        # Fill cracks with a normalised Gaussian blur (colour channels and weight in one pass).
        blurred = _filter3x3_separable(torch.cat([layer, layer_mask], dim=1).reshape(t * (c + 1), 1, h, w),
                                       gauss_side).reshape(t, c + 1, h, w).mul_(gauss_scale)
        image_weight = blurred[:, c:]
        image_blur = blurred[:, :c] / (image_weight + 1e-6)
        new_mask = (image_weight > threshold_crack).to(dtype)
        kept = new_mask * layer_mask
        layer = layer * kept + image_blur * (new_mask - kept)
        if out_image is None:
            out_image, out_mask = layer, new_mask
        else:
            update = new_mask > 0
            out_mask = torch.where(update, new_mask, out_mask)
            out_image = torch.where(update, layer, out_image)
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
    # Gather the winners' colours channel-planar ((C, N) index_select: 1-D gathers are the fast
    # kernel here), zero where nothing landed.
    planar = torch.index_select(left.transpose(0, 1).reshape(c, n), 1, src_safe)
    planar.mul_(landed.to(planar.dtype))
    image = planar.view(c, t, h, w).transpose(0, 1)
    mask = landed.reshape(t, 1, h, w)
    if not cleanup:
        return image.contiguous(), ~mask
    depth_all = _svg_depth(disparity.to(torch.float64)).reshape(n)
    depth = torch.index_select(depth_all, 0, src_safe).masked_fill_(~landed, 0.0)
    image, mask_f = _svg_cleanup(image, mask.to(image.dtype), depth.reshape(t, 1, h, w))
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
