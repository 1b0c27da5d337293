"""Scoring a predicted right video against the ground truth: every metric x region x scoring protocol.

The ground-truth side is the same for every method, so :meth:`Scorer.prepare_reference` does
its work once per clip (each metric's ``prepare``: e.g. the LPIPS trunk features of the ground
truth for the full frame and for each whitened region) and :meth:`Scorer.score` only runs the
prediction side::

    scorer = Scorer()                                   # all metrics, regions, scoring protocols
    reference = scorer.prepare_reference(gt, hole_mask)  # once per clip
    for name, right in predictions.items():
        rows = scorer.score(right, reference)            # [{"metric", "region", "protocol", "value"[, "note"]}]

The Scorer is the loop and the caching; the numbers come from the metric classes of
:mod:`benchmark.metrics.registry` (one class per family, see :mod:`benchmark.metrics.base`). It
owns the rules every metric shares: a region with no pixel is NaN with a note, a metric whose
declared inputs (left view, disparity) are absent is NaN with a note, and a (region, protocol)
a family does not report is NaN.

Network passes per method and clip (LPIPS, per trunk): the full prediction (which also serves
every strict region, via the per-layer maps) and the prediction whitened outside each region
for the paper protocol: 3 passes. The ground truth's 3 passes happen once per clip.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch

from benchmark.errors import StereobenchError, did_you_mean
from benchmark.metrics import functional as fn
from benchmark.metrics.base import Metric, Prediction, Reference
from benchmark.metrics.registry import get_metric, metric_names, validate_metric_names
from benchmark.metrics.spec import REGIONS, SCORING_PROTOCOLS

__all__ = ["Scorer", "Reference", "Prediction", "score_videos", "default_device", "missing_inputs_note"]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def missing_inputs_note(metric: Metric, reference: Reference) -> str | None:
    """Why ``metric`` cannot run on ``reference`` (a declared input is absent), or None."""
    needed = []
    if metric.spec.needs_left and reference.left is None:
        needed.append("the left view")
    if metric.spec.needs_disparity and reference.disparity is None:
        needed.append("the ground-truth disparity")
    if not needed:
        return None
    return (f"needs {' and '.join(needed)} (Scorer.prepare_reference(left=, disparity=) "
            f"or `stereobench score --left --disparity`)")


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StereobenchError(f"{what} must be a whole number >= 1, got {value!r}")
    return value


class Scorer:
    """Scores predictions against prepared references; see the module docstring.

    ``metrics``: registered names (default all; e.g. drop ``lpips_vgg`` for quick runs).
    ``regions`` / ``scoring_protocols``: subsets of :data:`~benchmark.metrics.spec.REGIONS` /
    :data:`~benchmark.metrics.spec.SCORING_PROTOCOLS`. ``device``: default CUDA when present, else CPU. ``batch_size``: frames per
    network call (>= 1). ``feature_dtype``: storage dtype of the cached ground-truth LPIPS
    features (float32 is exact; bfloat16 halves their memory, about 2 GiB per cached variant for
    VGG at 16x512x512 in float32).
    """

    def __init__(self, metrics: Sequence[str] | None = None, regions: Sequence[str] = REGIONS,
                 scoring_protocols: Sequence[str] = SCORING_PROTOCOLS, device: str | torch.device | None = None,
                 batch_size: int = 8, feature_dtype: torch.dtype = torch.float32, progress: bool = False):
        self.metrics = validate_metric_names(metrics) if metrics is not None else metric_names()
        for region in regions:
            if region not in REGIONS:
                raise did_you_mean(str(region), REGIONS, "region")
        for protocol in scoring_protocols:
            if protocol not in SCORING_PROTOCOLS:
                raise did_you_mean(str(protocol), SCORING_PROTOCOLS, "scoring protocol")
        self.regions = list(regions)
        self.scoring_protocols = list(scoring_protocols)
        try:
            self.device = torch.device(device) if device is not None else default_device()
        except (RuntimeError, TypeError):
            raise StereobenchError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise StereobenchError(f"device {str(device)!r} needs a CUDA GPU and none is available; use --device cpu")
        if self.device.type == "cuda" and self.device.index is not None and self.device.index >= torch.cuda.device_count():
            raise StereobenchError(f"device {str(device)!r} does not exist: {torch.cuda.device_count()} CUDA GPU(s) "
                                   f"present; use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
        self.batch_size = _positive_int(batch_size, "batch size (frames per network call)")
        self.feature_dtype = feature_dtype
        self.progress = progress
        self.last_timings: dict[str, float] = {}
        self._instances: dict[str, Metric] = {}

    def metric(self, name: str) -> Metric:
        """The configured instance of metric ``name`` (built on first use)."""
        if name not in self._instances:
            cls = get_metric(name)
            self._instances[name] = cls(device=self.device, batch_size=self.batch_size,
                                        feature_dtype=self.feature_dtype)
        return self._instances[name]

    # ---------------------------------------------------------------------------------------
    def prepare_reference(self, gt: torch.Tensor, hole_mask: torch.Tensor | None = None,
                          left: torch.Tensor | None = None, disparity: torch.Tensor | None = None) -> Reference:
        """Validate and cache the method-independent work for one clip (see :class:`Reference`)."""
        start = time.perf_counter()
        fn.validate_inputs(gt, gt, hole_mask, left, disparity)
        if hole_mask is None and any(r != "full" for r in self.regions):
            raise StereobenchError("regions 'inside'/'outside' need a hole mask; pass one (white = hole) "
                                   "or score only the full frame")
        dev = self.device
        reference = Reference(
            gt=gt.to(dev, torch.float32), hole_mask=None if hole_mask is None else hole_mask.to(dev),
            left=None if left is None else left.to(dev, torch.float32),
            disparity=None if disparity is None else disparity.to(dev, torch.float32),
            regions=tuple(self.regions), scoring_protocols=tuple(self.scoring_protocols),
        )
        for region in self.regions:
            reference.mask(region)
        for name in self.metrics:
            self._state(name, reference)
        reference.seconds = time.perf_counter() - start
        return reference

    def _state(self, name: str, reference: Reference):
        """The metric's cached per-clip state, prepared now if this reference lacks it (a
        reference prepared by another Scorer, or one whose inputs the metric cannot use)."""
        metric = self.metric(name)
        if name not in reference.states and missing_inputs_note(metric, reference) is None:
            reference.states[name] = metric.prepare(reference)
        return reference.states.get(name)

    # ---------------------------------------------------------------------------------------
    def score(self, pred: torch.Tensor, reference: Reference) -> list[dict]:
        """Rows ``{"metric", "region", "protocol", "value"}`` (plus ``"note"`` when the value is
        NaN or a protocol does not apply) for every configured metric x region x scoring
        protocol, in that order. ``"protocol"`` is the scoring protocol (the results table's
        column name)."""
        fn.validate_inputs(pred, reference.gt, reference.hole_mask)
        prediction = Prediction(pred.to(self.device, torch.float32), reference)
        rows: list[dict] = []
        self.last_timings = {}
        names = self.metrics
        if self.progress:
            from tqdm.auto import tqdm

            names = tqdm(names, desc="metrics", leave=False)
        for name in names:
            metric = self.metric(name)
            start = time.perf_counter()
            missing = missing_inputs_note(metric, reference)
            if missing is None:
                state = self._state(name, reference)
                records = metric.score(prediction, state, self.regions, self.scoring_protocols)
            else:
                records = []
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.last_timings[name] = time.perf_counter() - start
            computed = {(r.region, r.scoring): (r.value, r.note) for r in records}
            not_reported = f"{name} does not report this region and scoring protocol"
            for region in self.regions:
                empty = region != "full" and reference.is_empty(region)
                for protocol in self.scoring_protocols:
                    value, note = computed.get((region, protocol), (math.nan, missing or not_reported))
                    value = float(value)
                    if math.isnan(value) and note is None:
                        note = "undefined for this input (empty region in every frame)"
                    if empty:
                        kind = "hole" if region == "inside" else "non-hole"
                        value, note = math.nan, f"region {region!r} is empty (no {kind} pixels)"
                    row = {"metric": name, "region": region, "protocol": protocol, "value": value}
                    if note:
                        row["note"] = note
                    rows.append(row)
        return rows


def score_videos(pred: torch.Tensor, gt: torch.Tensor, hole_mask: torch.Tensor | None = None,
                 left: torch.Tensor | None = None, disparity: torch.Tensor | None = None, **scorer_kwargs) -> list[dict]:
    """One-shot scoring: ``Scorer(**scorer_kwargs)``, then prepare the reference and score.

    Without ``hole_mask`` only the full frame is scored."""
    if hole_mask is None:
        scorer_kwargs.setdefault("regions", ("full",))
    scorer = Scorer(**scorer_kwargs)
    return scorer.score(pred, scorer.prepare_reference(gt, hole_mask, left=left, disparity=disparity))
