"""Stereo consistency: the prediction warped back to the left view with the ground-truth
disparity, compared with the left view."""

from __future__ import annotations

import math

from benchmark.metrics.base import Metric, Prediction, Record
from benchmark.metrics.spec import MetricSpec


class StereoConsistency(Metric):
    """:func:`functional.stereo_consistency_error` per region. Protocol-independent: a left pixel
    belongs to a region by where it lands in the right view, so both protocols report the same
    number (with a note). Without the left view and the disparity the Scorer reports NaN."""

    spec = MetricSpec("stereo_consistency", "Stereo consistency error", False, (0.0, 1.0), "",
                      "mean absolute error between the left view and the prediction warped back to the left "
                      "with the ground-truth disparity, outside holes (a stereo-specific extra)",
                      needs_left=True, needs_disparity=True)

    def score(self, prediction: Prediction, state, regions, scoring_protocols) -> list[Record]:
        from benchmark.metrics import functional as fn

        reference = prediction.reference
        note = "protocol-independent: pixels are selected by where they land in the right view"
        records = []
        for region in regions:
            if region != "full" and reference.is_empty(region):
                continue
            value = fn.stereo_consistency_error(prediction.video, reference.left, reference.disparity,
                                                reference.mask(region))
            for protocol in scoring_protocols:
                records.append(Record(region, protocol, value, note if math.isfinite(value) else
                                      "no left pixel with valid disparity lands in this region"))
        return records
