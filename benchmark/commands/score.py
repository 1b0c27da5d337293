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

Regions: full, inside (holes), outside (reprojected). Scoring protocols (--protocol):
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
    parser.add_argument("--protocol", "--scoring-protocol", dest="protocol", choices=("paper", "strict", "both"),
                        default="both", help="which scoring protocol(s) to report (default both)")
    parser.add_argument("--metrics", nargs="+", metavar="NAME",
                        help="metrics to compute (default all); commas also separate names")
    parser.add_argument("--exclude", nargs="+", metavar="NAME", default=(),
                        help="metrics to skip, e.g. lpips_vgg for a quick run")
    parser.add_argument("--left", help="left view (video or folder), for stereo_consistency")
    parser.add_argument("--disparity",
                        help="ground-truth disparity of the left view for stereo_consistency: .npy or .pt, "
                             "(T, H, W) or (T, 1, H, W) float pixels, x_R = x_L - d, NaN/inf invalid")
    parser.add_argument("--max-frames", type=int, help="score only the first N frames (N >= 1)")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--batch-size", type=int, default=8, help="frames per network call (default 8, >= 1)")
    parser.add_argument("--output", help="also write the JSON object to this file (atomically)")


def _split_names(values) -> list[str]:
    return [name.strip() for value in values or () for name in value.split(",") if name.strip()]


def _check_output(path: str | None) -> None:
    """Refuse an --output the JSON could never be written to, before any decoding or scoring."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise StereobenchError(f"--output {path!r} is a directory; give a file path such as {str(target / 'scores.json')!r}")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise StereobenchError(f"--output {path!r}: {str(parent)!r} is a file, not a folder; choose another path")
            break


def _check_exists(path: str, what: str) -> None:
    # Every input is checked before the first (slow) decode, so a typo in the last argument
    # does not cost a full read of the others.
    if not Path(path).exists():
        raise StereobenchError(f"{what} {path!r} does not exist; check the path")


def _select_metrics(args: argparse.Namespace) -> list[str]:
    from benchmark.metrics.registry import get_metric, metric_names, validate_metric_names

    names = validate_metric_names(args.metrics) if args.metrics is not None else metric_names()
    excluded = _split_names(args.exclude)
    for name in excluded:
        get_metric(name)  # did-you-mean before any decoding
    names = [n for n in names if n not in excluded]
    if not names:
        raise StereobenchError("no metric left to compute; check --metrics and --exclude")
    if args.left is None and "stereo_consistency" in names and args.metrics is None:
        names.remove("stereo_consistency")  # not asked for explicitly and its inputs are absent
    return names


def run(args: argparse.Namespace) -> int:
    from benchmark.metrics.scorer import Scorer
    from benchmark.metrics.spec import REGIONS, SCORING_PROTOCOLS
    from benchmark.stereo.disparity import load_disparity, match_disparity
    from benchmark.video_io import read_mask, read_video

    # Everything that can be checked without decoding is checked first (cheap, and nothing is
    # computed only to be thrown away).
    if args.max_frames is not None and args.max_frames < 1:
        raise StereobenchError(f"--max-frames must be at least 1, got {args.max_frames}; omit it to score every frame")
    if (args.left is None) != (args.disparity is None):
        raise StereobenchError("stereo_consistency needs both --left and --disparity; give both or neither")
    names = _select_metrics(args)
    _check_output(args.output)
    regions = REGIONS if args.mask else ("full",)
    scoring_protocols = SCORING_PROTOCOLS if args.protocol == "both" else (args.protocol,)
    if args.batch_size < 1:
        raise StereobenchError(f"--batch-size must be at least 1 (frames per network call), got {args.batch_size}")
    scorer = Scorer(names, regions=regions, scoring_protocols=scoring_protocols, device=args.device,
                    batch_size=args.batch_size)  # checks the device; networks load later
    for path, what in ((args.pred, "prediction"), (args.gt, "ground truth"), (args.mask, "mask"),
                       (args.left, "left view")):
        if path is not None:
            _check_exists(path, what)
    disparity = load_disparity(args.disparity) if args.disparity else None

    start = time.perf_counter()
    kwargs = {"max_frames": args.max_frames} if args.max_frames is not None else {}
    pred = read_video(args.pred, **kwargs).frames
    gt = read_video(args.gt, **kwargs).frames
    if pred.shape[0] != gt.shape[0]:
        raise StereobenchError(
            f"{args.pred} has {pred.shape[0]} frames but {args.gt} has {gt.shape[0]}; trim one, or use --max-frames")
    if pred.shape[-2:] != gt.shape[-2:]:
        raise StereobenchError(
            f"{args.pred} is {pred.shape[-1]}x{pred.shape[-2]} but {args.gt} is {gt.shape[-1]}x{gt.shape[-2]} "
            f"(WxH); resize the prediction to the ground truth")
    frames, height, width = gt.shape[0], gt.shape[-2], gt.shape[-1]
    mask = None
    if args.mask:
        mask = read_mask(args.mask, **kwargs)
        if tuple(mask.shape) != (frames, 1, height, width):
            raise StereobenchError(
                f"mask {args.mask} is {mask.shape[0]} frames of {mask.shape[-1]}x{mask.shape[-2]} but the videos are "
                f"{frames} frames of {width}x{height}; give a mask of the same size and length")
    left = None
    if args.left:
        left = read_video(args.left, **kwargs).frames
        if left.shape[0] != frames or left.shape[-2:] != gt.shape[-2:]:
            raise StereobenchError(
                f"left view {args.left} is {left.shape[0]} frames of {left.shape[-1]}x{left.shape[-2]} but the videos "
                f"are {frames} frames of {width}x{height}; give the left view of the same clip")
        disparity = match_disparity(disparity, frames, height, width, what=f"disparity {args.disparity!r}")
    load_seconds = time.perf_counter() - start

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
        "frames": int(frames), "height": int(height), "width": int(width),
        "hole_fraction": None if mask is None else float(mask.float().mean()),
        "protocols": list(scoring_protocols), "regions": list(regions), "device": str(scorer.device),
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
