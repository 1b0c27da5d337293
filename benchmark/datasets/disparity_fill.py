"""Filling invalid ground-truth disparity from the background side (before the warp).

Ground-truth disparity from a real rig has invalid pixels (Middlebury: occluded in the other
view or unmatched; about 7% of the scikit-image pair). Forward-warped with NaN disparity, such a
pixel lands nowhere and its target becomes a hole, so the "inside the hole mask" region would
mix missing data with real disocclusions. The standard remedy in stereo evaluation is the
background fill: invalid pixels are most often occluded background next to a depth edge, so
along each image row an invalid run takes the disparity of its FARTHER valid neighbour, i.e.
the smaller of the two valid disparities at the run's two ends (only one end is valid at the
image border: that one; a row without any valid pixel stays invalid).

The filled values are estimates, not measurements: :func:`fill_disparity_from_background`
returns a mask of them, which the dataset keeps in :attr:`benchmark.types.Clip.disparity_filled`
so that scoring can tell them from ground truth.
"""

from __future__ import annotations

import torch

__all__ = ["FILL_RULE", "fill_disparity_from_background"]

#: Recorded in clip metadata and dataset revisions; change it when the rule changes.
FILL_RULE = "background-row-v1"


def fill_disparity_from_background(disparity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill non-finite disparity along rows with the smaller (farther) valid neighbour.

    Vectorised: the nearest valid column to the left of every pixel is a running maximum of
    valid column indices (``cummax``), the nearest to the right a running minimum from the right;
    no loop over rows or pixels.

    Args:
        disparity: float (..., H, W) in pixels, larger = nearer; NaN/inf = invalid.

    Returns:
        ``(filled, was_filled)``: ``filled`` has the same shape and dtype, every invalid pixel
        with a valid pixel in its row replaced by ``min(left neighbour, right neighbour)`` (the
        one that exists at a border); ``was_filled`` is bool, True exactly where a value was
        filled in. Valid pixels are unchanged; rows without any valid pixel stay NaN.
    """
    valid = torch.isfinite(disparity)
    width = disparity.shape[-1]
    columns = torch.arange(width, device=disparity.device).expand_as(disparity)
    # Index of the nearest valid pixel at or left of each pixel (-1: none), and at or right (width: none).
    left_index = torch.where(valid, columns, torch.full_like(columns, -1)).cummax(dim=-1).values
    right_index = torch.where(valid, columns, torch.full_like(columns, width)).flip(-1).cummin(dim=-1).values.flip(-1)
    has_left, has_right = left_index >= 0, right_index < width
    zero = torch.zeros((), dtype=disparity.dtype, device=disparity.device)
    safe = torch.where(valid, disparity, zero)
    left_value = safe.gather(-1, left_index.clamp(min=0))
    right_value = safe.gather(-1, right_index.clamp(max=width - 1))
    inf = torch.full((), float("inf"), dtype=disparity.dtype, device=disparity.device)
    background = torch.minimum(torch.where(has_left, left_value, inf), torch.where(has_right, right_value, inf))
    was_filled = ~valid & (has_left | has_right)
    nan = torch.full((), float("nan"), dtype=disparity.dtype, device=disparity.device)
    filled = torch.where(valid, disparity, torch.where(was_filled, background, nan))
    return filled, was_filled
