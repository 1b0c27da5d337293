"""Temporal instability: how differently the prediction changes over time than the ground truth."""

from __future__ import annotations

from benchmark.metrics.base import Metric, Prediction, Record
from benchmark.metrics.spec import MetricSpec


class TemporalStability(Metric):
    """Mean |(pred_{t+1} - pred_t) - (gt_{t+1} - gt_t)| (:func:`functional.temporal_instability`);
    NaN with a note for a single frame."""

    spec = MetricSpec("temporal_stability", "Temporal instability", False, (0.0, None), "",
                      "mean absolute difference between the prediction's and the ground truth's "
                      "frame-to-frame changes (a stereo-specific extra)")

    def score(self, prediction: Prediction, state, regions, scoring_protocols) -> list[Record]:
        import torch

        from benchmark.metrics import functional as fn

        reference = prediction.reference
        pred, gt = prediction.video, reference.gt
        note = "needs at least 2 frames" if gt.shape[0] < 2 else None
        records = self.full_frame(fn.temporal_instability(pred, gt), scoring_protocols, note)
        for r in reference.strict_regions(regions, scoring_protocols):
            weight = reference.mask(r).to(torch.float32)
            records.append(Record(r, "strict", fn.temporal_instability(pred, gt, weight), note))
        for r in reference.paper_regions(regions, scoring_protocols):
            records.append(Record(r, "paper", fn.temporal_instability(prediction.whitened(r), reference.whitened(r)),
                                  note))
        return records
