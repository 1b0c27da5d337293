"""The metric registry: name -> "module:Class", resolved on first use (pyiqa's model).

Adding a metric is one class (a :class:`benchmark.metrics.base.Metric` subclass with its
:class:`~benchmark.metrics.spec.MetricSpec`) plus one line here; third-party packages add
metrics through the ``stereobench.metrics`` entry-point group without editing the suite::

    [project.entry-points."stereobench.metrics"]
    my_metric = "my_package.metrics:MyMetric"

Nothing registers by import side effect. Importing a family module imports no torch (the
families import it inside their methods), so listing metrics and reading their declared
metadata stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterable

from benchmark.errors import StereobenchError, did_you_mean
from benchmark.registry import LazyRegistry

_BUILTIN: dict[str, str] = {
    # The order is the leaderboard's column order and the default scoring order.
    "psnr": "benchmark.metrics.psnr:PSNR",
    "msssim": "benchmark.metrics.msssim:MSSSIM3D",
    "msssim_2d": "benchmark.metrics.msssim:MSSSIM2D",
    "lpips_vgg": "benchmark.metrics.perceptual:LPIPSVgg",
    "lpips_alex": "benchmark.metrics.perceptual:LPIPSAlex",
    "stereo_consistency": "benchmark.metrics.stereo:StereoConsistency",
    "temporal_stability": "benchmark.metrics.temporal:TemporalStability",
}

METRICS = LazyRegistry("metric", _BUILTIN, entry_point_group="stereobench.metrics")
"""name -> metric class (a :class:`~benchmark.metrics.base.Metric` subclass), imported lazily."""


def metric_names() -> list[str]:
    """Every registered metric: the built-in ones in declaration order, then the others sorted."""
    return list(_BUILTIN) + [name for name in METRICS.names() if name not in _BUILTIN]


def get_metric(name: str):
    """The metric class registered as ``name``; unknown names raise a did-you-mean StereobenchError."""
    if not isinstance(name, str) or name not in METRICS:
        raise did_you_mean(str(name), METRICS.names(), "metric")
    return METRICS[name]


def validate_metric_names(names: str | Iterable[str]) -> list[str]:
    """Check metric names before any work; return them in order, duplicates dropped.

    ``names`` is a list of names (a string is split on commas, as the CLI allows
    ``--metrics psnr,msssim``). Raises :class:`StereobenchError` for an unknown name (with
    did-you-mean: ``psnrr`` -> ``psnr``), a name that is not a string, or an empty list.
    """
    if isinstance(names, str):
        names = [names]
    try:
        items = list(names)
    except TypeError:
        raise StereobenchError(f"metrics must be a list of names, got {type(names).__name__}; "
                               f"e.g. [psnr, msssim]") from None
    result: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise StereobenchError(f"metric names must be strings, got {item!r} ({type(item).__name__}); "
                                   f"choose from: {', '.join(metric_names())}")
        for name in (part.strip() for part in item.split(",")):
            if not name:
                continue
            if name not in METRICS:
                raise did_you_mean(name, METRICS.names(), "metric")
            if name not in result:
                result.append(name)
    if not result:
        raise StereobenchError(f"no metric given; choose one or more of: {', '.join(metric_names())}")
    return result
