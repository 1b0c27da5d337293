"""Convert a 2-D video into a stereo video for a VR headset, a 3-D TV or red-cyan glasses.

The input is the LEFT eye. A depth source gives each frame's relative depth, which becomes
disparity (--max-disparity at the nearest point, --convergence on the screen plane); the left
view is forward-warped to the right camera and a method fills the disoccluded holes; both eyes
are packed into a layout and encoded (H.264 yuv420p by default) with the source's audio.

Layouts (--layout) and the file names players recognise (iw3's suffixes; --naming skybox or
commedia uses those players' keywords instead):
  full-sbs         left | right, full width each             _LRF_Full_SBS   (default)
  half-sbs         left | right, each eye squeezed to half    _LR
  full-tb          left over right                           _TBF_fulltb
  half-tb          left over right, each squeezed to half     _TB
  cross-eyed       right | left, for free viewing            _RLF_cross
  anaglyph-dubois  red-cyan glasses (also anaglyph-color, anaglyph-gray, anaglyph-half-color)
  right-only       the synthesised right view alone          _R
Give a folder as -o and the file is named for the players: clip.mp4 -> out/clip_LRF_Full_SBS.mp4.

Depth (--depth): `files:PATH` for your own maps (a .npy/.npz video or a folder of PNG16/EXR/NPY
frames; --depth-kind disparity or depth), or a depth model that `transformers`/`diffusers` load
from a local folder or the Hugging Face cache (--weights-depth): depth-anything-v2 (default),
transformers, depthcrafter. Nothing is downloaded. Per-frame depth is normalised with robust
percentiles and a moving average over a look-ahead window (no per-frame flicker).

Methods (--method): any registered method; the baselines background-fill (default) and
temporal-fill run on a CPU; M2SVid and the other diffusion methods need their weights and a GPU.

Long videos stream in overlapping windows (--window, --overlap) with bounded memory and are
encoded in segments (--segment-frames) under OUTPUT.parts/. Interrupt it any time: the same
command continues after the last finished segment and gives the same file as an uninterrupted
run (--restart starts over). An existing output is refused unless --overwrite.

Examples:
  stereobench convert holiday.mp4 -o out/ --depth files:holiday_depth.npy
  stereobench convert holiday.mp4 -o out/ --weights-depth ~/models/Depth-Anything-V2-Small-hf
  stereobench convert clip.mov -o clip_LR.mp4 --layout half-sbs --max-disparity 3% --convergence 0.4
  stereobench convert clip.mov -o out/ --layout anaglyph --method temporal-fill --max-fps 30
  stereobench convert clip.mov -o out/ --codec h265 --crf 24 --preset slow --naming skybox
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any



def add_arguments(parser: argparse.ArgumentParser) -> None:
    from benchmark.convert.pipeline import AUDIO_MODES, ConvertOptions
    from benchmark.layouts import NAMINGS

    d = ConvertOptions()
    parser.add_argument("input", help="the 2-D video (becomes the left eye): MP4, MOV, MKV, WebM, ...")
    parser.add_argument("-o", "--output", required=True,
                        help="output .mp4, or a folder (the file is then named for VR players)")
    parser.add_argument("--method", default=d.method, help=f"method that fills the holes (default {d.method})")
    parser.add_argument("--method-option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of the method, e.g. search=16 (repeatable)")
    parser.add_argument("--depth", default=d.depth,
                        help="files:PATH (your depth maps: one per frame of the video, at its upright size) or a depth "
                             "model name (default depth-anything-v2)")
    parser.add_argument("--weights-depth", dest="depth_weights", metavar="PATH",
                        help="the depth model's weights: a local folder or a cached Hugging Face id (as in `run`)")
    parser.add_argument("--depth-weights", dest="depth_weights", help=argparse.SUPPRESS)  # older spelling
    parser.add_argument("--depth-kind", choices=("disparity", "depth"), default=d.depth_kind,
                        help="what files:PATH hold: disparity/inverse depth (larger = nearer) or depth")
    parser.add_argument("--max-disparity", default=d.max_disparity,
                        help="parallax between the eyes at the nearest point: percent of the width (2%%, iw3's "
                             "divergence) or pixels (24 or 24px); default 2%%")
    parser.add_argument("--convergence", type=float, default=d.convergence,
                        help="normalised depth on the screen plane: 0 = all in front, 1 = all behind (default 0.5)")
    parser.add_argument("--layout", default=d.layout, help="stereo layout (see above; default full-sbs)")
    parser.add_argument("--naming", choices=NAMINGS, default=d.naming,
                        help="file-name keywords when -o is a folder (default iw3)")
    parser.add_argument("--codec", default=d.codec, help="h264 (default) or h265; yuv420p")
    parser.add_argument("--crf", type=int, default=d.crf, help="constant rate factor, 0-51 (default 20; lower = better)")
    parser.add_argument("--preset", default=d.preset, help="encoder preset, ultrafast ... veryslow (default medium)")
    parser.add_argument("--frame-packing-sei", action="store_true",
                        help="mark SBS/TB files as 3-D in the H.264 stream (some players then show them flat)")
    parser.add_argument("--max-fps", type=float, help="cap the output frame rate (default: the source's)")
    parser.add_argument("--audio", choices=AUDIO_MODES, default=d.audio,
                        help="auto: copy the source's audio (AAC where MP4 cannot hold it); aac; none")
    parser.add_argument("--window", type=int, default=d.window, help=f"frames per method window (default {d.window})")
    parser.add_argument("--overlap", type=int, default=d.overlap,
                        help=f"frames cross-faded between windows (default {d.overlap})")
    parser.add_argument("--segment-frames", type=int, default=d.segment_frames,
                        help=f"frames per resumable segment (default {d.segment_frames})")
    parser.add_argument("--depth-batch", type=int, default=d.depth_batch, help=f"frames per depth-model call (default {d.depth_batch})")
    parser.add_argument("--mask-closing", type=int, default=d.mask_closing,
                        help="close the hole mask with a KxK kernel before the method (0 = off; M2SVid uses 11)")
    parser.add_argument("--device", default=d.device, help=f"torch device for the depth model and the method (default {d.device})")
    parser.add_argument("--seed", type=int, default=d.seed, help="the method's seed")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--restart", action="store_true", help="discard an interrupted conversion's parts")
    parser.add_argument("--keep-parts", action="store_true", help="keep OUTPUT.parts/ (segments) afterwards")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--json", action="store_true", help="print a JSON summary (timings per phase) to stdout")


def parse_method_options(pairs: list[str]) -> dict[str, Any]:
    from benchmark.datasets import parse_options

    return parse_options(pairs, what="--method-option", example="search=16")


def run(args: argparse.Namespace) -> int:
    from benchmark.convert import ConvertOptions, convert_video

    options = ConvertOptions(
        method=args.method, method_options=parse_method_options(args.method_option), depth=args.depth,
        depth_weights=args.depth_weights, depth_kind=args.depth_kind, max_disparity=args.max_disparity,
        convergence=args.convergence, layout=args.layout, naming=args.naming, codec=args.codec, crf=args.crf,
        preset=args.preset, frame_packing_sei=args.frame_packing_sei, max_fps=args.max_fps, window=args.window,
        overlap=args.overlap, segment_frames=args.segment_frames, depth_batch=args.depth_batch,
        mask_closing=args.mask_closing, audio=args.audio, device=args.device, seed=args.seed,
    )
    result = convert_video(args.input, args.output, options, overwrite=args.overwrite, resume=not args.restart,
                           keep_parts=args.keep_parts, progress=not args.no_progress)
    h, w = result.size
    if args.json:
        print(json.dumps({"output": str(result.output), "frames": result.frames, "fps": float(result.fps),
                          "height": h, "width": w, "audio": result.audio, "resumed_segments": result.resumed_segments,
                          "seconds": result.seconds}, indent=1))
    else:
        print(f"wrote {result.output} ({result.frames} frames, {w}x{h}, {float(result.fps):g} fps, audio "
              f"{result.audio})", file=sys.stderr if args.json else sys.stdout)
    return 0
