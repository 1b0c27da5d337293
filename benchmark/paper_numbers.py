"""Numbers reported in the M2SVid paper, as data, with their source.

These are **reported in the paper, not measured by this suite**. Leaderboards show them as
separate, clearly marked rows, only for the dataset they were measured on, and never use them
for "best value" highlighting or Pareto fronts of measured methods.

Source: N. Shvetsova, G. Bhat, P. Truong, H. Kuehne, F. Tombari, "M2SVid: End-to-End Inpainting
and Refinement for Monocular-to-Stereo Video Conversion" (https://m2svid.github.io/):

- Table 1 ("State-of-the-art comparison on Stereo4D test set"): PSNR, MS-SSIM, LPIPS.
  Evaluation: 16 frames at 5 FPS, short side resized to 512, centre crop 512x512, warp from the
  dataset's (pseudo) ground-truth disparity, each method's official warp; metrics per video,
  averaged over the dataset. LPIPS is the VGG variant in the paper's code (-> ``lpips_vgg``);
  MS-SSIM is the 5-D spatio-temporal ``pytorch_msssim.ms_ssim`` (-> ``msssim``).
- Table 2 latency column: refinement step only, A100 GPU, 512x512, 16 frames (-> ``time_refine_s``).
- Table 4 (ablation, Stereo4D and Ego4D): the final M2SVid model (feed-forward, left-view
  conditioning, + full attention) and the variant without full attention; the only Ego4D numbers
  for methods of this suite.
"""

from __future__ import annotations

from dataclasses import dataclass

PAPER = ("M2SVid: End-to-End Inpainting and Refinement for Monocular-to-Stereo Video Conversion "
         "(Shvetsova et al., https://m2svid.github.io/)")

REPORTED_LABEL = "reported in paper"


@dataclass(frozen=True)
class PaperNumber:
    """One number reported in the paper.

    ``method`` is the suite's registry name where one exists (``m2svid``) or a descriptive name
    (``svg``, ``stereocrafter-25``, ``stereocrafter-1``); ``display_name`` is the paper's label;
    ``metric`` a METRIC_SPECS key or a timing metric name; ``region``/``protocol`` say where it
    maps in the results table; ``source`` cites the paper and table (the last "Table N" in it is
    :attr:`table`); ``setting`` what it was measured on.
    """

    method: str
    display_name: str
    dataset: str
    metric: str
    value: float
    source: str
    setting: str
    region: str = "full"
    protocol: str = "paper"

    @property
    def table(self) -> str:
        """The paper's table the number comes from, e.g. ``"Table 1"``."""
        import re

        found = re.findall(r"Table \d+", self.source)
        return found[-1] if found else self.source


_STEREO4D_SETTING = "Stereo4D test set, A100"
_EGO4D_SETTING = "Ego4D test set"

_TABLE1 = {
    # method key: (paper label, PSNR dB, MS-SSIM (3-D), LPIPS-VGG)
    "svg": ("SVG (50 steps)", 25.6, 0.926, 0.217),
    "stereocrafter-25": ("StereoCrafter (25 steps)", 24.9, 0.909, 0.242),
    "stereocrafter-1": ("StereoCrafter (1 step)", 25.3, 0.911, 0.262),
    "m2svid": ("M2SVid (1 step)", 26.2, 0.915, 0.180),
}

_TABLE2_LATENCY_S = {"svg": 1270.4, "stereocrafter-25": 12.2, "stereocrafter-1": 2.4, "m2svid": 2.1}

_TABLE4_EGO4D = {
    "m2svid": ("M2SVid (1 step, full attention)", 22.7, 0.885, 0.248),
    "m2svid-no-full-attention": ("M2SVid (1 step, no full attention)", 22.8, 0.886, 0.244),
}
_TABLE4_STEREO4D_NO_FULL_ATTENTION = ("M2SVid (1 step, no full attention)", 26.2, 0.915, 0.179)


def _quality(method: str, label: str, dataset: str, psnr: float, msssim: float, lpips_vgg: float,
             source: str, setting: str) -> list[PaperNumber]:
    return [
        PaperNumber(method, label, dataset, "psnr", psnr, source, setting),
        PaperNumber(method, label, dataset, "msssim", msssim, source, setting),
        PaperNumber(method, label, dataset, "lpips_vgg", lpips_vgg, source, setting),
    ]


def _build() -> tuple[PaperNumber, ...]:
    numbers: list[PaperNumber] = []
    for method, (label, psnr, msssim, lpips_vgg) in _TABLE1.items():
        numbers += _quality(method, label, "stereo4d", psnr, msssim, lpips_vgg,
                            f"{PAPER}, Table 1", _STEREO4D_SETTING)
        numbers.append(PaperNumber(method, label, "stereo4d", "time_refine_s", _TABLE2_LATENCY_S[method],
                                   f"{PAPER}, latency column of Table 2 (refinement step, A100, 512x512, 16 frames)",
                                   _STEREO4D_SETTING, region="n/a", protocol="n/a"))
    label, psnr, msssim, lpips_vgg = _TABLE4_STEREO4D_NO_FULL_ATTENTION
    numbers += _quality("m2svid-no-full-attention", label, "stereo4d", psnr, msssim, lpips_vgg,
                        f"{PAPER}, Table 4", _STEREO4D_SETTING)
    for method, (label, psnr, msssim, lpips_vgg) in _TABLE4_EGO4D.items():
        numbers += _quality(method, label, "ego4d", psnr, msssim, lpips_vgg, f"{PAPER}, Table 4", _EGO4D_SETTING)
    return tuple(numbers)


PAPER_NUMBERS: tuple[PaperNumber, ...] = _build()
"""Every number this module knows, in table order."""


def paper_numbers(dataset: str) -> list[PaperNumber]:
    """The reported numbers that apply to ``dataset`` (``stereo4d``, ``ego4d``); [] for others."""
    return [n for n in PAPER_NUMBERS if n.dataset == dataset]


def paper_setting(dataset: str) -> str | None:
    """The marker text for a dataset's reported rows, e.g.
    ``"reported in paper (Stereo4D test set, A100)"``; None when the paper has no numbers for it."""
    numbers = paper_numbers(dataset)
    return f"{REPORTED_LABEL} ({numbers[0].setting})" if numbers else None


def paper_frame(dataset: str | None = None):
    """The reported numbers as a pandas DataFrame (one row per number), with a ``source`` column."""
    import pandas as pd
    from dataclasses import asdict

    numbers = PAPER_NUMBERS if dataset is None else paper_numbers(dataset)
    return pd.DataFrame([asdict(n) for n in numbers])
