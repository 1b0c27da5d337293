"""Two-process data-parallel run under torchrun (CPU, gloo) gives the single-process rows."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from benchmark.results import read_rows
from benchmark.runner import run_benchmark
from tests.test_runner import quality, same_values, tiny_config

REPO = Path(__file__).resolve().parents[1]


def test_torchrun_two_ranks_match_single_process(tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    single = run_benchmark(tiny_config(tmp_path / "single", methods=["left-copy", "background-fill"],
                                       metrics=["psnr", "lpips_alex"], leaderboard=False),
                           progress=False, echo=lambda s: None)
    config = tiny_config(tmp_path / "ddp", methods=["left-copy", "background-fill"], metrics=["psnr", "lpips_alex"])
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    proc = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", "29517", "-m", "benchmark.cli",
                           "run", "--config", str(path), "--no-progress"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "ddp" / "runs").iterdir())
    assert len(runs) == 1
    run_dir = runs[0]
    assert sorted(p.name for p in run_dir.glob("rows*.jsonl")) == ["rows-rank0.jsonl", "rows-rank1.jsonl"]
    per_rank = [{r.clip for r in read_rows(run_dir / f"rows-rank{k}.jsonl", report=False) if r.kind == "marker"}
                for k in range(2)]
    assert per_rank == [{"scene-000"}, {"scene-001"}]
    # torchrun sets OMP_NUM_THREADS=1 per rank: reductions sum in another order, so values agree
    # to float rounding (about 1e-11 relative for PSNR), not bit for bit.
    ddp_q, single_q = quality(read_rows(run_dir, report=False)), quality(read_rows(single.run_dir, report=False))
    assert same_values(ddp_q, single_q, rel=1e-5)
    assert (run_dir / "leaderboard" / "leaderboard.html").is_file()  # rank 0 merged after the barrier
