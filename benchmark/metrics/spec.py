"""Declared properties of every metric: the leaderboard reads direction and range from here
and never guesses.

Each metric family declares its :class:`MetricSpec` on its class (``benchmark/metrics/<family>.py``);
:data:`METRIC_SPECS` is a read-only view of those declarations through the metric registry. It
imports the family modules on first access, which import no torch: reading the metadata (the
leaderboard, the study app) stays as light as it was when the specs were a literal table.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSpec:
    """A metric's name, direction and range, and the inputs it needs beyond (prediction, ground truth).

    ``higher_is_better`` orders leaderboards; ``value_range`` is (low, high) with ``None`` for
    unbounded; ``unit`` is shown in tables (``"dB"`` for PSNR). ``paper_metric``: one of the
    M2SVid paper's columns. ``needs_left`` / ``needs_disparity``: the metric also needs the left
    view / the ground-truth disparity (without them the Scorer reports NaN with a note).
    ``network``: the weights it runs (e.g. the LPIPS trunk), None for pixel metrics.
    """

    name: str
    display_name: str
    higher_is_better: bool
    value_range: tuple[float | None, float | None]
    unit: str = ""
    description: str = ""
    paper_metric: bool = False
    needs_left: bool = False
    needs_disparity: bool = False
    network: str | None = None


class _DeclaredSpecs(Mapping[str, MetricSpec]):
    """name -> :class:`MetricSpec`, read from each registered metric class's ``spec``.

    A view, not a copy: a metric registered at run time (a plug-in, a test) appears here too.
    """

    def __getitem__(self, name: str) -> MetricSpec:
        from benchmark.metrics.registry import METRICS

        if name not in METRICS:  # a KeyError keeps dict semantics (`.get`, `in`) for callers
            raise KeyError(name)
        return METRICS[name].spec

    def __iter__(self) -> Iterator[str]:
        from benchmark.metrics.registry import metric_names

        return iter(metric_names())

    def __len__(self) -> int:
        from benchmark.metrics.registry import METRICS

        return len(METRICS)

    def __contains__(self, name: object) -> bool:
        from benchmark.metrics.registry import METRICS

        return name in METRICS

    def __repr__(self) -> str:
        return f"METRIC_SPECS({list(self)})"


METRIC_SPECS: Mapping[str, MetricSpec] = _DeclaredSpecs()
"""Every registered metric's declared spec (a read-only mapping, built-in metrics in declaration order)."""

REGIONS = ("full", "inside", "outside")
"""``full`` frame, ``inside`` the hole mask (disoccluded, inpainted), ``outside`` it (reprojected)."""

SCORING_PROTOCOLS = ("paper", "strict")
"""How a region is scored. ``paper``: pixels outside the region set to 1.0 in both videos,
metric on the whole frame (as the M2SVid code does); ``strict``: mean of per-pixel maps over the
region's pixels only. Not to be confused with the *clip* protocol
(:mod:`benchmark.stereo.protocol`: frame count, crop, resolution). The results table keeps the
column name ``protocol`` for it."""

