"""Declared properties of every metric: the leaderboard reads direction and range from here
and never guesses."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSpec:
    """A metric's name, direction and range.

    ``higher_is_better`` orders leaderboards; ``value_range`` is (low, high) with ``None`` for
    unbounded; ``unit`` is shown in tables (``"dB"`` for PSNR).
    """

    name: str
    display_name: str
    higher_is_better: bool
    value_range: tuple[float | None, float | None]
    unit: str = ""
    description: str = ""
    paper_metric: bool = False


METRIC_SPECS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("psnr", "PSNR", True, (0.0, None), "dB",
                   "MSE over the whole video (C x T x H x W), data range 1.0; capped for identical videos", True),
        MetricSpec("msssim", "MS-SSIM (3-D)", True, (0.0, 1.0), "",
                   "spatio-temporal MS-SSIM on the 5-D (N, C, T, H, W) video, as the M2SVid code computes it", True),
        MetricSpec("msssim_2d", "MS-SSIM (per frame)", True, (0.0, 1.0), "",
                   "mean over frames of 2-D MS-SSIM"),
        MetricSpec("lpips_vgg", "LPIPS-VGG", False, (0.0, None), "",
                   "LPIPS v0.1 with the VGG16 trunk, per frame on [-1, 1], mean over frames (the paper's)", True),
        MetricSpec("lpips_alex", "LPIPS-AlexNet", False, (0.0, None), "",
                   "LPIPS v0.1 with the AlexNet trunk, per frame on [-1, 1], mean over frames"),
        MetricSpec("stereo_consistency", "Stereo consistency error", False, (0.0, 1.0), "",
                   "mean absolute error between the left view and the prediction warped back to the left "
                   "with the ground-truth disparity, outside holes (a stereo-specific extra)"),
        MetricSpec("temporal_stability", "Temporal instability", False, (0.0, None), "",
                   "mean absolute difference between the prediction's and the ground truth's "
                   "frame-to-frame changes (a stereo-specific extra)"),
    )
}

REGIONS = ("full", "inside", "outside")
"""``full`` frame, ``inside`` the hole mask (disoccluded, inpainted), ``outside`` it (reprojected)."""

PROTOCOLS = ("paper", "strict")
"""``paper``: pixels outside the region set to 1.0 in both videos, metric on the whole frame
(as the M2SVid code does); ``strict``: mean of per-pixel maps over the region's pixels only."""
