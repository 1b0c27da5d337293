"""Speed of scoring one 16x512x512 clip (pytest-benchmark; `make bench`).

The yardstick is the network passes no implementation can avoid: per LPIPS trunk, the ground
truth and the prediction on the full frame and whitened outside each of the two regions (paper
protocol) = 6 trunk passes over 16 frames for the first method of a clip, 3 for every further
method (the ground-truth side is cached). Run with

    .venv/bin/python -m pytest -m perf --benchmark-enable tests/test_scoring_perf.py -s

Figures go to docs/performance.md ("Scoring (metrics)").
"""

from __future__ import annotations

import time

import pytest
import torch

from benchmark.metrics import Scorer
from benchmark.metrics.lpips_net import get_lpips_net
from benchmark.metrics.lpips_weights import FIX_COMMAND, weight_path

pytestmark = pytest.mark.perf

T, H, W = 16, 512, 512


def _clip():
    g = torch.Generator().manual_seed(0)
    # smooth-ish content so MS-SSIM / LPIPS see structure, plus noise for the "prediction"
    base = torch.nn.functional.interpolate(torch.rand(T, 3, H // 8, W // 8, generator=g), size=(H, W),
                                           mode="bilinear", align_corners=False)
    gt = base.clamp(0, 1)
    pred = (gt + 0.05 * torch.randn(T, 3, H, W, generator=g)).clamp(0, 1)
    pred2 = (gt + 0.08 * torch.randn(T, 3, H, W, generator=g)).clamp(0, 1)
    holes = torch.zeros(T, 1, H, W, dtype=torch.bool)
    holes[:, :, 150:330, 200:240] = True  # a disocclusion beside a near object
    holes[:, :, :, -26:] = True           # the strip that leaves the frame (5% of the width)
    return pred, pred2, gt, holes


def _network_passes(nets: list[str], videos: list[torch.Tensor]) -> float:
    """Seconds for trunk passes (features only) of every video through every trunk."""
    start = time.perf_counter()
    for name in nets:
        net = get_lpips_net(name, "cpu", batch_size=8)
        for video in videos:
            net.features(video)
    return time.perf_counter() - start


@pytest.mark.parametrize("metric_set", ["all", "no_vgg"])
def test_score_one_clip_all_regions_both_protocols(benchmark, metric_set):
    nets = ["vgg", "alex"] if metric_set == "all" else ["alex"]
    for net in nets:
        if not weight_path(net).is_file():
            pytest.skip(f"LPIPS {net} weights not built; run {FIX_COMMAND}")
    pred, pred2, gt, holes = _clip()
    metrics = None if metric_set == "all" else ["psnr", "msssim", "msssim_2d", "lpips_alex", "temporal_stability"]
    scorer = Scorer(metrics=metrics, device="cpu")
    whitened = [torch.where(holes, gt, torch.ones(())), torch.where(~holes, gt, torch.ones(()))]
    _network_passes(nets, [gt[:2]])  # warm-up: weights loaded, allocator primed
    floor_first = _network_passes(nets, [gt, *whitened, pred, *whitened])  # 6 passes per trunk

    timings = {}

    def first_method():
        start = time.perf_counter()
        reference = scorer.prepare_reference(gt, holes)
        timings["prepare_reference"] = time.perf_counter() - start
        start = time.perf_counter()
        rows = scorer.score(pred, reference)
        timings["score_first"] = time.perf_counter() - start
        timings["per_metric_first"] = dict(scorer.last_timings)
        return reference, rows

    reference, rows = benchmark.pedantic(first_method, rounds=1, iterations=1)
    total_first = timings["prepare_reference"] + timings["score_first"]

    floor_next = _network_passes(nets, [pred2, *whitened])  # 3 passes per trunk
    start = time.perf_counter()
    scorer.score(pred2, reference)
    score_next = time.perf_counter() - start

    n_rows = len(scorer.metrics) * 3 * 2
    assert len(rows) == n_rows
    benchmark.extra_info.update({
        "floor_first_s": round(floor_first, 2), "total_first_s": round(total_first, 2),
        "ratio_first": round(total_first / floor_first, 3),
        "floor_next_s": round(floor_next, 2), "score_next_s": round(score_next, 2),
        "ratio_next": round(score_next / floor_next, 3),
        **{k: round(v, 2) for k, v in timings.items() if isinstance(v, float)},
        **{f"metric_{k}": round(v, 2) for k, v in timings["per_metric_first"].items()},
    })
    print(metric_set, benchmark.extra_info)
    if metric_set == "all":  # the target; the alex-only run is dominated by non-network work
        assert total_first <= 1.5 * floor_first
        assert score_next <= 1.5 * floor_next


def test_msssim_3d_own_vs_pytorch_msssim(benchmark):
    """The suite's MS-SSIM (shifted-slice separable blur, all regions' weights in one pass) vs
    pytorch_msssim (depthwise conv3d) on one 16x512x512 pair, full frame."""
    import warnings

    from pytorch_msssim import ms_ssim

    from benchmark.metrics import functional as fn

    pred, _, gt, holes = _clip()
    x, y = gt.permute(1, 0, 2, 3)[None], pred.permute(1, 0, 2, 3)[None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ms_ssim(x, y, data_range=1.0)
        start = time.perf_counter()
        expected = float(ms_ssim(x, y, data_range=1.0))
        reference_s = time.perf_counter() - start
    weights = [None, holes.float(), (~holes).float()]
    values = benchmark.pedantic(fn.msssim_video, args=(pred, gt, weights), rounds=3, iterations=1, warmup_rounds=1)
    assert values[0] == pytest.approx(expected, abs=2e-6)
    benchmark.extra_info["pytorch_msssim_full_only_s"] = round(reference_s, 3)
    print("pytorch_msssim (full frame only):", round(reference_s, 3), "s")
