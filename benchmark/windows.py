"""Temporal windows and spatial tiles with linear cross-fades.

A model that only takes short clips or small frames (M2SVid: at most 25 frames; any model at
high resolution) runs on overlapping (frames, rows, cols) windows, and the results are blended:

* :func:`windows_1d` splits one axis into overlapping [start, end) spans of full size; the last
  span is shifted back to end at the edge, so every span has the model's size when the axis is
  at least that long (no short remainder window);
* :func:`ramp_weights` gives each span a linear cross-fade: inside an overlap of n samples one
  span ramps up (1..n)/(n+1) while its neighbour ramps down, so two overlapping ramps sum to
  exactly one and no sample gets weight 0;
* :func:`iter_blended` / :func:`blend_windows` run a window function on every (temporal span x
  row span x col span) window, weight its result by the product of the three ramps and divide
  by the accumulated weight, so every output sample is a convex combination of the windows that
  cover it (weights normalised to sum to one at every frame and pixel, also where three spans
  overlap after the last one's shift). A position-independent model therefore gives exactly
  its unwindowed result.

:func:`iter_blended` yields finished frames in order and keeps only the frames of the current
temporal window in memory, for streaming writers (``convert``); :func:`blend_windows` collects
them into one tensor.

Shapes: videos are (T, C, H, W); window functions get (frame slice, row slice, col slice) and
return (t, C, h, w) for those slices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from benchmark.errors import StereobenchError

WindowFn = Callable[[slice, slice, slice], torch.Tensor]


def windows_1d(length: int, window: int, overlap: int, what: str = "window") -> list[tuple[int, int]]:
    """Overlapping [start, end) spans covering ``length`` samples.

    Args:
        length: samples on the axis (frames, rows or columns), >= 1.
        window: span size, >= 1; a window at least as long as the axis gives one span
            [0, length).
        overlap: samples shared by consecutive spans, 0 <= overlap < window.
        what: name used in the error message (e.g. "tile", "temporal window").

    Returns:
        Spans in increasing order; the first starts at 0, the last ends at ``length``, each
        has size ``min(window, length)``; consecutive spans share at least ``overlap`` samples.

    Raises:
        StereobenchError: a non-positive length or window, or an overlap outside [0, window).
    """
    if length < 1:
        raise StereobenchError(f"cannot split an axis of {length} samples into {what}s: it must hold at least one")
    if window < 1:
        raise StereobenchError(f"{what} size must be at least 1, got {window}")
    if not 0 <= overlap < window:
        raise StereobenchError(f"{what} overlap must be in [0, {window}) for a {what} of {window}, got {overlap}: "
                               f"choose an overlap smaller than the {what}")
    if length <= window:
        return [(0, length)]
    stride = window - overlap
    starts = list(range(0, length - window, stride)) + [length - window]
    return [(s, s + window) for s in dict.fromkeys(starts)]


def ramp_weights(spans: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Linear cross-fade weights of each span: float64 1-D tensors of the span's size, all > 0.

    Inside an overlap of n samples with a neighbour, one span ramps up (1..n)/(n+1) and the
    other down, so two overlapping ramps sum exactly to one; blending still normalises by the
    accumulated weight (three-way overlaps after the last span's shift).
    """
    weights = []
    for index, (start, end) in enumerate(spans):
        n = end - start
        position = torch.arange(n, dtype=torch.float64)
        weight = torch.ones(n, dtype=torch.float64)
        if index > 0:
            left_overlap = max(spans[index - 1][1] - start, 0)
            if left_overlap:
                weight = torch.minimum(weight, (position + 1) / (left_overlap + 1))
        if index < len(spans) - 1:
            right_overlap = max(end - spans[index + 1][0], 0)
            if right_overlap:
                weight = torch.minimum(weight, (n - position) / (right_overlap + 1))
        weights.append(weight)
    return weights


@dataclass(frozen=True)
class WindowPlan:
    """The spans and ramps of a (T, H, W) volume split by (temporal, spatial) settings."""

    frames: list[tuple[int, int]]
    rows: list[tuple[int, int]]
    cols: list[tuple[int, int]]

    @classmethod
    def build(cls, frames: int, height: int, width: int, temporal: tuple[int, int], spatial: tuple[int, int]) -> "WindowPlan":
        """temporal: (window frames, overlap frames); spatial: (tile side px, tile overlap px)."""
        return cls(windows_1d(frames, *temporal, what="temporal window"),
                   windows_1d(height, *spatial, what="tile"), windows_1d(width, *spatial, what="tile"))

    def __len__(self) -> int:
        return len(self.frames) * len(self.rows) * len(self.cols)


def iter_blended(window_fn: WindowFn, shape: tuple[int, int, int, int], temporal: tuple[int, int],
                 spatial: tuple[int, int], device: torch.device | str = "cpu",
                 on_window: Callable[[], None] | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """Run ``window_fn`` on every window and yield the blended frames as soon as they are final.

    Args:
        window_fn: (frame slice, row slice, col slice) -> (t, C, h, w) float tensor.
        shape: (T, C, H, W) of the output.
        temporal: (window frames, overlap frames).
        spatial: (tile side in px, tile overlap in px); tiles only when a side exceeds it.
        device: where the blend is accumulated.
        on_window: called after each window (progress bars).

    Yields:
        (first frame index, float32 (n, C, H, W)) in frame order, covering [0, T) exactly once.
        Frames are final once no later temporal window covers them; memory holds at most one
        temporal window plus its overlap. Windows run in (frame, row, col) order, so the sums
        (and the float rounding) equal those of :func:`blend_windows`.
    """
    frames, channels, height, width = shape
    plan = WindowPlan.build(frames, height, width, temporal, spatial)
    t_w, y_w, x_w = ramp_weights(plan.frames), ramp_weights(plan.rows), ramp_weights(plan.cols)
    buffer_start = 0
    out = torch.zeros((0, channels, height, width), dtype=torch.float32, device=device)
    total = torch.zeros((0, 1, height, width), dtype=torch.float32, device=device)
    for ti, (t0, t1) in enumerate(plan.frames):
        grow = t1 - (buffer_start + out.shape[0])
        if grow > 0:
            out = torch.cat([out, out.new_zeros((grow, channels, height, width))])
            total = torch.cat([total, total.new_zeros((grow, 1, height, width))])
        local = slice(t0 - buffer_start, t1 - buffer_start)
        for yi, (y0, y1) in enumerate(plan.rows):
            for xi, (x0, x1) in enumerate(plan.cols):
                ys, xs = slice(y0, y1), slice(x0, x1)
                result = window_fn(slice(t0, t1), ys, xs).to(device=device, dtype=torch.float32)
                weight = t_w[ti][:, None, None, None] * y_w[yi][None, None, :, None] * x_w[xi][None, None, None, :]
                weight = weight.to(device=device, dtype=torch.float32)
                out[local, :, ys, xs] += result * weight
                total[local, :, ys, xs] += weight
                if on_window is not None:
                    on_window()
        final_end = plan.frames[ti + 1][0] if ti + 1 < len(plan.frames) else frames
        done = final_end - buffer_start
        if done > 0:
            yield buffer_start, out[:done] / total[:done]
            out, total = out[done:], total[done:]
            buffer_start = final_end


def blend_windows(window_fn: WindowFn, shape: tuple[int, int, int, int], temporal: tuple[int, int],
                  spatial: tuple[int, int], device: torch.device | str = "cpu", progress: bool = False,
                  desc: str = "windows") -> torch.Tensor:
    """Run ``window_fn`` on overlapping (frames, rows, cols) windows and cross-fade the results.

    Arguments as :func:`iter_blended`; ``progress`` shows a bar named ``desc`` when there is
    more than one window.

    Returns:
        float32 (T, C, H, W), every sample a convex combination of the windows covering it.
    """
    from tqdm.auto import tqdm

    frames, channels, height, width = shape
    jobs = len(WindowPlan.build(frames, height, width, temporal, spatial))
    bar = tqdm(total=jobs, desc=desc, disable=not progress or jobs == 1)
    out = torch.empty(shape, dtype=torch.float32, device=device)
    try:
        for start, block in iter_blended(window_fn, shape, temporal, spatial, device, on_window=lambda: bar.update(1)):
            out[start:start + block.shape[0]] = block
    finally:
        bar.close()
    return out
