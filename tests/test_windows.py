"""benchmark.windows: temporal windows and spatial tiles with linear cross-fades."""

from __future__ import annotations

import pytest
import torch

from benchmark.errors import StereobenchError
from benchmark.windows import WindowPlan, blend_windows, iter_blended, ramp_weights, windows_1d


def _normalised_total(length: int, window: int, overlap: int) -> torch.Tensor:
    """Sum over spans of (ramp / accumulated ramp) at every position: must be exactly one."""
    spans = windows_1d(length, window, overlap)
    weights = ramp_weights(spans)
    accumulated = torch.zeros(length, dtype=torch.float64)
    for (s, e), w in zip(spans, weights):
        accumulated[s:e] += w
    total = torch.zeros(length, dtype=torch.float64)
    for (s, e), w in zip(spans, weights):
        total[s:e] += w / accumulated[s:e]
    return total


@pytest.mark.parametrize("length,window,overlap", [
    (1, 1, 0), (5, 4, 2), (25, 25, 4), (26, 25, 4), (60, 25, 4), (13, 4, 1), (13, 4, 3), (1088, 1024, 128),
    (100, 7, 0), (9, 8, 7), (3, 10, 9),
])
def test_spans_cover_every_position_and_weights_sum_to_one(length, window, overlap):
    spans = windows_1d(length, window, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(e - s == min(window, length) for s, e in spans)
    # Increasing starts, and consecutive spans share at least `overlap` samples.
    assert all(b[0] > a[0] and a[1] - b[0] >= overlap for a, b in zip(spans, spans[1:]))
    covered = torch.zeros(length, dtype=torch.int64)
    for s, e in spans:
        covered[s:e] += 1
    assert (covered >= 1).all()
    assert torch.allclose(_normalised_total(length, window, overlap), torch.ones(length, dtype=torch.float64), atol=1e-12)
    assert all((w > 0).all() and (w <= 1).all() for w in ramp_weights(spans))


def test_two_window_overlap_is_an_exact_linear_crossfade():
    spans = windows_1d(10, 6, 2)
    assert spans == [(0, 6), (4, 10)]
    first, second = ramp_weights(spans)
    # The shared samples 4 and 5: down 2/3, 1/3 in the first, up 1/3, 2/3 in the second.
    assert first[4:].tolist() == pytest.approx([2 / 3, 1 / 3])
    assert second[:2].tolist() == pytest.approx([1 / 3, 2 / 3])
    assert (first[4:] + second[:2]).tolist() == pytest.approx([1.0, 1.0])


def test_window_longer_than_the_clip_is_one_span():
    assert windows_1d(7, 25, 4) == [(0, 7)]
    assert ramp_weights([(0, 7)])[0].tolist() == [1.0] * 7
    plan = WindowPlan.build(7, 30, 40, temporal=(25, 4), spatial=(1024, 128))
    assert len(plan) == 1 and plan.frames == [(0, 7)] and plan.rows == [(0, 30)] and plan.cols == [(0, 40)]


@pytest.mark.parametrize("length,window,overlap,match", [
    (10, 4, 4, "overlap must be in"), (10, 4, 5, "overlap must be in"), (3, 4, 4, "overlap must be in"),
    (10, 4, -1, "overlap must be in"), (10, 0, 0, "at least 1"), (0, 4, 1, "at least one"),
])
def test_bad_window_settings_are_clear_errors(length, window, overlap, match):
    with pytest.raises(StereobenchError, match=match):
        windows_1d(length, window, overlap)


def test_constant_video_through_identity_windows_is_exact():
    video = torch.full((11, 3, 37, 53), 0.3137)

    def identity(ts, ys, xs):
        return video[ts, :, ys, xs]

    out = blend_windows(identity, tuple(video.shape), temporal=(4, 2), spatial=(16, 5))
    # Convex weights normalised per sample: a constant stays that constant up to float rounding.
    assert (out - video).abs().max() <= 1e-6
    ramp = torch.linspace(0, 1, 53).expand(11, 3, 37, 53)
    out = blend_windows(lambda ts, ys, xs: ramp[ts, :, ys, xs], tuple(ramp.shape), temporal=(5, 1), spatial=(20, 7))
    assert (out - ramp).abs().max() <= 1e-6


def test_tiles_cover_the_edges_and_every_window_is_full_size():
    seen = torch.zeros(9, 1, 45, 70, dtype=torch.int64)
    sizes = set()

    def record(ts, ys, xs):
        seen[ts, :, ys, xs] += 1
        sizes.add((ts.stop - ts.start, ys.stop - ys.start, xs.stop - xs.start))
        return torch.ones(ts.stop - ts.start, 1, ys.stop - ys.start, xs.stop - xs.start)

    out = blend_windows(record, (9, 1, 45, 70), temporal=(4, 1), spatial=(32, 8))
    assert (seen >= 1).all()  # last row, last column and last frame included
    assert sizes == {(4, 32, 32)}  # the last span is shifted back, never a short remainder
    assert torch.equal(out, torch.ones_like(out))


def test_streaming_blend_yields_each_frame_once_in_order_with_bounded_memory():
    video = torch.rand(23, 2, 12, 14, generator=torch.Generator().manual_seed(0))

    def model(ts, ys, xs):  # position-independent: the blend must equal the direct result
        return torch.tanh(2 * video[ts, :, ys, xs])

    calls = []
    pieces = list(iter_blended(model, tuple(video.shape), temporal=(6, 2), spatial=(8, 3), on_window=lambda: calls.append(1)))
    starts = [start for start, _ in pieces]
    assert starts == sorted(starts) and starts[0] == 0
    assert sum(block.shape[0] for _, block in pieces) == 23
    assert all(block.shape[0] <= 6 for _, block in pieces)  # never more than one window of frames held
    assert len(calls) == len(WindowPlan.build(23, 12, 14, (6, 2), (8, 3)))
    streamed = torch.cat([block for _, block in pieces])
    assert torch.allclose(streamed, torch.tanh(2 * video), atol=1e-6)
    # blend_windows is the same computation collected into one tensor (bit-identical).
    assert torch.equal(streamed, blend_windows(model, tuple(video.shape), temporal=(6, 2), spatial=(8, 3)))


def test_blend_matches_an_independent_numpy_accumulation():
    """Weighted average of position-dependent window results, recomputed with NumPy loops."""
    import numpy as np

    shape = (7, 1, 10, 9)

    def window_value(ts, ys, xs):
        # Depends on the window: a different constant per window, so the weights matter.
        return torch.full((ts.stop - ts.start, 1, ys.stop - ys.start, xs.stop - xs.start), float(ts.start * 100 + ys.start * 10 + xs.start))

    out = blend_windows(window_value, shape, temporal=(4, 2), spatial=(6, 2))
    t_spans, y_spans, x_spans = windows_1d(7, 4, 2), windows_1d(10, 6, 2), windows_1d(9, 6, 2)
    num = np.zeros(shape)
    den = np.zeros(shape)
    for t0, t1 in t_spans:
        for y0, y1 in y_spans:
            for x0, x1 in x_spans:
                def ramp(spans, s, e):
                    i = spans.index((s, e))
                    n = e - s
                    w = np.ones(n)
                    if i > 0 and spans[i - 1][1] > s:
                        k = spans[i - 1][1] - s
                        w = np.minimum(w, (np.arange(n) + 1) / (k + 1))
                    if i < len(spans) - 1 and e > spans[i + 1][0]:
                        k = e - spans[i + 1][0]
                        w = np.minimum(w, (n - np.arange(n)) / (k + 1))
                    return w
                weight = np.einsum("t,y,x->tyx", ramp(t_spans, t0, t1), ramp(y_spans, y0, y1), ramp(x_spans, x0, x1))[:, None]
                num[t0:t1, :, y0:y1, x0:x1] += weight * (t0 * 100 + y0 * 10 + x0)
                den[t0:t1, :, y0:y1, x0:x1] += weight
    assert np.allclose(out.numpy(), num / den, rtol=1e-6)
