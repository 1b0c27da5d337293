"""The CLI sub-commands of the M2SVid package, declared through its registry entry.

``stereobench weights convert-m2svid`` and ``stereobench train m2svid`` find these through
``METHODS``' CLI hooks (see :mod:`methods.m2svid`); nothing in ``benchmark/commands`` names
M2SVid. Both validate every argument before any heavy work (reading a 4.6 GB checkpoint,
building a model, loading clips), so a bad input is one ``error:`` line within milliseconds.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from benchmark.errors import StereobenchError
from benchmark.registry import CliCommand

CONVERT_HELP = """\
Convert an official M2SVid checkpoint (m2svid_weights.pt or m2svid_no_full_atten_weights.pt,
generative-models key layout) into a diffusers-format folder that the `m2svid` method loads.
Every tensor of the checkpoint must be used and every model parameter filled, or it stops
with an error naming what is missing. Parts the checkpoint lacks (VAE, CLIP image encoder)
come from the SVD img2vid-xt repository in your Hugging Face cache (--svd-source).

Examples:
  wget https://storage.googleapis.com/gresearch/m2svid/m2svid_weights.pt
  stereobench weights convert-m2svid m2svid_weights.pt            # -> ~/.cache/stereobench/weights/m2svid
  stereobench weights convert-m2svid m2svid_no_full_atten_weights.pt --out /data/m2svid-nfa
  stereobench weights convert-m2svid m2svid_weights.pt --svd-source stabilityai/stable-video-diffusion-img2vid-xt
"""

TRAIN_HELP = """\
Train M2SVid end to end with the paper's objective (latent L2 + image L1 + LPIPS-VGG, all
weights 1; only the U-Net learns), from SVD img2vid-xt weights (8-channel U-Net expanded to 13
channels as the official code does) or from a converted M2SVid folder. Checkpoints land in
OUTPUT/checkpoints/step-N; rerunning the same command resumes from the latest one. Multi-GPU
and mixed precision: run the same command under `accelerate launch`.

Examples:
  stereobench train m2svid --init tiny --dataset synthetic --dataset-option size=64 \\
      --frames 4 --size 64 --steps 20 --no-lpips --output runs/m2svid-smoke
  accelerate launch -m benchmark.cli train m2svid \\
      --init stabilityai/stable-video-diffusion-img2vid-xt --dataset stereo4d \\
      --mixed-precision bf16 --gradient-checkpointing --steps 300000 --output runs/m2svid
"""

# First bytes of a file torch.load can read: a zip archive (torch >= 1.6) or a pickle (legacy).
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")
MAX_FRAMES = 25  # the model's frame budget per call


# -- convert-m2svid ----------------------------------------------------------------------------

def _add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    from methods.m2svid.convert import add_convert_arguments

    add_convert_arguments(parser)


def check_convert_arguments(args: argparse.Namespace) -> None:
    """Raise a one-line error for a bad checkpoint path, ``--out`` or ``--svd-source`` (cheap checks)."""
    from methods.m2svid import GCS

    checkpoint = Path(args.checkpoint).expanduser()
    if not checkpoint.exists():
        raise StereobenchError(f"checkpoint {checkpoint} does not exist; download it first: "
                               f"wget {GCS}/m2svid_weights.pt")
    if checkpoint.is_dir():
        raise StereobenchError(f"checkpoint {checkpoint} is a directory; give the official .pt file "
                               f"(m2svid_weights.pt or m2svid_no_full_atten_weights.pt)")
    try:
        with open(checkpoint, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise StereobenchError(f"checkpoint {checkpoint} cannot be read ({exc.strerror}); fix its permissions") from None
    if not head.startswith(_TORCH_MAGIC):
        what = "empty" if not head else "not a PyTorch checkpoint (neither a zip archive nor a pickle)"
        raise StereobenchError(f"checkpoint {checkpoint} is {what}; download it again: wget {GCS}/{checkpoint.name}")
    out = getattr(args, "out", None)
    if out is not None:
        out = Path(out).expanduser()
        if out.exists() and not out.is_dir():
            raise StereobenchError(f"--out {out} is a file; give a folder for the converted model")
        parent = next((p for p in out.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise StereobenchError(f"--out {out}: {parent} is a file, not a folder; choose another --out")
        # The converter replaces the output folder: never let it delete a folder that is not ours.
        if out.is_dir() and any(out.iterdir()) and not (out / "m2svid.json").is_file():
            raise StereobenchError(f"--out {out} is a non-empty folder that is not a converted M2SVid model; "
                                   f"choose a new or empty folder (conversion replaces --out)")
    if getattr(args, "svd_source", None):
        from benchmark.weights import resolve_weights

        resolve_weights(args.svd_source, what="--svd-source",
                        how_to_get="give an SVD img2vid-xt folder or a hub id already in the cache")


def _run_convert(args: argparse.Namespace) -> int:
    check_convert_arguments(args)
    from methods.m2svid.convert import run_convert

    return int(run_convert(args) or 0)


CONVERT = CliCommand(description=CONVERT_HELP, add_arguments=_add_convert_arguments, run=_run_convert)


# -- train m2svid ------------------------------------------------------------------------------

def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--init", required=True,
                        help="converted M2SVid folder, SVD img2vid-xt folder or cached hub id, or 'tiny' (random tiny model)")
    parser.add_argument("--output", required=True, help="output folder (checkpoints, log.jsonl, final/)")
    parser.add_argument("--dataset", default="synthetic", help="dataset name (see `stereobench prepare --help`)")
    parser.add_argument("--dataset-option", action="append", default=[], metavar="KEY=VALUE",
                        help="dataset option, repeatable (e.g. size=256)")
    parser.add_argument("--protocol", default="native",
                        help="clip protocol applied before warping (default: native, as the official loader: native rate and size)")
    parser.add_argument("--max-clips", type=int, default=None, help="use at most this many clips")
    parser.add_argument("--frames", type=int, default=None,
                        help="fixed frames per sample (default: the official mix of 4 / 16 / 25 with sides 512 / 256 / 192)")
    parser.add_argument("--size", type=int, default=None,
                        help="fixed crop side in pixels, at least 8 (default: the official mix)")
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps")
    parser.add_argument("--lr", type=float, default=2e-6, help="AdamW learning rate (official 2e-6)")
    parser.add_argument("--grad-accum", type=int, default=2, help="gradient accumulation (official 2)")
    parser.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--checkpoint-every", type=int, default=500,
                        help="save a checkpoint every N steps (the last step always saves one)")
    parser.add_argument("--validate-every", type=int, default=0,
                        help="score one clip with the suite's scorer every N steps (0: never)")
    parser.add_argument("--no-lpips", action="store_true", help="drop the LPIPS term (e.g. weights not built)")
    parser.add_argument("--no-full-attention", action="store_true", help="train the no-full-attention variant")
    parser.add_argument("--no-resume", action="store_true", help="start over even if checkpoints exist")
    parser.add_argument("--seed", type=int, default=0)


def _at_least(value: int | None, low: int, flag: str, why: str) -> None:
    if value is not None and value < low:
        raise StereobenchError(f"{flag} must be at least {low} (got {value}); {why}")


def check_train_arguments(args: argparse.Namespace) -> dict:
    """Validate every ``train m2svid`` argument with cheap checks; returns the parsed dataset options.

    Order: plain numbers, then names (dataset and its options, protocol, init), then paths;
    nothing here loads a model or a clip.
    """
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise StereobenchError(f"--lr must be a finite number > 0 (got {args.lr}); the official value is 2e-6")
    _at_least(args.steps, 1, "--steps", "0 steps would save an untrained model")
    _at_least(args.grad_accum, 1, "--grad-accum", "it is the number of batches per optimizer step")
    _at_least(args.checkpoint_every, 1, "--checkpoint-every", "it is the number of steps between checkpoints")
    _at_least(args.validate_every, 0, "--validate-every", "0 turns validation off")
    _at_least(args.max_clips, 1, "--max-clips", "leave it out to use every clip")
    if args.frames is not None and not 1 <= args.frames <= MAX_FRAMES:
        raise StereobenchError(f"--frames must be 1..{MAX_FRAMES} (the model's frame budget), got {args.frames}")
    _at_least(args.size, 8, "--size", "it is the side in pixels of the square training crops")
    if not 0 <= args.seed < 2**32:
        raise StereobenchError(f"--seed must be in 0..{2**32 - 1} (got {args.seed})")
    if args.mixed_precision != "no":
        import torch

        if not torch.cuda.is_available():
            raise StereobenchError(f"--mixed-precision {args.mixed_precision} needs a CUDA GPU and none is visible; "
                                   f"use --mixed-precision no on this machine")
    from benchmark.datasets import get_dataset, parse_options
    from benchmark.stereo.protocol import get_protocol

    options = parse_options(args.dataset_option)
    # Constructing a dataset only reads its options (clips load later): unknown names (did-you-mean),
    # missing folders and bad options are reported here, before any model is built.
    get_dataset(args.dataset, **options)
    get_protocol(args.protocol)
    if args.init != "tiny":
        from benchmark.weights import resolve_weights

        init = resolve_weights(args.init, what="--init",
                               how_to_get="give a converted M2SVid folder, an SVD img2vid-xt folder, a cached hub id "
                                          "or 'tiny'")
        if not init.is_dir():
            raise StereobenchError(f"--init {init} is a file; give a diffusers-format folder (convert an official "
                                   f"checkpoint first: stereobench weights convert-m2svid {init.name})")
    output = Path(args.output).expanduser()
    if output.exists() and not output.is_dir():
        raise StereobenchError(f"--output {output} is a file; give a folder for checkpoints and the final model")
    parent = next((p for p in output.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise StereobenchError(f"--output {output}: {parent} is a file, not a folder; choose another --output")
    if not args.no_lpips:
        from benchmark.metrics import lpips_weights

        if not (lpips_weights.torchvision_weights_cached("vgg") or lpips_weights._is_valid(lpips_weights.weight_path("vgg"))):
            raise StereobenchError(f"the LPIPS-VGG weights of the training loss are missing; build them with "
                                   f"{lpips_weights.FIX_COMMAND}, or pass --no-lpips")
    return options


def _run_train(args: argparse.Namespace) -> int:
    dataset_options = check_train_arguments(args)
    from methods.m2svid.pipeline import save_pipeline
    from methods.m2svid.train import TrainConfig, train

    config = TrainConfig(
        init=args.init, output_dir=args.output, dataset=args.dataset, dataset_options=dataset_options,
        protocol=args.protocol, frames=args.frames, size=args.size, max_clips=args.max_clips, steps=args.steps,
        learning_rate=args.lr, gradient_accumulation=args.grad_accum, mixed_precision=args.mixed_precision,
        gradient_checkpointing=args.gradient_checkpointing, checkpoint_every=args.checkpoint_every,
        validate_every=args.validate_every, lpips_net=None if args.no_lpips else "vgg",
        full_attention=not args.no_full_attention, seed=args.seed, resume=not args.no_resume,
    )
    result = train(config)
    pipe = result["pipeline"]
    final = Path(args.output) / "final"
    # save_pipeline keeps a converted model's extra encoders (warped view, training target) and records.
    save_pipeline(pipe, final, manifest={"source_file": f"trained by stereobench ({result['step']} steps)",
                                         "full_attention": not args.no_full_attention})
    print(f"trained {result['step']} steps; model folder: {final} (load with M2SVid(weights='{final}'))")
    return 0


TRAIN = CliCommand(description=TRAIN_HELP, add_arguments=_add_train_arguments, run=_run_train)
