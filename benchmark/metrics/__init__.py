"""Metrics: PSNR, MS-SSIM (3-D and per frame), LPIPS (VGG, AlexNet) and two stereo extras,
over the full frame and inside / outside the hole mask, under the ``paper`` and ``strict``
scoring protocols (see docs/metrics.md).

Public API::

    METRICS                         lazy registry: name -> metric class (benchmark.metrics.registry)
    get_metric(name)                the class, with a did-you-mean error for unknown names
    validate_metric_names(names)    check names before any work -> list[str] (did-you-mean errors)
    Metric, Record                  the family base class and its output (benchmark.metrics.base)
    Scorer, Reference, Prediction   batched scoring that caches the ground-truth side per clip
    score_videos(pred, gt, hole_mask, **kw) -> list[dict]
    load_lpips(net, device), build_lpips_weights(force, cache_dir)

Direction and range of every metric are declared on its class (``spec``) and readable without
torch through :data:`benchmark.metrics.spec.METRIC_SPECS`. Importing this package imports no
torch; the heavy parts load on first use.
"""

from __future__ import annotations

from benchmark.metrics.base import Metric, Prediction, Record, Reference
from benchmark.metrics.registry import METRICS, get_metric, metric_names, validate_metric_names
from benchmark.metrics.spec import METRIC_SPECS, REGIONS, SCORING_PROTOCOLS, MetricSpec


def __getattr__(name: str):
    # Heavy parts (torch, the LPIPS networks) load on first use, not on `import benchmark.metrics`.
    if name in ("Scorer", "score_videos"):
        from benchmark.metrics import scorer

        return getattr(scorer, name)
    if name in ("load_lpips", "build_lpips_weights"):
        from benchmark.metrics import lpips_weights

        return getattr(lpips_weights, name)
    raise AttributeError(f"module 'benchmark.metrics' has no attribute {name!r}")


__all__ = ["METRICS", "METRIC_SPECS", "REGIONS", "SCORING_PROTOCOLS", "Metric", "MetricSpec",
           "Record", "Reference", "Prediction", "get_metric", "metric_names", "validate_metric_names",
           "Scorer", "score_videos", "load_lpips", "build_lpips_weights"]
