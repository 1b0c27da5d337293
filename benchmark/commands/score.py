"""Score a predicted right-view video against the ground-truth right view.

PRED and GT are each a video file (MP4, MOV, MKV, WebM: anything FFmpeg decodes) or a folder
of PNG/JPG frames (sorted naturally). They must have the same frame count and size. The hole
mask (--mask) is a video or a PNG folder of the same size, white = hole (disoccluded pixels);
without it only the full frame is scored.

Prints ONE JSON object to stdout:

  {"metrics": {"psnr": {"full": {"paper": 26.1, "strict": 26.1}, "inside": {...}, ...}, ...},
   "notes": {"msssim/inside/strict": "why this value is null", ...},
   "frames": 16, "height": 512, "width": 512, "device": "cpu", "seconds": {...}, ...}

Values that cannot be computed (an empty region, frames too small for MS-SSIM, no left view
for stereo consistency) are null, with the reason under "notes".

Metrics (docs/metrics.md): psnr (dB, capped at 100 for identical videos), msssim (the paper's
spatio-temporal 5-D MS-SSIM), msssim_2d (mean per-frame MS-SSIM), lpips_vgg (the paper's),
lpips_alex, temporal_stability (lower is better), stereo_consistency (needs --left and
--disparity; lower is better).

Regions: full, inside (holes), outside (reprojected). Protocols:
  paper   pixels outside the region set to white in both videos, metric on the whole frame
          (what the M2SVid code does; inflates scores because the white area matches)
  strict  mean of the per-pixel error / similarity maps over the region's pixels only
For the full region both protocols are the same number.

Examples:
  stereobench score pred.mp4 gt.mp4 --mask holes.mp4
  stereobench score pred_frames/ gt_frames/ --mask mask_frames/ --protocol strict
  stereobench score pred.mp4 gt.mp4 --mask holes.mp4 --exclude lpips_vgg      # quick (no VGG)
  stereobench score pred.mp4 gt.mp4 --metrics psnr msssim --output scores.json
  stereobench score pred.mp4 gt.mp4 --mask holes.mp4 --left left.mp4 --disparity disp.npy

LPIPS needs its trunk weights once: `make weights-lpips` (or `stereobench weights lpips`).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from benchmark.errors import StereobenchError
from benchmark.fileio import atomic_write_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pred", help="predicted right view: video file or folder of frames")
    parser.add_argument("gt", help="ground-truth right view: video file or folder of frames")
    parser.add_argument("--mask", help="hole mask: video or folder of frames, white = hole")
    parser.add_argument("--protocol", choices=("paper", "strict", "both"), default="both",
                        help="which region protocol(s) to report (default both)")
    parser.add_argument("--metrics", nargs="+", metavar="NAME",
                        help="metrics to compute (default all); commas also separate names")
    parser.add_argument("--exclude", nargs="+", metavar="NAME", default=(),
                        help="metrics to skip, e.g. lpips_vgg for a quick run")
    parser.add_argument("--left", help="left view (video or folder), for stereo_consistency")
    parser.add_argument("--disparity",
                        help="ground-truth disparity of the left view for stereo_consistency: .npy or .pt, "
                             "(T, H, W) or (T, 1, H, W) float pixels, x_R = x_L - d, NaN/inf invalid")
    parser.add_argument("--max-frames", type=int, help="score only the first N frames")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--batch-size", type=int, default=8, help="frames per network call (default 8)")
    parser.add_argument("--output", help="also write the JSON object to this file (atomically)")


def _split_names(values) -> list[str]:
    return [name for value in values or () for name in value.split(",") if name]


def _read_disparity(path: str, T: int):
    import numpy as np
    import torch

    p = Path(path)
    if not p.exists():
        raise StereobenchError(f"disparity file {path!r} does not exist")
    try:
        if p.suffix == ".npy":
            disparity = torch.from_numpy(np.load(p, allow_pickle=False))
        elif p.suffix in (".pt", ".pth"):
            disparity = torch.load(p, map_location="cpu", weights_only=True)
        else:
            raise StereobenchError(f"disparity {path!r}: use a .npy or .pt file of (T, H, W) pixels")
    except (OSError, ValueError, RuntimeError) as exc:
        raise StereobenchError(f"cannot read disparity {path!r} ({exc}); give a .npy or .pt array") from exc
    disparity = disparity.float()
    if disparity.ndim == 3:
        disparity = disparity.unsqueeze(1)
    return disparity[:T]


def run(args: argparse.Namespace) -> int:
    from benchmark.metrics import METRICS, get_metric
    from benchmark.metrics.spec import PROTOCOLS, REGIONS
    from benchmark.stereo.video_io import read_mask, read_video

    names = _split_names(args.metrics) or list(METRICS)
    excluded = _split_names(args.exclude)
    for name in names + excluded:
        get_metric(name)  # did-you-mean before any decoding
    names = [n for n in names if n not in excluded]
    if not names:
        raise StereobenchError("no metric left to compute; check --metrics and --exclude")
    if (args.left is None) != (args.disparity is None):
        raise StereobenchError("stereo_consistency needs both --left and --disparity; give both or neither")
    if args.left is None and "stereo_consistency" in names and args.metrics is None:
        names.remove("stereo_consistency")  # not asked for explicitly and its inputs are absent

    start = time.perf_counter()
    kwargs = {"max_frames": args.max_frames} if args.max_frames else {}
    pred = read_video(args.pred, **kwargs).frames
    gt = read_video(args.gt, **kwargs).frames
    if pred.shape[0] != gt.shape[0]:
        raise StereobenchError(
            f"{args.pred} has {pred.shape[0]} frames but {args.gt} has {gt.shape[0]}; trim one, or use --max-frames")
    if pred.shape[-2:] != gt.shape[-2:]:
        raise StereobenchError(
            f"{args.pred} is {pred.shape[-1]}x{pred.shape[-2]} but {args.gt} is {gt.shape[-1]}x{gt.shape[-2]} "
            f"(WxH); resize the prediction to the ground truth")
    mask = None
    if args.mask:
        mask = read_mask(args.mask, **kwargs)
        if tuple(mask.shape) != (gt.shape[0], 1, *gt.shape[-2:]):
            raise StereobenchError(
                f"mask {args.mask} is {mask.shape[0]} frames of {mask.shape[-1]}x{mask.shape[-2]} but the videos are "
                f"{gt.shape[0]} frames of {gt.shape[-1]}x{gt.shape[-2]}; give a mask of the same size and length")
    left = disparity = None
    if args.left:
        left = read_video(args.left, **kwargs).frames
        disparity = _read_disparity(args.disparity, gt.shape[0])
    load_seconds = time.perf_counter() - start

    from benchmark.metrics.scorer import Scorer

    regions = REGIONS if mask is not None else ("full",)
    protocols = PROTOCOLS if args.protocol == "both" else (args.protocol,)
    scorer = Scorer(names, regions=regions, protocols=protocols, device=args.device, batch_size=args.batch_size)
    reference = scorer.prepare_reference(gt, mask, left=left, disparity=disparity)  # loads the networks too
    start = time.perf_counter()
    rows = scorer.score(pred, reference)
    score_seconds = time.perf_counter() - start

    metrics: dict = {}
    notes: dict = {}
    for row in rows:
        value = row["value"]
        metrics.setdefault(row["metric"], {}).setdefault(row["region"], {})[row["protocol"]] = (
            value if math.isfinite(value) else None)
        if "note" in row and not math.isfinite(value):
            notes[f"{row['metric']}/{row['region']}/{row['protocol']}"] = row["note"]
    result = {
        "pred": str(args.pred), "gt": str(args.gt), "mask": args.mask,
        "frames": int(gt.shape[0]), "height": int(gt.shape[-2]), "width": int(gt.shape[-1]),
        "hole_fraction": None if mask is None else float(mask.float().mean()),
        "protocols": list(protocols), "regions": list(regions), "device": str(scorer.device),
        "metrics": metrics, "notes": notes,
        "seconds": {"read": round(load_seconds, 3), "reference": round(reference.seconds, 3),
                    "score": round(score_seconds, 3),
                    **{f"metric_{k}": round(v, 3) for k, v in scorer.last_timings.items()}},
    }
    text = json.dumps(result, indent=2)
    if args.output:
        atomic_write_text(args.output, text + "\n")
    print(text)
    return 0
