"""Train a method on any dataset the suite loads.

Each trainable method's package declares its `train <method>` sub-command through its registry
entry (a CLI hook); this command only lists and dispatches them. Today: M2SVid, trained end to end
with the paper's objective (latent L2 + image L1 + LPIPS-VGG) from SVD img2vid-xt weights or a
converted M2SVid folder, on clips that go through the shared protocol and warp.

Multi-GPU / multi-node data parallel and mixed precision come from accelerate: run the same
command under `accelerate launch` (configure once with `accelerate config`). Checkpoints land in
OUTPUT/checkpoints/step-N; rerunning the same command resumes from the latest one.

Examples:
  stereobench train m2svid --init tiny --dataset synthetic --dataset-option size=64 \\
      --frames 4 --size 64 --steps 20 --no-lpips --output runs/m2svid-smoke
  stereobench train m2svid --help          # every option of M2SVid training
"""

from __future__ import annotations

import argparse

from benchmark.registry import add_cli_hooks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from methods.registry import METHODS

    sub = parser.add_subparsers(dest="train_method", metavar="<method>", required=True)
    add_cli_hooks(sub, METHODS.cli_hooks("train"))


def run(args: argparse.Namespace) -> int:
    return int(args._hook_run(args) or 0)
