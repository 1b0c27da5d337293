"""Load test: 20 simulated participants answering at the same time against the SQLite store.

Each participant is one thread driving the store the way the app does (``next_trial`` ->
``submit``), with a double submit on about half of its trials (a double click) and a stale
re-submit of an earlier trial now and then (a rerun after a refresh), until its plan is done or
the time bound is hit. Counted afterwards, from the database: every (participant, trial) has
exactly one row (zero lost, zero duplicated), every stored answer is the first one sent, every
second submit was reported as a duplicate, no call raised. The p95 submit latency is printed
(``pytest -s``) and recorded in docs/performance.md. A second test does the same over HTTP on
loopback through the headset page's answer endpoint (pairwise).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from study_app.package import StudyPackage
from study_app.store import StudyStore
from tests.study_helpers import synthetic_package

N_PARTICIPANTS = 20
TRIALS = 50  # main trials per participant (+1 attention trial): 1,020 responses in all
TIME_BOUND_S = 120.0


def test_twenty_concurrent_participants_lose_and_duplicate_nothing(tmp_path):
    _load(tmp_path, str(tmp_path / "load.sqlite"))


@pytest.mark.slow
def test_twenty_concurrent_participants_on_postgresql(tmp_path):
    """The same load against a real PostgreSQL server (no process lock there: the database
    serialises the unique constraint itself)."""
    import shutil
    import tempfile
    from pathlib import Path

    from tests.study_helpers import PostgresServer

    base = Path(tempfile.mkdtemp(prefix="stereobench-pg-load-"))
    try:
        try:
            server = PostgresServer(base)
        except (RuntimeError, OSError, LookupError) as exc:
            pytest.skip(f"PostgreSQL could not start here: {exc}")
        try:
            _load(tmp_path, server.create_database("load"))
        finally:
            server.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _load(tmp_path, db: str) -> None:
    pkg_dir = synthetic_package(tmp_path / "pkg", participants=N_PARTICIPANTS, trials_per_participant=TRIALS)
    store = StudyStore.open(db, StudyPackage.load(pkg_dir), app_commit="load-test")
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
    print(f"\nload test ({store.engine.dialect.name}): {N_PARTICIPANTS} participants, {len(rows)} responses stored, {stats['duplicates_sent']} "
          f"duplicate submits, {len(lat)} submits in {wall:.1f} s; submit latency p50 {p50:.1f} ms, "
          f"p95 {p95:.1f} ms, p99 {p99:.1f} ms, max {lat.max():.1f} ms")
    store.dispose()


def test_twenty_headset_participants_over_http_on_loopback(tmp_path):
    """The same count over HTTP: a uvicorn server on 127.0.0.1 serving the study's headset API
    (``GET /xr/api/state``, ``POST /xr/api/answer``, study_app.web.routes) and 20 client threads,
    each a VR participant answering every pairwise trial, about half of them twice."""
    import http.client
    import json
    import socket

    try:
        import uvicorn
        from starlette.applications import Starlette

        from study_app.web.context import WebConfig, open_study
        from study_app.web.routes import make_routes
    except ImportError as exc:  # the web side is optional for the storage layer
        pytest.skip(f"the study web routes are not importable: {exc}")
    n_trials = 10
    pkg_dir = synthetic_package(tmp_path / "vr", kind="pairwise", participants=N_PARTICIPANTS,
                                trials_per_participant=n_trials, study_id="vr-load")
    cfg = WebConfig(pkg_dir.resolve(), str(tmp_path / "vr.sqlite"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=make_routes(cfg)), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    t_wait = time.monotonic()
    while not server.started and time.monotonic() - t_wait < 30:
        time.sleep(0.05)
    assert server.started, "the loopback server did not start"
    package, store = open_study(cfg)
    deadline = time.monotonic() + TIME_BOUND_S
    latencies: list[float] = []
    sent: dict[tuple[str, str], str] = {}
    errors: list[str] = []
    lock = threading.Lock()
    counts = {"stored": 0, "duplicate": 0, "duplicates_sent": 0}

    def call(conn, method, path, body=None):
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")

    def participant(index: int) -> None:
        pid = package.participant_ids[index]
        rng = np.random.default_rng(100 + index)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        stored = dup = dup_sent = 0
        mine = {}
        try:
            while time.monotonic() < deadline:
                status, state = call(conn, "GET", f"/xr/api/state?pid={pid}")
                if status != 200 or state.get("status") != "trial":
                    if state.get("status") != "done":
                        with lock:
                            errors.append(f"{pid}: state {status} {state}")
                    break
                trial_id = state["trial"]["trial_id"]
                answer = ["A", "B", "equal"][int(rng.integers(3))]
                for k in range(2 if rng.random() < 0.5 else 1):
                    t0 = time.perf_counter()
                    status, result = call(conn, "POST", f"/xr/api/answer?pid={pid}",
                                          {"trial_id": trial_id, "answer": answer if k == 0 else "equal", "plays": 1})
                    with lock:
                        latencies.append(time.perf_counter() - t0)
                    if status != 200:
                        with lock:
                            errors.append(f"{pid}: answer {status} {result}")
                        return
                    stored += result["stored"]
                    dup += result["duplicate"]
                    dup_sent += k
                    if k == 0:
                        mine[trial_id] = answer
        except (OSError, http.client.HTTPException, ValueError) as exc:
            with lock:
                errors.append(f"{pid}: {type(exc).__name__}: {exc}")
        finally:
            conn.close()
        with lock:
            counts["stored"] += stored
            counts["duplicate"] += dup
            counts["duplicates_sent"] += dup_sent
            sent.update({(pid, t): a for t, a in mine.items()})

    threads = [threading.Thread(target=participant, args=(i,)) for i in range(N_PARTICIPANTS)]
    t_start = time.perf_counter()
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIME_BOUND_S + 30)
        wall = time.perf_counter() - t_start
    finally:
        server.should_exit = True
        thread.join(30)
    assert not errors, errors[:3]
    expected = {(pid, t.trial_id) for pid in package.participant_ids for t in package.plan(package.slot_of(pid))}
    assert set(sent) == expected
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT participant, trial_id, answer FROM responses").all()
    assert len(rows) == len(expected) == len({(p, t) for p, t, _ in rows})  # none lost, none doubled
    assert {(p, t): json.loads(a)["choice"] for p, t, a in rows} == \
        {k: ("equal" if v == "equal" else v) for k, v in sent.items()}  # the first answer kept
    assert counts["stored"] == len(expected) and counts["duplicate"] == counts["duplicates_sent"] > 0
    lat = np.asarray(latencies) * 1e3
    p50, p95 = np.percentile(lat, [50, 95])
    print(f"\nHTTP load test: {N_PARTICIPANTS} headset participants, {len(rows)} responses, "
          f"{counts['duplicates_sent']} duplicate posts, {len(lat)} posts in {wall:.1f} s; answer latency "
          f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {lat.max():.1f} ms")
    store.dispose()
