"""Study packages: trials and their kinds, one frame grid per video, anonymity, balanced assignment,
side-by-side pairs, skipped videos, the run store as a source.

Two tiny packages are built once per module (3 clips of 8 frames at 24x32, about 5 s each on
the 2-core box); the other cases build smaller ones.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from benchmark.errors import StereobenchError
from study_app.assign import assignment_counts, balanced_assignment
from study_app.media import probe, vr_download_name
from study_app.package import (
    CONTROL,
    HIDDEN_REFERENCE,
    MANIFEST,
    StudyPackage,
    build_study,
)
from tests.study_helpers import METHODS, make_run, make_video_folder

TOKEN = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def ranking(tmp_path_factory):
    root = tmp_path_factory.mktemp("ranking")
    src = make_video_folder(root / "my-private-source-folder", n_videos=3, longer=METHODS[1])
    pkg = build_study(src, root / "pkg", participants=4, seed=1, progress=False)
    return src, pkg


@pytest.fixture(scope="module")
def pairwise(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairwise")
    src = make_video_folder(root / "src", n_videos=2, methods=METHODS[:3], gt=False)
    pkg = build_study(src, root / "pkg", kind="pairwise", participants=3, seed=2, attention=1, progress=False)
    return src, pkg


# ------------------------------------------------------------------------------------------ trials
def test_ranking_trials_per_participant(ranking):
    _, pkg = ranking
    assert pkg.kind == "ranking" and len(pkg.participant_ids) == 4 and len(set(pkg.participant_ids)) == 4
    videos = set(pkg.manifest["videos"])
    for slot in range(4):
        plan = pkg.plan(slot)
        assert [t.number for t in plan] == list(range(1, len(plan) + 1))
        kinds = Counter(t.kind for t in plan)
        assert kinds == {"training": 1, "main": 3, "attention": 2, "repeat": 1}
        assert plan[0].kind == "training" and plan[-1].kind == "repeat"
        main = [t for t in plan if t.kind == "main"]
        assert sorted(t.video for t in main) == sorted(videos)  # each video once
        for t in main:
            assert sorted(t.methods) == sorted(METHODS) and len(t.media) == 4
            assert set(t.references) == {"left", "mask"}
        # attention: one low anchor (expected worst), one hidden reference (expected best)
        att = [t for t in plan if t.kind == "attention"]
        expects = sorted(e for t in att for e in t.expect if e)
        assert expects == ["best", "worst"]
        for t in att:
            slot_of = {m: i for i, m in enumerate(t.methods)}
            for name, want in ((CONTROL, "worst"), (HIDDEN_REFERENCE, "best")):
                if name in slot_of:
                    assert t.expect[slot_of[name]] == want
        rep = plan[-1]
        orig = plan[rep.repeat_of - 1]
        assert orig.kind == "main" and orig.video == rep.video and rep.repeat_of < len(plan) - 1
        assert sorted(rep.methods) == sorted(orig.methods)


def test_slot_mappings_and_orders_are_randomised(ranking):
    _, pkg = ranking
    mappings = {t.methods for t in pkg.trials if t.kind == "main"}
    assert len(mappings) >= 6  # 12 main trials, 24 possible mappings: random, not one fixed order
    positions = Counter(t.methods.index(METHODS[0]) for t in pkg.trials if t.kind == "main")
    assert len(positions) >= 3
    orders = {tuple(t.video for t in pkg.plan(s) if t.kind == "main") for s in range(4)}
    assert len(orders) >= 2


def test_every_media_file_of_a_video_shares_one_frame_grid(ranking):
    _, pkg = ranking
    for video in pkg.manifest["videos"]:
        tokens = {tok for t in pkg.trials if t.video == video for tok in (*t.media, *t.references.values())}
        probes = [probe(pkg.media_path(tok)) for tok in tokens]
        assert len(probes) >= 6  # 4 methods, left, mask (+ warped, gt where an attention trial uses the clip)
        for p in probes:
            assert p["codec"] == "h264" and p["pix_fmt"] == "yuv420p"
            assert p["fps"] == 8.0 and p["frames"] == 8  # METHODS[1] had 11 frames: cut to 8
            assert p["keyframes"] == [0]  # GOP = fps = 8 frames: one key frame per second
        assert len({tuple(p["pts"]) for p in probes}) == 1
        assert len({(p["height"], p["width"]) for p in probes}) == 1
        for tok in tokens:
            data = pkg.media_path(tok).read_bytes()
            assert data.index(b"moov") < data.index(b"mdat")  # +faststart


def test_every_stimulus_is_encoded_even_if_unused(ranking):
    _, pkg = ranking
    # 8 stimuli per clip (4 methods, left, mask, warped, gt) -> 24 media files, all hashed.
    assert len(pkg.manifest["media"]) == 24
    assert pkg.verify() == []
    files = sorted(p.name for p in (pkg.dir / "media").iterdir())
    assert files == sorted(f"{tok}.mp4" for tok in pkg.manifest["media"])


def test_manifest_hashes_detect_a_changed_media_file(tmp_path, ranking):
    import shutil

    _, pkg = ranking
    copy = tmp_path / "copy"
    shutil.copytree(pkg.dir, copy)
    moved = StudyPackage.load(copy)
    token = next(iter(moved.manifest["media"]))
    with moved.media_path(token).open("ab") as f:
        f.write(b"\0")
    assert moved.verify() == [token]


# ---------------------------------------------------------------------------------------- anonymity
def test_anonymity_of_names_served_fields_and_media(ranking):
    src, pkg = ranking
    secrets_ = [*METHODS, CONTROL, HIDDEN_REFERENCE, "warped", "clip0", "clip1", "clip2", str(src), src.name]
    for path in (pkg.dir / "media").iterdir():
        assert TOKEN.match(path.stem) and path.suffix == ".mp4"
        data = path.read_bytes()
        for s in secrets_:
            assert s.encode() not in data, f"{s!r} found inside media file {path.name}"
        meta = probe(path)
        assert set(meta["container_metadata"]) <= {"major_brand", "minor_version", "compatible_brands"}
        assert set(meta["stream_metadata"]) <= {"language", "handler_name", "vendor_id"}
    served = json.dumps(pkg.public_manifest()) + "".join(json.dumps(pkg.view(t).to_json()) for t in pkg.trials)
    for s in secrets_:
        assert s not in served, f"{s!r} in a served field"
    name = vr_download_name(pkg.study_id, 3, "A")
    assert name == f"{pkg.study_id}-trial03-A_LRF_Full_SBS.mp4" and not any(s in name for s in METHODS)
    with pytest.raises(StereobenchError, match="unknown media token"):
        pkg.media_path("../study")


# --------------------------------------------------------------------------------------- assignment
@pytest.mark.parametrize("n_units, n_slots, per_slot", [(21, 13, None), (21, 13, 8), (5, 7, 3), (10, 3, 10),
                                                        (7, 20, 2), (1, 4, 1)])
def test_balanced_assignment_properties(n_units, n_slots, per_slot):
    rng = np.random.default_rng(n_units * 100 + n_slots)
    a = balanced_assignment(n_units, n_slots, per_slot, rng)
    per = n_units if per_slot is None else per_slot
    assert len(a) == n_slots and all(len(row) == per for row in a)
    assert all(len(set(row)) == len(row) for row in a)  # no unit twice for one participant
    counts = assignment_counts(a, n_units)
    assert counts.sum() == n_slots * per
    assert counts.max() - counts.min() <= 1  # each unit seen by about the same number
    assert counts.min() == (n_slots * per) // n_units


def test_balanced_assignment_rejects_impossible_designs():
    with pytest.raises(StereobenchError, match="videos per participant"):
        balanced_assignment(3, 2, 4)
    with pytest.raises(StereobenchError, match="no usable video"):
        balanced_assignment(0, 2)


def test_videos_per_participant_balances_a_package(tmp_path):
    src = make_video_folder(tmp_path / "src", n_videos=3, methods=METHODS[:2], gt=False, size=(16, 16), frames=4)
    pkg = build_study(src, tmp_path / "pkg", participants=5, videos_per_participant=2, attention=0, repeats=0,
                      training=0, progress=False)
    seen = Counter(t.video for t in pkg.trials if t.kind == "main")
    assert sum(seen.values()) == 10 and max(seen.values()) - min(seen.values()) <= 1
    for s in range(5):
        vids = [t.video for t in pkg.plan(s)]
        assert len(vids) == 2 and len(set(vids)) == 2


# ----------------------------------------------------------------------------------------- pairwise
def test_pairwise_pairs_counterbalanced_side_by_side(pairwise):
    _, pkg = pairwise
    pairs = {tuple(p) for p in pkg.manifest["pairs"]}
    assert {tuple(sorted(p)) for p in pairs} == {tuple(sorted(p)) for p in
                                                 [(METHODS[0], METHODS[1]), (METHODS[0], METHODS[2]), (METHODS[1], METHODS[2])]}
    for slot in range(3):
        plan = pkg.plan(slot)
        main = [t for t in plan if t.kind == "main"]
        assert len(main) == 2 * 3  # every (video, pair) once
        assert {(t.video, t.method_a, t.method_b) for t in main} == \
            {(v, a, b) for v in pkg.manifest["videos"] for a, b in pairs}
        firsts = Counter(t.first_shown for t in main)
        assert abs(firsts["a"] - firsts["b"]) <= 1
        for t in main:
            assert t.methods == ((t.method_a, t.method_b) if t.first_shown == "a" else (t.method_b, t.method_a))
        att = [t for t in plan if t.kind == "attention"]
        assert len(att) == 1 and att[0].method_b == CONTROL and att[0].attention_answer == "a"
        rep = next(t for t in plan if t.kind == "repeat")
        orig = plan[rep.repeat_of - 1]
        assert (rep.method_a, rep.method_b, rep.video) == (orig.method_a, orig.method_b, orig.video)
        assert rep.first_shown != orig.first_shown  # the repeat swaps the order
    some = pkg.trials[0]
    meta = probe(pkg.media_path(some.media[0]))
    assert (meta["height"], meta["width"]) == (24, 64)  # left | right, full width
    view = pkg.view(some)
    assert view.labels == ("A", "B") and view.references == {}


def test_pairwise_explicit_pairs(tmp_path):
    src = make_video_folder(tmp_path / "src", n_videos=1, methods=METHODS[:3], gt=False, size=(16, 16), frames=4)
    pkg = build_study(src, tmp_path / "pkg", kind="pairwise", pairs=[f"{METHODS[2]}:{METHODS[0]}"], participants=4,
                      attention=2, repeats=0, training=0, progress=False)
    main = [t for t in pkg.trials if t.kind == "main"]
    assert {(t.method_a, t.method_b) for t in main} == {(METHODS[2], METHODS[0])}
    att = [t for t in pkg.trials if t.kind == "attention"]
    assert len(att) == 8 and {t.method_a for t in att} <= {METHODS[0], METHODS[2]}  # never the unpaired method
    assert {t.method_b for t in att} == {CONTROL}
    with pytest.raises(StereobenchError, match="Did you mean"):
        build_study(src, tmp_path / "pkg2", kind="pairwise", pairs=[f"{METHODS[0]}:{METHODS[1]}x"], progress=False)


# ------------------------------------------------------------------------------ skipped and sources
def test_missing_or_broken_video_is_skipped_and_logged(tmp_path, caplog):
    src = make_video_folder(tmp_path / "src", n_videos=3, methods=METHODS[:2], gt=False, size=(16, 16), frames=4)
    (src / "clip1" / f"{METHODS[1]}.mp4").unlink()
    (src / "clip2" / f"{METHODS[0]}.mp4").write_bytes(b"not a video at all")
    with caplog.at_level("WARNING"):
        pkg = build_study(src, tmp_path / "pkg", participants=2, progress=False)
    assert pkg.manifest["videos"] == ["clip0"]
    skipped = {s["video"]: s["reason"] for s in pkg.manifest["skipped"]}
    assert set(skipped) == {"clip1", "clip2"}
    assert "file missing" in skipped["clip1"] and METHODS[0] in skipped["clip2"]
    log = (pkg.dir / "build.log").read_text()
    assert "skipped clip1" in log and "skipped clip2" in log
    assert "clip1" in caplog.text and "clip2" in caplog.text
    assert {t.video for t in pkg.trials} == {"clip0"}


def test_every_video_unusable_is_an_error_and_leaves_nothing(tmp_path):
    src = make_video_folder(tmp_path / "src", n_videos=2, methods=METHODS[:2], gt=False, size=(16, 16), frames=4)
    (src / "clip0" / f"{METHODS[0]}.mp4").unlink()
    (src / "clip1" / f"{METHODS[1]}.mp4").unlink()
    with pytest.raises(StereobenchError, match="no usable video"):
        build_study(src, tmp_path / "pkg", methods=list(METHODS[:2]), progress=False)
    assert not (tmp_path / "pkg").exists()
    assert not [p for p in tmp_path.iterdir() if "building" in p.name]


def test_build_from_a_run_through_the_run_store(tmp_path):
    run = make_run(tmp_path, n_videos=2, methods=METHODS[:2], gt=False, size=(16, 16), frames=4)
    pkg = build_study(run, tmp_path / "pkg", participants=2, attention=1, progress=False)
    assert pkg.manifest["videos"] == ["synthetic/clip0", "synthetic/clip1"]
    assert pkg.manifest["methods"] == sorted(METHODS[:2])
    assert pkg.manifest["source"].startswith("run ")
    # by run id under a runs root, too
    pkg2 = build_study(run.name, tmp_path / "pkg2", participants=1, runs_root=run.parent, progress=False)
    assert pkg2.manifest["videos"] == pkg.manifest["videos"]


def test_load_refuses_what_is_not_a_package(tmp_path):
    with pytest.raises(StereobenchError, match="does not exist"):
        StudyPackage.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StereobenchError, match="not a study package"):
        StudyPackage.load(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / MANIFEST).write_text(json.dumps({"format": "other"}))
    with pytest.raises(StereobenchError, match="not a stereobench study manifest"):
        StudyPackage.load(tmp_path / "bad")


def test_existing_output_needs_overwrite(tmp_path, ranking):
    src, _ = ranking
    (tmp_path / "pkg").mkdir()
    with pytest.raises(StereobenchError, match="--overwrite"):
        build_study(src, tmp_path / "pkg", progress=False)
    assert Path(tmp_path / "pkg").is_dir()


def test_a_media_file_missing_at_serve_time_skips_its_trial(tmp_path, ranking, caplog):
    import shutil

    from study_app.store import StudyStore

    _, built = ranking
    shutil.copytree(built.dir, tmp_path / "pkg")
    pkg = StudyPackage.load(tmp_path / "pkg")
    store = StudyStore.open(str(tmp_path / "s.sqlite"), pkg, app_commit=None)
    pid = pkg.participant_ids[0]
    plan = pkg.plan(0)
    store.submit(pid, plan[0].trial_id, [1, 2, 3, 4])
    gone = plan[1]
    pkg.media_path(gone.media[2]).unlink()
    others = [t for t in plan if gone.media[2] in (*t.media, *t.references.values())]
    with caplog.at_level("WARNING"):
        view = store.next_trial(pid)
    assert view.trial_id == next(t.trial_id for t in plan[1:] if t not in others)
    assert "skipped" in caplog.text and gone.trial_id in caplog.text
    assert store.progress(pid) == (1, len(plan) - len(others))
    # The admin summary (status, admin page) counts the same total, so a participant who answers
    # every trial that can be shown is "finished" there too (it counted the skipped trials).
    row = store.admin_summary().participants.set_index("participant").loc[pid]
    assert (row["done"], row["total"]) == (1, len(plan) - len(others))
    while (view := store.next_trial(pid)) is not None:
        store.submit(pid, view.trial_id, [1, 2, 3, 4])
    summary = store.admin_summary()
    assert bool(summary.participants.set_index("participant").loc[pid, "finished"])
    assert summary.counts["finished"] == 1
    store.dispose()


def test_the_design_is_reproducible_from_the_seed(tmp_path):
    src = make_video_folder(tmp_path / "src", n_videos=2, methods=METHODS[:3], gt=False, size=(16, 16), frames=4)

    def design(name, seed):
        pkg = build_study(src, tmp_path / name, participants=3, seed=seed, progress=False)
        return [(t.participant_slot, t.number, t.kind, t.video, t.methods, t.repeat_of) for t in pkg.trials], pkg

    a, pkg_a = design("a", 5)
    b, pkg_b = design("b", 5)
    c, _ = design("c", 6)
    assert a == b and a != c
    assert set(pkg_a.manifest["media"]).isdisjoint(pkg_b.manifest["media"])  # tokens are never reused
    assert set(pkg_a.participant_ids).isdisjoint(pkg_b.participant_ids)
