"""Run preparation jobs: parallel on one machine, sharded across machines, resumable.

A job is any picklable object with

- ``job_id: str``: unique, stable across runs and machines (e.g. the clip id);
- ``is_done(out_root) -> bool``: cheap check that its output is complete (e.g.
  :func:`benchmark.datasets.prepared.clip_is_prepared`);
- ``run(out_root) -> None``: do the work, writing atomically; may raise.

:func:`run_jobs` skips done jobs (so a re-run does no work and changes no file), keeps only the
jobs of its shard (``shard=(i, n)``: the jobs whose stable hash of ``job_id`` is ``i`` modulo
``n``, the same on every machine whatever order or subset of jobs it is given), runs the others
in ``workers`` processes with a progress bar and ETA, and logs a failing job with its one-line
reason and goes on. The :class:`JobReport` lists done, skipped and failed jobs.

Example::

    report = run_jobs(jobs, out_root="data/stereo4d", workers=4, shard=(0, 8), desc="stereo4d")
    print(report.summary())
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from benchmark.errors import StereobenchError

__all__ = ["Job", "JobReport", "add_job_arguments", "one_line_reason", "parse_shard", "run_jobs", "shard_of"]

log = logging.getLogger(__name__)


class Job(Protocol):
    job_id: str

    def is_done(self, out_root: Path) -> bool: ...

    def run(self, out_root: Path) -> None: ...


@dataclass
class JobReport:
    """What :func:`run_jobs` did. ``done``: ran and finished now; ``skipped``: already done
    before (nothing run); ``failed``: job id -> one-line reason; ``other_shards``: jobs left to
    other shards; ``elapsed_s``: wall time."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    other_shards: int = 0
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        parts = [f"{len(self.done)} done", f"{len(self.skipped)} already done", f"{len(self.failed)} failed"]
        if self.other_shards:
            parts.append(f"{self.other_shards} left to other shards")
        lines = [", ".join(parts) + f" in {self.elapsed_s:.1f} s"]
        lines += [f"  failed {job_id}: {reason}" for job_id, reason in sorted(self.failed.items())]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"done": list(self.done), "skipped": list(self.skipped), "failed": dict(self.failed),
                "other_shards": self.other_shards, "elapsed_s": self.elapsed_s}


def shard_of(job_id: str, num_shards: int) -> int:
    """The shard (0 .. num_shards - 1) of ``job_id``: SHA-256 of the id modulo ``num_shards``,
    identical on every machine and for every order or subset of jobs."""
    return int(hashlib.sha256(job_id.encode("utf-8")).hexdigest()[:16], 16) % int(num_shards)


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"1/4"`` or ``(1, 4)`` -> ``(1, 4)``; None stays None. The same rule and message as the
    runner's ``--shard`` (:func:`benchmark.runner.plan.parse_shard`, which this floor may not import)."""
    if shard is None:
        return None
    try:
        if isinstance(shard, str):
            index, _, total = shard.partition("/")
            i, n = int(index), int(total)
        else:
            i, n = (int(v) for v in shard)
    except (TypeError, ValueError):
        i, n = -1, 0
    if n < 1 or not 0 <= i < n:
        raise StereobenchError(f"--shard must look like i/n with 0 <= i < n (e.g. 0/4), got {shard!r}")
    return i, n


def add_job_arguments(parser, default_workers: int = 1) -> None:
    """The options every ``stereobench prepare-data <dataset>`` shares: ``--out``, ``--workers``,
    ``--shard I/N``, ``--no-progress`` (read them back with ``args.out``, ``args.workers``,
    ``parse_shard(args.shard)``, ``not args.no_progress``)."""
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="prepared root to write (clips/, manifest.json, splits/); re-running resumes")
    parser.add_argument("--workers", type=int, default=default_workers, metavar="N",
                        help=f"videos prepared in parallel processes on this machine (default {default_workers})")
    parser.add_argument("--shard", metavar="I/N",
                        help="prepare only shard I of N (job arrays on several machines; every shard writes to "
                             "the same --out; a stable hash of the clip id decides the shard)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def one_line_reason(exc: BaseException) -> str:
    """A failure as one line: a :class:`StereobenchError`'s message, else ``Type: message``."""
    text = str(exc) if isinstance(exc, StereobenchError) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if text else type(exc).__name__


def _run_one(job, out_root: str) -> tuple[str, str | None]:
    try:
        job.run(Path(out_root))
    except Exception as exc:  # noqa: BLE001 - a bad job is reported and skipped, the others go on
        return job.job_id, one_line_reason(exc)
    return job.job_id, None


def _worker_init() -> None:
    """One thread per worker process (the processes are the parallelism). Set through the
    environment before the job imports NumPy, OpenCV or torch (importing them here just to set
    a thread count would cost every worker seconds)."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OPENCV_FOR_THREADS_NUM"):
        os.environ.setdefault(name, "1")
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(1)


def run_jobs(jobs: Iterable[Job], *, out_root: str | os.PathLike, workers: int = 1,
             shard: tuple[int, int] | str | None = None, desc: str = "jobs", progress: bool = True) -> JobReport:
    """Run every job of this shard that is not done yet.

    Args:
        jobs: objects with ``job_id``, ``is_done(out_root)``, ``run(out_root)`` (picklable when
            ``workers > 1``); ids must be unique.
        out_root: where the jobs write (passed to ``is_done`` and ``run``).
        workers: processes on this machine (1 = in this process).
        shard: ``(i, n)`` or ``"i/n"``: only jobs with :func:`shard_of` ``(job_id, n) == i``; None = all.
        desc: progress-bar label.
        progress: show a progress bar (tqdm, with ETA) on stderr.

    Returns:
        :class:`JobReport`. A job that raises is recorded in ``failed`` with its one-line reason
        (also logged on stderr) and the others go on. A worker process that dies (e.g. killed
        for memory) fails the jobs it had not finished; a re-run resumes them.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    out = Path(out_root)
    jobs = list(jobs)
    shard = parse_shard(shard)
    seen: set[str] = set()
    for job in jobs:
        if job.job_id in seen:
            raise StereobenchError(f"job {job.job_id!r} is listed twice; job ids must be unique")
        seen.add(job.job_id)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise StereobenchError(f"workers must be a whole number >= 1, got {workers!r}")
    report = JobReport()
    if shard is not None:
        index, total = shard
        mine = [job for job in jobs if shard_of(job.job_id, total) == index]
        report.other_shards = len(jobs) - len(mine)
        jobs = mine
    pending = []
    for job in jobs:
        if job.is_done(out):
            report.skipped.append(job.job_id)
        else:
            pending.append(job)
    bar = tqdm(total=len(pending), desc=desc, unit="job", disable=not progress or not pending, file=sys.stderr,
               dynamic_ncols=True)

    def record(job_id: str, reason: str | None) -> None:
        if reason is None:
            report.done.append(job_id)
        else:
            report.failed[job_id] = reason
            message = f"{desc}: skipped {job_id}: {reason}"
            log.warning(message)
            if progress:
                bar.write(message, file=sys.stderr)
        bar.update(1)

    try:
        if workers == 1 or len(pending) <= 1:
            for job in pending:
                record(*_run_one(job, str(out)))
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed
            from concurrent.futures.process import BrokenProcessPool

            context = multiprocessing.get_context("spawn")  # no forked torch / OpenCV thread state
            with ProcessPoolExecutor(max_workers=min(workers, len(pending)), mp_context=context,
                                     initializer=_worker_init) as pool:
                futures = {pool.submit(_run_one, job, str(out)): job.job_id for job in pending}
                try:
                    for future in as_completed(futures):
                        try:
                            record(*future.result())
                        except BrokenProcessPool:
                            record(futures[future], "the worker process died (killed, e.g. out of memory); "
                                                    "run again to resume")
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
    finally:
        bar.close()
    report.elapsed_s = time.perf_counter() - start
    return report
