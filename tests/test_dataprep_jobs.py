"""benchmark.dataprep.jobs: resumable, sharded, parallel jobs; a failing job is reported and
skipped while the others finish."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmark.dataprep.jobs import JobReport, run_jobs, shard_of
from benchmark.errors import StereobenchError
from benchmark.fileio import atomic_write_text


@dataclass
class WriteJob:
    """Writes <out>/<job_id>.txt; ``fail`` raises instead (module level: picklable for processes)."""

    job_id: str
    fail: str = ""

    def is_done(self, out_root: Path) -> bool:
        return (Path(out_root) / f"{self.job_id}.txt").is_file()

    def run(self, out_root: Path) -> None:
        if self.fail:
            raise StereobenchError(self.fail)
        atomic_write_text(Path(out_root) / f"{self.job_id}.txt", f"{self.job_id} by {os.getpid()}\n")


def _jobs(n=6, bad=("j2",)):
    return [WriteJob(f"j{i}", fail=f"video j{i} is broken\nsecond line" if f"j{i}" in bad else "") for i in range(n)]


def test_sequential_run_reports_done_failed_and_resumes(tmp_path):
    report = run_jobs(_jobs(), out_root=tmp_path, progress=False)
    assert sorted(report.done) == ["j0", "j1", "j3", "j4", "j5"]
    assert report.failed == {"j2": "video j2 is broken second line"}  # one line
    assert not report.ok and "failed j2: video j2 is broken" in report.summary()
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    again = run_jobs(_jobs(), out_root=tmp_path, progress=False)
    assert again.done == [] and sorted(again.skipped) == sorted(report.done) and list(again.failed) == ["j2"]
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == stamps  # no file changed


def test_shards_partition_the_jobs_stably(tmp_path):
    ids = [f"clip_{i}" for i in range(40)]
    owners = [shard_of(i, 3) for i in ids]
    assert set(owners) == {0, 1, 2}
    assert [shard_of(i, 3) for i in reversed(ids)] == owners[::-1]  # independent of order
    done = []
    for k in range(3):
        report = run_jobs([WriteJob(i) for i in ids], out_root=tmp_path / "sharded", shard=(k, 3), progress=False)
        assert report.other_shards == 40 - len(report.done)
        done += report.done
    assert sorted(done) == sorted(ids)  # every job exactly once over the shards
    full = run_jobs([WriteJob(i) for i in ids], out_root=tmp_path / "single", progress=False)
    assert sorted(full.done) == sorted(ids)
    assert sorted(p.name for p in (tmp_path / "sharded").iterdir()) == sorted(p.name for p in (tmp_path / "single").iterdir())


def test_parallel_processes_do_the_same_work(tmp_path):
    report = run_jobs(_jobs(), out_root=tmp_path, workers=2, progress=False)
    assert sorted(report.done) == ["j0", "j1", "j3", "j4", "j5"] and list(report.failed) == ["j2"]
    pids = {(tmp_path / f"{j}.txt").read_text().split(" by ")[1] for j in report.done}
    assert str(os.getpid()) + "\n" not in pids  # ran in worker processes


def test_bad_arguments(tmp_path):
    with pytest.raises(StereobenchError, match="listed twice"):
        run_jobs([WriteJob("a"), WriteJob("a")], out_root=tmp_path, progress=False)
    with pytest.raises(StereobenchError, match="shard"):
        run_jobs([WriteJob("a")], out_root=tmp_path, shard=(3, 3), progress=False)
    with pytest.raises(StereobenchError, match="workers"):
        run_jobs([WriteJob("a")], out_root=tmp_path, workers=0, progress=False)
    assert isinstance(run_jobs([], out_root=tmp_path, progress=False), JobReport)
