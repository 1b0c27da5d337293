"""How well does each forward warp predict the true right view? PSNR tables for clips with a real
or exact ground-truth right view (the Middlebury pair has its own entry point,
``python -m benchmark.datasets.middlebury``; this one pools any list of clips, e.g. synthetic).

Run: ``.venv/bin/python -m benchmark.stereo.warp_quality [num_clips] [size] [num_frames] [integer_disparity]``
(synthetic dataset, defaults 4 512 16 both: fractional and integer layer disparities).
"""

from __future__ import annotations

from typing import Iterable

import torch

from benchmark.types import Clip
from benchmark.metrics.functional import psnr_from_mse

WARP_NAMES = ("shared", "m2svid", "stereocrafter", "svg")


def compare_warps(clips: Iterable[Clip], warps: Iterable[str] = WARP_NAMES) -> list[dict]:
    """Forward-warp every clip's left view with its ground-truth disparity by each warp and
    compare with its right view. PSNR (data range 1) is pooled over all clips (mean squared
    error over all counted pixels), over pixels with finite disparity that are:

    - ``own``: not a hole of that warp (its raw mask);
    - ``common``: not a hole of ANY of the warps (the same pixels for every warp).

    Returns one dict per warp: ``warp``, ``psnr_own``, ``psnr_common``, ``hole_fraction``,
    ``common_fraction``.
    """
    from benchmark.stereo import get_warp

    warps = tuple(warps)
    sums = {name: dict(own=0.0, own_n=0, common=0.0, holes=0) for name in warps}
    common_n = total_n = 0
    for clip in clips:
        if clip.right is None:
            raise ValueError(f"{clip.clip_id} has no ground-truth right view")
        valid = torch.isfinite(clip.disparity)
        outputs = {name: get_warp(name)(clip.left, clip.disparity) for name in warps}
        common = valid.clone()
        for _, hole in outputs.values():
            common &= ~hole.bool()
        for name, (warped, hole) in outputs.items():
            squared = (warped - clip.right).pow(2).mean(dim=1, keepdim=True).double()
            own = valid & ~hole.bool()
            sums[name]["own"] += float(squared[own].sum())
            sums[name]["own_n"] += int(own.sum())
            sums[name]["common"] += float(squared[common].sum())
            sums[name]["holes"] += int(hole.sum())
        common_n += int(common.sum())
        total_n += valid.numel()

    def psnr(total: float, count: int) -> float:
        return psnr_from_mse(total / max(count, 1))

    return [dict(warp=name, psnr_own=psnr(s["own"], s["own_n"]), psnr_common=psnr(s["common"], common_n),
                 hole_fraction=s["holes"] / max(total_n, 1), common_fraction=common_n / max(total_n, 1))
            for name, s in sums.items()]


def main() -> None:  # pragma: no cover - the command that makes the docs figures
    import sys

    from benchmark.datasets import get_dataset

    torch.set_num_threads(2)
    num_clips, size, num_frames = (int(a) for a in (sys.argv[1:4] + ["4", "512", "16"][len(sys.argv[1:4]):]))
    modes = [sys.argv[4].lower() in ("1", "true", "yes")] if len(sys.argv) > 4 else [False, True]
    for integer in modes:
        dataset = get_dataset("synthetic", num_clips=num_clips, size=size, num_frames=num_frames,
                              integer_disparity=integer)
        rows = compare_warps(dataset.load_clip(name) for name in dataset.clip_names())
        print(f"synthetic: {num_clips} clips x {num_frames} x {size} x {size}, integer_disparity={integer}, "
              f"GT disparity, PSNR vs the exact right view")
        print("| warp | PSNR own non-hole pixels dB | PSNR common non-hole pixels dB | hole fraction |")
        print("|---|---|---|---|")
        for row in rows:
            print(f"| {row['warp']} | {row['psnr_own']:.2f} | {row['psnr_common']:.2f} | {row['hole_fraction']:.3f} |")
        print(f"common region: {rows[0]['common_fraction']:.3f} of all pixels")


if __name__ == "__main__":  # pragma: no cover
    main()
