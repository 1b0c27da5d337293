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
