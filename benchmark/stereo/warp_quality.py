"""How well does each forward warp predict the true right view? PSNR tables for clips with a real
or exact ground-truth right view (the one implementation: the Middlebury tables and the
synthetic tables both come from :func:`compare_warps`).

Commands that print the docs' tables live with the datasets (this package never imports them):
``python -m benchmark.datasets.middlebury [clip] [protocol]`` (real pair) and
``python -m benchmark.datasets.synthetic [num_clips] [size] [num_frames] [integer_disparity]``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import torch

from benchmark.metrics.functional import psnr_from_mse
from benchmark.types import Clip

WARP_NAMES = ("shared", "m2svid", "stereocrafter", "svg")


def compare_warps(clips: Iterable[Clip], warps: Iterable[str] = WARP_NAMES, count_filled: bool = False) -> list[dict]:
    """Forward-warp every clip's left view with its ground-truth disparity by each warp and
    compare with its right view.

    PSNR (data range 1) is pooled over all clips (mean squared error over all counted pixels and
    the three channels), over pixels with ground-truth disparity that are:

    - ``own``: not a hole of that warp (its raw mask, no closing);
    - ``common``: not a hole of ANY of the warps (the same pixels for every warp).

    Ground-truth disparity means finite and, unless ``count_filled``, not marked in
    ``clip.disparity_filled`` (values a dataset filled in are estimates: they still drive the
    warp, but their pixels are not scored as ground truth).

    Args:
        clips: clips with ``right`` and ``disparity`` (already through their protocol).
        warps: warp names of :data:`benchmark.stereo.WARPS`.
        count_filled: also score pixels whose disparity was filled in.

    Returns:
        One dict per warp: ``warp``, ``psnr_own``, ``psnr_common`` (dB), ``hole_fraction`` (raw
        holes over all pixels), ``common_fraction`` (common pixels over all pixels) and
        ``seconds`` (time spent in the warp, summed over clips).

    Raises:
        ValueError: a clip without a right view or disparity.
    """
    from benchmark.stereo import get_warp

    warps = tuple(warps)
    functions = {name: get_warp(name) for name in warps}
    sums = {name: dict(own=0.0, own_n=0, common=0.0, holes=0, seconds=0.0) for name in warps}
    common_n = total_n = 0
    for clip in clips:
        if clip.right is None or clip.disparity is None:
            raise ValueError(f"{clip.clip_id} needs a ground-truth right view and disparity")
        valid = torch.isfinite(clip.disparity)
        if clip.disparity_filled is not None and not count_filled:
            valid &= ~clip.disparity_filled.bool()
        outputs = {}
        for name, warp in functions.items():
            start = time.perf_counter()
            outputs[name] = warp(clip.left, clip.disparity)
            sums[name]["seconds"] += time.perf_counter() - start
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
        return psnr_from_mse(total / count) if count else float("nan")

    return [dict(warp=name, psnr_own=psnr(s["own"], s["own_n"]), psnr_common=psnr(s["common"], common_n),
                 hole_fraction=s["holes"] / max(total_n, 1), common_fraction=common_n / max(total_n, 1),
                 seconds=s["seconds"])
            for name, s in sums.items()]


def format_table(rows: list[dict]) -> str:
    """The rows of :func:`compare_warps` as the Markdown table of docs/datasets.md."""
    lines = ["| warp | PSNR common non-hole pixels dB | PSNR own non-hole pixels dB | hole fraction | warp time s |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['warp']} | {r['psnr_common']:.2f} | {r['psnr_own']:.2f} | {r['hole_fraction']:.3f} "
              f"| {r['seconds']:.2f} |" for r in rows]
    lines.append(f"common region: {rows[0]['common_fraction']:.3f} of all pixels")
    return "\n".join(lines)
