"""One (method, clip) pair: input, refine, validate the output, score, rows.

:func:`run_pair` is the unit of work of the loop (:mod:`benchmark.runner.loop`). The shared
input and the scorer's ground-truth reference of a clip are built once per clip and warp rule
(:class:`ClipState`) and reused by every method of that clip. A method that fails on the clip
gets an error row naming the phase (``load``, ``refine``, ``score``, ``save``) and the run goes
on; two kinds of failure stop the run instead, because no other pair could succeed either:

- a bad clip or dataset option (a :class:`~benchmark.errors.StereobenchError` while building the
  input): the user must fix it;
- a problem of the environment (a full disk or quota, permissions, a read-only filesystem;
  :func:`benchmark.fileio.environment_error`), under the input cache or the run folder: the
  OSError propagates, the CLI prints one line, and the same command resumes once it is fixed.
  (Recording it per pair would turn every pair into an error row and redo the warp each time.)
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import torch

from benchmark.errors import StereobenchError
from benchmark.fileio import environment_error
from benchmark.results import ResultRow, pair_rows, strip_dataset_prefix
from benchmark.run_store import RunDir
from benchmark.runner.plan import DatasetPlan, MethodSlot, RunPlan
from benchmark.timing import PhaseTimer

FAULT_ENV = "STEREOBENCH_FAULT"
"""Fault injection for tests: ``kill-after-pairs:N`` makes the process SIGKILL itself in the middle
of the (N+1)-th pair (after its refine, before its rows are written)."""


@dataclass
class ClipState:
    """What a clip's pairs share: inputs and references per warp rule, and a warp failure (so a
    clip whose input cannot be built is tried once, not once per method)."""

    dataset: DatasetPlan
    clip_name: str  # as the dataset names it (clip_names())
    inputs: dict[str, tuple[Any, Any, float]] = field(default_factory=dict)  # warp -> (input, gt, seconds)
    depth_seconds: dict[str, float] = field(default_factory=dict)  # warp -> seconds of depth in that build
    references: dict[str, Any] = field(default_factory=dict)
    warp_errors: dict[str, BaseException] = field(default_factory=dict)

    @property
    def clip(self) -> str:
        """The clip as rows name it (without the ``<dataset>/`` prefix)."""
        return strip_dataset_prefix(self.dataset.name, self.clip_name)


@dataclass
class PairOutcome:
    """The rows of one pair (ending with its marker), its phase times and its error, if any."""

    rows: list[ResultRow]
    phase_seconds: dict[str, float]
    error: str | None = None  # "phase: message"
    input_built_seconds: float = 0.0
    unscored: bool = False  # the clip has no ground-truth right view: output saved, no score rows


def warp_for(slot: MethodSlot, warp_mode: str) -> str:
    """Warp rule name for a method: ``shared`` or, in native mode, the method's own rule."""
    if warp_mode == "native":
        return getattr(type(slot.method).meta, "native_warp", None) or "shared"
    return "shared"


def build_input(plan: RunPlan, state: ClipState, warp_name: str) -> tuple[Any, Any, float]:
    """(StereoInput, gt_right or None, seconds) of a clip through the shared content-hash cache.

    The one input recipe (:func:`benchmark.stereo.recipe.make_recipe`, then
    :func:`benchmark.stereo.cache.load_input`) names the dataset by its ``spec.name``, so runner,
    prepare and train share cache entries whatever the user typed. The config's depth source
    (``depth``) goes into the recipe; the seconds spent on depth are left out of the returned
    seconds and kept in ``state.depth_seconds[warp_name]`` (the ``depth`` phase).
    """
    from benchmark.stereo.cache import StereoInputCache, load_input
    from benchmark.stereo.recipe import make_recipe

    t0 = time.perf_counter()
    ds = state.dataset.dataset
    depth, depth_settings = plan.config.depth_name_and_settings()
    recipe = make_recipe(ds, state.clip_name, plan.protocol, warp=warp_name, depth=depth, **depth_settings)
    cache = StereoInputCache(root=plan.config.cache, depth_device=plan.device)  # depth models on the run's device
    inp, gt = load_input(ds, recipe, cache)
    depth_seconds = cache.timings.get("depth", 0.0)
    state.depth_seconds[warp_name] = depth_seconds
    return inp, gt, time.perf_counter() - t0 - depth_seconds


def validate_output(right: Any, inp) -> str | None:
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


def maybe_fault(pairs_written: int) -> None:
    spec = os.environ.get(FAULT_ENV, "")
    if spec.startswith("kill-after-pairs:") and pairs_written >= int(spec.split(":", 1)[1]):
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def save_video(path, video: torch.Tensor, fps: float, is_mask: bool = False, replace: bool = False) -> None:
    """Write a preview video; an existing file is kept (same clip, same input) unless ``replace``
    (a method's output that was just recomputed). Writes are atomic (temp file + os.replace)."""
    from benchmark import video_io

    if path.exists() and not replace:
        return
    if is_mask:
        video_io.write_mask(path, video.cpu(), fps=fps)
    else:
        video_io.write_video(path, video.detach().clamp(0, 1).to(torch.float32).cpu(), fps=fps)


def save_clip_videos(run: RunDir, dataset: str, clip: str, warp_name: str, inp, gt) -> None:
    """The inputs of a clip (left, warped, mask, gt) as videos of the run (never elsewhere)."""
    suffix = "" if warp_name == "shared" else f"-{warp_name}"
    save_video(run.video_path(dataset, clip, "left"), inp.left, inp.fps)
    save_video(run.video_path(dataset, clip, f"warped{suffix}"), inp.warped, inp.fps)
    save_video(run.video_path(dataset, clip, f"mask{suffix}"), inp.mask, inp.fps, is_mask=True)
    if gt is not None:
        save_video(run.video_path(dataset, clip, "gt"), gt, inp.fps)


def make_scorer(plan: RunPlan):
    from benchmark.metrics import Scorer

    return Scorer(metrics=list(plan.metrics), regions=list(plan.config.regions),
                  scoring_protocols=list(plan.config.scoring_protocols), device=plan.device)


@dataclass
class PairContext:
    """What every pair of a run shares: the plan, the run folder, the device label for rows,
    warm-up count and the scorer (made on first use)."""

    plan: RunPlan
    run: RunDir
    device_label: str
    warmup: int
    pairs_written: int = 0
    scorer: Any = None


def _load(slot: MethodSlot, ctx: PairContext) -> None:
    if slot.method is not None and not slot.loaded and slot.load_error is None:
        try:
            slot.method.load(ctx.plan.device, ctx.plan.dtype)
            slot.loaded = True
        except Exception as exc:  # recorded per clip; the run goes on
            env = environment_error(exc)
            if env is not None:  # the disk or permissions: stop the run (resumable), as run_pair does
                raise env from exc
            slot.load_error = f"{type(exc).__name__}: {exc}"


def run_pair(ctx: PairContext, state: ClipState, slot: MethodSlot) -> PairOutcome:
    """Refine, validate, score and (optionally) save one pair; returns its rows (not yet written).

    Raises StereobenchError for a bad clip (input phase) and the environment's OSError (see the
    module docstring); every other failure becomes the pair's error row.
    """
    plan, config = ctx.plan, ctx.plan.config
    _load(slot, ctx)
    timer = PhaseTimer(plan.device)
    phase, error = "warp", None
    right = None
    warp_name = warp_for(slot, config.warp_mode)
    built = 0.0
    quality: list[dict] = []
    try:
        if warp_name in state.warp_errors:
            raise state.warp_errors[warp_name]
        if warp_name not in state.inputs:
            try:
                state.inputs[warp_name] = build_input(plan, state, warp_name)
            except Exception as exc:
                state.warp_errors[warp_name] = exc
                raise
            built = state.inputs[warp_name][2]
            # A clip without ground truth is run to get its outputs (for studies): always saved.
            if config.save_videos or state.inputs[warp_name][1] is None:
                save_clip_videos(ctx.run, state.dataset.name, state.clip, warp_name, *state.inputs[warp_name][:2])
        inp, gt, input_seconds = state.inputs[warp_name]
        if state.depth_seconds.get(warp_name):
            timer.record("depth", state.depth_seconds[warp_name])  # a depth source ran for this input
        timer.record("warp", input_seconds)
        if slot.load_error:
            phase = "load"
            raise RuntimeError(slot.load_error)
        phase = "refine"
        inp_dev = inp.to(plan.device)
        if ctx.warmup and not slot.warmed_up:
            with torch.no_grad():
                for _ in range(ctx.warmup):
                    slot.method.refine(inp_dev)
        slot.warmed_up = True
        with torch.no_grad(), timer.phase("refine", track_memory=True):
            right = slot.method.refine(inp_dev)
        problem = validate_output(right, inp)
        if problem:
            raise ValueError(problem)
        right = right.clamp(0, 1).to(torch.float32)
        maybe_fault(ctx.pairs_written)
        if gt is not None:
            phase = "score"
            if ctx.scorer is None:
                ctx.scorer = make_scorer(plan)
            if warp_name not in state.references:
                t0 = time.perf_counter()
                state.references[warp_name] = ctx.scorer.prepare_reference(
                    gt.to(plan.device), inp_dev.mask, inp_dev.left,
                    # filled-in disparity (Middlebury's background fill) is an estimate, not truth
                    inp_dev.measured_disparity)
                timer.record("reference", time.perf_counter() - t0)
            with torch.no_grad(), timer.phase("score"):
                quality = list(ctx.scorer.score(right, state.references[warp_name]))
        if config.save_videos or gt is None:
            phase = "save"
            # The pair was (re)computed now: its video must show this output, not an older one.
            save_video(ctx.run.video_path(state.dataset.name, state.clip, slot.label), right, inp.fps, replace=True)
    except (KeyboardInterrupt, SystemExit):
        raise
    except StereobenchError as exc:
        if phase == "warp":
            raise  # a bad clip or dataset option: the user must fix it
        error = exc
    except Exception as exc:
        env = environment_error(exc)
        if env is not None:
            raise env from exc  # the disk or the permissions: stop, resumably (module docstring)
        error = exc
        if os.environ.get("STEREOBENCH_DEBUG"):
            traceback.print_exc()
    # warp and depth are counted once per clip (input_built_seconds; depth on the pair that built it)
    seconds = {name: s for name, s in timer.seconds.items() if name not in ("warp", "reference", "depth")}
    if built and state.depth_seconds.get(warp_name):
        seconds["depth"] = state.depth_seconds[warp_name]
    if "reference" in timer.seconds:
        seconds["reference"] = timer.seconds["reference"]
    frames = state.inputs[warp_name][0].num_frames if warp_name in state.inputs else None
    timings = None
    if error is None:
        timings = {k: v for k, v in timer.timing_metrics(frames).items() if not k.startswith("time_reference")}
    rows = pair_rows(run_id=ctx.run.run_id, method=slot.label, dataset=state.dataset.name, clip=state.clip,
                     clip_protocol=plan.protocol.name, warp_mode=config.warp_mode, device=ctx.device_label,
                     dataset_revision=state.dataset.revision, quality=quality if error is None else [],
                     timings=timings, error=error, error_phase=phase)
    message = None
    if error is not None:
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        message = f"{phase}: {text}"
    del right
    unscored = error is None and warp_name in state.inputs and state.inputs[warp_name][1] is None
    return PairOutcome(rows=rows, phase_seconds=seconds, error=message, input_built_seconds=built, unscored=unscored)


__all__ = ["FAULT_ENV", "ClipState", "PairContext", "PairOutcome", "build_input", "make_scorer", "run_pair",
           "save_clip_videos", "save_video", "validate_output", "warp_for"]
