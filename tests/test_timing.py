import mmap
import time

import numpy as np
import pytest

from benchmark.timing import (PhaseTimer, current_peak_rss_bytes, per_phase_peak_rss_supported,
                              process_peak_rss_bytes, resolve_warmup)

MB = 1 << 20


def test_phases_accumulate_and_per_frame():
    timer = PhaseTimer()
    with timer.phase("refine"):
        time.sleep(0.02)
    with timer.phase("refine"):
        time.sleep(0.02)
    calls = []
    timer.measure("score", lambda: calls.append(1), warmup=2)
    metrics = timer.timing_metrics(frames=4)
    assert 0.04 <= metrics["time_refine_s"] < 1.0
    assert metrics["time_refine_s_per_frame"] == pytest.approx(metrics["time_refine_s"] / 4)
    assert len(calls) == 3  # two untimed warm-up calls, one timed
    assert resolve_warmup("auto", "cpu") == 0 and resolve_warmup(3, "cpu") == 3


@pytest.mark.skipif(not per_phase_peak_rss_supported(), reason="no resettable VmHWM on this system")
def test_cpu_peak_memory_is_per_phase_not_lifetime():
    big = np.ones(400 * MB // 8)  # a lifetime high-water mark well above what the phase needs
    big[::4096] = 2.0
    del big
    lifetime = process_peak_rss_bytes()
    timer = PhaseTimer()
    with timer.phase("refine", track_memory=True):
        work = np.ones(100 * MB // 8)
        work[::512] = 3.0  # touch every page
        during = current_peak_rss_bytes()
        del work
    peak = timer.timing_metrics()["peak_mem_bytes"]
    assert peak >= during - MB  # the phase's own 100 MB are in the figure
    assert peak < lifetime - 150 * MB  # the earlier 400 MB are not


def _touch(n_bytes: int) -> mmap.mmap:
    """n_bytes of FRESH memory from the kernel, every page written (so it is resident).

    An anonymous mapping of its own, not the allocator's heap: after a long test session the heap
    holds freed pages that are still resident, and an allocation served from them adds nothing to
    the RSS (a full-suite run once measured 158 MB of growth for these 200 MB)."""
    block = mmap.mmap(-1, n_bytes)
    view = np.frombuffer(block, dtype=np.uint8)
    view[::4096] = 1
    del view  # the mapping is unmapped when the returned object goes
    return block


@pytest.mark.skipif(not per_phase_peak_rss_supported(), reason="no resettable VmHWM on this system")
def test_cpu_memory_growth_is_what_the_phase_allocated_whatever_the_process_holds():
    held = _touch(400 * MB)  # the process is big before the phases (like LPIPS nets and caches)
    timer = PhaseTimer()
    with timer.phase("refine", track_memory=True):
        work = _touch(200 * MB)
        del work
    grew = timer.timing_metrics()
    assert 180 * MB <= grew["peak_mem_growth_bytes"] <= 240 * MB
    assert grew["peak_mem_bytes"] >= 580 * MB  # the absolute peak includes what the process held
    idle = PhaseTimer()
    with idle.phase("refine", track_memory=True):
        total = int(np.frombuffer(held, dtype=np.uint8)[::4096].sum())  # reads only, allocates ~nothing
    quiet = idle.timing_metrics()
    assert quiet["peak_mem_growth_bytes"] < 10 * MB
    assert quiet["peak_mem_bytes"] >= 400 * MB  # ...while the process is still big
    assert total == len(held) // 4096 + (len(held) % 4096 > 0)
    del held


def test_negative_warmup_is_an_error_not_a_clamp():
    from benchmark.errors import StereobenchError

    with pytest.raises(StereobenchError, match="warmup"):
        resolve_warmup(-1, "cpu")
