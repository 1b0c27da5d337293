"""Metrics against independent references: scikit-image's PSNR, pytorch_msssim, the lpips
package's own forward, analytic cases; protocol identities; empty regions; bad input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from pytorch_msssim import ms_ssim as reference_ms_ssim
from skimage.metrics import peak_signal_noise_ratio

from benchmark.errors import StereobenchError
from benchmark.metrics import METRICS, Scorer, get_metric, score_videos, validate_metric_names
from benchmark.metrics import functional as fn
from benchmark.metrics.base import Metric, Record
from benchmark.metrics.lpips_weights import FIX_COMMAND, weight_path
from benchmark.metrics.spec import METRIC_SPECS, SCORING_PROTOCOLS, MetricSpec

T, H, W = 4, 176, 176  # MS-SSIM needs > 160 px


def _pair(seed=0, t=T, h=H, w=W, noise=0.05):
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(t, 3, h, w, generator=g)
    pred = (gt + noise * torch.randn(t, 3, h, w, generator=g)).clamp(0, 1)
    return pred, gt


def _holes(t=T, h=H, w=W):
    mask = torch.zeros(t, 1, h, w, dtype=torch.bool)
    mask[:, :, 40:90, 60:100] = True
    mask[:, :, :, -12:] = True  # the strip at the right edge that leaves the frame
    return mask


def _value(rows, metric, region, protocol):
    (row,) = [r for r in rows if (r["metric"], r["region"], r["protocol"]) == (metric, region, protocol)]
    return row


def _need_alex():
    if not weight_path("alex").is_file():
        pytest.skip(f"LPIPS AlexNet weights not built; run {FIX_COMMAND}")


def test_registry_matches_declared_specs():
    assert set(METRICS) == set(METRIC_SPECS)
    for name, metric in METRICS.items():
        assert metric.spec is METRIC_SPECS[name]
    with pytest.raises(StereobenchError, match="Did you mean 'psnr'"):
        get_metric("psnrr")
    with pytest.raises(StereobenchError, match="Did you mean 'lpips_vgg'"):
        Scorer(metrics=["lpips_vg"])


def test_psnr_matches_skimage_full_and_on_region_pixels():
    pred, gt = _pair()
    mask = _holes()
    expected = peak_signal_noise_ratio(gt.numpy(), pred.numpy(), data_range=1.0)
    assert fn.psnr(pred, gt) == pytest.approx(expected, abs=1e-5)
    # strict: PSNR over exactly the region's pixels (all channels)
    sel = mask.expand(-1, 3, -1, -1)
    expected_inside = peak_signal_noise_ratio(gt[sel].numpy(), pred[sel].numpy(), data_range=1.0)
    assert fn.psnr(pred, gt, mask.float()) == pytest.approx(expected_inside, abs=1e-5)
    # paper: whitened copies through skimage
    wp, wg = fn.whiten_outside(pred, mask), fn.whiten_outside(gt, mask)
    rows = score_videos(pred, gt, mask, metrics=["psnr"])
    assert _value(rows, "psnr", "inside", "paper")["value"] == pytest.approx(
        peak_signal_noise_ratio(wg.numpy(), wp.numpy(), data_range=1.0), abs=1e-5)
    assert _value(rows, "psnr", "inside", "strict")["value"] == pytest.approx(expected_inside, abs=1e-5)
    # the paper protocol inflates: the white area matches exactly
    assert _value(rows, "psnr", "inside", "paper")["value"] > expected_inside + 5


def test_msssim_matches_pytorch_msssim_3d_and_per_frame():
    pred, gt = _pair(t=16, h=168, w=172)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_3d = reference_ms_ssim(gt.permute(1, 0, 2, 3)[None], pred.permute(1, 0, 2, 3)[None], data_range=1.0)
        ref_2d = torch.stack([reference_ms_ssim(gt[t:t + 1], pred[t:t + 1], data_range=1.0) for t in range(16)]).mean()
    ones = torch.ones(16, 1, 168, 172)
    full_3d, strict_3d = fn.msssim_video(pred, gt, [None, ones])
    full_2d, strict_2d = fn.msssim_frames(pred, gt, [None, ones])
    assert full_3d == pytest.approx(float(ref_3d), abs=2e-6)
    assert full_2d == pytest.approx(float(ref_2d), abs=2e-6)
    # the strict (weighted-map) implementation equals pytorch_msssim on an all-ones mask
    assert strict_3d == pytest.approx(float(ref_3d), abs=2e-6)
    assert strict_2d == pytest.approx(float(ref_2d), abs=2e-6)
    assert abs(full_3d - full_2d) > 1e-4  # the two MS-SSIMs are different numbers


def test_strict_msssim_2d_leaves_out_frames_without_region():
    pred, gt = _pair()
    mask = torch.zeros(T, 1, H, W, dtype=torch.bool)
    mask[:2] = True  # the region is the whole of frames 0 and 1, nothing of frames 2 and 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = reference_ms_ssim(gt[:2], pred[:2], data_range=1.0)
    (value,) = fn.msssim_frames(pred, gt, [mask.float()])
    assert value == pytest.approx(float(expected), abs=2e-6)


def test_strict_equals_paper_when_mask_is_all_true():
    _need_alex()
    pred, gt = _pair(t=9)
    mask = torch.ones(9, 1, H, W, dtype=torch.bool)
    metrics = ["psnr", "msssim", "msssim_2d", "lpips_alex", "temporal_stability"]
    rows = score_videos(pred, gt, mask, metrics=metrics, regions=("full", "inside"))
    for metric in metrics:
        full = _value(rows, metric, "full", "paper")["value"]
        paper = _value(rows, metric, "inside", "paper")["value"]
        strict = _value(rows, metric, "inside", "strict")["value"]
        assert math.isfinite(full), metric
        assert paper == pytest.approx(full, rel=1e-6, abs=1e-7), metric
        assert strict == pytest.approx(paper, rel=1e-6, abs=1e-7), metric
        assert _value(rows, metric, "full", "strict")["value"] == full


def test_identical_videos_give_cap_one_and_zero():
    _need_alex()
    _, gt = _pair(t=9)
    mask = _holes(t=9)
    rows = score_videos(gt.clone(), gt, mask, metrics=["psnr", "msssim", "msssim_2d", "lpips_alex", "temporal_stability"])
    for row in rows:
        expected = {"psnr": fn.PSNR_CAP_DB, "msssim": 1.0, "msssim_2d": 1.0, "lpips_alex": 0.0,
                    "temporal_stability": 0.0}[row["metric"]]
        assert row["value"] == pytest.approx(expected, abs=1e-5), row


def test_lpips_split_matches_lpips_package_forward():
    _need_alex()
    from benchmark.metrics.lpips_net import get_lpips_net, per_frame_distance, region_distance
    from benchmark.metrics.lpips_weights import load_lpips

    pred, gt = _pair(t=3, h=64, w=80, noise=0.2)
    net = get_lpips_net("alex", "cpu", batch_size=2)
    maps = net.distance_maps(pred, net.features(gt))
    model = load_lpips("alex")
    with torch.inference_mode():
        expected = model(pred * 2 - 1, gt * 2 - 1).flatten()
    torch.testing.assert_close(per_frame_distance(maps).float(), expected, rtol=1e-5, atol=1e-6)
    # strict region covering exactly frames 0 and 2 == the package's distance averaged over them
    region = torch.zeros(3, 1, 64, 80, dtype=torch.bool)
    region[[0, 2]] = True
    assert region_distance(maps, region) == pytest.approx(float(expected[[0, 2]].mean()), rel=1e-5)


def test_empty_region_gives_nan_with_reason():
    pred, gt = _pair()
    no_holes = torch.zeros(T, 1, H, W, dtype=torch.bool)
    rows = score_videos(pred, gt, no_holes, metrics=["psnr", "msssim_2d", "temporal_stability"])
    for row in rows:
        if row["region"] == "inside":
            assert math.isnan(row["value"]) and "empty" in row["note"]
        else:
            assert math.isfinite(row["value"])


def test_msssim_reasons_for_small_inputs():
    pred, gt = _pair(t=4, h=64, w=64)
    rows = score_videos(pred, gt, metrics=["msssim", "msssim_2d"])
    assert all(math.isnan(r["value"]) for r in rows)
    assert "160" in _value(rows, "msssim_2d", "full", "paper")["note"]
    pred, gt = _pair(t=4)
    rows = score_videos(pred, gt, metrics=["msssim"])
    assert "9 frames" in rows[0]["note"]


def test_temporal_stability_analytic():
    g = torch.Generator().manual_seed(1)
    gt = 0.2 + 0.4 * torch.rand(5, 3, 32, 32, generator=g)
    ramp = 0.01 * torch.arange(5).view(5, 1, 1, 1)
    assert fn.temporal_instability(gt + ramp, gt) == pytest.approx(0.01, abs=1e-6)
    assert fn.temporal_instability(gt, gt) == 0.0
    frozen = gt[:1].expand(5, -1, -1, -1)  # a frozen prediction misses every change of the GT
    expected = (gt[1:] - gt[:-1]).abs().mean().item()
    assert fn.temporal_instability(frozen, gt) == pytest.approx(expected, rel=1e-5)
    assert math.isnan(fn.temporal_instability(gt[:1], gt[:1]))


def _stereo_scene(t=2, h=24, w=64):
    g = torch.Generator().manual_seed(2)
    left = torch.rand(t, 3, h, w, generator=g)
    disparity = torch.full((t, 1, h, w), 2.0)
    disparity[..., 20:30] = 6.0  # a near block
    # Ground-truth right view by z-buffered forward warp: x_R = x_L - d, nearer wins.
    right = torch.zeros_like(left)
    depth = torch.full((t, 1, h, w), -1.0)
    for x in range(w):
        d = disparity[..., x:x + 1]
        xr = x - int(d[0, 0, 0, 0])
        if 0 <= xr < w:
            nearer = d > depth[..., xr:xr + 1]
            right[..., xr:xr + 1] = torch.where(nearer, left[..., x:x + 1], right[..., xr:xr + 1])
            depth[..., xr:xr + 1] = torch.where(nearer, d, depth[..., xr:xr + 1])
    return left, right, disparity


def test_occlusion_test_marks_background_hidden_behind_the_block():
    _, _, disparity = _stereo_scene()
    visible = fn.left_visible_in_right(disparity)[0, 0, 0]
    # background x lands at x-2, the block (x 20..29) at 14..23: background 16..19 is hidden
    assert not visible[16:20].any()
    assert visible[2:16].all() and visible[20:30].all() and visible[30:].all()
    assert not visible[:2].any()  # leaves the right frame


def test_stereo_consistency_zero_for_true_right_view_and_large_for_noise():
    left, right, disparity = _stereo_scene()
    assert fn.stereo_consistency_error(right, left, disparity) == pytest.approx(0.0, abs=1e-6)
    noise = torch.rand_like(right)
    assert fn.stereo_consistency_error(noise, left, disparity) > 0.2
    rows = score_videos(right, right, metrics=["stereo_consistency"], left=left, disparity=disparity,
                        regions=("full",))
    assert rows[0]["value"] == pytest.approx(0.0, abs=1e-6)
    missing = score_videos(right, right, metrics=["stereo_consistency"], regions=("full",))
    assert math.isnan(missing[0]["value"]) and "left view" in missing[0]["note"]


def test_reference_is_reused_across_methods():
    pred_a, gt = _pair(seed=3)
    pred_b, _ = _pair(seed=4)
    scorer = Scorer(metrics=["psnr", "msssim_2d"])
    reference = scorer.prepare_reference(gt, _holes())
    rows_a, rows_b = scorer.score(pred_a, reference), scorer.score(pred_b, reference)
    one_shot = score_videos(pred_b, gt, _holes(), metrics=["psnr", "msssim_2d"])
    assert [r["value"] for r in rows_b] == pytest.approx([r["value"] for r in one_shot])
    assert [r["value"] for r in rows_a] != pytest.approx([r["value"] for r in rows_b])
    assert len(rows_a) == 2 * 3 * 2


@pytest.mark.parametrize("case, match", [
    ("frames", "frame count"),
    ("size", "frame size"),
    ("range", r"\[0, 1\]"),
    ("mask", "hole mask has shape"),
    ("uint8", "float"),
])
def test_bad_input_raises_one_line_errors(case, match):
    pred, gt = _pair()
    mask = _holes()
    if case == "frames":
        pred = pred[:3]
    elif case == "size":
        pred = pred[..., :160]
    elif case == "range":
        pred = pred * 255
    elif case == "mask":
        mask = mask[..., :100]
    elif case == "uint8":
        pred = (pred * 255).to(torch.uint8)
    with pytest.raises(StereobenchError, match=match) as info:
        score_videos(pred, gt, mask, metrics=["psnr"])
    assert "\n" not in str(info.value)


def test_metric_call_convenience():
    pred, gt = _pair()
    mask = _holes()
    sel = mask.expand(-1, 3, -1, -1)
    expected = peak_signal_noise_ratio(gt[sel].numpy(), pred[sel].numpy(), data_range=1.0)
    assert METRICS["psnr"].compute(pred, gt, mask, region="inside", protocol="strict") == pytest.approx(
        expected, abs=1e-5)
    assert np.isclose(METRICS["psnr"].compute(pred, gt), peak_signal_noise_ratio(gt.numpy(), pred.numpy(),
                                                                                 data_range=1.0))


def test_ground_truth_features_are_computed_once_per_clip(monkeypatch):
    _need_alex()
    from benchmark.metrics.lpips_net import LpipsNet

    frames_through_trunk = []
    original = LpipsNet._features_batch

    def counting(self, frames):
        frames_through_trunk.append(frames.shape[0])
        return original(self, frames)

    monkeypatch.setattr(LpipsNet, "_features_batch", counting)
    pred_a, gt = _pair(seed=5, t=3, h=64, w=64)
    pred_b, _ = _pair(seed=6, t=3, h=64, w=64)
    scorer = Scorer(metrics=["lpips_alex"], batch_size=2)
    reference = scorer.prepare_reference(gt, torch.zeros(3, 1, 64, 64, dtype=torch.bool).index_fill_(2, torch.arange(10), True))
    assert sum(frames_through_trunk) == 3 * 3  # GT: full + whitened inside + whitened outside
    for pred in (pred_a, pred_b):
        frames_through_trunk.clear()
        scorer.score(pred, reference)
        assert sum(frames_through_trunk) == 3 * 3  # prediction only: the same three variants


@pytest.mark.gpu
def test_cuda_matches_cpu():
    _need_alex()
    pred, gt = _pair(t=9)
    mask = _holes(t=9)
    metrics = ["psnr", "msssim", "msssim_2d", "lpips_alex", "temporal_stability"]
    cpu = score_videos(pred, gt, mask, metrics=metrics, device="cpu")
    gpu = score_videos(pred, gt, mask, metrics=metrics, device="cuda")
    for a, b in zip(cpu, gpu):
        assert b["value"] == pytest.approx(a["value"], rel=1e-4, abs=1e-5), a


def test_paper_protocol_matches_packages_on_whitened_copies():
    _need_alex()
    from benchmark.metrics.lpips_weights import load_lpips

    pred, gt = _pair(seed=7, t=16)
    mask = _holes(t=16)
    rows = score_videos(pred, gt, mask, metrics=["msssim", "msssim_2d", "lpips_alex"],
                       scoring_protocols=("paper",))
    model = load_lpips("alex")
    for region, keep in (("inside", mask), ("outside", ~mask)):
        wp, wg = torch.where(keep, pred, 1.0), torch.where(keep, gt, 1.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref_3d = float(reference_ms_ssim(wg.permute(1, 0, 2, 3)[None], wp.permute(1, 0, 2, 3)[None], data_range=1.0))
            ref_2d = float(torch.stack([reference_ms_ssim(wg[t:t + 1], wp[t:t + 1], data_range=1.0)
                                        for t in range(16)]).mean())
        with torch.inference_mode():
            ref_lpips = float(model(wp * 2 - 1, wg * 2 - 1).mean())
        assert _value(rows, "msssim", region, "paper")["value"] == pytest.approx(ref_3d, abs=2e-6)
        assert _value(rows, "msssim_2d", region, "paper")["value"] == pytest.approx(ref_2d, abs=2e-6)
        assert _value(rows, "lpips_alex", region, "paper")["value"] == pytest.approx(ref_lpips, rel=1e-5)


# ------------------------------------------------------------------------------------------
# the registry: adding a metric is one class plus one registry line


class ToyMAE(Metric):
    """A metric defined only here: mean absolute error over the frame or a region's pixels
    (strict only; the paper protocol is left to the Scorer's "not reported" rule)."""

    spec = MetricSpec("toy_mae", "Toy MAE", False, (0.0, 1.0), description="test-only metric")
    prepared = 0

    def prepare(self, reference):
        type(self).prepared += 1
        return {"gt_mean": float(reference.gt.mean())}

    def score(self, prediction, state, regions, scoring_protocols):
        reference = prediction.reference
        error = (prediction.video - reference.gt).abs()
        records = self.full_frame(float(error.mean()), scoring_protocols, note=f"gt mean {state['gt_mean']:.3f}")
        for region in reference.strict_regions(regions, scoring_protocols):
            mask = reference.mask(region).expand_as(error)
            records.append(Record(region, "strict", float(error[mask].mean())))
        return records


class NeedsLeft(ToyMAE):
    spec = MetricSpec("toy_needs_left", "Toy needing the left view", False, (0.0, 1.0), needs_left=True)


@pytest.fixture
def toy_registry():
    # The real registry, restored afterwards; registering is the only step a new metric needs.
    METRICS.register("toy_mae", "tests.test_metrics:ToyMAE")
    METRICS.register("toy_needs_left", "tests.test_metrics:NeedsLeft")
    ToyMAE.prepared = 0
    yield METRICS
    METRICS.unregister("toy_mae")
    METRICS.unregister("toy_needs_left")
    assert "toy_mae" not in METRICS.names()


def test_a_new_metric_is_one_class_plus_one_registry_line(toy_registry):
    pred, gt = _pair(seed=11)
    mask = _holes()
    assert METRIC_SPECS["toy_mae"] is ToyMAE.spec and "toy_mae" in METRIC_SPECS
    scorer = Scorer(metrics=["psnr", "toy_mae", "toy_needs_left"], device="cpu")
    reference = scorer.prepare_reference(gt, mask)
    assert ToyMAE.prepared == 1  # the ground-truth side once per clip ...
    rows = scorer.score(pred, reference)
    scorer.score(pred, reference)
    assert ToyMAE.prepared == 1  # ... not once per method
    error = (pred - gt).abs().numpy()
    sel = mask.expand(-1, 3, -1, -1).numpy()
    assert _value(rows, "toy_mae", "full", "paper")["value"] == pytest.approx(error.mean(), rel=1e-5)
    assert _value(rows, "toy_mae", "full", "strict")["note"] == f"gt mean {float(gt.mean()):.3f}"
    assert _value(rows, "toy_mae", "inside", "strict")["value"] == pytest.approx(error[sel].mean(), rel=1e-5)
    assert _value(rows, "toy_mae", "outside", "strict")["value"] == pytest.approx(error[~sel].mean(), rel=1e-5)
    paper = _value(rows, "toy_mae", "inside", "paper")
    assert math.isnan(paper["value"]) and "does not report" in paper["note"]
    # the declared input is absent: NaN with a note naming it, and the family never runs
    needs_left = [r for r in rows if r["metric"] == "toy_needs_left"]
    assert len(needs_left) == 6 and all(math.isnan(r["value"]) and "left view" in r["note"] for r in needs_left)
    assert [r["metric"] for r in rows] == ["psnr"] * 6 + ["toy_mae"] * 6 + ["toy_needs_left"] * 6
    # the existing metrics are untouched by the new one
    assert [r["value"] for r in rows if r["metric"] == "psnr"] == [
        r["value"] for r in score_videos(pred, gt, mask, metrics=["psnr"], device="cpu")]


def test_empty_region_rule_applies_to_every_metric(toy_registry):
    pred, gt = _pair(seed=12)
    rows = score_videos(pred, gt, torch.zeros(T, 1, H, W, dtype=torch.bool), metrics=["toy_mae"], device="cpu")
    inside = [r for r in rows if r["region"] == "inside"]
    assert all(math.isnan(r["value"]) and "empty" in r["note"] for r in inside)
    assert math.isfinite(_value(rows, "toy_mae", "outside", "strict")["value"])


def test_metric_specs_keep_declaration_order_and_need_no_torch():
    import subprocess
    import sys

    assert list(METRIC_SPECS)[:7] == ["psnr", "msssim", "msssim_2d", "lpips_vgg", "lpips_alex",
                                      "stereo_consistency", "temporal_stability"]
    assert SCORING_PROTOCOLS == ("paper", "strict")
    code = ("import sys; from benchmark.metrics.spec import METRIC_SPECS; "
            "assert [s.higher_is_better for s in METRIC_SPECS.values()][0] is True; "
            "import benchmark.metrics; from benchmark.metrics import METRICS; METRICS['lpips_vgg'].spec; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"  # reading metadata (the leaderboard) must not import torch


@pytest.mark.parametrize("names, expected", [
    (["psnr"], ["psnr"]),
    ("psnr,msssim", ["psnr", "msssim"]),
    (["lpips_vgg", "psnr", "lpips_vgg"], ["lpips_vgg", "psnr"]),
    (["psnr, msssim_2d", "temporal_stability"], ["psnr", "msssim_2d", "temporal_stability"]),
])
def test_validate_metric_names_accepts(names, expected):
    assert validate_metric_names(names) == expected


@pytest.mark.parametrize("names, match", [
    (["psnrr"], "Did you mean 'psnr'"),
    (["lpips_vg"], "Did you mean 'lpips_vgg'"),
    (["psnr", "msssim3d"], "Did you mean 'msssim"),
    (["PSNR"], "unknown metric 'PSNR'"),
    ([], "no metric given"),
    ([""], "no metric given"),
    ([3], "must be strings"),
    (None, "list of names"),
])
def test_validate_metric_names_rejects(names, match):
    with pytest.raises(StereobenchError, match=match) as info:
        validate_metric_names(names)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 0}, "batch size"),
    ({"batch_size": -3}, "batch size"),
    ({"batch_size": 2.5}, "batch size"),
    ({"regions": ["insde"]}, "Did you mean 'inside'"),
    ({"scoring_protocols": ["stric"]}, "Did you mean 'strict'"),
    ({"device": "gpu"}, "device"),
    pytest.param({"device": "cuda"}, "no", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has a GPU")),
    ({"device": "cuda:99"}, "cuda"),
])
def test_scorer_rejects_bad_settings_before_work(kwargs, match):
    with pytest.raises(StereobenchError, match=match):
        Scorer(metrics=["psnr"], **kwargs)


def test_a_clip_reference_is_freed_without_the_garbage_collector():
    # The runner drops a clip's reference after its last method; a reference cycle (a metric
    # state pointing back at its reference) kept ~0.9 GB of LPIPS features per clip alive.
    import gc
    import weakref

    pred, gt = _pair(seed=21)
    scorer = Scorer(metrics=["psnr", "lpips_alex"], device="cpu")
    scorer.score(pred, scorer.prepare_reference(gt, _holes()))  # networks built and cached first
    gc.collect()
    gc.disable()
    try:
        reference = scorer.prepare_reference(gt, _holes())
        scorer.score(pred, reference)
        assert reference.states["lpips_alex"].reference is reference
        alive = weakref.ref(reference)
        del reference
        assert alive() is None, "a reference cycle keeps the clip's reference alive"
    finally:
        gc.enable()
