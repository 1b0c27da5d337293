"""PSNR (dB, data range 1) over the whole video, a region's pixels (strict) or a whitened copy (paper)."""

from __future__ import annotations

from benchmark.metrics.base import Metric, Prediction, Record
from benchmark.metrics.spec import MetricSpec


class PSNR(Metric):
    """PSNR from the MSE over C x T x H x W, capped at ``functional.PSNR_CAP_DB`` for identical videos."""

    spec = MetricSpec("psnr", "PSNR", True, (0.0, None), "dB",
                      "MSE over the whole video (C x T x H x W), data range 1.0; capped for identical videos", True)

    def score(self, prediction: Prediction, state, regions, scoring_protocols) -> list[Record]:
        import torch

        from benchmark.metrics import functional as fn

        reference = prediction.reference
        pred, gt = prediction.video, reference.gt
        strict = reference.strict_regions(regions, scoring_protocols)
        paper = reference.paper_regions(regions, scoring_protocols)
        # One squared-error map serves every region and protocol: whitening makes the error
        # exactly zero outside the region, so the paper protocol's MSE is the region's error
        # sum over the whole video's size, and the strict one the same sum over the region's.
        error = (pred - gt).square_().sum(dim=1, keepdim=True)  # (T, 1, H, W), summed over C
        size = error.numel() * pred.shape[1]
        records = self.full_frame(fn.psnr_from_mse(error.sum(dtype=torch.float64) / size), scoring_protocols)
        for region in dict.fromkeys(strict + paper):
            mask = reference.mask(region)
            region_sum = error.masked_fill(~mask, 0).sum(dtype=torch.float64)
            if region in strict:
                count = mask.sum(dtype=torch.float64) * pred.shape[1]
                records.append(Record(region, "strict", fn.psnr_from_mse(region_sum / count)))
            if region in paper:
                records.append(Record(region, "paper", fn.psnr_from_mse(region_sum / size)))
        return records
