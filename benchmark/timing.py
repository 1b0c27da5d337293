"""Named phase timings and peak memory, with warm-up and device synchronisation.

The runner times each (method, clip) pair in named phases -- ``warp`` (building or loading the
shared stereo input; it includes depth when the input needs a depth model, since this suite's
datasets carry ground-truth disparity the ``depth`` phase is reported only when a depth source runs
separately), ``refine`` (the method) and ``score`` (the metrics) -- and turns them into timing rows
of the results table (:mod:`benchmark.results`): ``time_<phase>_s`` (seconds for the clip) and
``time_<phase>_s_per_frame``, plus ``peak_mem_growth_bytes`` and ``peak_mem_bytes``.

Rules that make the numbers mean something:

- Device synchronisation: on CUDA, kernels run asynchronously; each phase calls
  ``torch.cuda.synchronize`` before starting and before stopping the clock, so the time is the
  work of that phase and not of whatever was still queued.
- Warm-up: the first call of a model pays for lazy initialisation (CUDA context, cuDNN autotune,
  allocator growth). :meth:`PhaseTimer.measure` can run a callable ``warmup`` times untimed first;
  the runner warms each method up once, on its first clip (``warmup: auto`` = once on CUDA,
  not at all on CPU, where there is little to warm and the extra call costs real time).
- Peak memory, two figures per tracked phase:

  * ``peak_mem_growth_bytes`` (what the leaderboard shows): how far memory rose above what was in
    use when the phase started. It tells methods apart: a CPU process holding ~3 GB of LPIPS
    networks, caches and clips reports ~3 GB of absolute peak for ``left-copy`` and for a
    diffusion model alike, but the growth is ~0 for the first and the model's working memory
    for the second.
  * ``peak_mem_bytes``: the absolute peak during the phase (everything the process holds).

  On CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` at the start of
  the phase (the tensor memory, not the cache the allocator keeps); growth subtracts
  ``memory_allocated`` at the start. On CPU under Linux the kernel's peak-RSS counter (``VmHWM``)
  is reset to the current RSS at the start of the phase by writing ``5`` to
  ``/proc/self/clear_refs`` and read back at its end; growth subtracts ``VmRSS`` at the start.
  Pages the allocator reuses (freed earlier, not returned to the OS) do not count as growth,
  which is what "new memory the phase needed" means for the OS. Where that reset is not available
  (other systems, restricted /proc) the absolute figure falls back to ``ru_maxrss``, a lifetime
  high-water mark that never goes down, the growth to that mark's rise during the phase (a lower
  bound), and :func:`per_phase_peak_rss_supported` says so.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

T = TypeVar("T")

PHASES = ("depth", "warp", "refine", "score")
"""The phase names the runner uses (any ``[a-z0-9]+`` name is accepted)."""


def synchronize(device: torch.device | str | None) -> None:
    """Wait for queued work on ``device`` (CUDA only; a no-op on CPU and other devices)."""
    if device is None:
        return
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize(device)


def process_peak_rss_bytes() -> int:
    """Peak resident set size of this process so far, in bytes (a lifetime high-water mark).

    ``ru_maxrss`` is in kilobytes on Linux and in bytes on macOS.
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


_CLEAR_REFS = "/proc/self/clear_refs"
_STATUS = "/proc/self/status"


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux); False where unsupported."""
    try:
        with open(_CLEAR_REFS, "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _status_bytes(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmHWM``, ``VmRSS``) in bytes, or None."""
    prefix = field + ":"
    try:
        with open(_STATUS) as handle:
            for line in handle:
                if line.startswith(prefix):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def current_peak_rss_bytes() -> int | None:
    """``VmHWM`` of this process in bytes (peak RSS since start or the last reset), or None."""
    return _status_bytes("VmHWM")


def current_rss_bytes() -> int | None:
    """``VmRSS`` of this process in bytes (resident now), or None where /proc is unavailable."""
    return _status_bytes("VmRSS")


def per_phase_peak_rss_supported() -> bool:
    """Whether CPU peak memory can be measured per phase here (resettable ``VmHWM``)."""
    return current_peak_rss_bytes() is not None and reset_peak_rss()


class PhaseTimer:
    """Accumulates wall time per named phase for one unit of work (one clip of one method).

    Example::

        timer = PhaseTimer(device="cuda")
        with timer.phase("refine", track_memory=True):
            right = method.refine(inp)
        with timer.phase("score"):
            rows = scorer.score(right, reference)
        timer.timing_metrics(frames=inp.num_frames)
        # {"time_refine_s": 2.1, "time_refine_s_per_frame": 0.13, "time_score_s": ..., "peak_mem_bytes": ...}

    A phase entered twice adds up. ``record(name, seconds)`` adds an externally measured time
    (e.g. the shared input's build time, measured once per clip).
    """

    def __init__(self, device: torch.device | str | None = None):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.seconds: dict[str, float] = {}
        self.peak_memory_bytes: int | None = None
        self.peak_memory_growth_bytes: int | None = None

    @property
    def on_cuda(self) -> bool:
        return self.device.type == "cuda" and torch.cuda.is_available()

    @contextmanager
    def phase(self, name: str, track_memory: bool = False) -> Iterator[None]:
        """Time the body as phase ``name`` (synchronised); with ``track_memory`` record its peak
        and its growth over the memory in use at the start (see the module docstring)."""
        resettable = False
        baseline = 0
        if track_memory and self.on_cuda:
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            baseline = torch.cuda.memory_allocated(self.device)
        elif track_memory:
            resettable = reset_peak_rss()
            # After the reset VmHWM == VmRSS; without it, growth is the lifetime mark's rise.
            baseline = (current_rss_bytes() if resettable else None) or process_peak_rss_bytes()
        synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.record(name, time.perf_counter() - start)
            if track_memory:
                if self.on_cuda:
                    peak = torch.cuda.max_memory_allocated(self.device)
                else:
                    peak = (current_peak_rss_bytes() if resettable else None) or process_peak_rss_bytes()
                self.peak_memory_bytes = max(self.peak_memory_bytes or 0, int(peak))
                self.peak_memory_growth_bytes = max(self.peak_memory_growth_bytes or 0, max(0, int(peak) - int(baseline)))

    def record(self, name: str, seconds: float) -> None:
        """Add ``seconds`` to phase ``name``."""
        self.seconds[name] = self.seconds.get(name, 0.0) + float(seconds)

    def measure(self, name: str, fn: Callable[..., T], *args: Any, warmup: int = 0,
                track_memory: bool = False, **kwargs: Any) -> T:
        """Run ``fn`` ``warmup`` times untimed, then once timed as phase ``name``; return its result."""
        for _ in range(max(0, int(warmup))):
            fn(*args, **kwargs)
        with self.phase(name, track_memory=track_memory):
            result = fn(*args, **kwargs)
        return result

    def timing_metrics(self, frames: int | None = None) -> dict[str, float]:
        """``{"time_<phase>_s": s, "time_<phase>_s_per_frame": s / frames, "peak_mem_growth_bytes": g,
        "peak_mem_bytes": b}`` (memory only when a phase tracked it)."""
        out: dict[str, float] = {}
        for name, seconds in self.seconds.items():
            out[f"time_{name}_s"] = seconds
            if frames:
                out[f"time_{name}_s_per_frame"] = seconds / frames
        if self.peak_memory_growth_bytes is not None:
            out["peak_mem_growth_bytes"] = float(self.peak_memory_growth_bytes)
        if self.peak_memory_bytes is not None:
            out["peak_mem_bytes"] = float(self.peak_memory_bytes)
        return out


def resolve_warmup(warmup: int | str, device: torch.device | str) -> int:
    """``"auto"`` -> 1 on CUDA, 0 elsewhere; a non-negative int is returned as is (a negative one
    is an error: the config refuses it, and silently clamping it hid typos)."""
    if warmup == "auto":
        return 1 if torch.device(device).type == "cuda" else 0
    if int(warmup) < 0:
        from benchmark.errors import StereobenchError

        raise StereobenchError(f"warmup must be 0 or more calls (or auto), got {warmup}")
    return int(warmup)
