"""Classical baselines: real methods that run anywhere and set the lower bar on every leaderboard.

All take the shared :class:`~benchmark.stereo.input.StereoInput` and return the right video,
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
- ``temporal-fill``: each hole pixel takes the colour the same pixel has in the temporally
  nearest frame where it is not a hole AND where its right-view disparity is background-like
  (closer to the local background's disparity than to the occluder's); pixels with no such frame
  fall back to ``background-fill``. Honest about its assumption: the same pixel shows the same
  scene point across frames, i.e. a static or slowly moving camera (moving objects reveal the
  background behind them over time).

Conventions (FACTS section 2): disparity belongs to the LEFT view, x_R = x_L - d, larger =
nearer, NaN invalid. The right-view disparity the background rules need is obtained by a
z-buffered forward splat of the left disparity (nearest surface wins), done in one scatter.
"""

from __future__ import annotations

import numpy as np
import torch

from benchmark.errors import StereobenchError
from benchmark.stereo.input import StereoInput
from methods.base import Method, MethodMeta

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


def temporal_fill(
    warped: torch.Tensor,
    mask: torch.Tensor,
    disparity: torch.Tensor,
    max_offset: int | None = None,
    min_separation: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill holes from the same pixel in the temporally nearest frame that shows background there.

    Args:
        warped, mask, disparity: as in :func:`background_fill`.
        max_offset: largest frame distance searched (None = the whole clip).
        min_separation: disparity gap in pixels below which the two neighbours of a hole are
            treated as one surface; the acceptance threshold is then background + this value.

    Returns:
        (right video float32 (T, 3, H, W), filled_from_time bool (T, 1, H, W) marking the hole
        pixels filled from another frame; the rest of the holes used background-fill).

    Acceptance of a candidate frame t' for hole pixel (t, y, x): (y, x) is not a hole at t', its
    right-view disparity there is finite and below the midpoint between the local background and
    foreground disparities at t (the two nearest valid row neighbours of the hole): i.e. the
    candidate shows background, not the occluder that caused the hole.
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
    # Candidate table over (hole pixel, frame): gather the whole time column of each hole pixel.
    cand_valid = valid[:, 0, hole_y, hole_x].T  # (N, T)
    cand_disp = disparity_right[:, 0, hole_y, hole_x].T  # (N, T)
    limit = threshold[hole_t, 0, hole_y, hole_x].unsqueeze(1)  # (N, 1); NaN -> nothing accepted
    accepted = cand_valid & torch.isfinite(cand_disp) & (cand_disp < limit)
    frames = torch.arange(t_frames, device=warped.device)
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
        ty, tx, tt = hole_y[found], hole_x[found], hole_t[found]
        out[tt, :, ty, tx] = warped[src_t, :, ty, tx]
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

    def __init__(self, seed: int = 0, algorithm: str = "telea", radius: float = 3.0, **options):
        super().__init__(seed=seed, **options)
        if algorithm not in self.ALGORITHMS:
            from benchmark.errors import did_you_mean

            raise did_you_mean(algorithm, self.ALGORITHMS, "opencv-inpaint algorithm")
        if radius <= 0:
            raise StereobenchError(f"opencv-inpaint radius must be > 0 pixels, got {radius}")
        self.algorithm = algorithm
        self.radius = float(radius)

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
    ``min_separation`` (pixels of disparity, default 1.0).
    """

    meta = _meta("temporal-fill", "Temporal fill",
                 "hole pixels copy the same pixel from the nearest frame where it shows background "
                 "(disparity-checked), else background-fill; assumes a static-ish camera")

    def __init__(self, seed: int = 0, max_offset: int | None = None, min_separation: float = 1.0, **options):
        super().__init__(seed=seed, **options)
        self.max_offset = max_offset
        self.min_separation = float(min_separation)

    def refine(self, inp: StereoInput) -> torch.Tensor:
        out, _ = temporal_fill(inp.warped.float(), inp.mask, inp.disparity.float(),
                               max_offset=self.max_offset, min_separation=self.min_separation)
        return out
