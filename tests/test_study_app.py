"""The study app's Streamlit pages, driven by streamlit.testing.v1.AppTest against a real store.

Every test builds (once per module) a tiny study package from a folder of 32x32 videos and opens
a fresh SQLite database under tmp_path; the app script reads both from the environment, as
``serve()`` sets it. The synchronised player is a custom component (an UnknownElement to
AppTest); its behaviour is tested in a real browser in tests/test_study_browser.py.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from study_app.web import context
from study_app.web.context import ENV_DB, ENV_DIR, WebConfig
from study_app.web.pages import ranking_problem
from tests.study_web_helpers import METHODS, build

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "study_app" / "web" / "app.py")


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study-web")
    return {"ranking": build(tmp, "ranking"), "pairwise": build(tmp, "pairwise")}


@pytest.fixture
def study(packages, tmp_path, monkeypatch):
    """A function kind -> (package, store, WebConfig) on a fresh database; env set for the app."""
    opened = []

    def make(kind: str = "ranking"):
        package = packages[kind]
        cfg = WebConfig(package.dir, str(tmp_path / f"{kind}.sqlite"))
        monkeypatch.setenv(ENV_DIR, str(cfg.package_dir))
        monkeypatch.setenv(ENV_DB, cfg.db_url)
        context.forget(cfg)
        _, store = context.open_study(cfg)
        opened.append(cfg)
        return package, store, cfg

    yield make
    for cfg in opened:
        _, store = context.open_study(cfg)
        store.dispose()
        context.forget(cfg)


def app_for(query: dict) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for k, v in query.items():
        at.query_params[k] = v
    return at.run()


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [e.value for e in at.error] + [e.value for e in at.info] + \
            [e.value for e in at.success] + [e.value for e in at.warning] + [t.value for t in at.title]
    return "\n".join(map(str, parts))


def start(at: AppTest) -> AppTest:
    at.button(key="start").click()
    return at.run()


def rank_all(at: AppTest, trial_id: str, ranks) -> AppTest:
    for i, r in enumerate(ranks):
        at.radio(key=f"rank-{trial_id}-{i}").set_value(r)
    return at.run()


# ----------------------------------------------------------------------------- ranking validation

def test_ranking_problem_examples():
    assert ranking_problem([1, 2, 3, 4]) is None
    assert ranking_problem([1, 1, 3, 4]) is None  # competition ranks with a tie
    assert ranking_problem([1, 1, 2, 3]) is None  # dense ranks with a tie
    assert ranking_problem([1, 1, 1, 1]) is None  # all equal
    assert "missing" in ranking_problem([1, None, 2, 3])
    assert "rank 1" in ranking_problem([2, 2, 3, 4])
    assert "skip" in ranking_problem([1, 3, 3, 4])  # neither form: 2 is skipped without a tie before it
    assert "from 1" in ranking_problem([1, 2, 3, 5])


def test_ranking_problem_agrees_with_the_store_on_every_ranking():
    """The page's check (which enables Submit) and the store's server-side check are two
    implementations of one rule: they must agree on all 4^4 assignments."""
    from study_app.store import is_complete_ranking

    for ranks in itertools.product(range(1, 5), repeat=4):
        assert (ranking_problem(list(ranks)) is None) == is_complete_ranking(list(ranks)), ranks


# ----------------------------------------------------------------------------- participant flow

def test_join_training_ranking_validation_submit_and_resume(study):
    package, store, _ = study("ranking")
    pid = package.participant_ids[0]
    at = app_for({"pid": pid})
    assert not at.exception
    assert "Rank the four versions" in texts(at)  # instructions first
    at = start(at)
    view = store.next_trial(pid)
    assert view.kind == "training" and view.number == 1
    assert "Training trial" in texts(at)
    submit = at.button(key=f"submit-{view.trial_id}")
    assert submit.disabled  # nothing ranked yet
    at = rank_all(at, view.trial_id, [1, 1, None, None][:2])
    assert at.button(key=f"submit-{view.trial_id}").disabled  # incomplete
    at = rank_all(at, view.trial_id, [1, 3, 3, 4])
    assert at.button(key=f"submit-{view.trial_id}").disabled  # 2 skipped without a tie
    assert any("skip" in c.value for c in at.caption)
    at = rank_all(at, view.trial_id, [1, 1, 3, 4])  # a tie, competition ranks
    assert not at.button(key=f"submit-{view.trial_id}").disabled
    at.button(key=f"submit-{view.trial_id}").click()
    at = at.run()
    assert store.progress(pid) == (1, view.total)
    stored = store.responses_frame()
    assert len(stored) == view.n_slots and set(stored["trial_id"]) == {view.trial_id}  # one row per method
    trial = package.trial(view.trial_id)
    assert dict(zip(stored["method"], stored["rank"])) == dict(zip(trial.methods, [1, 1, 3, 4]))
    assert stored["trial_kind"].iloc[0] == "training"
    nxt = store.next_trial(pid)
    assert nxt.number == 2 and f"Trial 2 of {view.total}" in at.get("progress")[0].proto.text

    # A fresh session (a refresh, another browser): no instructions, straight to trial 2.
    at2 = app_for({"pid": pid})
    assert not [b for b in at2.button if b.key == "start"]
    assert at2.button(key=f"submit-{nxt.trial_id}").disabled
    assert store.progress(pid) == (1, view.total)


def test_ranking_trial_shown_time_is_when_the_trial_was_drawn_not_submitted(study):
    """The stored shown time (the export's started_at) is taken when the trial first renders;
    before the fix it was taken at submit, so every response had ~0 s answer time."""
    import time

    import pandas as pd

    package, store, _ = study("ranking")
    pid = package.participant_ids[0]
    at = start(app_for({"pid": pid}))
    view = store.next_trial(pid)
    time.sleep(1.5)  # the participant watches the videos
    at = rank_all(at, view.trial_id, [1, 2, 3, 4])
    at.button(key=f"submit-{view.trial_id}").click()
    at.run()
    frame = store.responses_frame()
    row = frame.loc[frame["trial_id"] == view.trial_id].iloc[0]
    took = (pd.Timestamp(row["answered_at"]) - pd.Timestamp(row["started_at"])).total_seconds()
    assert took >= 1.4, (row["started_at"], row["answered_at"])


def test_instructions_follow_the_study_design(tmp_path, monkeypatch):
    """A study of three methods without a training trial: the instructions said "four versions",
    "A-D", "4 (worst)" and "The first trial is a training trial" whatever the design."""
    package = build(tmp_path, "ranking", methods=list(METHODS[:3]), training=0)
    db = str(tmp_path / "three.sqlite")
    monkeypatch.setenv(ENV_DIR, str(package.dir))
    monkeypatch.setenv(ENV_DB, db)
    at = app_for({"pid": package.participant_ids[0]})
    assert not at.exception
    text = texts(at)
    assert "Rank the three versions" in text and "**3 (worst)**" in text and "**A-C**" in text
    assert "four" not in text and "training trial" not in text
    cfg = WebConfig(package.dir, db)
    _, store = context.open_study(cfg)
    store.dispose()
    context.forget(cfg)


def test_double_submit_and_rerun_store_one_row(study):
    package, store, _ = study("ranking")
    pid = package.participant_ids[1]
    at = start(app_for({"pid": pid}))
    view = store.next_trial(pid)
    at = rank_all(at, view.trial_id, [4, 3, 2, 1])
    # Two sessions submit the same trial (double click across a rerun): one row.
    other = rank_all(start(app_for({"pid": pid})), view.trial_id, [1, 2, 3, 4])
    at.button(key=f"submit-{view.trial_id}").click()
    at = at.run()
    other.button(key=f"submit-{view.trial_id}").click()
    other = other.run()
    assert store.progress(pid)[0] == 1
    frame = store.responses_frame()
    assert set(frame.loc[frame["participant"] == pid, "trial_id"]) == {view.trial_id}
    assert list(frame["rank"]) == [4, 3, 2, 1]  # the first submit is kept
    # The stale session's click is dropped: its rerun renders the next trial, whose Submit is off.
    nxt = store.next_trial(pid)
    assert nxt.number == 2 and other.button(key=f"submit-{nxt.trial_id}").disabled
    assert store.submit(pid, view.trial_id, [1, 2, 3, 4]).duplicate  # and a direct resubmit is a no-op
    assert store.progress(pid)[0] == 1


def test_attention_trials_look_like_any_other_and_the_whole_plan_can_be_finished(study):
    package, store, _ = study("ranking")
    pid = package.participant_ids[0]
    kinds = []
    at = start(app_for({"pid": pid}))
    while (view := store.next_trial(pid)) is not None:
        kinds.append(view.kind)
        page = texts(at)
        assert "attention" not in page.lower() and "repeat" not in page.lower()
        assert all(m not in page for m in METHODS)
        at = rank_all(at, view.trial_id, [1, 2, 3, 4])
        at.button(key=f"submit-{view.trial_id}").click()
        at = at.run()
    assert "attention" in kinds and "training" in kinds and "repeat" in kinds
    assert "All trials are done" in texts(at)
    assert store.progress(pid) == (len(kinds), len(kinds))


def test_unknown_and_missing_participant_pages(study):
    study("ranking")
    at = app_for({"pid": "not-in-this-study"})
    assert not at.exception
    assert "not part of the study" in texts(at)
    at = app_for({})
    assert "personal link" in texts(at)


def test_tampered_values_rejected_server_side(study):
    """Ranks outside 1-4, an incomplete ranking and another participant's trial never reach the
    database, whether they come through the store or the headset page's HTTP handler."""
    from study_app.store import InvalidResponse
    from study_app.web.routes import headset_answer

    package, store, cfg = study("ranking")
    a, b = package.participant_ids[:2]
    store.join(a)
    store.join(b)
    mine = store.next_trial(a)
    theirs = store.next_trial(b)
    for bad in ([0, 1, 2, 3], [1, 2, 3, 5], [1, 2, 2]):
        with pytest.raises(InvalidResponse):
            store.submit(a, mine.trial_id, bad)
    with pytest.raises(InvalidResponse):
        store.submit(a, theirs.trial_id, [1, 2, 3, 4])
    status, payload = headset_answer(cfg, a, {"trial_id": theirs.trial_id, "answer": [1, 2, 3, 4]})
    assert status == 400 and "not one of" in payload["error"]
    status, _ = headset_answer(cfg, "nobody", {"trial_id": mine.trial_id, "answer": [1, 2, 3, 4]})
    assert status == 404
    assert store.response_count() == 0


# ----------------------------------------------------------------------------- VR pairwise flow

def test_vr_companion_page_flow_and_headset_api(study):
    from study_app.web.routes import headset_answer, headset_state

    package, store, cfg = study("pairwise")
    pid = package.participant_ids[0]
    at = start(app_for({"pid": pid}))
    view = store.next_trial(pid)
    page = texts(at)
    assert f"/xr?pid={pid}" in page
    assert "_LRF_Full_SBS.mp4" in page and all(m not in page for m in METHODS)
    assert at.button(key=f"submit-{view.trial_id}").disabled
    at.radio(key=f"answer-{view.trial_id}").set_value("B is better")
    at = at.run()
    at.button(key=f"submit-{view.trial_id}").click()
    at = at.run()
    frame = store.responses_frame()
    row = frame.iloc[0]
    trial = package.trial(view.trial_id)
    # "B" is display slot 1; the stored answer names the pair label of the method shown there.
    expected = "a" if trial.methods[1] == trial.method_a else "b"
    assert row["answer"] == expected

    # The headset page's API serves the next trial by token only and stores its answer.
    state = headset_state(cfg, pid)
    assert state["status"] == "trial" and state["progress"][0] == 1
    assert not any(m in json.dumps(state) for m in METHODS)
    assert all(v["filename"].endswith("_LRF_Full_SBS.mp4") for v in state["trial"]["videos"])
    status, payload = headset_answer(cfg, pid, {"trial_id": state["trial"]["trial_id"], "answer": "equal",
                                                "plays": 2, "viewport": "1832x1920"})
    assert status == 200 and payload["stored"]
    status, payload = headset_answer(cfg, pid, {"trial_id": state["trial"]["trial_id"], "answer": "a"})
    assert status == 200 and payload["duplicate"] and not payload["stored"]
    assert store.progress(pid)[0] == 2
    at = at.run()  # the companion page follows the headset's answer on its next run
    assert at.button(key=f"submit-{store.next_trial(pid).trial_id}").disabled
    assert headset_state(cfg, "nobody")["status"] == "unknown"


# ----------------------------------------------------------------------------- admin

def test_admin_password_rate_limit_summary_export_and_close(study, monkeypatch, tmp_path):
    from study_app.auth import hash_password

    package, store, _ = study("ranking")
    monkeypatch.setenv("STEREOBENCH_STUDY_ADMIN_HASH", hash_password("right-password"))
    pid = package.participant_ids[0]
    store.join(pid)
    store.submit(pid, store.next_trial(pid).trial_id, [1, 2, 3, 4])

    # A participant's page never offers the admin page or others' data.
    page = texts(app_for({"pid": pid}))
    assert "admin" not in page.lower() and package.participant_ids[1] not in page

    at = app_for({"page": "admin"})
    for _ in range(5):
        at.text_input[0].set_value("wrong")
        at.button[0].click()
        at = at.run()
        assert "Wrong password" in texts(at)
    assert not at.dataframe  # nothing shown
    at.text_input[0].set_value("right-password")  # refused now without checking it
    at.button[0].click()
    at = at.run()
    assert "Too many failed attempts" in texts(at)
    assert not at.dataframe

    monkeypatch.setattr("study_app.web.pages._client_key", lambda: "another-client")
    at = app_for({"page": "admin"})
    at.text_input[0].set_value("right-password")
    at.button[0].click()
    at = at.run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Responses"] == "1"
    assert len(at.dataframe) == 2  # per participant, per video
    at.checkbox[0].check()
    at = at.run()
    close = next(b for b in at.button if b.label == "Close study")
    close.click()
    at = at.run()
    assert store.is_closed
    assert "closed" in texts(app_for({"pid": pid})).lower()


# ----------------------------------------------------------------------------- make study

def test_make_study_picks_the_newest_run_with_saved_videos(tmp_path, monkeypatch):
    from study_app.web import demo

    monkeypatch.chdir(tmp_path)
    assert demo.main(["--check-run"]) == 1  # no run yet: make study runs make benchmark first
    runs = tmp_path / "results" / "runs"
    with_videos = runs / "20260101-000000-aaaaaa"
    clip = with_videos / "videos" / "synthetic" / "scene-000"
    clip.mkdir(parents=True)
    (with_videos / "manifest.json").write_text("{}")
    for name in ("left", "mask", "warped", "gt", "left-copy", "warp-only", "opencv-inpaint", "background-fill",
                 "temporal-fill"):
        (clip / f"{name}.mp4").write_bytes(b"")
    newer_without = runs / "20260102-000000-bbbbbb"
    newer_without.mkdir()
    (newer_without / "manifest.json").write_text("{}")
    run = demo.newest_run_with_videos(runs)
    assert run is not None and run.run_id == with_videos.name
    # Five methods: the demo ranks four (the paper's Table 2), never the left copy.
    assert demo.demo_methods(run) == ["background-fill", "opencv-inpaint", "temporal-fill", "warp-only"]
    assert demo.main(["--check-run"]) == 0


def test_serve_says_when_the_admin_page_is_disabled(monkeypatch):
    """Without an admin hash, serve printed the admin link as if it worked; the page then showed a
    password form that only says "disabled" after a password is typed."""
    from study_app.auth import ENV_HASH
    from study_app.web.serve import admin_link_line

    monkeypatch.delenv(ENV_HASH, raising=False)
    line = admin_link_line("http://localhost:8501")
    assert "disabled" in line and ENV_HASH in line and "hash-password" in line
    monkeypatch.setenv(ENV_HASH, "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g")
    assert admin_link_line("http://localhost:8501") == "admin page: http://localhost:8501/?page=admin"


def test_serve_on_a_busy_port_is_a_clean_error_before_the_links(study, capsys):
    """A second `stereobench study serve` (or `make study`) on a busy port printed every link,
    then Streamlit's "Port N is not available" and exit 1."""
    import socket

    from benchmark.cli import main

    package, _, cfg = study("ranking")
    with socket.create_server(("localhost", 0)) as busy:
        port = busy.getsockname()[1]
        assert main(["study", "serve", str(package.dir), "--db", cfg.db_url, "--port", str(port)]) == 2
    captured = capsys.readouterr()
    assert f"cannot serve on localhost:{port}" in captured.err and "--port" in captured.err
    assert "participant:" not in captured.out
