"""Classical baselines: real methods that run anywhere and set the lower bar on every leaderboard.

All take the shared :class:`~benchmark.types.StereoInput` and return the right video,
float32 (T, 3, H, W) in [0, 1] on the input's device. Except ``left-copy`` they keep every pixel
outside the hole mask exactly as the warped view (``MethodMeta.outside_mask == "warped"``) and
only fill the holes:

- ``left-copy``: the left view as the right one: no stereo at all, the floor.
- ``warp-only``: the warped view with holes left black.
- ``opencv-inpaint``: OpenCV's Telea or Navier-Stokes inpainting, frame by frame.
- ``background-fill``: each hole pixel takes the colour of the nearest valid pixel in its row
  on the BACKGROUND side (the neighbour with the smaller right-view disparity; in the right view
  a hole sits just right of a near object's edge, so this is usually the right neighbour), the
  classic depth-image-based-rendering rule. Vectorised with cumulative min/max over columns.
- ``temporal-fill``: each hole pixel takes the colour of the same scene point in the temporally
  nearest frame where that point is not a hole AND its right-view disparity matches the local
  background's (not the occluder's); the point is followed across frames by the global image
  motion (phase correlation of the warped views: camera pan). Pixels with no such frame fall back
  to ``background-fill``. Honest about its assumption: the background moves rigidly with the
  camera's pan; independently moving background objects and strong parallax break it (then the
  disparity check rejects most candidates and background-fill takes over).

Conventions (FACTS section 2): disparity belongs to the LEFT view, x_R = x_L - d, larger =
nearer, NaN invalid. The right-view disparity the background rules need is obtained by a
z-buffered forward splat of the left disparity (nearest surface wins), done in one scatter.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from benchmark.errors import did_you_mean
from benchmark.types import StereoInput
from methods.base import Method, MethodMeta, MethodOptions

_BASELINE_LICENCE = "Apache-2.0 (this suite)"


# ---------------------------------------------------------------------------------------------
# Vectorised helpers
# ---------------------------------------------------------------------------------------------

def right_view_disparity(disparity: torch.Tensor) -> torch.Tensor:
    """Disparity seen from the right camera, by z-buffered forward splatting.

    Args:
        disparity: LEFT-view disparity, float32 (T, 1, H, W) in pixels, x_R = x_L - d, NaN invalid.

    Returns:
        float32 (T, 1, H, W): at each right-view pixel the largest (nearest) disparity of the left
        pixels that land on it after rounding x_L - d; NaN where nothing lands.
    """
    t, _, h, w = disparity.shape
    d = disparity.reshape(t * h, w).float()
    x_left = torch.arange(w, device=d.device, dtype=torch.float32).expand_as(d)
    x_right = torch.round(x_left - d)
    valid = torch.isfinite(d) & (x_right >= 0) & (x_right <= w - 1)
    # Scatter into a padded row of w + 1 columns: invalid pixels go to the dummy last column.
    target = torch.where(valid, x_right, torch.full_like(x_right, w)).long()
    out = torch.full((t * h, w + 1), float("-inf"), device=d.device, dtype=torch.float32)
    out.scatter_reduce_(1, target, torch.where(valid, d, torch.full_like(d, float("-inf"))), reduce="amax")
    out = out[:, :w]
    out[torch.isinf(out)] = float("nan")
    return out.reshape(t, 1, h, w)


def nearest_valid_columns(valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Column index of the nearest valid pixel to the left and to the right, per pixel.

    Args:
        valid: bool (..., W).

    Returns:
        (left_index, right_index), int64 (..., W): the largest valid column <= x, or -1 if none;
        the smallest valid column >= x, or W if none. Valid pixels return their own column.
    """
    w = valid.shape[-1]
    cols = torch.arange(w, device=valid.device).expand_as(valid)
    left_index = torch.where(valid, cols, torch.full_like(cols, -1)).cummax(dim=-1).values
    right_candidates = torch.where(valid, cols, torch.full_like(cols, w))
    right_index = right_candidates.flip(-1).cummin(dim=-1).values.flip(-1)
    return left_index, right_index


def _gather_columns(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values (T, C, H, W) gathered along W at index (T, 1, H, W) (clamped into range)."""
    w = values.shape[-1]
    idx = index.clamp(0, w - 1).expand(-1, values.shape[1], -1, -1)
    return torch.gather(values, -1, idx)


def _neighbour_disparities(valid: torch.Tensor, disparity_right: torch.Tensor):
    """Nearest valid column on each side and the right-view disparity found there.

    Returns (left_index, right_index, disp_left, disp_right, has_left, has_right), all
    (T, 1, H, W); a missing neighbour's disparity is NaN.
    """
    w = valid.shape[-1]
    left_index, right_index = nearest_valid_columns(valid)
    has_left = left_index >= 0
    has_right = right_index < w
    nan = torch.full_like(disparity_right, float("nan"))
    disp_left = torch.where(has_left, _gather_columns(disparity_right, left_index), nan)
    disp_right = torch.where(has_right, _gather_columns(disparity_right, right_index), nan)
    return left_index, right_index, disp_left, disp_right, has_left, has_right


def background_fill(warped: torch.Tensor, mask: torch.Tensor, disparity: torch.Tensor) -> torch.Tensor:
    """Fill holes row-wise from the nearest valid pixel on the background side.

    Args:
        warped: float32 (T, 3, H, W) in [0, 1].
        mask: bool (T, 1, H, W), True = hole.
        disparity: LEFT-view disparity (T, 1, H, W), pixels, NaN invalid.

    Returns:
        float32 (T, 3, H, W); equal to ``warped`` outside the mask. Of the two nearest valid
        neighbours in the row, the one with the smaller right-view disparity (farther) is used;
        with unknown or equal disparities the right neighbour wins (FACTS 2: holes border the
        background on their right). Rows without any valid pixel are left black.
    """
    valid = ~mask
    disparity_right = right_view_disparity(disparity)
    left_index, right_index, disp_left, disp_right, has_left, has_right = _neighbour_disparities(valid, disparity_right)
    # NaN compares False: an unknown disparity on the left never beats the right neighbour.
    left_is_background = disp_left < disp_right
    use_left = has_left & (~has_right | left_is_background)
    source = torch.where(use_left, left_index, right_index)
    filled = _gather_columns(warped, source)
    has_any = has_left | has_right
    filled = torch.where(has_any, filled, torch.zeros_like(filled))
    return torch.where(mask, filled, warped)


def _masked_sad(a, b, wa, wb, dy: int, dx: int) -> torch.Tensor:
    """Mean |a(y, x) - b(y + dy, x + dx)| over pixels valid in both, per pair: (P,)."""
    h, w = a.shape[-2:]
    ys, ye = max(0, -dy), min(h, h - dy)
    xs, xe = max(0, -dx), min(w, w - dx)
    if ye <= ys or xe <= xs:
        return torch.full(a.shape[:1], float("inf"), device=a.device)
    pa, pwa = a[:, ys:ye, xs:xe], wa[:, ys:ye, xs:xe]
    pb, pwb = b[:, ys + dy:ye + dy, xs + dx:xe + dx], wb[:, ys + dy:ye + dy, xs + dx:xe + dx]
    weight = pwa * pwb
    count = weight.sum(dim=(1, 2))
    cost = ((pa - pb).abs() * weight).sum(dim=(1, 2)) / count.clamp(min=1)
    # Too little overlap says nothing: such a shift must not win.
    return torch.where(count >= 0.05 * h * w, cost, torch.full_like(cost, float("inf")))


def _best_shift(a, b, wa, wb, centre: torch.Tensor, radius: int):
    """Integer shift per pair within ``radius`` of ``centre`` (P, 2) minimising the masked SAD,
    and the cost table (P, 2r+1, 2r+1). The loop runs over candidate shifts, never pixels."""
    pairs = a.shape[0]
    offsets = range(-radius, radius + 1)
    costs = torch.full((pairs, 2 * radius + 1, 2 * radius + 1), float("inf"), device=a.device)
    # Pairs sharing a centre are evaluated together (one vectorised call per candidate shift).
    for cy, cx in {(int(c[0]), int(c[1])) for c in centre}:
        group = ((centre[:, 0] == cy) & (centre[:, 1] == cx)).nonzero().flatten()
        for i, oy in enumerate(offsets):
            for j, ox in enumerate(offsets):
                costs[group, i, j] = _masked_sad(a[group], b[group], wa[group], wb[group], cy + oy, cx + ox)
    flat = costs.flatten(1).argmin(dim=1)
    best = torch.stack([flat // (2 * radius + 1) - radius, flat % (2 * radius + 1) - radius], dim=1)
    return centre + best, costs, best + radius


def global_shifts(warped: torch.Tensor, weight: torch.Tensor, search: int | None = None) -> torch.Tensor:
    """Global image motion of every frame relative to frame 0, from the pixels in ``weight``.

    Args:
        warped: float32 (T, 3, H, W); weight: bool (T, 1, H, W), pixels to register on (not
            holes).
        search: largest step between consecutive frames in pixels (default max(8, W // 16)).

    Returns:
        float32 (T, 2): (dy, dx) such that content at (y, x) in frame 0 is at (y + dy, x + dx) in
        frame t. Consecutive frames are registered by minimising the masked mean absolute
        difference, coarse to fine (a 4x smaller image over the whole search range, then +-2 px at
        full size), with a sub-pixel parabola through the neighbouring costs; the steps are
        accumulated, so every pair of frames gets a sub-pixel offset ``shifts[t'] - shifts[t]``.
    """
    t, _, h, w = warped.shape
    device = warped.device
    if t < 2:
        return torch.zeros(t, 2, device=device)
    gray = warped.mean(dim=1)
    mask = weight[:, 0].float()
    search = search or max(8, w // 16)
    a, b, wa, wb = gray[:-1], gray[1:], mask[:-1], mask[1:]
    # Coarse: 4x average pooling (weights pooled alike), whole range.
    pool = torch.nn.functional.avg_pool2d
    ca, cb = pool(a[:, None] * wa[:, None], 4)[:, 0], pool(b[:, None] * wb[:, None], 4)[:, 0]
    cwa, cwb = pool(wa[:, None], 4)[:, 0], pool(wb[:, None], 4)[:, 0]
    ca, cb = ca / cwa.clamp(min=1e-6), cb / cwb.clamp(min=1e-6)
    cwa, cwb = (cwa > 0.5).float(), (cwb > 0.5).float()
    zero = torch.zeros(t - 1, 2, dtype=torch.long, device=device)
    coarse, _, _ = _best_shift(ca, cb, cwa, cwb, zero, max(1, -(-search // 4)))
    fine, costs, at = _best_shift(a, b, wa, wb, coarse * 4, 2)
    # Sub-pixel: a parabola through the cost minimum and its two neighbours, per axis.
    steps = fine.float()
    rows = torch.arange(t - 1, device=device)
    size = costs.shape[-1]
    for axis in (0, 1):
        i, j = at[:, 0], at[:, 1]
        lo = (i - 1, j) if axis == 0 else (i, j - 1)
        hi = (i + 1, j) if axis == 0 else (i, j + 1)
        inner = (lo[axis] >= 0) & (hi[axis] < size)
        c0 = costs[rows, i, j]
        cm = costs[rows, lo[0].clamp(0, size - 1), lo[1].clamp(0, size - 1)]
        cp = costs[rows, hi[0].clamp(0, size - 1), hi[1].clamp(0, size - 1)]
        denom = cm - 2 * c0 + cp
        ok = inner & torch.isfinite(denom) & (denom > 1e-12)
        frac = torch.where(ok, 0.5 * (cm - cp) / torch.where(ok, denom, torch.ones_like(denom)),
                           torch.zeros_like(denom))
        steps[:, axis] += frac.clamp(-0.5, 0.5)
    return torch.cat([torch.zeros(1, 2, device=device), steps.cumsum(dim=0)], dim=0)


def temporal_fill(
    warped: torch.Tensor,
    mask: torch.Tensor,
    disparity: torch.Tensor,
    max_offset: int | None = None,
    min_separation: float = 1.0,
    motion_compensation: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill holes from the same pixel in the temporally nearest frame that shows background there.

    Args:
        warped, mask, disparity: as in :func:`background_fill`.
        max_offset: largest frame distance searched (None = the whole clip).
        min_separation: disparity gap in pixels below which the two neighbours of a hole are
            treated as one surface; the acceptance threshold is then background + this value.
        motion_compensation: look for the pixel at its position moved by the global image motion
            between the frames (:func:`global_shifts`, camera pan) instead of at the same position.

    Returns:
        (right video float32 (T, 3, H, W), filled_from_time bool (T, 1, H, W) marking the hole
        pixels filled from another frame; the rest of the holes used background-fill).

    Acceptance of a candidate frame t' for hole pixel (t, y, x): the pixel's position moved by
    the global image motion from t to t' (same position without ``motion_compensation``) is
    inside the frame and not a hole at t', its right-view disparity there is finite, below the
    midpoint between the local background and foreground disparities at t (the two nearest valid
    row neighbours of the hole), and within a quarter of that gap (at least 0.5 px) of the
    background's: the candidate shows the background surface, not the occluder that caused the
    hole nor another layer.
    """
    t_frames = warped.shape[0]
    valid = ~mask
    disparity_right = right_view_disparity(disparity)
    *_, disp_left, disp_right, _, _ = _neighbour_disparities(valid, disparity_right)
    background = torch.fmin(disp_left, disp_right)
    foreground = torch.fmax(disp_left, disp_right)
    separated = (foreground - background) > min_separation
    threshold = torch.where(separated, 0.5 * (background + foreground), background + min_separation)

    base = background_fill(warped, mask, disparity)
    hole_t, _, hole_y, hole_x = torch.nonzero(mask, as_tuple=True)
    if hole_t.numel() == 0 or t_frames < 2:
        return base, torch.zeros_like(mask)
    _, _, height, width = warped.shape
    frames = torch.arange(t_frames, device=warped.device)
    # Where each hole pixel's scene point sits in every frame: (N, T) rows and columns.
    if motion_compensation:
        # Register on every valid pixel: the mean absolute difference weighs surfaces by area,
        # so the large background, not a near object, decides (and repetitive textures of a
        # single layer alone cannot alias the match).
        shifts = global_shifts(warped, valid)  # (T, 2)
        offset = shifts.unsqueeze(0) - shifts[hole_t].unsqueeze(1)  # (N, T, 2): frame t -> t'
        cand_y = torch.round(hole_y.unsqueeze(1) + offset[..., 0]).long()
        cand_x = torch.round(hole_x.unsqueeze(1) + offset[..., 1]).long()
    else:
        cand_y = hole_y.unsqueeze(1).expand(-1, t_frames)
        cand_x = hole_x.unsqueeze(1).expand(-1, t_frames)
    inside = (cand_y >= 0) & (cand_y < height) & (cand_x >= 0) & (cand_x < width)
    cand_y, cand_x = cand_y.clamp(0, height - 1), cand_x.clamp(0, width - 1)
    cand_t = frames.unsqueeze(0).expand_as(cand_y)
    cand_valid = valid[cand_t, 0, cand_y, cand_x] & inside  # (N, T)
    cand_disp = disparity_right[cand_t, 0, cand_y, cand_x]  # (N, T)
    limit = threshold[hole_t, 0, hole_y, hole_x].unsqueeze(1)  # (N, 1); NaN -> nothing accepted
    # Same surface as the hole's background neighbour: within a quarter of the fg/bg gap of it.
    bg_here = background[hole_t, 0, hole_y, hole_x].unsqueeze(1)
    tolerance = torch.clamp(0.25 * (limit - bg_here), min=0.5)
    accepted = cand_valid & torch.isfinite(cand_disp) & (cand_disp < limit) & ((cand_disp - bg_here).abs() <= tolerance)
    distance = (frames.unsqueeze(0) - hole_t.unsqueeze(1)).abs()  # (N, T)
    if max_offset is not None:
        accepted &= distance <= max_offset
    # The nearest accepted frame; ties go to the earlier frame (argmin returns the first).
    big = t_frames + 1
    cost = torch.where(accepted, distance, torch.full_like(distance, big))
    best_cost, best_frame = cost.min(dim=1)
    found = best_cost < big
    out = base.clone()
    if found.any():
        src_t = best_frame[found]
        src_y = cand_y[found].gather(1, src_t[:, None])[:, 0]
        src_x = cand_x[found].gather(1, src_t[:, None])[:, 0]
        ty, tx, tt = hole_y[found], hole_x[found], hole_t[found]
        out[tt, :, ty, tx] = warped[src_t, :, src_y, src_x]
    filled_from_time = torch.zeros_like(mask)
    filled_from_time[hole_t[found], 0, hole_y[found], hole_x[found]] = True
    return out, filled_from_time


# ---------------------------------------------------------------------------------------------
# Method adapters
# ---------------------------------------------------------------------------------------------

def _meta(name: str, display: str, description: str, outside_mask: str = "warped") -> MethodMeta:
    return MethodMeta(
        name=name, display_name=display, licence=_BASELINE_LICENCE, description=description,
        outside_mask=outside_mask,
    )


class LeftCopy(Method):
    """The left view returned as the right view (no stereo at all): the floor of every table."""

    meta = _meta("left-copy", "Left copy (no stereo)",
                 "returns the left view unchanged; any real method must beat it", outside_mask="any")

    def refine(self, inp: StereoInput) -> torch.Tensor:
        return inp.left.to(torch.float32).clone()


class WarpOnly(Method):
    """The shared warped view with every hole pixel black (no inpainting)."""

    meta = _meta("warp-only", "Warp only (holes black)", "the forward-warped left view with holes set to 0")

    def refine(self, inp: StereoInput) -> torch.Tensor:
        return torch.where(inp.mask, torch.zeros_like(inp.warped), inp.warped).to(torch.float32)


class OpenCVInpaint(Method):
    """OpenCV inpainting per frame (``algorithm``: ``"telea"`` (default) or ``"ns"``; ``radius``
    in pixels, default 3). Runs on the CPU (OpenCV), returns on the input's device."""

    meta = _meta("opencv-inpaint", "OpenCV inpaint (Telea)",
                 "cv2.inpaint per frame (Telea 2004 fast marching, or Navier-Stokes), on 8-bit frames")

    ALGORITHMS = {"telea": "INPAINT_TELEA", "ns": "INPAINT_NS"}

    class Options(MethodOptions):
        algorithm: str = Field("telea", description="'telea' (Telea 2004 fast marching) or 'ns' (Navier-Stokes)")
        radius: float = Field(3.0, gt=0, description="neighbourhood radius of the inpainting, pixels")

    def __init__(self, seed: int = 0, **options):
        super().__init__(seed=seed, **options)
        if self.config.algorithm not in self.ALGORITHMS:
            raise did_you_mean(self.config.algorithm, self.ALGORITHMS, "opencv-inpaint algorithm")
        self.algorithm = self.config.algorithm
        self.radius = float(self.config.radius)

    def refine(self, inp: StereoInput) -> torch.Tensor:
        import cv2

        flag = getattr(cv2, self.ALGORITHMS[self.algorithm])
        frames = (inp.warped.detach().clamp(0, 1) * 255.0).round().to(torch.uint8)
        frames = frames.permute(0, 2, 3, 1).cpu().numpy()  # (T, H, W, 3) uint8
        holes = inp.mask[:, 0].cpu().numpy().astype(np.uint8)
        # OpenCV's inpaint is per image; the loop is over frames, never pixels.
        painted = np.stack([cv2.inpaint(np.ascontiguousarray(frames[i]), holes[i], self.radius, flag)
                            for i in range(frames.shape[0])])
        filled = torch.from_numpy(painted).to(inp.warped.device).permute(0, 3, 1, 2).float() / 255.0
        return torch.where(inp.mask, filled, inp.warped).to(torch.float32)


class BackgroundFill(Method):
    """Row-wise fill from the nearest valid pixel on the background side (classic DIBR)."""

    meta = _meta("background-fill", "Background fill (row-wise)",
                 "each hole pixel copies the nearest valid pixel of its row on the farther (background) side")

    def refine(self, inp: StereoInput) -> torch.Tensor:
        return background_fill(inp.warped.float(), inp.mask, inp.disparity.float())


class TemporalFill(Method):
    """Fill holes from the same background seen in other frames; background-fill elsewhere.

    Options: ``max_offset`` (frames searched either side, default: whole clip),
    ``min_separation`` (pixels of disparity, default 1.0), ``motion_compensation`` (default on).
    """

    meta = _meta("temporal-fill", "Temporal fill",
                 "hole pixels copy the same pixel from the nearest frame where it shows background "
                 "(disparity-checked), else background-fill; assumes a static-ish camera")

    class Options(MethodOptions):
        max_offset: int | None = Field(None, ge=0, description="largest frame distance searched (None: the whole clip)")
        min_separation: float = Field(1.0, ge=0, description="disparity gap (pixels) below which a hole's two "
                                      "neighbours are one surface")
        motion_compensation: bool = Field(True, description="follow the global image motion (camera pan) "
                                          "between frames")

    def __init__(self, seed: int = 0, **options):
        super().__init__(seed=seed, **options)
        self.max_offset = self.config.max_offset
        self.min_separation = float(self.config.min_separation)
        self.motion_compensation = self.config.motion_compensation

    def refine(self, inp: StereoInput) -> torch.Tensor:
        out, _ = temporal_fill(inp.warped.float(), inp.mask, inp.disparity.float(),
                               max_offset=self.max_offset, min_separation=self.min_separation,
                               motion_compensation=self.motion_compensation)
        return out
