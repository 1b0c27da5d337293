"""Scoring a predicted right video against the ground truth: every metric x region x protocol.

The ground-truth side is the same for every method, so :meth:`Scorer.prepare_reference` does
its work once per clip (the hole-mask regions, the paper protocol's whitened ground truths, and
the LPIPS trunk features of the ground truth for the full frame and for each whitened region)
and :meth:`Scorer.score` only runs the prediction side::

    scorer = Scorer()                                   # all metrics, regions, protocols
    reference = scorer.prepare_reference(gt, hole_mask)  # once per clip
    for name, right in predictions.items():
        rows = scorer.score(right, reference)            # [{"metric", "region", "protocol", "value"[, "note"]}]

Network passes per method and clip (LPIPS, per trunk): the full prediction (which also serves
every strict region, via the per-layer maps) and the prediction whitened outside each region
for the paper protocol: 3 passes. The ground truth's 3 passes happen once per clip.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from benchmark.errors import StereobenchError
from benchmark.metrics import functional as fn
from benchmark.metrics.spec import METRIC_SPECS, PROTOCOLS, REGIONS

LPIPS_NETS = {"lpips_vgg": "vgg", "lpips_alex": "alex"}
STEREO_INPUTS_NOTE = ("needs the left view and the ground-truth disparity (Scorer.prepare_reference(left=, disparity=) "
                      "or `stereobench score --left --disparity`)")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class Reference:
    """Everything about one clip's ground truth that does not depend on the method.

    ``gt`` (T, 3, H, W) float32 in [0, 1]; ``hole_mask`` (T, 1, H, W) bool or None;
    ``left``/``disparity`` optional (stereo consistency). ``regions`` maps region -> bool mask
    (None = full frame); ``whitened_gt`` maps region -> the paper protocol's whitened ground
    truth; ``lpips_features`` maps (trunk, variant) -> five feature tensors, variant being
    "full" or a region name (paper-whitened).
    """

    gt: torch.Tensor
    hole_mask: torch.Tensor | None
    left: torch.Tensor | None = None
    disparity: torch.Tensor | None = None
    regions: dict[str, torch.Tensor | None] = field(default_factory=dict)
    empty_regions: dict[str, bool] = field(default_factory=dict)
    whitened_gt: dict[str, torch.Tensor] = field(default_factory=dict)
    lpips_features: dict[tuple[str, str], list[torch.Tensor]] = field(default_factory=dict)
    seconds: float = 0.0


class Scorer:
    """Scores predictions against prepared references; see the module docstring.

    ``metrics``: names from :data:`benchmark.metrics.METRICS` (default all; e.g. drop
    ``lpips_vgg`` for quick runs). ``regions`` / ``protocols``: subsets of
    :data:`~benchmark.metrics.spec.REGIONS` / :data:`~benchmark.metrics.spec.PROTOCOLS`.
    ``device``: default CUDA when present, else CPU. ``batch_size``: frames per network call.
    ``feature_dtype``: storage dtype of the cached ground-truth LPIPS features (float32 is exact;
    bfloat16 halves their memory, about 2 GiB per cached variant for VGG at 16x512x512 in
    float32).
    """

    def __init__(self, metrics: Sequence[str] | None = None, regions: Sequence[str] = REGIONS,
                 protocols: Sequence[str] = PROTOCOLS, device: str | torch.device | None = None,
                 batch_size: int = 8, feature_dtype: torch.dtype = torch.float32, progress: bool = False):
        from benchmark.errors import did_you_mean
        from benchmark.metrics import get_metric

        self.metrics = [get_metric(m).name for m in (metrics if metrics is not None else list(METRIC_SPECS))]
        for region in regions:
            if region not in REGIONS:
                raise did_you_mean(region, REGIONS, "region")
        for protocol in protocols:
            if protocol not in PROTOCOLS:
                raise did_you_mean(protocol, PROTOCOLS, "protocol")
        self.regions = list(regions)
        self.protocols = list(protocols)
        self.device = torch.device(device) if device is not None else default_device()
        self.batch_size = batch_size
        self.feature_dtype = feature_dtype
        self.progress = progress
        self.last_timings: dict[str, float] = {}

    # ---------------------------------------------------------------------------------------
    def _lpips(self, metric: str):
        from benchmark.metrics.lpips_net import get_lpips_net

        return get_lpips_net(LPIPS_NETS[metric], self.device, self.batch_size)

    def _paper_regions(self) -> list[str]:
        return [r for r in self.regions if r != "full"] if "paper" in self.protocols else []

    def prepare_reference(self, gt: torch.Tensor, hole_mask: torch.Tensor | None = None,
                          left: torch.Tensor | None = None, disparity: torch.Tensor | None = None) -> Reference:
        """Validate and cache the method-independent work for one clip (see :class:`Reference`)."""
        start = time.perf_counter()
        fn.validate_inputs(gt, gt, hole_mask, left, disparity)
        if hole_mask is None and any(r != "full" for r in self.regions):
            raise StereobenchError("regions 'inside'/'outside' need a hole mask; pass one (white = hole) "
                                   "or score only the full frame")
        dev = self.device
        ref = Reference(
            gt=gt.to(dev, torch.float32), hole_mask=None if hole_mask is None else hole_mask.to(dev),
            left=None if left is None else left.to(dev, torch.float32),
            disparity=None if disparity is None else disparity.to(dev, torch.float32),
        )
        for region in self.regions:
            mask = fn.region_mask(ref.hole_mask, region)
            ref.regions[region] = mask
            ref.empty_regions[region] = mask is not None and not bool(mask.any())
        for region in self._paper_regions():
            ref.whitened_gt[region] = fn.whiten_outside(ref.gt, ref.regions[region])
        for metric in self.metrics:
            if metric in LPIPS_NETS:
                self._ensure_features(metric, ref)
        ref.seconds = time.perf_counter() - start
        return ref

    def _ensure_features(self, metric: str, ref: Reference) -> None:
        net = self._lpips(metric)
        variants = ["full"] + [r for r in self._paper_regions() if not ref.empty_regions.get(r)]
        for variant in variants:
            key = (net.net_name, variant)
            if key not in ref.lpips_features:
                video = ref.gt if variant == "full" else ref.whitened_gt[variant]
                ref.lpips_features[key] = net.features(video, self.feature_dtype)

    # ---------------------------------------------------------------------------------------
    def score(self, pred: torch.Tensor, reference: Reference) -> list[dict]:
        """Rows ``{"metric", "region", "protocol", "value"}`` (plus ``"note"`` when the value is
        NaN or a protocol does not apply) for every configured metric x region x protocol."""
        fn.validate_inputs(pred, reference.gt, reference.hole_mask)
        pred = pred.to(self.device, torch.float32)
        for region in self.regions:  # a Reference prepared by another Scorer may lack some
            if region not in reference.regions:
                mask = fn.region_mask(reference.hole_mask, region)
                reference.regions[region] = mask
                reference.empty_regions[region] = mask is not None and not bool(mask.any())
        for region in self._paper_regions():
            if region not in reference.whitened_gt:
                reference.whitened_gt[region] = fn.whiten_outside(reference.gt, reference.regions[region])
        whitened_pred = {r: fn.whiten_outside(pred, reference.regions[r]) for r in self._paper_regions()
                         if not reference.empty_regions[r]}
        rows: list[dict] = []
        self.last_timings = {}
        metrics = self.metrics
        if self.progress:
            from tqdm.auto import tqdm

            metrics = tqdm(metrics, desc="metrics", leave=False)
        for metric in metrics:
            start = time.perf_counter()
            values = self._score_metric(metric, pred, whitened_pred, reference)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.last_timings[metric] = time.perf_counter() - start
            for region in self.regions:
                for protocol in self.protocols:
                    value, note = values[(region, protocol)]
                    if region != "full" and reference.empty_regions[region]:
                        value, note = math.nan, f"region {region!r} is empty (no {'hole' if region == 'inside' else 'non-hole'} pixels)"
                    row = {"metric": metric, "region": region, "protocol": protocol, "value": float(value)}
                    if note:
                        row["note"] = note
                    rows.append(row)
        return rows

    def _weight(self, reference: Reference, region: str) -> torch.Tensor | None:
        mask = reference.regions[region]
        return None if mask is None else mask.to(torch.float32)

    def _score_metric(self, metric: str, pred: torch.Tensor, whitened_pred: dict[str, torch.Tensor],
                      ref: Reference) -> dict[tuple[str, str], tuple[float, str | None]]:
        """{(region, protocol): (value, note)} for one metric."""
        out: dict[tuple[str, str], tuple[float, str | None]] = {}
        gt = ref.gt
        strict_regions = [r for r in self.regions if r != "full" and "strict" in self.protocols
                          and not ref.empty_regions[r]]
        paper_regions = [r for r in whitened_pred]

        def put_full(value, note=None):
            for protocol in self.protocols:
                out[("full", protocol)] = (value, note)

        def fill_missing(note):
            for region in self.regions:
                for protocol in self.protocols:
                    out.setdefault((region, protocol), (math.nan, note))

        if metric == "psnr":
            # One squared-error map serves every region and protocol: whitening makes the error
            # exactly zero outside the region, so the paper protocol's MSE is the region's error
            # sum over the whole video's size, and the strict one the same sum over the region's.
            error = (pred - gt).square_().sum(dim=1, keepdim=True)  # (T, 1, H, W), summed over C
            size = error.numel() * pred.shape[1]
            put_full(fn.psnr_from_mse(error.sum(dtype=torch.float64) / size))
            for r in set(strict_regions) | set(paper_regions):
                mask = ref.regions[r]
                region_sum = error.masked_fill(~mask, 0).sum(dtype=torch.float64)
                if r in strict_regions:
                    count = mask.sum(dtype=torch.float64) * pred.shape[1]
                    out[(r, "strict")] = (fn.psnr_from_mse(region_sum / count), None)
                if r in paper_regions:
                    out[(r, "paper")] = (fn.psnr_from_mse(region_sum / size), None)
        elif metric in ("msssim", "msssim_2d"):
            compute = fn.msssim_video if metric == "msssim" else fn.msssim_frames
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    values = compute(pred, gt, [None] + [self._weight(ref, r) for r in strict_regions])
                    put_full(values[0])
                    for r, v in zip(strict_regions, values[1:]):
                        out[(r, "strict")] = (v, None)
                    for r in paper_regions:
                        out[(r, "paper")] = (compute(whitened_pred[r], ref.whitened_gt[r])[0], None)
            except StereobenchError as exc:  # frames too small / too few frames: NaN with the reason
                out = {}
                fill_missing(str(exc))
        elif metric in LPIPS_NETS:
            self._ensure_features(metric, ref)
            from benchmark.metrics.lpips_net import per_frame_distance, region_distance

            net = self._lpips(metric)
            maps = net.distance_maps(pred, ref.lpips_features[(net.net_name, "full")])
            put_full(float(per_frame_distance(maps).mean()))
            for r in strict_regions:
                out[(r, "strict")] = (region_distance(maps, ref.regions[r]), None)
            del maps
            for r in paper_regions:
                paper_maps = net.distance_maps(whitened_pred[r], ref.lpips_features[(net.net_name, r)])
                out[(r, "paper")] = (float(per_frame_distance(paper_maps).mean()), None)
        elif metric == "temporal_stability":
            note = "needs at least 2 frames" if gt.shape[0] < 2 else None
            put_full(fn.temporal_instability(pred, gt), note)
            for r in strict_regions:
                out[(r, "strict")] = (fn.temporal_instability(pred, gt, self._weight(ref, r)), note)
            for r in paper_regions:
                out[(r, "paper")] = (fn.temporal_instability(whitened_pred[r], ref.whitened_gt[r]), note)
        elif metric == "stereo_consistency":
            if ref.left is None or ref.disparity is None:
                fill_missing(STEREO_INPUTS_NOTE)
            else:
                note = "protocol-independent: pixels are selected by where they land in the right view"
                for region in self.regions:
                    if region != "full" and ref.empty_regions[region]:
                        continue
                    value = fn.stereo_consistency_error(pred, ref.left, ref.disparity, ref.regions[region])
                    for protocol in self.protocols:
                        out[(region, protocol)] = (value, note if math.isfinite(value) else
                                                   "no left pixel with valid disparity lands in this region")
        else:  # pragma: no cover - get_metric guards this
            raise StereobenchError(f"metric {metric!r} has no implementation")
        fill_missing(None)
        for key, (value, note) in out.items():
            if isinstance(value, float) and math.isnan(value) and note is None:
                out[key] = (value, "undefined for this input (empty region in every frame)")
        return out


def score_videos(pred: torch.Tensor, gt: torch.Tensor, hole_mask: torch.Tensor | None = None,
                 left: torch.Tensor | None = None, disparity: torch.Tensor | None = None, **scorer_kwargs) -> list[dict]:
    """One-shot scoring: ``Scorer(**scorer_kwargs)``, then prepare the reference and score.

    Without ``hole_mask`` only the full frame is scored."""
    if hole_mask is None:
        scorer_kwargs.setdefault("regions", ("full",))
    scorer = Scorer(**scorer_kwargs)
    return scorer.score(pred, scorer.prepare_reference(gt, hole_mask, left=left, disparity=disparity))
