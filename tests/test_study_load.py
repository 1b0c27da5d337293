"""Load test: 20 simulated participants answering at the same time against the SQLite store.

Each participant is one thread driving the store the way the app does (``next_trial`` ->
``submit``), with a double submit on about half of its trials (a double click) and a stale
re-submit of an earlier trial now and then (a rerun after a refresh), until its plan is done or
the time bound is hit. Counted afterwards, from the database: every (participant, trial) has
exactly one row (zero lost, zero duplicated), every stored answer is the first one sent, every
second submit was reported as a duplicate, no call raised. The p95 submit latency is printed
(``pytest -s``) and recorded in docs/performance.md.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from study_app.package import StudyPackage
from study_app.store import StudyStore
from tests.study_helpers import synthetic_package

N_PARTICIPANTS = 20
TRIALS = 50  # main trials per participant (+1 attention trial): 1,020 responses in all
TIME_BOUND_S = 120.0


def test_twenty_concurrent_participants_lose_and_duplicate_nothing(tmp_path):
    pkg_dir = synthetic_package(tmp_path / "pkg", participants=N_PARTICIPANTS, trials_per_participant=TRIALS)
    store = StudyStore.open(str(tmp_path / "load.sqlite"), StudyPackage.load(pkg_dir), app_commit="load-test")
    package = store.package
    deadline = time.monotonic() + TIME_BOUND_S
    latencies: list[list[float]] = [[] for _ in range(N_PARTICIPANTS)]
    first_answers: dict[tuple[str, str], list[int]] = {}
    stats = {"stored": 0, "duplicate_reported": 0, "duplicates_sent": 0}
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(N_PARTICIPANTS)

    def participant(index: int) -> None:
        pid = package.participant_ids[index]
        rng = np.random.default_rng(index)
        mine: dict[str, list[int]] = {}
        stored = dup_reported = dup_sent = 0
        try:
            assert store.join(pid) is not None
            start.wait()
            while time.monotonic() < deadline:
                view = store.next_trial(pid)
                if view is None:
                    break
                scores = np.floor(rng.random(view.n_slots) * 3)
                ranks = [int(1 + (scores > s).sum()) for s in scores]
                sends = [ranks] + ([list(rng.permutation(ranks))] if rng.random() < 0.5 else [])
                if mine and rng.random() < 0.1:  # a stale rerun of an earlier trial
                    old = list(mine)[int(rng.integers(len(mine)))]
                    t0 = time.perf_counter()
                    r = store.submit(pid, old, mine[old])
                    latencies[index].append(time.perf_counter() - t0)
                    dup_sent += 1
                    dup_reported += r.duplicate
                for k, answer in enumerate(sends):
                    t0 = time.perf_counter()
                    r = store.submit(pid, view.trial_id, answer, plays=1)
                    latencies[index].append(time.perf_counter() - t0)
                    if k == 0:
                        mine[view.trial_id] = answer
                        stored += r.stored
                    else:
                        dup_sent += 1
                    dup_reported += r.duplicate
        except BaseException as exc:  # noqa: BLE001 - reported below, with the others
            with lock:
                errors.append(exc)
        with lock:
            for trial_id, answer in mine.items():
                first_answers[(pid, trial_id)] = answer
            stats["stored"] += stored
            stats["duplicate_reported"] += dup_reported
            stats["duplicates_sent"] += dup_sent

    threads = [threading.Thread(target=participant, args=(i,)) for i in range(N_PARTICIPANTS)]
    t_start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIME_BOUND_S + 30)
    wall = time.perf_counter() - t_start

    assert not errors, f"{len(errors)} participant thread(s) failed: {errors[:3]!r}"
    expected = {(pid, t.trial_id) for pid in package.participant_ids for t in package.plan(package.slot_of(pid))}
    assert len(expected) == N_PARTICIPANTS * (TRIALS + 1)
    assert set(first_answers) == expected, "a participant did not finish within the time bound"
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT participant, trial_id, answer FROM responses").all()
        doubled = conn.exec_driver_sql("SELECT participant, trial_id FROM responses GROUP BY participant, trial_id "
                                       "HAVING COUNT(*) > 1").all()
    import json

    got = {(p, t): json.loads(a)["ranks"] for p, t, a in rows}
    lost = expected - set(got)
    assert not lost, f"{len(lost)} responses lost"
    assert not doubled and len(rows) == len(expected), f"{len(rows) - len(expected)} duplicated rows"
    assert got == first_answers  # the first answer is kept, never overwritten by a double click
    assert stats["stored"] == len(expected)
    assert stats["duplicate_reported"] == stats["duplicates_sent"] > 0
    lat = np.concatenate([np.asarray(x) for x in latencies]) * 1e3
    p50, p95, p99 = np.percentile(lat, [50, 95, 99])
    print(f"\nload test: {N_PARTICIPANTS} participants, {len(rows)} responses stored, {stats['duplicates_sent']} "
          f"duplicate submits, {len(lat)} submits in {wall:.1f} s; submit latency p50 {p50:.1f} ms, "
          f"p95 {p95:.1f} ms, p99 {p99:.1f} ms, max {lat.max():.1f} ms")
    store.dispose()
