"""The benchmark runner: datasets x methods x protocol -> results rows, manifest, leaderboard.

Three steps, as lm-eval splits ``simple_evaluate`` and ``evaluate``:

- :mod:`benchmark.runner.plan`: validate everything (device, metrics, methods and their options,
  datasets and clips, output folders) and resolve the (method, dataset, clip) pairs; no work.
- :mod:`benchmark.runner.pair`: one pair: shared input, refine, validate the output, score, rows.
- :mod:`benchmark.runner.loop`: :func:`run_benchmark`: run id, lock, manifest, the clip x
  method loop with progress, resume, sharding and faults, then the leaderboard and the summary.

See docs/runner.md for resume, the overwrite policy, sharding and the run's lock.
"""

from __future__ import annotations

from benchmark.run_store import find_resumable_run, newest_run
from benchmark.runner.loop import (RunSummary, default_title,
                                   run_benchmark)
from benchmark.runner.pair import FAULT_ENV
from benchmark.runner.plan import (Distributed, RunPlan, detect_distributed, make_plan, parse_shard, resolve_device,
                                   resolve_run_id)

__all__ = ["FAULT_ENV", "Distributed", "RunPlan", "RunSummary",
           "default_title", "detect_distributed", "find_resumable_run", "make_plan", "newest_run", "parse_shard",
           "resolve_device", "resolve_run_id", "run_benchmark"]
