"""StudyStore against SQLite and a real PostgreSQL server (started here on a private unix socket).

Every storage test runs on both backends (``db`` fixture); the PostgreSQL cases skip with the
reason when the server cannot start (no binaries). Covered: migration = models, resume from the
database only, duplicate submits, server-side rejection of tampered values, closing, open
enrollment balance, the export in the analysis schema (read back by the analysis' own loader and
run through ``stereobench analyze``), the pwcmp CSV, the admin summary.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.errors import StereobenchError
from study_app.package import CONTROL, StudyPackage
from study_app.store import (
    InvalidResponse,
    StudyClosed,
    StudyStore,
    is_complete_ranking,
)
from tests.study_helpers import METHODS, PostgresServer, synthetic_package

_counter = iter(range(10_000))


@pytest.fixture(scope="module")
def pg_server():
    base = Path(tempfile.mkdtemp(prefix="stereobench-pg-"))  # /tmp: the postgres user must reach it
    try:
        server = PostgresServer(base)
    except (RuntimeError, OSError, LookupError) as exc:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"PostgreSQL could not start here: {exc}")
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    """A fresh database URL or path per test: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "db" / "study.sqlite")
    server = request.getfixturevalue("pg_server")
    return server.create_database(f"study{next(_counter)}")


def _open(db, pkg_dir, **kw):
    return StudyStore.open(db, StudyPackage.load(pkg_dir), app_commit="abc123", **kw)


def _ranks(n, rng):
    """A random complete competition ranking with ties."""
    scores = np.floor(rng.random(n) * 3)
    return [int(1 + (scores > s).sum()) for s in scores]


def test_is_complete_ranking_by_hand():
    assert is_complete_ranking([1, 2, 3, 4]) and is_complete_ranking([4, 3, 2, 1])
    assert is_complete_ranking([1, 1, 3, 4]) and is_complete_ranking([1, 1, 2, 3])  # competition / dense ties
    assert is_complete_ranking([1, 1, 1, 1]) and is_complete_ranking([2, 1, 2, 4])
    assert not is_complete_ranking([1, 3, 3, 4])  # a gap that is neither convention
    assert not is_complete_ranking([2, 2, 3, 4])  # nobody is best
    assert not is_complete_ranking([1, 1, 4, 4])


def test_migration_matches_models_and_is_idempotent(tmp_path, db):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from study_app.store import Base

    pkg = synthetic_package(tmp_path / "pkg")
    store = _open(db, pkg)
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        version = MigrationContext.configure(conn).get_current_revision()
    store.dispose()
    assert diff == [], f"the models and the head migration differ: {diff}"
    assert version == "0001"
    again = _open(db, pkg)  # a second open migrates nothing and keeps the participants
    assert again.admin_summary().counts["participants"] == 4
    again.dispose()


def test_resume_from_the_database_only(tmp_path, db):
    pkg = synthetic_package(tmp_path / "pkg", trials_per_participant=5)
    store = _open(db, pkg)
    package = store.package
    assert store.join("P02") is not None
    plan = package.plan(package.slot_of("P02"))
    rng = np.random.default_rng(0)
    for trial in plan[:3]:
        view = store.next_trial("P02")
        assert view.trial_id == trial.trial_id and view.number == trial.number and view.total == len(plan)
        assert store.submit("P02", view.trial_id, _ranks(view.n_slots, rng)).stored
    store.dispose()
    # A new process (new store, new engine): the next trial is exactly the 4th of the plan.
    reopened = _open(db, pkg)
    assert reopened.progress("P02") == (3, len(plan))
    assert reopened.next_trial("P02").trial_id == plan[3].trial_id
    assert reopened.progress("P01") == (0, len(plan))
    for trial in plan[3:]:
        reopened.submit("P02", trial.trial_id, [1, 1, 1, 1])
    assert reopened.next_trial("P02") is None and reopened.progress("P02") == (len(plan), len(plan))
    reopened.dispose()


def test_double_submit_is_stored_once_and_keeps_the_first_answer(tmp_path, db):
    store = _open(db, synthetic_package(tmp_path / "pkg"))
    view = store.next_trial("P01")
    first = store.submit("P01", view.trial_id, [1, 2, 3, 4], plays=2, replays=1)
    second = store.submit("P01", view.trial_id, [4, 3, 2, 1])
    assert (first.stored, first.duplicate) == (True, False)
    assert (second.stored, second.duplicate) == (False, True)
    df = store.responses_frame()
    assert len(df) == 4  # one trial, four methods
    got = dict(zip(df["slot"], df["rank"]))
    assert got == {0: 1, 1: 2, 2: 3, 3: 4}
    assert set(df["plays"]) == {2} and set(df["replays"]) == {1} and set(df["app_commit"]) == {"abc123"}
    store.dispose()


@pytest.mark.parametrize("answer, message", [
    ([1, 2, 3, 5], "outside 1-4"), ([0, 1, 2, 3], "outside 1-4"), ([1, 2, 3], "list of 4"),
    ([1, 3, 3, 4], "not a complete ranking"), ([2, 2, 3, 4], "not a complete ranking"), ([1, 2, "x", 4], "whole number"),
    ([1.5, 2, 3, 4], "whole number"), ("1234", "list of 4"), ([True, 2, 3, 4], "whole number"), (None, "list of 4"),
])
def test_tampered_rankings_are_rejected(tmp_path, answer, message):
    store = _open(str(tmp_path / "s.sqlite"), synthetic_package(tmp_path / "pkg"))
    view = store.next_trial("P01")
    with pytest.raises(InvalidResponse, match=message):
        store.submit("P01", view.trial_id, answer)
    assert store.response_count() == 0
    store.dispose()


def test_other_participants_trials_and_unknown_ids_are_rejected(tmp_path, db):
    store = _open(db, synthetic_package(tmp_path / "pkg"))
    theirs = store.next_trial("P02")
    with pytest.raises(InvalidResponse, match="not one of participant 'P01'"):
        store.submit("P01", theirs.trial_id, [1, 2, 3, 4])
    with pytest.raises(InvalidResponse, match="not one of"):
        store.submit("P01", "nonexistent", [1, 2, 3, 4])
    with pytest.raises(InvalidResponse, match="not in this study"):
        store.submit("P99", theirs.trial_id, [1, 2, 3, 4])
    with pytest.raises(InvalidResponse, match="not valid"):
        store.next_trial("P01'; DROP TABLE responses; --")
    mine = store.next_trial("P01")
    for bad in ({"plays": -1}, {"replays": "many"}, {"shown_at": "yesterday"}):
        with pytest.raises(InvalidResponse):
            store.submit("P01", mine.trial_id, [1, 2, 3, 4], **bad)
    assert store.join("P99") is None and store.join("../etc") is None and store.join("") is None
    assert store.response_count() == 0
    store.dispose()


def test_pairwise_answers_map_display_slots_to_method_labels(tmp_path, db):
    store = _open(db, synthetic_package(tmp_path / "pkg", kind="pairwise", participants=2))
    pkg = store.package
    answers = {}
    for pid in pkg.participant_ids:
        for i, trial in enumerate(pkg.plan(pkg.slot_of(pid))):
            choice = ["A", "B", "equal"][i % 3]
            assert store.submit(pid, trial.trial_id, choice).stored
            shown_first = trial.method_a if trial.first_shown == "a" else trial.method_b
            expected = "equal" if choice == "equal" else (
                ("a" if shown_first == trial.method_a else "b") if choice == "A" else
                ("b" if shown_first == trial.method_a else "a"))
            answers[(pid, trial.number)] = expected
    with pytest.raises(InvalidResponse, match="'A', 'B' or 'equal'"):
        store.submit("P01", pkg.plan(0)[0].trial_id, "C")
    df = store.responses_frame()
    assert {(r.participant, r.trial): r.answer for r in df.itertuples()} == answers
    att = df[df["trial_kind"] == "attention"]
    assert set(att["method_b"]) == {CONTROL} and set(att["attention_expect"]) == {"a"}
    # pwcmp: decisive main answers only (ties dropped), is_A_selected = (answer == a)
    out = store.export_pwcmp(tmp_path / "pw.csv")
    pw = pd.read_csv(out)
    main = df[(df["trial_kind"] == "main") & (df["answer"] != "equal")]
    assert list(pw.columns[:6]) == ["observer", "session_id", "scene", "condition_A", "condition_B", "is_A_selected"]
    assert len(pw) == len(main)
    assert pw["is_A_selected"].tolist() == (main["answer"] == "a").astype(int).tolist()
    both = pd.read_csv(store.export_pwcmp(tmp_path / "pw2.csv", ties="both"))
    n_ties = int(((df["trial_kind"] == "main") & (df["answer"] == "equal")).sum())
    assert len(both) == len(main) + 2 * n_ties
    store.dispose()


def test_closing_stops_answers_and_new_participants(tmp_path, db):
    store = _open(db, synthetic_package(tmp_path / "pkg", open_enrollment=True))
    view = store.next_trial("P01")
    assert store.join("newcomer1") is not None
    assert store.close_study() is True and store.close_study() is False
    assert store.is_closed
    with pytest.raises(StudyClosed):
        store.submit("P01", view.trial_id, [1, 2, 3, 4])
    assert store.join("newcomer2") is None  # closed: no new ids
    assert store.join("P01") is not None  # known ids still reach their (closed) page
    assert store.response_count() == 0
    store.dispose()


def test_open_enrollment_binds_new_ids_to_the_least_used_slots(tmp_path, db):
    store = _open(db, synthetic_package(tmp_path / "pkg", participants=3, open_enrollment=True))
    slots = [store.join(f"walkin{i}").slot for i in range(9)]
    # 3 invited ids hold slots 0, 1, 2 once each; 9 walk-ins make every slot used 4 times.
    assert sorted(np.bincount(slots, minlength=3).tolist()) == [3, 3, 3]
    assert store.join("walkin0").slot == slots[0]  # joining again keeps the slot
    view = store.next_trial("walkin4")
    assert store.package.trial(view.trial_id).participant_slot == slots[4]
    store.dispose()
    closed_pkg = synthetic_package(tmp_path / "pkg2", study_id="invite-only")
    s2 = _open(str(tmp_path / "s2.sqlite"), closed_pkg)
    assert s2.join("walkin0") is None
    s2.dispose()


def test_database_of_another_study_or_build_is_refused(tmp_path):
    path = str(tmp_path / "s.sqlite")
    _open(path, synthetic_package(tmp_path / "a", study_id="study-a")).dispose()
    with pytest.raises(StereobenchError, match="belongs to study 'study-a'"):
        _open(path, synthetic_package(tmp_path / "b", study_id="study-b"))
    rebuilt = synthetic_package(tmp_path / "a2", study_id="study-a")  # same id, other trials
    with pytest.raises(StereobenchError, match="another build"):
        _open(path, rebuilt)


def test_default_location_is_one_sqlite_file_per_study(tmp_path):
    pkg = synthetic_package(tmp_path / "pkg", study_id="mystudy")
    store = StudyStore.open(None, pkg, root=tmp_path / "studies")
    assert (tmp_path / "studies" / "mystudy" / "study.sqlite").is_file()
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    store.dispose()


def test_export_is_the_analysis_schema_and_analyze_runs_on_it(tmp_path, db, capsys):
    from benchmark.cli import main
    from study_app.analysis.io import load_responses
    from study_app.analysis.schema import RANKING_COLUMNS

    store = _open(db, synthetic_package(tmp_path / "pkg", participants=5, trials_per_participant=6))
    pkg = store.package
    rng = np.random.default_rng(3)
    true = {m: i for i, m in enumerate(METHODS)}  # the first method is best
    for pid in pkg.participant_ids:
        for trial in pkg.plan(pkg.slot_of(pid)):
            score = np.array([-(true.get(m, 9)) + 0.8 * rng.standard_normal() for m in trial.methods])
            ranks = [int(1 + (score > s).sum()) for s in score]
            store.submit(pid, trial.trial_id, ranks, shown_at="2026-01-01T10:00:00Z",
                         viewport={"width": 1920, "height": 1080}, user_agent="pytest")
    csv_path = store.export_responses(tmp_path / "out" / "responses.csv")
    pq_path = store.export_responses(tmp_path / "out" / "responses.parquet")
    df = pd.read_csv(csv_path)
    names = [c.name for c in RANKING_COLUMNS]
    assert list(df.columns[: len(names)]) == names
    assert len(df) == 5 * 7 * 4
    assert set(df.loc[df["method"] == CONTROL, "attention_expect"]) == {"worst"}
    assert set(df["viewport"]) == {"1920x1080"} and set(df["device"]) == {"desktop"}
    assert pd.to_datetime(df["started_at"], utc=True).eq(pd.Timestamp("2026-01-01T10:00:00Z")).all()
    for path in (csv_path, pq_path):
        loaded = load_responses([path])
        assert loaded.rankings is not None and len(loaded.rankings) == len(df)
    store.dispose()
    if "postgresql" in str(db):
        return  # the same export code; the analysis run (~10 s) is checked once, on SQLite
    code = main(["analyze", str(csv_path), "--out", str(tmp_path / "analysis"), "--n-boot", "50", "--n-boot-model", "10",
                 "--n-perm", "99"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    report = (tmp_path / "analysis" / "report.md").read_text()
    assert METHODS[0] in report and CONTROL not in report.split("## ")[1]


def test_admin_summary_counts_per_participant_and_video(tmp_path, db):
    store = _open(db, synthetic_package(tmp_path / "pkg", participants=3, trials_per_participant=4))
    pkg = store.package
    store.join("P01")
    for trial in pkg.plan(0)[:2]:
        store.submit("P01", trial.trial_id, [1, 2, 3, 4])
    for trial in pkg.plan(1):
        store.submit("P02", trial.trial_id, [1, 1, 1, 1])
    s = store.admin_summary()
    by_id = s.participants.set_index("participant")
    assert by_id.loc["P01", "done"] == 2 and by_id.loc["P02", "done"] == 5 and by_id.loc["P03", "done"] == 0
    assert bool(by_id.loc["P02", "finished"]) and not bool(by_id.loc["P01", "finished"])
    assert pd.notna(by_id.loc["P01", "joined_at"]) and pd.isna(by_id.loc["P03", "joined_at"])
    assert s.counts["responses"] == 7 and s.counts["finished"] == 1 and s.counts["by_kind"] == {"main": 6, "attention": 1}
    main_done = [t.video for t in pkg.plan(0)[:2] + pkg.plan(1) if t.kind == "main"]
    videos = s.videos.set_index("video")
    for video in videos.index:
        assert videos.loc[video, "responses"] == main_done.count(video)
    assert videos["planned"].sum() == 3 * 4
    store.dispose()


def test_slot_mapping_and_record_fields_are_stored(tmp_path):
    store = _open(str(tmp_path / "s.sqlite"), synthetic_package(tmp_path / "pkg"))
    view = store.next_trial("P03")
    trial = store.package.trial(view.trial_id)
    store.submit("P03", view.trial_id, {0: 2, 1: 1, 2: 4, 3: 3}, shown_at=1_767_000_000.0,
                 submitted_at="2026-01-01T12:00:00+01:00", plays=3, replays=2, viewport="800x600", user_agent="UA/1")
    with store.engine.connect() as conn:
        row = conn.exec_driver_sql("SELECT * FROM responses").mappings().one()
    assert json.loads(row["slot_mapping"]) == list(trial.methods)
    assert json.loads(row["answer"]) == {"ranks": [2, 1, 4, 3]}
    assert str(row["submitted_at"]).startswith("2026-01-01 11:00:00")  # stored as UTC
    assert (row["plays"], row["replays"], row["viewport"], row["user_agent"], row["app_commit"], row["trial_kind"]) == \
        (3, 2, "800x600", "UA/1", "abc123", trial.kind)
    assert row["video"] == trial.video and row["trial_number"] == trial.number
    store.dispose()
