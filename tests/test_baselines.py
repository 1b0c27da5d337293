"""Classical baselines: the shared adapter contract, each rule against an analytic reference,
and the expected ordering on a scene with exact ground truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from methods.baselines import (
    BackgroundFill, LeftCopy, OpenCVInpaint, TemporalFill, WarpOnly, background_fill,
    nearest_valid_columns, right_view_disparity, temporal_fill,
)
from methods.registry import METHODS
from tests.method_tester import MethodTesterMixin, make_layered_scene


class TestLeftCopy(MethodTesterMixin):
    def make_method(self, **options):
        return LeftCopy(**options)

    def check_outside_mask(self, output, inp):
        assert torch.equal(output, inp.left)  # its promise: the left view, everywhere


class TestWarpOnly(MethodTesterMixin):
    def make_method(self, **options):
        return WarpOnly(**options)


class TestOpenCVTelea(MethodTesterMixin):
    def make_method(self, **options):
        return OpenCVInpaint(**options)


class TestOpenCVNS(MethodTesterMixin):
    def make_method(self, **options):
        return OpenCVInpaint(algorithm="ns", **options)


class TestBackgroundFill(MethodTesterMixin):
    def make_method(self, **options):
        return BackgroundFill(**options)


class TestTemporalFill(MethodTesterMixin):
    def make_method(self, **options):
        return TemporalFill(**options)


def test_registry_names_resolve_to_the_baselines():
    for name, cls in [("left-copy", LeftCopy), ("warp-only", WarpOnly), ("opencv-inpaint", OpenCVInpaint),
                      ("background-fill", BackgroundFill), ("temporal-fill", TemporalFill)]:
        assert METHODS[name] is cls and cls.meta.name == name


def test_right_view_disparity_holes_match_the_analytic_mask():
    inp, _ = make_layered_scene(frames=3, height=48, width=64)
    disp_r = right_view_disparity(inp.disparity)
    assert torch.equal(torch.isnan(disp_r), inp.mask)  # nothing lands exactly on the holes
    # z-buffer: where the square lands, the nearer (foreground) disparity wins
    finite = disp_r[torch.isfinite(disp_r)]
    assert finite.max() == 8.0 and finite.min() == 2.0


def test_nearest_valid_columns_against_a_loop():
    g = torch.Generator().manual_seed(1)
    valid = torch.rand(5, 37, generator=g) > 0.6
    left, right = nearest_valid_columns(valid)
    for r in range(valid.shape[0]):
        cols = np.flatnonzero(valid[r].numpy())
        for x in range(valid.shape[1]):
            lo = cols[cols <= x]
            hi = cols[cols >= x]
            assert left[r, x] == (lo.max() if lo.size else -1)
            assert right[r, x] == (hi.min() if hi.size else valid.shape[1])


def test_background_fill_takes_the_background_side():
    # zero disparity: both neighbours are equally far, so the rule's tie-break (right side) decides
    warped = torch.tensor([0.1, 0.2, 0.9, 0.9, 0.0, 0.0, 0.3, 0.4]).view(1, 1, 1, 8).expand(1, 3, 1, 8).clone()
    mask = torch.tensor([0, 0, 0, 0, 1, 1, 0, 0], dtype=torch.bool).view(1, 1, 1, 8)
    disparity = torch.zeros(1, 1, 1, 8)
    out = background_fill(warped, mask, disparity)
    assert torch.equal(out[0, :, 0, 4:6], torch.full((3, 2), 0.3))
    assert torch.equal(out[~mask.expand_as(out)], warped[~mask.expand_as(out)])
    # a hole at the right border has no right neighbour: the left neighbour is used
    mask2 = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1], dtype=torch.bool).view(1, 1, 1, 8)
    warped2 = warped.clone()
    warped2[..., 5] = 0.7
    out2 = background_fill(warped2, mask2, disparity)
    assert torch.equal(out2[0, :, 0, 6:], torch.full((3, 2), 0.7))


def test_background_fill_prefers_the_farther_neighbour_by_disparity():
    # Left-view disparity: far (0) on x=0..7, near (2) on x=8..11, which lands on x=6..9 of the
    # right view. A hole at x=4,5 (e.g. from mask closing) has its far neighbour on the LEFT.
    w = 12
    disparity = torch.zeros(1, 1, 1, w)
    disparity[..., 8:] = 2.0
    warped = torch.linspace(0.05, 0.6, w).view(1, 1, 1, w).expand(1, 3, 1, w).clone()
    mask = torch.zeros(1, 1, 1, w, dtype=torch.bool)
    mask[..., 4:6] = True
    out = background_fill(warped, mask, disparity)
    assert torch.equal(out[0, 0, 0, 4:6], warped[0, 0, 0, 3].expand(2))


def test_temporal_fill_recovers_the_background_exactly_where_it_was_seen():
    inp, gt = make_layered_scene(frames=4, height=48, width=64)
    out, from_time = temporal_fill(inp.warped, inp.mask, inp.disparity)
    assert from_time.any()
    sel = from_time.expand_as(out)
    # static camera: the background seen in another frame is exactly the ground truth
    assert torch.equal(out[sel], gt[sel])
    # the right-border strip is a hole in every frame: never filled from time
    assert not from_time[..., -2:].any()


def test_temporal_fill_rejects_the_occluder():
    # a hole pixel whose only other non-hole frame shows the near square must not copy it
    inp, gt = make_layered_scene(frames=2, height=48, width=64, velocity=6)
    out, from_time = temporal_fill(inp.warped, inp.mask, inp.disparity)
    disp_r = right_view_disparity(inp.disparity)
    # frame 0's hole lies where the square sits in frame 1 (it moved right): copying it would be wrong
    covered_by_square = (disp_r[1] > 4) & inp.mask[0]
    assert covered_by_square.any()
    assert not (from_time[0] & covered_by_square).any()
    # frame 1's hole shows background in frame 0: accepted and exact
    assert from_time[1].any()
    sel = from_time[1].expand(3, -1, -1)
    assert torch.equal(out[1][sel], gt[1][sel])


def test_opencv_rejects_unknown_algorithm():
    from benchmark.errors import StereobenchError

    with pytest.raises(StereobenchError, match="Did you mean 'telea'"):
        OpenCVInpaint(algorithm="tela")


def _mse(a, b, region):
    region = region.expand_as(a)
    return ((a - b) ** 2)[region].mean().item()


def test_baselines_ordered_on_exact_ground_truth():
    inp, gt = make_layered_scene(frames=6, height=96, width=128, velocity=-5)
    outs = {cls.meta.name: cls().load("cpu").refine(inp) for cls in (LeftCopy, WarpOnly, OpenCVInpaint,
                                                                     BackgroundFill, TemporalFill)}
    inside = {k: _mse(v, gt, inp.mask) for k, v in outs.items()}
    full = {k: _mse(v, gt, torch.ones_like(inp.mask)) for k, v in outs.items()}
    assert inside["temporal-fill"] < inside["background-fill"] < inside["warp-only"], inside
    assert inside["opencv-inpaint"] < inside["warp-only"], inside
    assert full["left-copy"] == max(full.values()), full
