"""Prepare a real stereo dataset from files you downloaded: rectified left/right views, disparity of
the left view, a manifest with a checksum per file, and the official splits, in the prepared
layout that `stereobench run --dataset <name> --option root=DIR` loads (docs/datasets.md).

Every subcommand is resumable and idempotent (a re-run skips prepared clips and changes no file),
runs videos in parallel processes (--workers N), shards across machines (--shard I/N, e.g. one
job-array task per shard, all writing to the same --out), logs a bad video with a one-line reason
and goes on, and shows a progress bar with ETA. It exits 1 when some video failed (the others
are prepared), 0 otherwise.

Subcommands:
  stereo4d   Stereo4D annotation npz + your VR180 side-by-side equirect videos (or the toolkit's
             processed folders) -> 512x512 60-degree pinhole pairs + disparity
  ego4d      Ego4D stereo videos (+ the published per-video homographies) -> rectified clips
  m2svid     import an M2SVid-layout folder (left_rectified/, right_rectified/ MP4s + disparity)

Examples:
  stereobench prepare-data stereo4d --annotations stereo4d/ --raw raw/ --flows flows/ --out data/stereo4d
  stereobench prepare-data stereo4d --annotations stereo4d/ --raw raw/ --disparity sgbm \\
      --out data/stereo4d --workers 8 --shard 0/4
  stereobench prepare-data m2svid --root m2svid_data/ --out data/stereo4d-m2svid
  stereobench run --dataset stereo4d --option root=data/stereo4d --split test --protocol paper
"""

from __future__ import annotations

import argparse
import importlib

from benchmark.errors import StereobenchError

# subcommand -> (module with add_arguments(parser) and run(args) -> int, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "stereo4d": ("benchmark.dataprep.stereo4d", ("Stereo4D: annotation npz + VR180 SBS equirect video -> rectified "
                                                "512x512 pinhole pairs + disparity")),
    "ego4d": ("benchmark.dataprep.ego4d", ("Ego4D stereo: SBS videos (+ published homographies) -> rectified clips + "
                                          "disparity")),
    "m2svid": ("benchmark.dataprep.m2svid_layout", ("import an M2SVid-layout folder (left_rectified/, right_rectified/ "
                                                   "MP4s + disparity)")),
}


def _missing(module_name: str):
    def run(args: argparse.Namespace) -> int:
        raise StereobenchError(f"`prepare-data {args.prepare_dataset}` is not available in this installation: module "
                               f"{module_name} is absent")
    return run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="prepare_dataset", metavar="<dataset>", required=True)
    for name, (module_name, summary) in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            module = None
        child = sub.add_parser(name, help=summary, description=(module.__doc__ if module else summary),
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        if module is None:
            child.set_defaults(_prepare_run=_missing(module_name))
        else:
            module.add_arguments(child)
            child.set_defaults(_prepare_run=module.run)


def run(args: argparse.Namespace) -> int:
    return int(args._prepare_run(args) or 0)
