"""Analytic tests of the shared forward warp, hole-mask morphology, and the native warps
against literal NumPy / per-pixel references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.errors import StereobenchError
from benchmark.stereo import WARPS, get_warp
from benchmark.stereo.native_warps import (
    reference_m2svid_scatter_numpy, reference_svg_warp_numpy, warp_m2svid, warp_stereocrafter, warp_svg)
from benchmark.stereo.warp import close_hole_mask, dilate_mask, forward_warp, forward_warp_with_weights


def _rand(shape, seed=0, dtype=torch.float32):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("shift", [0, 1, 3, 7])
def test_constant_integer_disparity_shifts_exactly(shift):
    left = _rand((2, 3, 5, 24))
    disparity = torch.full((2, 1, 5, 24), float(shift))
    warped, hole = forward_warp(left, disparity)
    # x_R = x_L - d: right column c shows left column c + d.
    assert torch.equal(warped[..., : 24 - shift], left[..., shift:])
    assert not hole[..., : 24 - shift].any()
    assert hole[..., 24 - shift:].all()  # the strip that left the frame
    assert (warped[..., 24 - shift:] == 0).all()


def test_negative_disparity_moves_right():
    left = _rand((1, 3, 4, 16))
    warped, hole = forward_warp(left, torch.full((1, 1, 4, 16), -2.0))
    assert torch.equal(warped[..., 2:], left[..., :-2])
    assert hole[..., :2].all() and not hole[..., 2:].any()


def test_subpixel_disparity_interpolates_and_conserves_weight():
    left = _rand((1, 3, 3, 30), seed=1, dtype=torch.float64)
    d = 2.3
    warped, hole, weight = forward_warp_with_weights(left, torch.full((1, 1, 3, 30), d, dtype=torch.float64))
    # Column c receives 0.7 from source c + 2 (lands at c - 0.3) and 0.3 from c + 3 (lands at c + 0.7).
    expected = 0.7 * left[..., 2:29] + 0.3 * left[..., 3:30]
    torch.testing.assert_close(warped[..., :27], expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(weight[..., :27], torch.ones_like(weight[..., :27]), rtol=0, atol=1e-12)
    # Every source that lands fully inside deposits weight 1: the total weight is the number of
    # in-frame splat weight, 27 full columns + 0.7 from source 29 landing at 26.7.
    torch.testing.assert_close(weight.sum(), torch.tensor(3 * (27 + 0.7), dtype=torch.float64))
    assert not hole[..., :28].any()


def test_linear_ramp_is_reproduced_at_fractional_disparity():
    ramp = torch.linspace(0, 1, 40).view(1, 1, 1, 40).expand(1, 3, 4, 40).contiguous()
    warped, _ = forward_warp(ramp, torch.full((1, 1, 4, 40), 4.5))
    torch.testing.assert_close(warped[..., :35], ramp[..., 4:39] + 0.5 / 39, atol=1e-6, rtol=0)


def test_near_square_occludes_background_and_leaves_hole_on_the_right():
    h, w = 10, 40
    left = torch.zeros(1, 3, h, w)
    left[:, 0] = 0.2  # background: dark red
    left[:, 1, 3:7, 15:21] = 1.0  # near square: green
    left[:, 0, 3:7, 15:21] = 0.0
    disparity = torch.full((1, 1, h, w), 2.0)
    disparity[..., 3:7, 15:21] = 7.0
    warped, hole = forward_warp(left, disparity)
    rows = slice(3, 7)
    # The square moves 7 px left: columns 8..13 are pure green (no background bleeding through).
    assert torch.allclose(warped[0, 1, rows, 8:14], torch.ones(4, 6))
    assert torch.allclose(warped[0, 0, rows, 8:14], torch.zeros(4, 6))
    # Background sources 15..20 are hidden in the left view; background at x lands at x - 2, so
    # right columns 14..18 (= d_near - d_far = 5 columns right of the square's right edge 13) are holes.
    assert hole[0, 0, rows, 14:19].all()
    assert not hole[0, 0, rows, 19:w - 2].any()
    assert not hole[0, 0, rows, :14].any()
    # Left of the square the background continues without holes, and rows without the square
    # have only the right-edge strip.
    assert not hole[0, 0, 0, : w - 2].any()
    assert hole[0, 0, :, w - 2:].all()


def _shared_warp_loop(left: np.ndarray, disparity: np.ndarray, tolerance: float = 0.5, min_coverage: float = 0.5):
    """Per-pixel loop of the documented rule (docs/stereo.md): tent splats, z-buffer over the
    contributions with weight > 0, accept d >= z_max - tolerance, coverage = sum of accepted
    tents, hole where coverage < min_coverage, colour = tent-weighted mean of the accepted."""
    c, h, w = left.shape
    out = np.zeros((c, h, w))
    coverage = np.zeros((h, w))
    for y in range(h):
        contributions = {}
        for x in range(w):
            xr = x - disparity[y, x]
            x0 = int(np.floor(xr))
            for target, tent in ((x0, 1 - (xr - x0)), (x0 + 1, xr - x0)):
                if tent > 0 and 0 <= target < w:
                    contributions.setdefault(target, []).append((disparity[y, x], tent, left[:, y, x]))
        for target, items in contributions.items():
            z_max = max(d for d, _, _ in items)
            accepted = [(tent, colour) for d, tent, colour in items if d >= z_max - tolerance]
            cov = sum(tent for tent, _ in accepted)
            if cov >= min_coverage:
                coverage[y, target] = cov
                out[:, y, target] = sum(tent * colour for tent, colour in accepted) / cov
    return out, coverage < min_coverage, coverage


@pytest.mark.parametrize("min_coverage", [0.5, 1e-3])
def test_shared_warp_equals_per_pixel_loop(min_coverage):
    left = _rand((2, 3, 7, 26), seed=15, dtype=torch.float64)
    x = torch.arange(26, dtype=torch.float64)
    # Slanted (compressed and stretched) surfaces, a near block with fractional edges, noise.
    disparity = (3 + 2.5 * torch.sin(x / 3)).view(1, 1, 1, 26).repeat(2, 1, 7, 1)
    disparity = disparity + _rand((2, 1, 7, 26), seed=16, dtype=torch.float64) * 0.8
    disparity[:, :, 2:6, 9:15] += 5.3
    warped, hole, coverage = forward_warp_with_weights(left, disparity, min_coverage=min_coverage)
    for t in range(2):
        ref, ref_hole, ref_cov = _shared_warp_loop(left[t].numpy(), disparity[t, 0].numpy(), min_coverage=min_coverage)
        assert np.array_equal(hole[t, 0].numpy(), ref_hole)
        np.testing.assert_allclose(coverage[t, 0].numpy(), ref_cov, atol=1e-12)
        np.testing.assert_allclose(warped[t].numpy(), ref, atol=1e-12)
    assert 0.02 < hole[..., :20].double().mean() < 0.5  # the case has holes, but is mostly filled


@pytest.mark.parametrize("d_near", [2.3, 2.6])
def test_half_covered_edge_pixels_are_holes(d_near):
    """Pixel-centre rule: a target that the front surface covers by less than half is a hole."""
    left = torch.zeros(1, 3, 1, 24, dtype=torch.float64)
    left[:, 0] = 0.25  # far background, disparity 0
    left[:, 1, :, 10:16] = 1.0  # near block, sources 10..15, lands at 10 - d .. 15 - d
    left[:, 0, :, 10:16] = 0.0
    disparity = torch.zeros(1, 1, 1, 24, dtype=torch.float64)
    disparity[..., 10:16] = d_near
    frac = 1 - (d_near - 2)  # source 15 lands at 13 - (d_near - 2): target 13 gets 1 - (d_near - 2)
    warped, hole, coverage = forward_warp_with_weights(left, disparity)
    # Occluding (left) edge: source 10 lands at 7 + frac; target 7 is covered 1 - frac by the block,
    # the background there is rejected (behind the block).
    assert float(coverage[0, 0, 0, 7]) == pytest.approx(1 - frac if 1 - frac >= 0.5 else 0.0)
    assert bool(hole[0, 0, 0, 7]) == (1 - frac < 0.5)
    # Disocclusion (right) edge: target 13 is covered frac by source 15; 14 and 15 see nothing.
    assert bool(hole[0, 0, 0, 13]) == (frac < 0.5)
    assert hole[0, 0, 0, 14:16].all() and not hole[0, 0, 0, 16:].any() and not hole[0, 0, 0, :7].any()
    filled = ~hole[0, 0, 0]
    filled[:7] = False  # filled columns 7..13 are pure block colour: no background mixed in
    filled[14:] = False
    assert int(filled.sum()) == 6
    torch.testing.assert_close(warped[0, 1, 0][filled], torch.ones(6, dtype=torch.float64), atol=1e-12, rtol=0)
    assert (warped[0, 0, 0][filled] == 0).all()
    # The old rule (any weight) fills both edge pixels with the block's colour.
    _, hole_any = forward_warp(left, disparity, min_coverage=1e-3)
    assert not hole_any[0, 0, 0, 7] and not hole_any[0, 0, 0, 13]


@pytest.mark.parametrize("stretch,max_hole_fraction", [(1.4, 0.0), (3.0, 0.75)])
def test_stretched_surface_cracks_only_beyond_the_coverage_limit(stretch, max_hole_fraction):
    """A surface stretched by s covers each target by about 1/s (tent weights sum to >= 2 - s):
    no cracks up to s = 1.5; at s = 3 only the targets within half a pixel of a landing stay."""
    w = 60
    x = torch.arange(w, dtype=torch.float64)
    disparity = (40 - (stretch - 1) * x).view(1, 1, 1, w).clamp(min=0)  # x_R = x - d = stretch * x - 40
    left = _rand((1, 3, 1, w), seed=17, dtype=torch.float64)
    _, hole = forward_warp(left, disparity)
    fraction = float(hole[0, 0, 0, 2:12].double().mean())  # targets 2..11 lie inside the stretched part
    if max_hole_fraction == 0.0:
        assert fraction == 0.0
    else:
        assert 1 - 1 / stretch - 0.1 < fraction <= max_hole_fraction  # about 2/3 of the targets


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), -5.0, 1e30, -1e30])
def test_no_nans_with_bad_disparity(bad):
    left = _rand((2, 3, 6, 20))
    disparity = _rand((2, 1, 6, 20), seed=3) * 4
    disparity[0, 0, 2, 5:9] = bad
    disparity[1] = bad
    warped, hole = forward_warp(left, disparity)
    assert torch.isfinite(warped).all()
    assert warped.min() >= 0 and warped.max() <= 1
    if not np.isfinite(bad) or abs(bad) > 100:
        assert hole[1].all()  # every source invalid or out of frame


def test_nan_colours_are_dropped():
    left = _rand((1, 3, 4, 12))
    left[0, :, 1, 3] = float("nan")
    warped, hole = forward_warp(left, torch.zeros(1, 1, 4, 12))
    assert torch.isfinite(warped).all()
    assert hole[0, 0, 1, 3] and hole.sum() == 1


def test_float32_matches_float64():
    left = _rand((3, 3, 16, 48), seed=4, dtype=torch.float64)
    disparity = 3 + 6 * torch.sin(torch.linspace(0, 6, 48)).view(1, 1, 1, 48) * torch.ones(3, 1, 16, 1, dtype=torch.float64)
    disparity[:, :, 4:9, 20:30] += 9  # an occluding block
    w64, h64 = forward_warp(left, disparity)
    w32, h32 = forward_warp(left.float(), disparity.float())
    assert (h64 == h32).float().mean() > 0.999
    same = ~(h64 | h32)
    torch.testing.assert_close(w32.double()[same.expand_as(w32)], w64[same.expand_as(w64)], atol=2e-4, rtol=0)


def test_chunking_does_not_change_the_result():
    left, disparity = _rand((5, 3, 8, 20)), _rand((5, 1, 8, 20), seed=2) * 6
    b = forward_warp(left, disparity, frames_per_chunk=None)
    for chunks in (dict(frames_per_chunk=2), dict(), dict(rows_per_chunk=3), dict(frames_per_chunk=0, rows_per_chunk=1)):
        a = forward_warp(left, disparity, **chunks)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), chunks


def test_mismatched_inputs_raise_one_line_errors():
    with pytest.raises(StereobenchError, match="frames"):
        forward_warp(torch.rand(3, 3, 4, 4), torch.rand(2, 1, 4, 4))
    with pytest.raises(StereobenchError, match="4x5"):
        forward_warp(torch.rand(2, 3, 4, 4), torch.rand(2, 1, 4, 5))
    with pytest.raises(StereobenchError, match="unknown warp"):
        get_warp("sharde")


def test_closing_and_dilation_match_opencv():
    cv2 = pytest.importorskip("cv2")
    mask = _rand((3, 1, 40, 50), seed=5) > 0.93
    for k in (3, 5, 11):
        kernel = np.ones((k, k), np.uint8)
        ours = close_hole_mask(mask, k)
        ours_d = dilate_mask(mask, k)
        for t in range(3):
            m = mask[t, 0].numpy().astype(np.uint8)
            assert np.array_equal(ours[t, 0].numpy(), cv2.morphologyEx(m, cv2.MORPH_CLOSE, kernel).astype(bool))
            assert np.array_equal(ours_d[t, 0].numpy(), cv2.dilate(m, kernel).astype(bool))
    assert torch.equal(close_hole_mask(mask, 1), mask)


# ---- native warps -----------------------------------------------------------------------------

def test_m2svid_vectorised_equals_literal_numpy():
    left = _rand((3, 3, 9, 33), seed=6)
    disparity = _rand((3, 1, 9, 33), seed=7) * 12 - 2  # includes negative and fractional values
    disparity[1, 0, 2, :5] = 4.0  # integer values: the zero-weight second pass
    warped, hole = warp_m2svid(left, disparity)
    for t in range(3):
        ref_img, ref_hole = reference_m2svid_scatter_numpy(left[t].permute(1, 2, 0).numpy(), disparity[t, 0].numpy())
        np.testing.assert_allclose(warped[t].permute(1, 2, 0).numpy(), ref_img, atol=1e-6)
        assert np.array_equal(hole[t, 0].numpy(), ref_hole)


def test_svg_vectorised_equals_literal_numpy():
    pytest.importorskip("cv2")
    g = torch.Generator().manual_seed(8)
    left = torch.rand(2, 3, 14, 40, generator=g, dtype=torch.float64)
    x = torch.linspace(0, 1, 40, dtype=torch.float64)
    disparity = (2 + 3 * x).view(1, 1, 1, 40).repeat(2, 1, 14, 1) + 0.3 * torch.rand(2, 1, 14, 40, generator=g,
                                                                                      dtype=torch.float64)
    disparity[:, :, 3:10, 12:22] += 6  # a near block with disocclusions
    warped, hole = warp_svg(left, disparity)
    for t in range(2):
        ref_img, ref_hole = reference_svg_warp_numpy(left[t].permute(1, 2, 0).numpy(), disparity[t, 0].numpy())
        assert np.array_equal(hole[t, 0].numpy(), ref_hole)
        np.testing.assert_allclose(warped[t].permute(1, 2, 0).numpy(), ref_img, atol=1e-9)


def test_svg_float32_and_frame_chunks_equal_literal_numpy():
    """float32 input (the clean-up then filters in float32) over 3 frames (chunks of 2 + 1) on a
    larger frame: the same holes as the float64 NumPy reference, colours within 1e-5."""
    pytest.importorskip("cv2")
    g = torch.Generator().manual_seed(18)
    left = torch.rand(3, 3, 48, 96, generator=g)
    x = torch.linspace(0, 1, 96)
    disparity = (3 + 9 * x).view(1, 1, 1, 96).repeat(3, 1, 48, 1) + 2 * torch.rand(3, 1, 48, 96, generator=g)
    disparity[:, :, 10:30, 30:50] += 12
    disparity[1, :, 35:, :20] *= 0.5  # a stretched patch: cracks to fill
    warped, hole = warp_svg(left, disparity)
    assert warped.dtype == torch.float32
    for t in range(3):
        ref_img, ref_hole = reference_svg_warp_numpy(left[t].permute(1, 2, 0).double().numpy(),
                                                     disparity[t, 0].double().numpy())
        assert np.array_equal(hole[t, 0].numpy(), ref_hole)
        np.testing.assert_allclose(warped[t].permute(1, 2, 0).numpy(), ref_img, atol=1e-5)


def _stereocrafter_loop(left: np.ndarray, disparity: np.ndarray):
    """Per-pixel loop of the Forward_Warp CUDA kernel (bilinear) + ForwardWarpStereo."""
    t_, c, h, w = left.shape
    weights = 1.414 ** (disparity - disparity.min())
    acc = np.zeros((t_, c, h, w))
    wsum = np.zeros((t_, h, w))
    ones = np.zeros((t_, h, w))
    for t in range(t_):
        for y in range(h):
            for x in range(w):
                xf = x - disparity[t, 0, y, x]
                yf = float(y)
                x0, y0 = int(np.floor(xf)), int(np.floor(yf))
                if x0 >= 0 and x0 + 1 < w and y0 >= 0 and y0 + 1 < h:
                    for (xx, yy, k) in ((x0, y0, (x0 + 1 - xf) * (y0 + 1 - yf)), (x0 + 1, y0, (xf - x0) * (y0 + 1 - yf)),
                                        (x0, y0 + 1, (x0 + 1 - xf) * (yf - y0)), (x0 + 1, y0 + 1, (xf - x0) * (yf - y0))):
                        acc[t, :, yy, xx] += k * left[t, :, y, x] * weights[t, 0, y, x]
                        wsum[t, yy, xx] += k * weights[t, 0, y, x]
                        ones[t, yy, xx] += k
    out = acc / np.maximum(wsum, 1e-6)[:, None]
    return out, 1 - np.clip(ones, 0, 1)[:, None]


def test_stereocrafter_matches_per_pixel_kernel_loop():
    left = _rand((2, 3, 6, 15), seed=9, dtype=torch.float64)
    disparity = _rand((2, 1, 6, 15), seed=10, dtype=torch.float64) * 6 - 1
    warped, soft = warp_stereocrafter(left, disparity, return_soft_mask=True)
    ref, ref_soft = _stereocrafter_loop(left.numpy(), disparity.numpy())
    np.testing.assert_allclose(soft.numpy(), ref_soft, atol=1e-9)
    np.testing.assert_allclose(warped.numpy(), ref, atol=1e-9)
    assert soft[:, :, -1].eq(1).all()  # the official kernel never fills the bottom row


@pytest.mark.parametrize("name", ["shared", "m2svid", "stereocrafter", "svg"])
def test_every_registered_warp_is_finite_and_shaped(name):
    left = _rand((2, 3, 10, 24), seed=11)
    disparity = _rand((2, 1, 10, 24), seed=12) * 5 + 0.5
    disparity[0, 0, 0, 0] = float("nan")
    warped, hole = WARPS[name](left, disparity)
    assert warped.shape == left.shape and hole.shape == (2, 1, 10, 24) and hole.dtype == torch.bool
    assert torch.isfinite(warped).all()
    assert (warped.masked_select(hole.expand_as(warped)) == 0).all()


def test_shared_warp_on_middlebury_is_at_least_as_good_as_native_warps():
    """Real stereo pair (Middlebury 2014 via scikit-image): PSNR of each warp against the real
    right view over the pixels that every warp fills and whose GT disparity is valid."""
    skdata = pytest.importorskip("skimage.data")
    left_np, right_np, disp_np = skdata.stereo_motorcycle()
    left = torch.from_numpy(left_np).permute(2, 0, 1)[None].float() / 255
    right = torch.from_numpy(right_np).permute(2, 0, 1)[None].float() / 255
    disparity = torch.from_numpy(disp_np)[None, None].float()
    valid = torch.isfinite(disparity)
    disparity = torch.where(valid, disparity, torch.full_like(disparity, float("nan")))
    outputs = {name: WARPS[name](left, disparity) for name in ("shared", "m2svid", "stereocrafter", "svg")}
    common = valid.clone()
    for _, hole in outputs.values():
        common &= ~hole
    assert common.float().mean() > 0.7
    psnr = {}
    for name, (warped, _) in outputs.items():
        mse = ((warped - right) ** 2 * common).sum() / (3 * common.sum())
        psnr[name] = float(10 * torch.log10(1 / mse))
    assert psnr["shared"] >= max(psnr[n] for n in ("m2svid", "stereocrafter", "svg")), psnr
    assert psnr["shared"] > 27.0, psnr


@pytest.mark.gpu
def test_shared_warp_same_on_gpu():
    left, disparity = _rand((2, 3, 32, 64), seed=13), _rand((2, 1, 32, 64), seed=14) * 9
    w_cpu, h_cpu = forward_warp(left, disparity)
    w_gpu, h_gpu = forward_warp(left.cuda(), disparity.cuda())
    assert (h_gpu.cpu() == h_cpu).float().mean() > 0.999
    torch.testing.assert_close(w_gpu.cpu(), w_cpu, atol=1e-4, rtol=0)


# ---- quality against an exact right view (synthetic) ----------------------------------------------

@pytest.fixture(scope="module")
def synthetic_quality():
    from benchmark.datasets import get_dataset
    from benchmark.warp_quality import compare_warps

    tables = {}
    for integer in (True, False):
        ds = get_dataset("synthetic", num_clips=2, size=128, num_frames=4, integer_disparity=integer)
        tables[integer] = {r["warp"]: r for r in compare_warps(ds.load_clip(n) for n in ds.clip_names())}
    return tables


@pytest.mark.parametrize("integer", [True, False])
def test_shared_warp_on_synthetic_own_pixels_at_least_as_good(synthetic_quality, integer):
    """Exact right views (point-sampled renders): on each warp's own non-hole pixels the shared
    warp is at least as good as every native warp, with integer and fractional disparities."""
    rows = synthetic_quality[integer]
    best_native = max(rows[n]["psnr_own"] for n in ("m2svid", "stereocrafter", "svg"))
    assert rows["shared"]["psnr_own"] >= best_native - 1e-9, rows
    if integer:  # whole-pixel shifts: the shared warp is exact inside surfaces, as M2SVid's scatter
        best_common = max(rows[n]["psnr_common"] for n in ("m2svid", "stereocrafter", "svg"))
        assert rows["shared"]["psnr_common"] >= best_common - 1e-9, rows
        assert rows["shared"]["psnr_common"] > 30.0


# With fractional disparities the renders' depth edges fall on a pixel either side of where any
# warp can put them (point sampling in both eyes); M2SVid's scan-order blend of two writers is
# then closer in squared error than the shared warp's pixel-centre decision (27.30 vs 27.70 dB on
# the common pixels here, 33.47 vs 33.68 at 4 x 16 x 512^2). Kept visible, see docs/datasets.md.
@pytest.mark.xfail(reason="fractional synthetic, common pixels: M2SVid's edge blend wins (docs/datasets.md)",
                   strict=False)
def test_shared_warp_on_synthetic_fractional_common_pixels(synthetic_quality):
    rows = synthetic_quality[False]
    assert rows["shared"]["psnr_common"] >= max(rows[n]["psnr_common"] for n in ("m2svid", "stereocrafter", "svg"))
