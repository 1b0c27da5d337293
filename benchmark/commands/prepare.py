"""Build and cache the shared stereo inputs of datasets, and write a preview to look at.

For every clip: load it (native size and rate), apply the clip protocol (frames, fps, resize,
centre crop), forward-warp the left view with the depth source's disparity (the dataset's ground
truth unless --depth names another; the shared warp, or a method's native warp), close the hole mask, and store the StereoInput in the on-disk cache under
the key of its input recipe (dataset name and revision, clip, protocol, depth source, warp; see
docs/stereo.md). A later `stereobench run` (or a second `prepare`, or training) finds it there,
however the dataset folder was spelled. For a person to check the inputs, each clip also gets

  <preview>/<clip>.png   one frame: left | warped right | hole mask | ground-truth right
  <preview>/<clip>.mp4   the same four panels for every frame (H.264, plays in browsers)

Datasets: `synthetic` (procedural clips with exact ground truth), `middlebury-motorcycle` (the
real Middlebury pair from scikit-image as panning clips), or a directory of your own videos
(`<name>_left.mp4` [+ `<name>_right.mp4`, `<name>_disparity.npy` or, with --depth files,
`<name>_depth.npy`]). Without --dataset, both bundled datasets are prepared. Dataset options go through --option KEY=VALUE (for all datasets)
or --option DATASET:KEY=VALUE (for one).

Protocols: `paper` (16 frames at 5 fps, 512x512, 11x11 hole-mask closing), `quick` (16 frames,
192x192, 5x5 closing; the default for the bundled data) and `native` (no resampling). Warps:
`shared` (the suite's sub-pixel z-buffered splat, default) or a method's official rule
(`m2svid`, `stereocrafter`, `svg`).

Examples:
  stereobench prepare                                           # both bundled datasets, quick
  stereobench prepare --dataset middlebury-motorcycle --protocol paper
  stereobench prepare --dataset synthetic --option num_clips=8 --option size=256 --clips 4
  stereobench prepare --dataset synthetic --warp m2svid --preview /tmp/previews
  stereobench prepare --dataset ~/videos/stereo_pairs --protocol paper --cache /data/sb-cache
  stereobench prepare --dataset ~/videos/holiday --protocol qualitative --depth depth-anything-v2 \\
      --weights-depth ~/models/Depth-Anything-V2-Small-hf   # warms what `run` with the same --depth reads

Depth (--depth, --weights-depth, --depth-option): the same flags, meaning and checks as
`stereobench run` (docs/depth.md); without them disparity is the dataset's own (gt). Depth
models run on $STEREOBENCH_DEPTH_DEVICE, else CUDA when available, else the CPU.
"""

from __future__ import annotations

import argparse
import io
import math
import time
from pathlib import Path

import torch

from benchmark.commands.run import add_depth_arguments
from benchmark.errors import StereobenchError
from benchmark.fileio import atomic_write_bytes

WARP_NAMES = ("shared", "m2svid", "stereocrafter", "svg")
DEFAULT_PREVIEW_ROOT = Path("results") / "previews"
PANEL_GAP = 4  # pixels between preview panels


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", "-d", action="append", metavar="NAME",
                        help="dataset name or directory of videos; repeat for several "
                             "(default: synthetic and middlebury-motorcycle)")
    parser.add_argument("--protocol", "-p", metavar="NAME",
                        help="clip protocol: paper, quick, native or qualitative (default: what `stereobench run "
                             "--dataset NAME` uses, so the same inputs are warmed: paper for stereo4d and ego4d, "
                             "quick otherwise)")
    parser.add_argument("--warp", "-w", default="shared", metavar="NAME",
                        help=f"forward warp: {', '.join(WARP_NAMES)} (default: shared)")
    parser.add_argument("--clips", "-n", type=int, metavar="N", help="prepare only the first N clips of each dataset")
    parser.add_argument("--option", "-o", action="append", default=[], metavar="[DATASET:]KEY=VALUE",
                        help="dataset option, e.g. size=256 or synthetic:num_clips=8; repeatable")
    add_depth_arguments(parser)
    parser.add_argument("--cache", metavar="DIR",
                        help="cache directory (default: $STEREOBENCH_CACHE or the suite's default)")
    parser.add_argument("--preview", metavar="DIR",
                        help="preview directory (default: results/previews/<dataset>/); one folder per dataset "
                             "is made inside it when several datasets are given")
    parser.add_argument("--no-preview", action="store_true", help="only build the cache, write no preview")
    parser.add_argument("--preview-frame", type=int, default=None, metavar="K",
                        help="frame shown in the PNG preview, 0 .. frames-1 of the protocol (default: the middle frame)")


# --------------------------------------------------------------------------------------------
# Preview: four labelled panels side by side.


def _label_strip(labels: list[str], panel_width: int, height: int) -> torch.Tensor:
    """float32 (3, height, len(labels) * panel_width): white text on dark grey."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    strip = Image.new("RGB", (panel_width * len(labels), height), (32, 32, 32))
    draw = ImageDraw.Draw(strip)
    try:
        font = ImageFont.load_default(size=max(10, int(height * 0.6)))
    except TypeError:  # older Pillow without sizes
        font = ImageFont.load_default()
    for i, text in enumerate(labels):
        draw.text((i * panel_width + 6, max(1, height // 8)), text, fill=(255, 255, 255), font=font)
    return torch.from_numpy(np.asarray(strip).copy()).permute(2, 0, 1).float().div_(255.0)


def preview_panels(inp, gt_right: torch.Tensor | None) -> torch.Tensor:
    """Left | warped | hole mask | GT right, with a label strip on top: float32 (T, 3, H', 4W + 3 gaps).

    The hole mask is white where the warp left a hole; without a ground-truth right view the last
    panel is grey.
    """
    t, _, h, w = inp.left.shape
    left = inp.left.detach().float().cpu()
    mask = inp.mask.detach().cpu().to(torch.float32).expand(t, 3, h, w)
    right = gt_right.detach().float().cpu() if gt_right is not None else torch.full_like(left, 0.5)
    gap = torch.full((t, 3, h, PANEL_GAP), 0.25)  # keeps a white mask edge apart from the next panel
    panels = [left, inp.warped.detach().float().cpu(), mask, right]
    body = torch.cat([p for panel in panels for p in (panel, gap)][:-1], dim=3).clamp(0, 1)
    labels = ["left", f"warped ({inp.params.get('warp', 'shared')})", "hole mask",
              "GT right" if gt_right is not None else "no GT right"]
    strip_h = max(12, h // 12)
    strip = _label_strip(labels, w + PANEL_GAP, strip_h)[:, :, : body.shape[-1]]
    return torch.cat([strip.unsqueeze(0).expand(t, -1, -1, -1), body], dim=2)


def write_preview(inp, gt_right: torch.Tensor | None, folder: Path, name: str, frame: int | None = None) -> tuple[Path, Path]:
    """Write ``<folder>/<name>.png`` (one frame) and ``<folder>/<name>.mp4`` (all frames)."""
    import numpy as np
    from PIL import Image

    from benchmark.video_io import write_video

    panels = preview_panels(inp, gt_right)
    folder.mkdir(parents=True, exist_ok=True)
    if frame is not None and not 0 <= int(frame) < panels.shape[0]:
        raise StereobenchError(f"preview frame {frame} is outside the clip's frames 0..{panels.shape[0] - 1}")
    k = panels.shape[0] // 2 if frame is None else int(frame)
    png = folder / f"{name}.png"
    image = (panels[k].permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    encoded = io.BytesIO()
    Image.fromarray(image).save(encoded, format="PNG")
    atomic_write_bytes(png, encoded.getvalue())  # a kill leaves no half PNG and no stray temp name
    mp4 = write_video(folder / f"{name}.mp4", panels, fps=float(inp.fps))
    return png, Path(mp4)


# --------------------------------------------------------------------------------------------


def _split_options(pairs: list[str], dataset_names: list[str]) -> dict[str, dict]:
    """``[DATASET:]KEY=VALUE`` pairs -> options per dataset name."""
    from benchmark.datasets import parse_options

    per_dataset: dict[str, list[str]] = {name: [] for name in dataset_names}
    for pair in pairs:
        head, sep, rest = pair.partition(":")
        if sep and "=" not in head:
            if head not in per_dataset:
                raise StereobenchError(f"option {pair!r} names dataset {head!r}, which is not among --dataset "
                                       f"{', '.join(dataset_names)}")
            per_dataset[head].append(rest)
        else:
            for name in dataset_names:
                per_dataset[name].append(pair)
    return {name: parse_options(pairs) for name, pairs in per_dataset.items()}


def _clip_name(clip_id: str) -> str:
    """File-system-safe name of a clip for preview files."""
    name = clip_id.split("/", 1)[-1]
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _check_options(options: dict[str, dict]) -> None:
    """No dataset option may be NaN or infinite (``fps=nan`` would pass a ``> 0`` check)."""
    for name, values in options.items():
        for key, value in values.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise StereobenchError(f"dataset option {key}={value} for {name!r} must be a finite number")


def _open_dataset(name: str, options: dict):
    """:func:`get_dataset` with a value a dataset cannot convert (``num_clips=abc``) as one line."""
    from benchmark.datasets import get_dataset

    try:
        return get_dataset(name, **options)
    except (ValueError, OverflowError) as exc:
        shown = " ".join(f"{k}={v}" for k, v in options.items()) or "(none)"
        raise StereobenchError(f"dataset {name!r}: an option value is not understood ({exc}); options given: "
                               f"{shown}") from None


def _check_folder(folder: Path, what: str) -> None:
    """Fail before any work when previews cannot be written to ``folder``."""
    import os
    import uuid

    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise StereobenchError(f"{what} folder {folder} cannot be made: {parent} is a file; give a folder "
                                       f"with --preview, or --no-preview")
            break
    probe = folder / f".write-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise StereobenchError(f"cannot write the {what} to {folder} ({exc.strerror or exc}); choose a writable "
                               f"folder with --preview, or --no-preview") from None


def _run_default_protocol(name: str) -> str:
    """The protocol `stereobench run --dataset NAME` uses without --protocol or a config, so that
    `prepare` warms exactly the inputs that run reads (paper for stereo4d/ego4d, quick otherwise)."""
    from benchmark.commands.run import _default_protocol
    from benchmark.config import RunConfig

    default = _default_protocol([name]) or RunConfig.model_fields["protocol"].default
    return default if isinstance(default, str) else "quick"


def _check_preview_frame(frame: int | None, num_frames: int | None, protocol_name: str) -> None:
    """``--preview-frame`` must name a frame of the clip: 0 .. num_frames - 1 (None = not known yet)."""
    if frame is None:
        return
    if frame < 0:
        raise StereobenchError(f"--preview-frame must be >= 0, got {frame}")
    if num_frames is not None and frame >= num_frames:
        raise StereobenchError(f"--preview-frame {frame} is outside the clip's frames 0..{num_frames - 1} "
                               f"(protocol {protocol_name} keeps {num_frames})")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from benchmark.datasets import BUNDLED
    from benchmark.stereo.cache import StereoInputCache, load_input
    from benchmark.stereo.protocol import get_protocol
    from benchmark.stereo.recipe import make_recipe

    # Validate everything (names, options, protocol, folders, clips) before any work, so bad input
    # costs nothing and leaves nothing behind.
    dataset_names = list(args.dataset or BUNDLED)
    for name in dataset_names:
        if not name.strip():
            raise StereobenchError("--dataset is empty; give a dataset name (synthetic, middlebury-motorcycle) or "
                                   "a folder of videos")
    if args.protocol is not None and not args.protocol.strip():
        raise StereobenchError("--protocol is empty; give paper, quick or native")
    if args.warp not in WARP_NAMES:
        from benchmark.errors import did_you_mean
        raise did_you_mean(args.warp, WARP_NAMES, "warp")
    if args.clips is not None and args.clips < 1:
        raise StereobenchError(f"--clips must be at least 1, got {args.clips}")
    _check_preview_frame(args.preview_frame, None, "")
    from benchmark.commands.run import depth_from_args

    depth, depth_settings = depth_from_args(args)  # the recipes `run` with the same --depth flags reads
    options = _split_options(args.option, dataset_names)
    _check_options(options)

    plans = []  # (dataset, protocol, recipes, preview folder or None)
    for name in dataset_names:
        dataset = _open_dataset(name, options[name])
        spec = dataset.spec
        protocol = get_protocol(args.protocol or _run_default_protocol(name))
        _check_preview_frame(args.preview_frame, protocol.num_frames, protocol.name)
        names = dataset.clip_names()[: args.clips]
        recipes = [make_recipe(dataset, clip_name, protocol, warp=args.warp, depth=depth, **depth_settings)
                   for clip_name in names]
        if args.no_preview:
            preview_dir = None
        elif args.preview:
            preview_dir = Path(args.preview) / spec.name if len(dataset_names) > 1 else Path(args.preview)
        else:
            preview_dir = DEFAULT_PREVIEW_ROOT / spec.name
        plans.append((dataset, protocol, recipes, preview_dir))
    cache = StereoInputCache(root=args.cache)
    cache.ensure_writable()
    for _, _, _, preview_dir in plans:
        if preview_dir is not None:
            _check_folder(preview_dir, "preview")

    summary = []
    for dataset, protocol, recipes, preview_dir in plans:
        spec = dataset.spec
        hits_before, hole_fractions, started = cache.hits, [], time.perf_counter()
        bar = tqdm(recipes, desc=f"prepare {spec.name} [{protocol.name}, {args.warp} warp]", unit="clip")
        for recipe in bar:
            inp, gt_right = load_input(dataset, recipe, cache)
            hole_fractions.append(float(inp.mask.float().mean()))
            if preview_dir is not None:
                # The native protocol keeps every frame: the count is known only now. The entry
                # just built stays in the cache.
                _check_preview_frame(args.preview_frame, inp.num_frames, protocol.name)
                write_preview(inp, gt_right, preview_dir, _clip_name(inp.clip_id), args.preview_frame)
            bar.set_postfix(holes=f"{hole_fractions[-1]:.1%}", cached=cache.hits - hits_before)
        summary.append((spec.name, protocol.name, len(recipes), cache.hits - hits_before, hole_fractions,
                        preview_dir, time.perf_counter() - started))

    print()
    print(f"{'dataset':<24} {'protocol':<10} {'clips':>5} {'cached':>6} {'holes':>7} {'time':>7}  preview")
    for name, protocol_name, n, hits, holes, preview_dir, seconds in summary:
        mean_holes = sum(holes) / len(holes) if holes else 0.0
        print(f"{name:<24} {protocol_name:<10} {n:>5} {hits:>6} {mean_holes:>7.1%} {seconds:>6.1f}s  "
              f"{preview_dir if preview_dir is not None else '-'}")
    print(f"cache: {cache.root}")
    return 0
