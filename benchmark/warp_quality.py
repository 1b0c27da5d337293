"""How well does each forward warp predict the true right view? PSNR tables for clips with a real
or exact ground-truth right view (the one implementation: the Middlebury tables and the
synthetic tables both come from :func:`compare_warps`).

It sits above the stereo stage, the datasets and the metrics (it uses all three), so none of them
imports it. The commands that print the docs' tables:
``python -m benchmark.warp_quality middlebury [clip] [protocol] [fill_disparity]`` (real pair) and
``python -m benchmark.warp_quality synthetic [num_clips] [size] [num_frames] [integer_disparity]``.
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


def middlebury_warp_quality(clip_name: str = "pan-right", protocol: str = "paper", warps=WARP_NAMES,
                            count_filled: bool = False, **options) -> list[dict]:
    """PSNR of each warp's right view against the REAL right view of a Middlebury clip.

    The clip (dataset ``options``, e.g. ``fill_disparity=False``) goes through ``protocol``
    (default: the paper's, 16 x 512 x 512); each warp then forward-warps the left view with the
    ground-truth disparity, and :func:`compare_warps` scores it (regions ``own`` and ``common``
    over pixels with measured disparity; filled pixels too with ``count_filled``).

    Returns one dict per warp, as :func:`compare_warps`.
    """
    from benchmark.datasets.middlebury import MiddleburyMotorcycle
    from benchmark.stereo.protocol import apply_protocol, get_protocol

    clip = apply_protocol(MiddleburyMotorcycle(**options).load_clip(clip_name), get_protocol(protocol))
    return compare_warps([clip], warps, count_filled=count_filled)


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - the commands that make the docs figures
    """``python -m benchmark.warp_quality middlebury [clip] [protocol] [fill_disparity]`` or
    ``python -m benchmark.warp_quality synthetic [num_clips] [size] [num_frames] [integer_disparity]``."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(2)
    which = args.pop(0) if args else "middlebury"
    if which == "middlebury":
        clip_name = args[0] if len(args) > 0 else "pan-right"
        protocol = args[1] if len(args) > 1 else "paper"
        fill = args[2] if len(args) > 2 else True
        rows = middlebury_warp_quality(clip_name, protocol, fill_disparity=fill)
        print(f"middlebury-motorcycle/{clip_name}, protocol {protocol}, fill_disparity={fill}, GT disparity, "
              f"PSNR vs the real right view")
        print(format_table(rows))
        return
    if which != "synthetic":
        raise SystemExit(f"error: unknown table {which!r}; use middlebury or synthetic")
    from benchmark.datasets.synthetic import SyntheticDataset

    num_clips, size, num_frames = (int(a) for a in (args[0:3] + ["4", "512", "16"][len(args[0:3]):]))
    modes = [args[3].lower() in ("1", "true", "yes")] if len(args) > 3 else [False, True]
    for integer in modes:
        dataset = SyntheticDataset(num_clips=num_clips, size=size, num_frames=num_frames, integer_disparity=integer)
        rows = compare_warps(dataset.load_clip(name) for name in dataset.clip_names())
        print(f"synthetic: {num_clips} clips x {num_frames} x {size} x {size}, integer_disparity={integer}, "
              f"GT disparity, PSNR vs the exact right view")
        print(format_table(rows))


if __name__ == "__main__":  # pragma: no cover
    main()
