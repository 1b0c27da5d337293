"""Study packages: trials, anonymised media and the participant plan, built from benchmark outputs.

:func:`build_study` turns a run's saved videos (through :class:`benchmark.run_store.RunDir`) or
any folder of videos into a self-contained folder::

    <out>/study.json          the manifest: study id and kind, media hashes, trials, participant plan
    <out>/media/<token>.mp4   every stimulus, H.264 yuv420p +faststart, metadata stripped (study_app.media)
    <out>/build.log           what was skipped and why (missing or unreadable videos)

A **folder of videos** has one sub-folder per video holding one file per stimulus, named like a
run's saved videos: ``left``, ``mask`` (the hole mask), ``warped`` (the raw warped view with
holes), ``gt`` (the true right view, optional) and one file per method (``<label>.mp4``; any
extension FFmpeg reads). ``mask-<warp>`` / ``warped-<warp>`` are taken when the plain names are
absent.

**Trials.** ``kind="ranking"`` (the desktop study): per video the methods' right views in
randomised slots, with the left view and the hole mask as references; the participant ranks
them 1 (best) to N, ties allowed. ``kind="pairwise"`` (the VR study): per video and method pair
the two side-by-side stereo videos (left | right, full width), shown in a counterbalanced
order; the answer is the first, the second, or equal. Trial kinds follow the response schema
(:data:`study_app.analysis.schema.TRIAL_KINDS`): ``main`` (the "normal" trials), ``training``
(first, never analysed), ``attention`` (the raw warped view with holes replaces one method as a
clear low anchor; where a ground truth exists a second attention trial hides it as a reference
that should rank best) and ``repeat`` (a main trial shown again at the end with a fresh slot
mapping, for consistency).

**Assignment.** Units (videos; (video, pair) for pairwise) are dealt to participant slots by
:func:`study_app.assign.balanced_assignment`: each unit is seen by the same number of slots up to
one, and each slot sees a unit once (plus its repeat trials). Slot mappings and the trial order
are drawn per slot from ``seed``. Each pre-generated participant id owns one slot; with
``open_enrollment`` the store also accepts new ids and binds each to the least-used slot.

**Anonymity.** Media files are named by random tokens; a trial as served
(:class:`TrialView`) holds only tokens, counts and the trial kind; :meth:`StudyPackage.public_manifest`
is the only part of the manifest meant to leave the server. Method names live in ``study.json``
(``trials[].methods``) for the store and the export only.

A video whose stimulus file is missing or unreadable is skipped (logged to ``build.log`` and
``study.json``'s ``skipped``); the study goes on with the others.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.errors import StereobenchError, did_you_mean
from benchmark.fileio import atomic_write_json, atomic_write_text, file_sha256
from study_app.assign import balanced_assignment, shuffled_order, slot_permutation

log = logging.getLogger(__name__)

FORMAT = "stereobench-study"
FORMAT_VERSION = 1
MANIFEST = "study.json"
MEDIA_DIR = "media"
BUILD_LOG = "build.log"
KINDS = ("ranking", "pairwise")
#: Labels of the control stimuli in the export (the analysis' attention checks read them).
CONTROL = "warped-with-holes"
HIDDEN_REFERENCE = "ground-truth"
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
_INPUT_NAMES = re.compile(r"^(left|gt|warped(-.+)?|mask(-.+)?)$")
_STUDY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
PAIRWISE_LABELS = ("A", "B")


# --------------------------------------------------------------------------------------------
# Data classes
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Trial:
    """One trial of one participant slot (everything the store and the export need).

    ``media``: one token per display slot (slot 0 = leftmost / first shown); ``methods``: the
    method (or control label) in each display slot (secret: never served); ``expect``: per slot,
    ``worst`` / ``best`` for attention controls, else empty. Pairwise trials also carry the pair
    labels ``method_a`` / ``method_b``, ``first_shown`` (``a``: method_a is in slot 0) and
    ``attention_answer`` (``a`` / ``b``: the answer a careful participant gives).
    """

    trial_id: str
    participant_slot: int
    number: int
    kind: str
    video: str
    media: tuple[str, ...]
    methods: tuple[str, ...]
    references: dict[str, str] = field(default_factory=dict)
    expect: tuple[str, ...] = ()
    repeat_of: int | None = None
    method_a: str | None = None
    method_b: str | None = None
    first_shown: str | None = None
    attention_answer: str = ""

    @property
    def n_slots(self) -> int:
        return len(self.media)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["media"], d["methods"], d["expect"] = list(self.media), list(self.methods), list(self.expect)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Trial:
        d = dict(d)
        for key in ("media", "methods", "expect"):
            d[key] = tuple(d.get(key) or ())
        return cls(**d)


@dataclass(frozen=True)
class TrialView:
    """A trial as the participant's page gets it: opaque tokens and counts only.

    ``media``: one token per display slot; ``references``: ``{"left": token, "mask": token}``
    (ranking; absent references are missing keys); ``number`` / ``total``: position in the
    participant's plan (1-based) and its length; ``labels``: display labels of the slots
    (``A``, ``B`` for pairwise; ``1``..``N`` for ranking).
    """

    trial_id: str
    study_kind: str
    kind: str
    number: int
    total: int
    media: tuple[str, ...]
    references: dict[str, str]
    labels: tuple[str, ...]

    @property
    def n_slots(self) -> int:
        return len(self.media)

    def to_json(self) -> dict[str, Any]:
        return {"trial_id": self.trial_id, "study_kind": self.study_kind, "kind": self.kind, "number": self.number,
                "total": self.total, "media": list(self.media), "references": dict(self.references),
                "labels": list(self.labels)}


def trial_view(trial: Trial, study_kind: str, total: int) -> TrialView:
    labels = PAIRWISE_LABELS if study_kind == "pairwise" else tuple(str(i + 1) for i in range(trial.n_slots))
    return TrialView(trial.trial_id, study_kind, trial.kind, trial.number, total, tuple(trial.media),
                     dict(trial.references), tuple(labels))


class StudyPackage:
    """A built study folder (read-only): the manifest, its trials and media.

    Attributes: ``dir``, ``manifest`` (the parsed study.json), ``kind``, ``study_id``,
    ``trials`` (every trial, all slots), ``participant_ids`` (pre-generated join ids, one per
    slot), ``open_enrollment`` (whether new ids are accepted).
    """

    def __init__(self, directory: str | os.PathLike, manifest: dict[str, Any]):
        self.dir = Path(directory)
        self.manifest = manifest
        self.kind: str = manifest["kind"]
        self.study_id: str = manifest["study_id"]
        self.trials: list[Trial] = [Trial.from_json(t) for t in manifest["trials"]]
        self._by_id = {t.trial_id: t for t in self.trials}
        self._by_slot: dict[int, list[Trial]] = {}
        for t in self.trials:
            self._by_slot.setdefault(t.participant_slot, []).append(t)
        for plan in self._by_slot.values():
            plan.sort(key=lambda t: t.number)
        self.participant_ids: list[str] = list(manifest["participants"])
        self.open_enrollment: bool = bool(manifest.get("open_enrollment", False))

    def __repr__(self) -> str:
        return f"StudyPackage({str(self.dir)!r}, kind={self.kind!r}, trials={len(self.trials)})"

    @classmethod
    def load(cls, directory: str | os.PathLike) -> StudyPackage:
        """Read ``<directory>/study.json``; StereobenchError when it is not a study package."""
        directory = Path(directory)
        path = directory / MANIFEST
        if not directory.is_dir():
            raise StereobenchError(f"study package {str(directory)!r} does not exist; build one with "
                                   "`stereobench study build <run or folder> --out DIR`")
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StereobenchError(f"{str(directory)!r} is not a study package (no {MANIFEST}); build one with "
                                   "`stereobench study build <run or folder> --out DIR`") from None
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise StereobenchError(f"cannot read {str(path)!r} ({exc}); rebuild the study package") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise StereobenchError(f"{str(path)!r} is not a stereobench study manifest; rebuild the study package")
        if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
            raise StereobenchError(f"{str(path)!r} was written by a newer stereobench (format version "
                                   f"{manifest.get('format_version')}); update stereobench")
        return cls(directory, manifest)

    # -- lookups ---------------------------------------------------------------------------------
    @property
    def n_slots(self) -> int:
        return len(self.participant_ids)

    def trial(self, trial_id: str) -> Trial | None:
        return self._by_id.get(trial_id)

    def plan(self, slot: int) -> list[Trial]:
        """The trials of one participant slot in presentation order."""
        return list(self._by_slot.get(int(slot), []))

    def slot_of(self, participant_id: str) -> int | None:
        """The slot of a pre-generated participant id (None: not pre-generated)."""
        try:
            return self.participant_ids.index(participant_id)
        except ValueError:
            return None

    def media_path(self, token: str) -> Path:
        """The file of a media token; StereobenchError for a token that is not in the study
        (also anything that is not a plain token, so no path can escape ``media/``)."""
        if not isinstance(token, str) or token not in self.manifest["media"]:
            raise StereobenchError(f"unknown media token {str(token)[:40]!r}")
        return self.dir / MEDIA_DIR / f"{token}.mp4"

    def view(self, trial: Trial) -> TrialView:
        return trial_view(trial, self.kind, len(self._by_slot.get(trial.participant_slot, [])))

    def public_manifest(self) -> dict[str, Any]:
        """What may be served to a browser: study id and kind, the frame grid, media hashes by
        token. No method, video or path."""
        return {"study_id": self.study_id, "kind": self.kind, "fps": self.manifest.get("fps"),
                "media": {tok: {"sha256": m["sha256"], "bytes": m["bytes"], "frames": m["frames"],
                                "fps": m["fps"], "gop": m["gop"]}
                          for tok, m in self.manifest["media"].items()}}

    def verify(self) -> list[str]:
        """Media files whose sha256 differs from the manifest or that are missing (empty: intact)."""
        bad = []
        for token, meta in self.manifest["media"].items():
            path = self.dir / MEDIA_DIR / f"{token}.mp4"
            if not path.is_file() or file_sha256(path) != meta["sha256"]:
                bad.append(token)
        return bad


# --------------------------------------------------------------------------------------------
# Discovering the source's videos
# --------------------------------------------------------------------------------------------
@dataclass
class SourceVideo:
    """One video of the source: its id and its stimulus files by name (left, mask, method...)."""

    video: str
    files: dict[str, Path]

    def first(self, base: str) -> Path | None:
        """``base`` (``warped``, ``mask``) or, when absent, the first ``base-<warp>``."""
        if base in self.files:
            return self.files[base]
        named = sorted(k for k in self.files if k.startswith(base + "-"))
        return self.files[named[0]] if named else None

    @property
    def methods(self) -> list[str]:
        return sorted(k for k in self.files if not _INPUT_NAMES.match(k))


def discover_source(source: str | os.PathLike, runs_root: str | os.PathLike = "results/runs") -> tuple[str, list[SourceVideo]]:
    """(description, videos) of a run folder, a run id under ``runs_root``, or a folder of videos."""
    from benchmark.run_store import RunDir

    path = Path(source)
    if not path.exists():
        candidate = Path(runs_root) / str(source)
        if "/" not in str(source) and candidate.is_dir():
            path = candidate
        else:
            raise StereobenchError(f"study source {str(source)!r} does not exist: give a run folder (results/runs/<id>), "
                                   "a run id, or a folder with one sub-folder of videos per clip")
    if not path.is_dir():
        raise StereobenchError(f"study source {str(source)!r} is a file; give a run folder or a folder with one "
                               "sub-folder of videos per clip")
    try:
        run = RunDir.at(path)
        is_run = run.is_run()
    except StereobenchError:
        is_run = False
    if is_run:
        videos = []
        for dataset, clip in run.saved_clips():
            files = {v.name: v.path for v in run.saved_videos(dataset, clip)}
            videos.append(SourceVideo(f"{dataset}/{clip}", files))
        if not videos:
            raise StereobenchError(f"run {str(path)!r} has no saved videos; rerun it with saved outputs "
                                   "(`stereobench run ... --save-videos`) or give a folder of videos")
        return f"run {run.run_id}", videos
    videos = []
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = {}
        for f in sorted(sub.iterdir()):
            if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES and not f.name.startswith("."):
                files.setdefault(f.stem, f)
        if files:
            videos.append(SourceVideo(sub.name, files))
    if not videos:
        raise StereobenchError(f"folder {str(source)!r} holds no videos in the study layout: one sub-folder per clip "
                               "with left.mp4, mask.mp4, warped.mp4 (optional gt.mp4) and one <method>.mp4 per method")
    return f"folder {path.name}", videos


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------
def _check_readable(path: Path) -> str | None:
    """None when the file opens as a video with frames, else the reason."""
    from benchmark.video_io import open_source

    if not path.is_file():
        return "file missing"
    try:
        source = open_source(path)
        next(iter(source.frames()))
    except StopIteration:
        return "no frames"
    except StereobenchError as exc:
        return str(exc)
    return None


def _parse_pairs(pairs, methods: list[str]) -> list[tuple[str, str]]:
    if pairs is None:
        return list(itertools.combinations(methods, 2))
    out = []
    for pair in pairs:
        if isinstance(pair, str):
            parts = re.split(r"[:,]", pair)
            if len(parts) != 2:
                raise StereobenchError(f"a pair is two methods separated by ':', got {pair!r}")
            pair = parts
        a, b = (str(x).strip() for x in pair)
        for m in (a, b):
            if m not in methods:
                raise did_you_mean(m, methods, "method in --pairs")
        if a == b:
            raise StereobenchError(f"a pair needs two different methods, got {a!r} twice")
        out.append((a, b))
    return out


def build_study(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    kind: str = "ranking",
    methods: Sequence[str] | None = None,
    participants: int = 8,
    seed: int = 0,
    pairs: Sequence[tuple[str, str] | str] | None = None,
    videos_per_participant: int | None = None,
    attention: int = 2,
    repeats: int = 1,
    training: int = 1,
    participant_ids: Sequence[str] | None = None,
    open_enrollment: bool = False,
    study_id: str | None = None,
    fps: float | None = None,
    max_height: int | None = None,
    crf: int = 20,
    overwrite: bool = False,
    runs_root: str | os.PathLike = "results/runs",
    progress: bool = True,
) -> StudyPackage:
    """Build a study package from a run's saved outputs or a folder of videos (module docstring).

    Args:
        source: a run folder, a run id under ``runs_root``, or a folder of videos.
        out_dir: the package folder to create (built under a temporary name, then moved).
        kind: ``ranking`` (desktop, Table 2) or ``pairwise`` (VR, Table 3).
        methods: methods to show (default: every method with a saved output).
        participants: number of participant slots (= pre-generated ids).
        seed: seed of the assignment, slot mappings and trial orders.
        pairs: pairwise only: the method pairs (``("a", "b")`` or ``"a:b"``); default all pairs.
        videos_per_participant: units per participant (default: all).
        attention, repeats, training: trials of each kind per participant.
        participant_ids: the join ids to use (default: random, one per slot).
        open_enrollment: the store accepts ids that are not pre-generated.
        study_id: default: the out folder's name.
        fps: the common frame rate (default: the left view's, else the first stimulus').
        max_height: downscale taller videos to this height (even).
        crf: x264 quality (lower is better; 20 is visually transparent for these clips).
        overwrite: replace an existing package folder.

    Raises:
        StereobenchError: bad arguments, a missing source, no usable video.
    """
    from study_app.media import Stimulus, encode_stimuli, native_fps, new_token

    if kind not in KINDS:
        raise did_you_mean(str(kind), KINDS, "study kind")
    out_dir = Path(out_dir)
    study_id = study_id or out_dir.name
    if not _STUDY_ID.match(study_id or ""):
        raise StereobenchError(f"study id {study_id!r} must be 1-64 letters, digits, '.', '_' or '-' "
                               "(pass --study-id or name the out folder so)")
    if participant_ids is not None:
        participant_ids = [str(p).strip() for p in participant_ids]
        if len(set(participant_ids)) != len(participant_ids) or not all(participant_ids):
            raise StereobenchError("participant ids must be distinct and non-empty")
        bad = [p for p in participant_ids if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", p)]
        if bad:
            raise StereobenchError(f"participant id {bad[0]!r} may hold only letters, digits, '_' and '-' (it goes in a URL)")
        participants = len(participant_ids)
    for name, value, low in (("participants", participants, 1), ("attention", attention, 0),
                             ("repeats", repeats, 0), ("training", training, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise StereobenchError(f"{name} must be a whole number >= {low}, got {value!r}")
    if out_dir.exists() and not overwrite:
        raise StereobenchError(f"{str(out_dir)!r} already exists; pass --overwrite to replace it or choose another --out")

    description, videos = discover_source(source, runs_root)
    all_methods = sorted({m for v in videos for m in v.methods})
    if methods is None:
        methods = all_methods
    else:
        methods = [str(m).strip() for m in methods]
        for m in methods:
            if m not in all_methods:
                raise (did_you_mean(m, all_methods, "method") if all_methods else
                       StereobenchError(f"the source has no method outputs (looked for {m!r})"))
        if len(set(methods)) != len(methods):
            raise StereobenchError("a method is listed twice in --methods")
    if len(methods) < 2:
        if len(all_methods) >= 2:  # --methods picked too few of them
            raise StereobenchError(f"a study compares at least two methods; --methods picks {len(methods)} "
                                   f"({', '.join(methods)}): choose two or more of {', '.join(all_methods)}")
        raise StereobenchError(f"a study compares at least two methods; the source has {len(all_methods)} "
                               f"({', '.join(all_methods) or 'none'})")
    pair_list = _parse_pairs(pairs, list(methods)) if kind == "pairwise" else []
    if kind == "ranking" and pairs is not None:
        raise StereobenchError("--pairs is for pairwise studies; a ranking study shows all methods at once")

    # -- which videos are usable ----------------------------------------------------------------
    skipped: list[dict[str, str]] = []
    usable: list[SourceVideo] = []
    needed = list(methods) if kind == "ranking" else sorted({m for p in pair_list for m in p})
    for v in videos:
        reasons = []
        for m in needed:
            why = "file missing" if m not in v.files else _check_readable(v.files[m])
            if why:
                reasons.append(f"{m}: {why}")
        left = v.files.get("left")
        if kind == "pairwise" and (left is None or _check_readable(left)):
            reasons.append("left: " + ("file missing" if left is None else _check_readable(left)))
        if reasons:
            skipped.append({"video": v.video, "reason": "; ".join(reasons)})
            log.warning("study build: video %s skipped (%s)", v.video, "; ".join(reasons))
            continue
        for opt in ("left", "mask", "warped", "gt"):
            path = v.first(opt) if opt in ("mask", "warped") else v.files.get(opt)
            if path is not None and _check_readable(path):
                log.warning("study build: video %s: optional %s unreadable, not used", v.video, opt)
                v.files = {k: p for k, p in v.files.items() if p != path}
        usable.append(v)
    if not usable:
        raise StereobenchError("no usable video: every video lacks a method's output or is unreadable ("
                               + "; ".join(f"{s['video']}: {s['reason']}" for s in skipped[:3]) + ")")

    rng = np.random.default_rng(seed)
    units = [(vi, None) for vi in range(len(usable))] if kind == "ranking" else \
        [(vi, p) for vi in range(len(usable)) for p in pair_list]
    assignment = balanced_assignment(len(units), participants, videos_per_participant, rng)
    if participant_ids is None:
        participant_ids = _new_participant_ids(participants)

    tmp = out_dir.with_name(f".{out_dir.name}.building-{os.getpid()}-{secrets.token_hex(3)}")
    media_dir = tmp / MEDIA_DIR
    media_dir.mkdir(parents=True)
    media: dict[str, dict[str, Any]] = {}
    tokens: dict[tuple[int, str], str] = {}  # (video index, stimulus name) -> token
    try:
        iterator = enumerate(usable)
        if progress:
            from tqdm import tqdm

            iterator = tqdm(list(iterator), desc="encoding study media", unit="video")
        for vi, v in iterator:
            names: dict[str, tuple[Path, ...]] = {}
            left = v.files.get("left")
            warped, mask, gt = v.first("warped"), v.first("mask"), v.files.get("gt")
            if kind == "ranking":
                for m in methods:
                    names[m] = (v.files[m],)
                if left is not None:
                    names["@left"] = (left,)
                if mask is not None:
                    names["@mask"] = (mask,)
                if warped is not None:
                    names[CONTROL] = (warped,)
                if gt is not None:
                    names[HIDDEN_REFERENCE] = (gt,)
            else:
                for m in needed:
                    names[m] = (left, v.files[m])
                if warped is not None:
                    names[CONTROL] = (left, warped)
            clock = float(fps) if fps else native_fps(left if left is not None else next(iter(names.values()))[0])
            stimuli, keys = [], []
            for name, sources in names.items():
                token = new_token()
                tokens[(vi, name)] = token
                stimuli.append(Stimulus(tuple(Path(s) for s in sources), media_dir / f"{token}.mp4"))
                keys.append(token)
            info = encode_stimuli(stimuli, clock, max_height=max_height, crf=crf)
            for token in keys:
                path = media_dir / f"{token}.mp4"
                media[token] = {"sha256": file_sha256(path), "bytes": path.stat().st_size, "frames": info.frames,
                                "fps": info.fps, "gop": info.gop}

        shown = list(methods) if kind == "ranking" else needed  # pairwise: only methods of some pair have media
        trials = _plan_trials(kind, usable, shown, units, assignment, tokens, attention, repeats, training, rng)
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "study_id": study_id, "kind": kind,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "seed": int(seed),
            "source": description, "methods": list(methods), "pairs": [list(p) for p in pair_list],
            "videos": [v.video for v in usable], "skipped": skipped,
            "participants": list(participant_ids), "open_enrollment": bool(open_enrollment),
            "design": {"videos_per_participant": videos_per_participant, "attention": int(attention),
                       "repeats": int(repeats), "training": int(training)},
            "media": media, "trials": [t.to_json() for t in trials],
        }
        atomic_write_json(tmp / MANIFEST, manifest, indent=1)
        atomic_write_text(tmp / BUILD_LOG, _build_log(description, usable, skipped))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return StudyPackage.load(out_dir)


def _new_participant_ids(n: int) -> list[str]:
    ids: list[str] = []
    while len(ids) < n:
        pid = secrets.token_urlsafe(8).replace("-", "x").replace("_", "y")
        if pid not in ids:
            ids.append(pid)
    return ids


def _build_log(description: str, usable: list[SourceVideo], skipped: list[dict[str, str]]) -> str:
    lines = [f"source: {description}", f"videos used: {len(usable)}", f"videos skipped: {len(skipped)}"]
    lines += [f"skipped {s['video']}: {s['reason']}" for s in skipped]
    return "\n".join(lines) + "\n"


def _plan_trials(kind, usable, methods, units, assignment, tokens, n_attention, n_repeats, n_training, rng) -> list[Trial]:
    """Every slot's trials, numbered in presentation order."""
    out: list[Trial] = []
    for slot, unit_ids in enumerate(assignment):
        body: list[dict] = []
        slot_units = [units[u] for u in unit_ids]
        firsts = np.resize(np.array(["a", "b"]), len(slot_units))
        rng.shuffle(firsts)
        for (vi, pair), first in zip(slot_units, firsts):
            body.append(_trial_spec(kind, "main", vi, methods, pair, str(first), rng))
        # Attention: the raw warped view as a low anchor (then, where a ground truth exists, the
        # hidden reference), on videos of this slot that have the control.
        slot_videos = list(dict.fromkeys(vi for vi, _ in slot_units))
        for a in range(n_attention):
            want = CONTROL if (a % 2 == 0 or kind == "pairwise") else HIDDEN_REFERENCE
            candidates = [vi for vi in slot_videos if (vi, want) in tokens] or \
                [vi for vi in slot_videos if (vi, CONTROL) in tokens]
            if not candidates:
                log.warning("study build: slot %d has no video with a warped view; no attention trial", slot)
                break
            vi = int(candidates[int(rng.integers(len(candidates)))])
            if (vi, want) not in tokens:
                want = CONTROL
            body.append(_attention_spec(kind, vi, methods, want, rng))
        order = shuffled_order(len(body), rng)
        body = [body[i] for i in order]
        # Training first (a random video of the slot), repeats last (from main trials that are not
        # the last ones, so a repeat never follows its original directly).
        head = [_trial_spec(kind, "training", int(slot_videos[int(rng.integers(len(slot_videos)))]), methods,
                            slot_units[0][1], "a" if rng.random() < 0.5 else "b", rng) for _ in range(n_training)]
        numbered = head + body
        mains = [i for i, t in enumerate(numbered) if t["kind"] == "main"]
        eligible = mains[:-1] if len(mains) > 1 else mains
        tail = []
        for i in rng.choice(eligible, size=min(n_repeats, len(eligible)), replace=False) if eligible else []:
            orig = numbered[int(i)]
            vi, pair = orig["vi"], orig["pair"]
            first = ("b" if orig["first"] == "a" else "a") if kind == "pairwise" else "a"
            spec = _trial_spec(kind, "repeat", vi, methods, pair, first, rng)
            spec["repeat_of"] = int(i) + 1
            tail.append(spec)
        for number, spec in enumerate(numbered + tail, start=1):
            out.append(_make_trial(kind, spec, slot, number, usable, tokens))
    return out


def _trial_spec(kind, trial_kind, vi, methods, pair, first, rng) -> dict:
    if kind == "ranking":
        perm = slot_permutation(len(methods), rng)
        return {"kind": trial_kind, "vi": vi, "pair": None, "first": None,
                "shown": [methods[i] for i in perm], "expect": [""] * len(methods)}
    a, b = pair
    shown = [a, b] if first == "a" else [b, a]
    return {"kind": trial_kind, "vi": vi, "pair": (a, b), "first": first, "shown": shown, "expect": ["", ""],
            "answer": ""}


def _attention_spec(kind, vi, methods, control, rng) -> dict:
    if kind == "ranking":
        perm = slot_permutation(len(methods), rng)
        shown = [methods[i] for i in perm]
        replaced = int(rng.integers(len(shown)))
        shown[replaced] = control
        expect = ["" for _ in shown]
        expect[replaced] = "worst" if control == CONTROL else "best"
        return {"kind": "attention", "vi": vi, "pair": None, "first": None, "shown": shown, "expect": expect}
    real = methods[int(rng.integers(len(methods)))]
    first = "a" if rng.random() < 0.5 else "b"
    spec = _trial_spec(kind, "attention", vi, methods, (real, control), first, rng)
    spec["answer"] = "a"  # the real method beats the warped view with holes
    spec["expect"] = ["worst" if m == control else "" for m in spec["shown"]]
    return spec


def _make_trial(kind, spec, slot, number, usable, tokens) -> Trial:
    vi = spec["vi"]
    media = tuple(tokens[(vi, m)] for m in spec["shown"])
    refs = {}
    if kind == "ranking":
        for name in ("left", "mask"):
            if (vi, "@" + name) in tokens:
                refs[name] = tokens[(vi, "@" + name)]
    pair = spec.get("pair")
    return Trial(
        trial_id=secrets.token_hex(6), participant_slot=slot, number=number, kind=spec["kind"],
        video=usable[vi].video, media=media, methods=tuple(spec["shown"]), references=refs,
        expect=tuple(spec["expect"]), repeat_of=spec.get("repeat_of"),
        method_a=pair[0] if pair else None, method_b=pair[1] if pair else None,
        first_shown=spec.get("first"), attention_answer=spec.get("answer", "") if spec["kind"] == "attention" else "",
    )
