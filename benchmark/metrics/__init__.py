"""Metrics: PSNR, MS-SSIM (3-D and per frame), LPIPS (VGG, AlexNet) and two stereo extras,
over the full frame and inside / outside the hole mask, under the ``paper`` and ``strict``
protocols (see docs/metrics.md).

Public API::

    METRICS                      name -> Metric (spec, required inputs, one-shot call)
    get_metric(name)             with a did-you-mean error for unknown names
    Scorer, Reference            batched scoring that caches the ground-truth side per clip
    score_videos(pred, gt, hole_mask, **kw) -> list[dict]
    load_lpips(net, device), build_lpips_weights(force, cache_dir)

Direction and range of every metric are declared in :mod:`benchmark.metrics.spec`.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.errors import did_you_mean
from benchmark.metrics.spec import METRIC_SPECS, PROTOCOLS, REGIONS, MetricSpec


@dataclass(frozen=True)
class Metric:
    """A registered metric: its declared :class:`MetricSpec`, the extra inputs it needs and
    whether it runs a network. Calling it scores one video pair for one region and protocol::

        METRICS["psnr"](pred, gt, hole_mask, region="inside", protocol="strict")
    """

    spec: MetricSpec
    requires: tuple[str, ...] = ()
    network: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def __call__(self, pred, gt, hole_mask=None, region: str = "full", protocol: str = "paper",
                 left=None, disparity=None, device=None) -> float:
        from benchmark.metrics.scorer import Scorer

        scorer = Scorer([self.name], regions=[region], protocols=[protocol], device=device)
        rows = scorer.score(pred, scorer.prepare_reference(gt, hole_mask, left=left, disparity=disparity))
        return rows[0]["value"]


METRICS: dict[str, Metric] = {
    "psnr": Metric(METRIC_SPECS["psnr"]),
    "msssim": Metric(METRIC_SPECS["msssim"]),
    "msssim_2d": Metric(METRIC_SPECS["msssim_2d"]),
    "lpips_vgg": Metric(METRIC_SPECS["lpips_vgg"], network="vgg"),
    "lpips_alex": Metric(METRIC_SPECS["lpips_alex"], network="alex"),
    "stereo_consistency": Metric(METRIC_SPECS["stereo_consistency"], requires=("left", "disparity")),
    "temporal_stability": Metric(METRIC_SPECS["temporal_stability"]),
}


def get_metric(name: str) -> Metric:
    """The registered metric ``name``; unknown names raise a did-you-mean StereobenchError."""
    if name not in METRICS:
        raise did_you_mean(name, METRICS, "metric")
    return METRICS[name]


def __getattr__(name: str):
    # Heavy parts (torch models) load on first use, not on `import benchmark.metrics`.
    if name in ("Scorer", "Reference", "score_videos"):
        from benchmark.metrics import scorer

        return getattr(scorer, name)
    if name in ("load_lpips", "build_lpips_weights"):
        from benchmark.metrics import lpips_weights

        return getattr(lpips_weights, name)
    raise AttributeError(f"module 'benchmark.metrics' has no attribute {name!r}")


__all__ = ["METRICS", "METRIC_SPECS", "REGIONS", "PROTOCOLS", "Metric", "MetricSpec", "get_metric",
           "Scorer", "Reference", "score_videos", "load_lpips", "build_lpips_weights"]
