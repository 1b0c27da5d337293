"""Build leaderboards (Markdown, CSV, one self-contained HTML page, plots) from results.

Reads every run under --results (or only the runs named with --run), pivots the long results
table into one board per (dataset revision, clip protocol and its settings, warp mode), so a
table never compares numbers computed on different data, and writes into --out:

  leaderboard.md     every table: overall, per scoring protocol x region, timings, skips/errors
  summary.md         the overall tables and the paper's reported numbers (printed here too)
  leaderboard.csv    tidy summary, one number per cell: mean, ci_low, ci_high, n_clips, best, ...
  leaderboard.html   one self-contained page (inline CSS, plots embedded), open it in a browser
  plots/*.png        quality vs latency (Pareto front), per-clip distributions, frame strips

Cells are the mean over clips with a 95% bootstrap interval over clips. Arrows and the bold best
value follow each metric's declared direction (PSNR, MS-SSIM higher is better; LPIPS, times,
memory lower). When several runs cover the same method on one board, the run that started last
(manifest started_at) is used. On Stereo4D and Ego4D the numbers reported in the M2SVid paper
appear as a separate table marked "reported in paper", never mixed with measured rows.
The frame strips need the videos a run saves (<run>/videos/<dataset>/<clip>/<name>.mp4, see
`stereobench run --help`); without them they are skipped. --run accepts a unique prefix of a run id.

Examples:
  stereobench leaderboard                                   # every run under results/runs
  stereobench leaderboard --run 20250101-120000-3fa9c1      # one run (a unique prefix is enough)
  stereobench leaderboard --run RUN_A RUN_B --out /tmp/lb    # merge two runs (e.g. shards)
  stereobench leaderboard --results /data/sb/runs --no-plots
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmark.run_store import DEFAULT_ROOT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", "-r", default=str(DEFAULT_ROOT), metavar="DIR",
                        help=f"folder of runs, each <DIR>/<run_id>/rows*.jsonl + manifest.json (default: {DEFAULT_ROOT})")
    parser.add_argument("--run", "--runs", action="extend", nargs="+", default=[], metavar="RUN_ID",
                        help="use only these runs (ids or unique prefixes); repeatable "
                             "(default: every run under --results)")
    parser.add_argument("--out", "-o", default="results/leaderboard", metavar="DIR",
                        help="output folder (default: results/leaderboard)")
    parser.add_argument("--title", default=None, help="page title (default: 'stereobench leaderboard')")
    parser.add_argument("--no-plots", action="store_true", help="tables only (faster; no PNGs in the HTML)")
    parser.add_argument("--resamples", type=int, default=2000, metavar="N",
                        help="bootstrap resamples for the 95%% intervals (default: 2000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    parser.add_argument("--quiet", "-q", action="store_true", help="print only the path of the HTML page")


def run(args: argparse.Namespace) -> int:
    from benchmark.errors import StereobenchError
    from benchmark.leaderboard import build_leaderboard
    from benchmark.run_store import load_manifests, load_results

    if args.resamples < 1:
        raise StereobenchError(f"--resamples must be at least 1, got {args.resamples}")
    if args.resamples > 1_000_000:
        raise StereobenchError(f"--resamples {args.resamples} is far more than a 95% interval needs; use 2000 "
                               "(the default) to 100000")
    if not args.out.strip():
        raise StereobenchError("--out must name a folder for the leaderboard")
    if any(not r.strip() for r in args.run):
        raise StereobenchError("--run got an empty run id; give run ids or unique prefixes of them")
    root = Path(args.results)
    if root.exists() and not root.is_dir():
        raise StereobenchError(f"results folder {root} is a file; pass the folder that holds the runs "
                               f"(default {DEFAULT_ROOT})")
    if not root.is_dir():
        raise StereobenchError(f"results folder {root} does not exist; run `stereobench run` (or `make benchmark`) "
                               "first, or pass --results DIR")
    df = load_results(root, args.run or None)
    if df.empty:
        raise StereobenchError(f"the selected runs under {root} hold no result rows yet (still running, or killed "
                               "before the first clip finished); rerun `stereobench run` to resume")
    manifests = load_manifests(root, args.run or None)
    written = build_leaderboard(df, args.out, title=args.title, manifests=manifests, results_root=root,
                                plots=not args.no_plots, n_resamples=args.resamples, seed=args.seed)
    if not args.quiet:
        sys.stdout.write(Path(written["summary"]).read_text(encoding="utf-8"))
        print(f"\nall tables: {written['markdown']}\ncsv:        {written['csv']}")
    print(f"html:       {written['html']}")
    return 0
