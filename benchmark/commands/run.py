"""Run methods on datasets, score them, write results rows, the manifest and the leaderboard.

For every clip the shared stereo input (warp + hole mask) is built once (or read from the
content-hash cache) and the ground-truth reference is prepared once; then every method refines
it, is scored, and all rows of that (method, clip) pair are appended in one atomic write. Methods
whose weights are missing are reported as skipped with the exact command that provides them; a
method that fails on a clip gets an error row for that clip and the run goes on.

Examples:
  stereobench run --config configs/embedded.yaml          # what `make benchmark` runs
  stereobench run --dataset synthetic --method temporal-fill --method background-fill \\
      --protocol quick --metrics psnr,msssim --clips 2
  stereobench run --config my.yaml --save-videos          # also write videos for a user study
  stereobench run --dataset path/to/videos --depth depth-anything-v2 --weights-depth DIR \\
      --method background-fill --protocol qualitative    # your own footage: outputs saved, no scores
  stereobench run --config my.yaml --run-id 20250101-120000-3fa9c1   # continue that run
  stereobench run --config my.yaml --shard 0/4            # job arrays: clips[0::4]
  torchrun --nproc_per_node 4 -m benchmark.cli run --config my.yaml   # data-parallel ranks

Resume: rerunning the same command after a crash or kill (even SIGKILL) continues the newest
unfinished run with the same configuration and skips its completed (method, clip) pairs; after a
run that finished with errors, the same command retries only the failed pairs in that run. Use
--new to start afresh, --run-id to pick a run (refused if that run was made with another config),
--overwrite always|never|only-missing to choose what happens to pairs that already have results.
Flags override the config file's keys.

One owner per run: a second process on the same run (the same --run-id, or the same command
started twice) refuses with a line naming the owner's pid and host; --wait makes it wait for the
owner to finish instead. A lock left by a process that died is taken over.

A full disk, missing permissions or a read-only filesystem under the run folder or the input
cache stops the run with one line; completed pairs are kept and the same command resumes.

Output: results/runs/<run_id>/{manifest.json, rows*.jsonl, leaderboard/, videos/} (layout:
results/README.md).
See docs/runner.md for the config schema, adding a method and sharding.
"""

from __future__ import annotations

import argparse
import sys

from benchmark.config import RunConfig, load_config, merge_overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML run configuration (see configs/embedded.yaml)")
    parser.add_argument("--dataset", action="append", metavar="NAME",
                        help="dataset to run (repeatable); replaces the config's datasets")
    parser.add_argument("--option", action="append", metavar="KEY=VALUE",
                        help="option of every --dataset given here, e.g. size=256 num_clips=2")
    parser.add_argument("--method", action="append", metavar="NAME",
                        help="method to run (repeatable; 'all' = every registered method)")
    parser.add_argument("--protocol", help="clip protocol: paper | quick | native | qualitative (default: the "
                                           "config's; with --dataset and no config: paper for stereo4d and ego4d, "
                                           "quick otherwise)")
    parser.add_argument("--warp-mode", choices=["shared", "native"], help="one shared warp, or each method's own")
    parser.add_argument("--metrics", help="comma-separated metrics, e.g. psnr,msssim,lpips_vgg")
    parser.add_argument("--clips", type=int, metavar="N", help="only the first N clips of every dataset")
    parser.add_argument("--split", metavar="NAME",
                        help="named split of every dataset (datasets with splits: stereo4d train | test | m2svid-test "
                             "| m2svid-val64, ego4d test, prepared: any <root>/splits/NAME.txt)")
    parser.add_argument("--save-videos", action="store_true", default=None,
                        help="write left/warped/mask/gt and every method's output as H.264 MP4")
    add_depth_arguments(parser)
    parser.add_argument("--overwrite", choices=["only-missing", "never", "always"],
                        help="what to do with pairs that already have results (default only-missing)")
    parser.add_argument("--run-id", help="run id to create or continue ('latest' = newest run)")
    parser.add_argument("--new", action="store_true", help="start a new run even if an unfinished one matches")
    parser.add_argument("--wait", action="store_true",
                        help="if another process owns the run, wait for it to finish instead of refusing")
    parser.add_argument("--out", help="folder of runs (default results/runs)")
    parser.add_argument("--cache", help="folder of the stereo-input cache (default: $STEREOBENCH_CACHE or the suite's)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], help="method weights' dtype")
    parser.add_argument("--seed", type=int, help="seed of every method")
    parser.add_argument("--shard", metavar="I/N", help="run only clips[I::N] (job arrays)")
    parser.add_argument("--no-leaderboard", action="store_true", help="do not build the leaderboard at the end")
    parser.add_argument("--title", help="leaderboard title")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_depth_arguments(parser: argparse.ArgumentParser) -> None:
    """--depth, --weights-depth, --depth-option (shared by `run` and `prepare`, same meaning)."""
    parser.add_argument("--depth", metavar="SOURCE",
                        help="where disparity comes from: gt (the dataset's, default), files (<name>_depth.npy "
                             "beside each video), depth-anything-v2, transformers, depthcrafter (docs/depth.md)")
    parser.add_argument("--weights-depth", metavar="PATH",
                        help="the depth model's weights: a folder or a Hugging Face id already in the cache")
    parser.add_argument("--depth-option", action="append", metavar="KEY=VALUE",
                        help="depth setting (repeatable): d_max=PIXELS or d_max_percent=5, convergence=0.5, "
                             "stability=ema|video|frame, kind=depth (files), steps=5 (depthcrafter)")


def depth_from_args(args: argparse.Namespace) -> tuple[str, dict]:
    """(depth source name, :func:`~benchmark.stereo.recipe.make_recipe` settings) of --depth /
    --weights-depth / --depth-option alone (no config file), validated exactly as `run` does, so
    `prepare` builds the recipes (cache keys) that `run` with the same flags reads."""
    config = RunConfig()
    if args.depth or args.weights_depth or args.depth_option:
        config = merge_overrides(config, {"depth": _depth_override(config, args)})
    return config.depth_name_and_settings()


def build_config(args: argparse.Namespace) -> RunConfig:
    """The config file (or defaults) with the command-line flags applied on top."""
    from benchmark.datasets import parse_options

    config = load_config(args.config) if args.config else RunConfig()
    overrides: dict = {
        "protocol": args.protocol, "warp_mode": args.warp_mode, "overwrite": args.overwrite,
        "run_id": args.run_id, "out": args.out, "cache": args.cache, "device": args.device,
        "dtype": args.dtype, "seed": args.seed, "save_videos": args.save_videos, "title": args.title,
    }
    if args.metrics:
        overrides["metrics"] = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if args.no_leaderboard:
        overrides["leaderboard"] = False
    if args.depth or args.weights_depth or args.depth_option:
        overrides["depth"] = _depth_override(config, args)
    if args.method:
        overrides["methods"] = "all" if args.method == ["all"] else list(args.method)
    if args.dataset:
        options = parse_options(args.option)
        overrides["datasets"] = [{"name": name, "options": options} for name in args.dataset]
        if args.protocol is None and not args.config:
            overrides["protocol"] = _default_protocol(args.dataset)
    elif args.option:
        from benchmark.errors import StereobenchError

        raise StereobenchError("--option applies to datasets given with --dataset; put options of the "
                               "config's datasets under 'options' in the config file")
    merged = merge_overrides(config, overrides)
    if getattr(args, "split", None):
        data = merged.to_dict()
        for entry in data["datasets"]:
            entry["options"] = {**entry.get("options", {}), "split": args.split}
        merged = merge_overrides(merged, {"datasets": data["datasets"]})
    if args.clips is not None:
        data = merged.to_dict()
        for entry in data["datasets"]:
            entry["clips"] = args.clips
        merged = merge_overrides(merged, {"datasets": data["datasets"]})
    return merged


def _default_protocol(names: list[str]) -> str | None:
    """The protocol every named dataset asks for by default (``DEFAULT_RUN_PROTOCOL`` on its class,
    e.g. ``paper`` for Stereo4D and Ego4D), or None (the config's default) when they differ or
    do not say."""
    from benchmark.datasets import DATASETS

    wanted = {getattr(DATASETS[name], "DEFAULT_RUN_PROTOCOL", None) if name in DATASETS else None for name in names}
    return wanted.pop() if len(wanted) == 1 else None


def _depth_override(config: RunConfig, args: argparse.Namespace) -> dict:
    """The config's depth source with --depth / --weights-depth / --depth-option on top."""
    from benchmark.datasets import parse_options
    from benchmark.errors import StereobenchError

    name, settings = config.depth_name_and_settings()
    if args.depth and args.depth != name:
        name, settings = args.depth, {}
    if args.weights_depth:
        settings["weights"] = args.weights_depth
    try:
        settings.update(parse_options(args.depth_option))
    except StereobenchError:
        raise StereobenchError("--depth-option must look like KEY=VALUE, e.g. d_max_percent=3") from None
    if name == "gt" and settings:
        raise StereobenchError("--weights-depth and --depth-option need a depth source: add --depth "
                               "depth-anything-v2 (or files, transformers, depthcrafter)")
    return {"name": name, **settings}


def run(args: argparse.Namespace) -> int:
    from benchmark.runner import run_benchmark

    config = build_config(args)
    summary = run_benchmark(config, shard=args.shard, fresh=args.new, wait=args.wait,
                            progress=not args.no_progress, argv=["stereobench", *sys.argv[1:]])
    return 1 if summary.errors else 0
