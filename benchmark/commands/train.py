"""Train a method on any dataset the suite loads (currently: M2SVid).

M2SVid is trained end to end with the paper's objective (latent L2 + image L1 + LPIPS-VGG, all
weights 1; only the U-Net learns, the VAE and CLIP encoder stay frozen), from SVD img2vid-xt
weights (8-channel U-Net expanded to 13 channels as the official code does) or from a
converted M2SVid folder. Clips go through the shared protocol and warp, so training sees the
same inputs the benchmark gives the method.

Multi-GPU / multi-node data parallel and mixed precision come from accelerate: run the same
command under `accelerate launch` (configure once with `accelerate config`). Checkpoints land in
OUTPUT/checkpoints/step-N; rerunning the same command resumes from the latest one.

Examples:
  stereobench train m2svid --init tiny --dataset synthetic --dataset-option size=64 \\
      --frames 4 --size 64 --steps 20 --no-lpips --output runs/m2svid-smoke
  accelerate launch -m benchmark.cli train m2svid \\
      --init stabilityai/stable-video-diffusion-img2vid-xt --dataset stereo4d \\
      --mixed-precision bf16 --gradient-checkpointing \\
      --steps 300000 --output runs/m2svid
"""

from __future__ import annotations

import argparse

from benchmark.errors import StereobenchError

TRAINABLE = ("m2svid",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("method", choices=TRAINABLE, help="method to train")
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
    parser.add_argument("--size", type=int, default=None, help="fixed crop side in pixels (default: the official mix)")
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps")
    parser.add_argument("--lr", type=float, default=2e-6, help="AdamW learning rate (official 2e-6)")
    parser.add_argument("--grad-accum", type=int, default=2, help="gradient accumulation (official 2)")
    parser.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--validate-every", type=int, default=0, help="score one clip with the suite's scorer every N steps")
    parser.add_argument("--no-lpips", action="store_true", help="drop the LPIPS term (e.g. weights not built)")
    parser.add_argument("--no-full-attention", action="store_true", help="train the no-full-attention variant")
    parser.add_argument("--no-resume", action="store_true", help="start over even if checkpoints exist")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from benchmark.datasets import parse_options
    from methods.m2svid.train import TrainConfig, train

    if args.frames is not None and not 1 <= args.frames <= 25:
        raise StereobenchError(f"--frames must be 1..25 (the model's frame budget), got {args.frames}")
    if args.steps < 1:
        raise StereobenchError(f"--steps must be at least 1 (got {args.steps}); 0 steps would save an untrained model")
    config = TrainConfig(
        init=args.init, output_dir=args.output, dataset=args.dataset, dataset_options=parse_options(args.dataset_option),
        protocol=args.protocol, frames=args.frames, size=args.size, max_clips=args.max_clips, steps=args.steps,
        learning_rate=args.lr, gradient_accumulation=args.grad_accum, mixed_precision=args.mixed_precision,
        gradient_checkpointing=args.gradient_checkpointing, checkpoint_every=args.checkpoint_every,
        validate_every=args.validate_every, lpips_net=None if args.no_lpips else "vgg",
        full_attention=not args.no_full_attention, seed=args.seed, resume=not args.no_resume,
    )
    result = train(config)
    from pathlib import Path

    from methods.m2svid.pipeline import save_pipeline_folder

    pipe = result["pipeline"]
    final = Path(args.output) / "final"
    save_pipeline_folder(final, pipe.unet, pipe.vae, pipe.image_encoder,
                         manifest={"source_file": f"trained by stereobench ({result['step']} steps)",
                                   "full_attention": not args.no_full_attention})
    print(f"trained {result['step']} steps; model folder: {final} (load with M2SVid(weights='{final}'))")
    return 0
