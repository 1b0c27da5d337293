"""MS-SSIM: the paper's spatio-temporal 3-D version and the mean of per-frame 2-D MS-SSIM.

One family: both run :func:`benchmark.metrics.functional.ms_ssim`, the 3-D one on the 5-D
(1, C, T, H, W) video, the 2-D one frame by frame; ``per_frame`` chooses.
"""

from __future__ import annotations

import math
from typing import ClassVar

from benchmark.errors import StereobenchError
from benchmark.metrics.base import Metric, Prediction, Record
from benchmark.metrics.spec import MetricSpec


class MSSSIM(Metric):
    """MS-SSIM family. Strict regions are weighted per-pixel maps (all regions in one pass);
    paper regions run on whitened copies. Inputs MS-SSIM cannot take (frames of 160 px or less,
    2-8 frames for 3-D) give NaN with the reason for every region."""

    per_frame: ClassVar[bool] = False

    def score(self, prediction: Prediction, state, regions, scoring_protocols) -> list[Record]:
        import warnings

        import torch

        from benchmark.metrics import functional as fn

        reference = prediction.reference
        compute = fn.msssim_frames if self.per_frame else fn.msssim_video
        strict = reference.strict_regions(regions, scoring_protocols)
        paper = reference.paper_regions(regions, scoring_protocols)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                weights = [None] + [reference.mask(r).to(torch.float32) for r in strict]
                values = compute(prediction.video, reference.gt, weights)
                records = self.full_frame(values[0], scoring_protocols)
                records += [Record(r, "strict", v) for r, v in zip(strict, values[1:])]
                for r in paper:
                    records.append(Record(r, "paper", compute(prediction.whitened(r), reference.whitened(r))[0]))
        except StereobenchError as exc:  # frames too small / too few frames: NaN with the reason
            return self.for_all(regions, scoring_protocols, math.nan, str(exc))
        return records


class MSSSIM3D(MSSSIM):
    spec = MetricSpec("msssim", "MS-SSIM (3-D)", True, (0.0, 1.0), "",
                      "spatio-temporal MS-SSIM on the 5-D (N, C, T, H, W) video, as the M2SVid code computes it", True)


class MSSSIM2D(MSSSIM):
    spec = MetricSpec("msssim_2d", "MS-SSIM (per frame)", True, (0.0, 1.0), "", "mean over frames of 2-D MS-SSIM")
    per_frame = True
