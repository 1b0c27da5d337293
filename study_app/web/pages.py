"""The study's Streamlit pages: participant flow (desktop ranking, VR pairwise companion) and admin.

Which page: ``/?pid=ID`` is a participant's own page, ``/?page=admin`` the admin page; anything
else explains how to join. Every decision comes from the store, never from the browser session:
the next trial, the progress and whether the study is closed are read from the database on every
run, so a refresh, a new tab or a crash resumes exactly where the participant was, and a double
click or a rerun cannot store a trial twice (the store's unique constraint).

Participant page, ranking study: instructions (until the first answer), then per trial the
synchronised player (left view and hole mask as references, the anonymised right views as
videos A-D on one master clock) and one rank (1 best .. N worst, ties allowed) per video; the
submit button stays disabled until :func:`ranking_problem` accepts the ranking. The store
validates again server-side (tampered values raise ``InvalidResponse``). Training trials are
marked as such; attention and repeat trials look like any other trial.

Participant page, pairwise (VR) study: the companion desktop page. It links the headset page
(``/xr?pid=ID``), offers the two side-by-side videos as downloads with VR-player names, and takes
the answer (A / equal / B); the headset page can answer the same trial, and whichever arrives
first is stored.

Admin page: password (argon2 hash from the environment, rate-limited by ``study_app.auth``),
then progress per participant and per video, live counts, exports and closing the study. The
admin state lives in the Streamlit session only after a correct password; participants' pages
never show another participant's data.
"""

from __future__ import annotations

import itertools
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import streamlit as st

from benchmark.errors import StereobenchError
from study_app.web.context import config_from_env, open_study
from study_app.web.player import player_data, synced_player
from study_app.web.routes import video_url, vr_file_name

SLOT_LETTERS = "ABCDEFGH"
RANK_HELP = "1 = best. Videos that look equally good may share a rank."


# ----------------------------------------------------------------------------- pure helpers

def ranking_problem(ranks: list[int | None], n: int | None = None) -> str | None:
    """Why ``ranks`` (one per video, None = not ranked yet) is not a complete, valid ranking;
    None when it is. Valid: every video has a rank in 1..n, the best has rank 1, and ties are
    written as competition ranks (1, 1, 3, 4) or dense ranks (1, 1, 2, 3), the two forms the
    response schema accepts."""
    n = len(ranks) if n is None else n
    missing = sum(r is None for r in ranks)
    if missing:
        return f"Give every video a rank ({missing} of {len(ranks)} still missing)."
    values = [int(r) for r in ranks]  # type: ignore[arg-type]
    if any(not 1 <= r <= n for r in values):
        return f"Ranks go from 1 (best) to {n} (worst)."
    ordered = sorted(values)
    if ordered[0] != 1:
        return "The best video gets rank 1 (several videos may share it)."
    dense = all(b - a <= 1 for a, b in itertools.pairwise(ordered))
    competition = all(r == 1 + sum(x < r for x in values) for r in values)
    if not (dense or competition):
        return "Ranks skip a value: with ties, write them like 1, 1, 3, 4 or 1, 1, 2, 3."
    return None


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _media_meta(package, token: str) -> dict:
    return package.manifest.get("media", {}).get(token, {})


def _trial_player_data(package, view) -> dict:
    refs = [("left", "Left view (reference)"), ("mask", "Hole mask (reference)")]
    videos = [{"id": name, "label": label, "src": video_url(view.references[name]), "role": "reference"}
              for name, label in refs if name in view.references]
    videos += [{"id": f"slot{i}", "label": f"Video {SLOT_LETTERS[i]}", "src": video_url(tok), "role": "slot"}
               for i, tok in enumerate(view.media)]
    meta = _media_meta(package, view.media[0])
    fps = meta.get("fps") or package.manifest.get("fps") or 25
    frames = min((_media_meta(package, t).get("frames") or 1) for t in view.media) if view.media else 1
    return player_data(view.trial_id, fps, frames, videos)


# ----------------------------------------------------------------------------- participant pages

INSTRUCTIONS_RANKING = """
**What to do.** Each trial shows one scene. At the top: the **left view** (what the left eye
sees) and the **hole mask** (white where the right eye sees something the left eye could not:
these areas had to be invented). Below: {n_word} versions of the **right view**, videos **A-{last}**, all
playing in sync. Use *Play*, *Pause*, *Replay* and the frame buttons as often as you like.

Rank the {n_word} versions from **1 (best)** to **{n} (worst)**: look for smearing, flicker, wrong
structures and distortions, especially where the mask is white. Versions that look equally good
may share a rank. *Submit* becomes active when every version has a rank.

{training}You can stop at any time: open your link again and you continue where you stopped.
"""

INSTRUCTIONS_PAIRWISE = """
**What to do.** Each trial has two versions, **A** and **B**, of the same stereo (3-D) video.
Open the **headset page** in your VR headset's browser, press *Enter VR* and watch both versions
(or download the two files and play them in a VR video player). Then say which one looks better
in 3-D: more comfortable, fewer artefacts. If you cannot tell, choose *Equal*.

{training}You can stop at any time: open your link again and you continue where you stopped.
"""

TRAINING_NOTE = "The first trial is a **training trial** (not counted). "
NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}


def instructions(kind: str, n_slots: int, training_first: bool) -> str:
    """The instructions for this study: the number of versions (the study's methods, not always
    four) and the training note only when the participant's plan starts with a training trial."""
    training = TRAINING_NOTE if training_first else ""
    if kind == "pairwise":
        return INSTRUCTIONS_PAIRWISE.format(training=training)
    return INSTRUCTIONS_RANKING.format(n_word=NUMBER_WORDS.get(n_slots, str(n_slots)), n=n_slots,
                                       last=SLOT_LETTERS[n_slots - 1], training=training)


def page_no_participant() -> None:
    st.title("Stereo video study")
    st.info("Please open the personal link you were given (it ends in `?pid=` and your participant id).")


def page_unknown_participant(pid: str) -> None:
    st.title("Stereo video study")
    st.error("This participant link is not part of the study. Please check the link you were given, or ask "
             "the person running the study for a new one.")


def page_done() -> None:
    st.success("All trials are done. Thank you for taking part!")
    st.balloons()


def _shown_at(trial_id: str) -> datetime:
    key = f"shown-{trial_id}"
    if key not in st.session_state:
        st.session_state[key] = _now()
    return st.session_state[key]


def _submit(store, pid: str, view, answer, stats: dict) -> None:
    from study_app.store import InvalidResponse, StudyClosed

    try:
        result = store.submit(
            pid, view.trial_id, answer, shown_at=_shown_at(view.trial_id), submitted_at=_now(),
            plays=int(stats.get("plays") or 0), replays=int(stats.get("replays") or 0),
            viewport=str(stats.get("viewport") or "")[:40], user_agent=str(stats.get("user_agent") or "")[:400])
    except StudyClosed:
        st.session_state["flash"] = ("warning", "The study was closed before this answer arrived.")
        return
    except InvalidResponse as exc:
        st.session_state["flash"] = ("error", f"Your answer was not accepted: {exc}")
        return
    st.session_state["flash"] = ("info", "This trial was already answered; here is the next one.") \
        if getattr(result, "duplicate", False) else ("success", "Answer saved.")


def _flash() -> None:
    flash = st.session_state.pop("flash", None)
    if flash:
        getattr(st, flash[0])(flash[1])


def _trial_header(view, done: int, total: int) -> None:
    st.progress(min(1.0, done / max(total, 1)), text=f"Trial {view.number} of {view.total} · {done} done")
    if view.kind == "training":
        st.info("**Training trial**: get used to the controls; this answer is not counted.")


def ranking_trial(package, store, pid: str, view, done: int, total: int) -> None:
    _trial_header(view, done, total)
    _shown_at(view.trial_id)  # when the trial is first drawn, not when it is submitted
    stats = synced_player(_trial_player_data(package, view), key=f"player-{view.trial_id}")
    n = view.n_slots
    st.markdown(f"**Your ranking** ({RANK_HELP})")
    # A container keyed by the trial: the browser builds fresh widgets for every trial instead of
    # reusing the previous trial's (which could show its ranks for a moment).
    with st.container(key=f"ranking-{view.trial_id}"):
        cols = st.columns(n)
        ranks: list[int | None] = []
        for i, col in enumerate(cols):
            with col:
                ranks.append(st.radio(f"Video {SLOT_LETTERS[i]}", list(range(1, n + 1)), index=None,
                                      horizontal=True, key=f"rank-{view.trial_id}-{i}"))
        problem = ranking_problem(ranks, n)
        if problem and any(r is not None for r in ranks):
            st.caption(problem)
        if st.button("Submit ranking", type="primary", disabled=problem is not None, key=f"submit-{view.trial_id}"):
            _submit(store, pid, view, [int(r) for r in ranks], stats)
            st.rerun()


PAIRWISE_CHOICES = {"A is better": "a", "Equal": "equal", "B is better": "b"}


def pairwise_trial(package, store, pid: str, view, done: int, total: int) -> None:
    _trial_header(view, done, total)
    st.markdown(f"**Headset page:** open [`/xr?pid={pid}`](/xr?pid={pid}) in the headset's browser "
                "(same address as this page, with `/xr?pid=...` at the end).")
    lines = []
    for label, tok in zip(view.labels, view.media):
        name = vr_file_name(package.study_id, view.number, label)
        lines.append(f"- Version {label}: [{name}](/dl/{tok}/{name})")
    st.markdown("**Offline VR player** (side-by-side files):\n" + "\n".join(lines))
    choice = st.radio("Which version looks better in 3-D?", list(PAIRWISE_CHOICES), index=None, horizontal=True,
                      key=f"answer-{view.trial_id}")
    _shown_at(view.trial_id)
    c1, c2 = st.columns([1, 4])
    with c1:
        if st.button("Submit answer", type="primary", disabled=choice is None, key=f"submit-{view.trial_id}"):
            _submit(store, pid, view, PAIRWISE_CHOICES[choice], {})
            st.rerun()
    with c2:
        if st.button("I answered in the headset: next trial", key=f"refresh-{view.trial_id}"):
            st.rerun()


def participant_page(package, store, pid: str) -> None:
    participant = store.join(pid)
    if participant is None:
        page_unknown_participant(pid)
        return
    st.title("Stereo video study")
    if store.is_closed:
        st.warning("This study is closed. Thank you!")
        return
    _flash()
    done, total = store.progress(pid)
    view = store.next_trial(pid)
    if view is None:
        st.progress(1.0, text=f"{done} of {total} done")
        page_done()
        return
    plan = package.plan(participant.slot)
    text = instructions(package.kind, view.n_slots, bool(plan) and plan[0].kind == "training")
    if done == 0 and not st.session_state.get("started"):
        st.markdown(text)
        if st.button("Start", type="primary", key="start"):
            st.session_state["started"] = True
            st.rerun()
        return
    with st.expander("Instructions"):
        st.markdown(text)
    if package.kind == "pairwise":
        pairwise_trial(package, store, pid, view, done, total)
    else:
        ranking_trial(package, store, pid, view, done, total)


# ----------------------------------------------------------------------------- admin page

def _client_key() -> str:
    """The rate limit's client: the browser's address (None on localhost: "local")."""
    try:
        ip = st.context.ip_address
    except Exception:  # noqa: BLE001 - no request context
        ip = None
    return ip if isinstance(ip, str) and ip else "local"


def admin_page(package, store) -> None:
    from study_app.auth import AdminAuth

    st.title(f"Study admin: {package.study_id}")
    if not st.session_state.get("admin"):
        with st.form("admin-login"):
            password = st.text_input("Admin password", type="password")
            ok = st.form_submit_button("Sign in")
        if ok:
            try:
                # Attempts are kept in the study database, so a restart does not reset the limit.
                result = AdminAuth(attempts=store).check(password, _client_key())
            except StereobenchError as exc:
                st.error(str(exc))
                return
            if result.ok:
                st.session_state["admin"] = True
                st.rerun()
            if result.locked:
                st.error(f"Too many failed attempts: try again in {int(result.retry_after_s) + 1} s.")
            else:
                st.error("Wrong password.")
        return
    summary = store.admin_summary()
    st.subheader("Study")
    st.write(f"Kind: **{package.kind}** · participants: **{len(package.participant_ids)}** · "
             f"{'**closed**' if store.is_closed else 'open'}")
    _show_summary(summary)
    st.subheader("Export")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "responses.csv"
        store.export_responses(path)
        st.download_button("Download responses (analysis schema, CSV)", path.read_bytes(),
                           file_name=f"{package.study_id}-responses.csv", mime="text/csv")
        if package.kind == "pairwise":
            pw = Path(tmp) / "pwcmp.csv"
            store.export_pwcmp(pw)
            st.download_button("Download pwcmp CSV", pw.read_bytes(), file_name=f"{package.study_id}-pwcmp.csv",
                               mime="text/csv")
    st.subheader("Close the study")
    if store.is_closed:
        st.info("The study is closed: participants see a closing page.")
    else:
        sure = st.checkbox("Yes, close the study for every participant")
        if st.button("Close study", disabled=not sure):
            store.close_study()
            st.rerun()
    if st.button("Sign out"):
        st.session_state.pop("admin", None)
        st.rerun()


def _show_summary(summary) -> None:
    """Live counts as metrics, then progress per participant and per video as tables."""
    counts = summary.counts
    shown = [("responses", "Responses"), ("participants", "Participants"), ("joined", "Joined"),
             ("finished", "Finished")]
    for col, (key, label) in zip(st.columns(len(shown)), shown):
        col.metric(label, counts.get(key, 0))
    if counts.get("by_kind"):
        st.caption("Responses by trial kind: " + ", ".join(f"{k} {v}" for k, v in sorted(counts["by_kind"].items())))
    st.markdown("**Progress per participant**")
    st.dataframe(summary.participants, hide_index=True)
    st.markdown("**Responses per video** (main trials)")
    st.dataframe(summary.videos, hide_index=True)


# ----------------------------------------------------------------------------- entry

def main() -> None:
    st.set_page_config(page_title="Stereo video study", layout="wide", initial_sidebar_state="collapsed")
    try:
        package, store = open_study(config_from_env())
    except StereobenchError as exc:
        st.error(str(exc))
        return
    if st.query_params.get("page") == "admin":
        admin_page(package, store)
        return
    pid = st.query_params.get("pid", "").strip()
    if not pid:
        page_no_participant()
        return
    participant_page(package, store, pid)
