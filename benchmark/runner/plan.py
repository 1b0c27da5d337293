"""Plan a run: validate everything and resolve the (method, dataset, clip) pairs to do.

:func:`make_plan` is the first step of :func:`benchmark.runner.run_benchmark` (lm-eval's
``simple_evaluate`` to the loop's ``evaluate``). It does no work that costs time or writes
anything: it checks the device, metric names, regions, methods (every method is constructed
here, so an unknown option fails before any clip is warped), datasets and their clips, the
protocol and the output folders, and returns a :class:`RunPlan`. Any problem is a one-line
:class:`~benchmark.errors.StereobenchError` naming it and its fix.

Run ids and resume (:func:`resolve_run_id`): a run lives in ``<out>/<run_id>/``
(:class:`benchmark.run_store.RunDir`). Without an explicit run id the newest run under ``out``
with the same config hash that is still ``running`` (a killed run still says so), ``failed``
(stopped by the environment) or, under the default overwrite policy ``only-missing``,
``finished-with-errors`` is resumed; else a new one starts. An explicit ``run_id`` (or
``latest``) whose manifest has another config hash is refused.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmark.config import Overwrite, RunConfig
from benchmark.errors import StereobenchError, did_you_mean
from benchmark.run_store import RunDir, check_run_id, find_resumable_run, new_run_id, newest_run


# ---------------------------------------------------------------------------------------------
# Where this process sits
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
        index, _, total = str(text).partition("/")
        i, n = int(index), int(total)
    except ValueError:
        i, n = -1, 0
    if n < 1 or not 0 <= i < n:
        raise StereobenchError(f"--shard must look like i/n with 0 <= i < n (e.g. 0/4), got {text!r}")
    return i, n


def detect_distributed(shard: str | None = None) -> Distributed:
    """From ``--shard`` or the torchrun / accelerate environment (RANK, WORLD_SIZE, LOCAL_RANK)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    except ValueError:
        raise StereobenchError(f"WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} is not a number; unset it or "
                               "start the run with torchrun") from None
    if shard is not None:
        if world > 1:
            raise StereobenchError("use either --shard or torchrun/accelerate launch, not both")
        i, n = parse_shard(shard)
        return Distributed(rank=i, world_size=n, local_rank=0, mode="shard")
    if world > 1:
        return Distributed(rank=int(os.environ.get("RANK", "0")), world_size=world,
                           local_rank=int(os.environ.get("LOCAL_RANK", "0")), mode="torchrun")
    return Distributed()


_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")


def resolve_device(name: str, dist: Distributed) -> torch.device:
    """``auto`` -> CUDA when available else CPU; under torchrun each rank takes ``cuda:LOCAL_RANK``.

    Raises StereobenchError for a name that is not ``auto | cpu | cuda | cuda:N | mps``, for CUDA
    when no CUDA device is visible, and for a device index that does not exist.
    """
    name = str(name).strip().lower()
    if not _DEVICE.match(name):
        hint = " (a GPU is spelled 'cuda')" if name in ("gpu", "gpu:0", "nvidia") else ""
        raise StereobenchError(f"unknown device {name!r}{hint}; use --device auto, cpu, cuda or cuda:N")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise StereobenchError(f"--device {name} asks for a GPU but no CUDA device is visible to this process; "
                                   "use --device cpu (or --device auto)")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise StereobenchError(f"--device {name}: only {count} CUDA device(s) are visible "
                                   f"(cuda:0..cuda:{count - 1}); pick one of them")
        if device.index is None and dist.mode == "torchrun":
            device = torch.device("cuda", dist.local_rank % count)
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise StereobenchError("--device mps asks for Apple's GPU but it is not available here; use --device cpu")
    return device


# ---------------------------------------------------------------------------------------------
# Methods, metrics, datasets
# ---------------------------------------------------------------------------------------------
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


def validate_metrics(names: list[str]) -> list[str]:
    """The metric names, checked against the metric registry (did-you-mean for a typo) before any
    work; duplicates dropped, order kept."""
    from benchmark.metrics import validate_metric_names

    return validate_metric_names(list(names))


#: Saved-video names of a clip's inputs (left view, warped view, hole mask, ground truth); a method
#: label must not take one, or its prediction would overwrite that input's video.
RESERVED_VIDEO_NAMES = ("left", "warped", "mask", "gt")


def select_methods(config: RunConfig) -> list[MethodSlot]:
    """Construct every method of the run (``METHODS[name](seed=S, **options)``) so an unknown
    method or option fails here, before any work. Under ``methods: all`` a method that cannot be
    imported is skipped with the reason; an explicitly named one is an error."""
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
        for label in labels:
            if not label.strip() or "/" in label or label.startswith("."):
                raise StereobenchError(f"method label {label!r} must be a plain name (no '/', not starting with '.')")
            if label in RESERVED_VIDEO_NAMES or label.startswith(("warped-", "mask-")):
                raise StereobenchError(f"method label {label!r} is the name of a saved input video; choose another "
                                       f"'label' (reserved: {', '.join(RESERVED_VIDEO_NAMES)}, warped-*, mask-*)")
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
    if not slots:
        raise StereobenchError("no methods to run; list some under 'methods' or use methods: all")
    return slots


GPU_METHODS_ON_CPU_ENV = "STEREOBENCH_GPU_METHODS_ON_CPU"
"""Set to 1 to run methods that declare ``needs_gpu`` on the CPU anyway (smoke tests only: real
weights take hours per clip there)."""


TEST_WEIGHTS_SUFFIX = "-TEST-WEIGHTS"


def mark_test_weights(slot: MethodSlot) -> None:
    """Rename the slot's results ``<label>-TEST-WEIGHTS`` (with a warning) when the adapter says its
    weights are not the published model (``weights_warning()``, e.g. tiny random test folders), so
    such numbers can never pass for the method's on a leaderboard."""
    probe = getattr(slot.method, "weights_warning", None)
    try:
        warning = probe() if callable(probe) else None
    except Exception as exc:  # noqa: BLE001 -- a broken probe must not hide the method: mark it, say why
        warning = f"weights_warning() failed: {type(exc).__name__}: {exc}"
    if warning and not slot.label.endswith(TEST_WEIGHTS_SUFFIX):
        slot.label += TEST_WEIGHTS_SUFFIX
        warnings.warn(f"{slot.name}: {warning}; its results are labelled {slot.label!r}", stacklevel=2)


def check_weights(slot: MethodSlot, device: torch.device) -> None:
    """Mark ``slot`` skipped (with the exact fix) when its weights are missing or it needs a GPU."""
    if slot.method is None or slot.skip_reason:
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
    else:
        mark_test_weights(slot)
    if slot.skip_reason:
        return
    if meta.needs_gpu and device.type != "cuda" and os.environ.get(GPU_METHODS_ON_CPU_ENV) != "1":
        slot.skip_reason = (f"needs a GPU; run it with --device cuda on a machine with one (a CPU smoke test, "
                            f"e.g. with tiny random weights: {GPU_METHODS_ON_CPU_ENV}=1)")


@dataclass
class DatasetPlan:
    """One dataset of the run: the object, the name rows use (``spec.name``, never the user's
    spelling, e.g. an absolute folder path) and the clips to do."""

    name: str
    dataset: Any
    clips: list[str]
    options: dict[str, Any]

    @property
    def revision(self) -> str:
        return self.dataset.spec.revision or "n/a"


def resolve_datasets(config: RunConfig) -> list[DatasetPlan]:
    """Every dataset of the config, instantiated (cheap: no clip is loaded), with its clips."""
    from benchmark.datasets import get_dataset

    if not config.datasets:
        raise StereobenchError("no datasets to run; list some under 'datasets' or pass --dataset NAME")
    plans: list[DatasetPlan] = []
    for entry in config.datasets:
        ds = get_dataset(entry.name, **entry.options)
        names = list(ds.clip_names())
        if not names:
            raise StereobenchError(f"dataset {entry.name!r} has no clips; check its folder or options")
        if isinstance(entry.clips, int):
            names = names[: entry.clips]
        elif isinstance(entry.clips, list):
            for name in entry.clips:
                if name not in names:
                    raise did_you_mean(name, names, f"clip of dataset {entry.name!r}")
            names = list(dict.fromkeys(entry.clips))
        name = ds.spec.name
        if any(p.name == name for p in plans):
            raise StereobenchError(f"dataset {name!r} is listed twice; list it once (with every clip you want)")
        plans.append(DatasetPlan(name=name, dataset=ds, clips=names, options=dict(entry.options)))
    return plans


def protocol_of(config: RunConfig):
    from benchmark.stereo.protocol import get_protocol

    name, overrides = config.protocol_name_and_overrides()
    return get_protocol(name, **overrides)


def check_writable(folder: Path, what: str = "results", flag: str = "--out") -> None:
    """Fail early, before any computation, when ``folder`` cannot be written."""
    folder = Path(folder)
    blocker = next((p for p in [folder, *folder.parents] if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise StereobenchError(f"cannot write {what} to {folder}: {blocker} is a file, not a folder; "
                               f"choose another folder with {flag}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        with open(probe, "wb") as handle:
            handle.write(b"ok")
        probe.unlink()
    except OSError as exc:
        raise StereobenchError(
            f"cannot write {what} to {folder} ({exc.strerror or exc}); choose a writable folder with {flag} "
            f"or fix its permissions"
        ) from None


# ---------------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------------
@dataclass
class RunPlan:
    """Everything a run will do, validated: device, dtype, protocol, methods (constructed, not
    loaded), datasets and this rank's clips ``[rank::world_size]`` of the flat clip list."""

    config: RunConfig
    dist: Distributed
    device: torch.device
    dtype: torch.dtype
    protocol: Any
    metrics: list[str]
    slots: list[MethodSlot]
    datasets: list[DatasetPlan]
    clips: list[tuple[DatasetPlan, str]] = field(default_factory=list)

    @property
    def active(self) -> list[MethodSlot]:
        return [s for s in self.slots if not s.skip_reason]

    def pairs(self) -> list[tuple[str, str, str]]:
        """(method label, dataset, clip) of every pair this rank is responsible for."""
        from benchmark.results import strip_dataset_prefix

        return [(s.label, d.name, strip_dataset_prefix(d.name, c)) for d, c in self.clips for s in self.active]


def make_plan(config: RunConfig, dist: Distributed) -> RunPlan:
    """Validate the whole run and resolve its pairs; nothing is computed or written (see the
    module docstring). Raises StereobenchError naming the first problem."""
    device = resolve_device(config.device, dist)
    dtype = getattr(torch, config.dtype)
    metrics = validate_metrics(list(config.metrics))
    if not config.regions:
        raise StereobenchError("no regions to score; use regions: [full, inside, outside] or a part of it")
    if not config.scoring_protocols:
        raise StereobenchError("no scoring protocols; use scoring_protocols: [paper, strict] or one of them")
    protocol = protocol_of(config)
    slots = select_methods(config)
    datasets = resolve_datasets(config)
    for slot in slots:
        check_weights(slot, device)
    all_clips = [(d, name) for d in datasets for name in d.clips]
    plan = RunPlan(config=config, dist=dist, device=device, dtype=dtype, protocol=protocol, metrics=metrics,
                   slots=slots, datasets=datasets, clips=all_clips[dist.rank::dist.world_size])
    if config.cache:
        check_writable(Path(config.cache), "the input cache", "--cache")
    check_writable(Path(config.out), "results", "--out")
    return plan


# ---------------------------------------------------------------------------------------------
# Run ids
# ---------------------------------------------------------------------------------------------
# Config keys that do not change the rows (the ones RunConfig.content_hash leaves out); only used
# to name what differs when a run id is reused with another config.
_NOT_HASHED = ("run_id", "out", "cache", "leaderboard", "title", "save_videos", "overwrite")


def _config_difference(stored: Any, config: RunConfig) -> str:
    """Which hashed config keys differ, e.g. ``"datasets: [...] -> [...]"`` (short values shown)."""
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


def _check_same_config(run: RunDir, config: RunConfig) -> None:
    """Refuse to continue a run with a config whose rows would differ from the stored ones."""
    data = run.read_manifest()
    stored = (data.get("extra") or {}).get("config_hash") if data else None
    if stored and stored != config.content_hash():
        raise StereobenchError(
            f"config differs from run {run.run_id} ({_config_difference(data.get('config'), config)}); "
            "use --new or another --run-id")


def resolve_run_id(config: RunConfig, dist: Distributed, fresh: bool = False) -> tuple[str, bool]:
    """(run id, whether it resumes an existing run folder); see the module docstring.

    Raises StereobenchError when an explicit run id (or ``latest``) names a run made with another
    config (its manifest's config hash differs), and when ``fresh`` asks for a new run but names an
    existing run id.
    """
    out = Path(config.out)
    if config.run_id == "latest" and not fresh:
        latest = newest_run(out)
        if latest is None:
            raise StereobenchError(f"run_id 'latest' but there is no run under {out}; drop --run-id to start one")
        _check_same_config(RunDir(out, latest), config)
        return latest, True
    if config.run_id and config.run_id != "latest":
        check_run_id(config.run_id)
        run = RunDir(out, config.run_id)
        exists = run.path.exists()
        if exists and not run.path.is_dir():
            raise StereobenchError(f"{run.path} is a file, not a run folder; choose another --run-id or --out")
        if fresh and exists:
            raise StereobenchError(f"--new asks for a new run but run {config.run_id} already exists under {out}; "
                                   "drop --run-id or choose an unused one")
        _check_same_config(run, config)
        return config.run_id, exists
    if dist.mode == "shard":
        run_id = f"shard-{config.content_hash()}"
        return run_id, (out / run_id).exists()
    if not fresh:
        found = find_resumable_run(out, config.content_hash(), Overwrite(config.overwrite))
        if found:
            return found, True
    return new_run_id(), False


__all__ = ["DatasetPlan", "Distributed", "MethodSlot", "RunPlan", "check_weights", "check_writable",
           "detect_distributed", "make_plan", "parse_shard", "resolve_datasets", "resolve_device", "resolve_run_id",
           "select_methods", "validate_metrics"]
