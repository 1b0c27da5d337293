"""Simulated studies in the response schema, seeded, with a known true ordering.

The generative model is a Thurstone-style latent score: the quality a participant *p* perceives
for method *m* on video *v* in one trial is

    s = true_score[m] + participant_sd * u[p, m] + video_sd * w[v, m] + noise_sd * e

with independent standard normal u, w, e. A ranking sorts the trial's scores (higher = better);
with ``tie_width > 0`` scores are first rounded down to a grid of that width, so close methods
tie (competition ranks: 1, 1, 3, 4). A pairwise answer prefers the higher score, or is
``equal`` when the scores differ by less than ``tie_margin``. The true ordering is that of
``true_scores`` (descending). Used by the tests, the power analysis and ``--demo``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from study_app.analysis.schema import SCHEMA_VERSION

CONTROL_METHOD = "warped-with-holes"


def competition_ranks(scores: np.ndarray, tie_width: float = 0.0) -> np.ndarray:
    """Ranks 1 = best of ``scores`` (..., k) along the last axis; ties share the best rank.

    With ``tie_width > 0`` scores are floored to that grid first. Returns int64 (..., k).
    """
    s = np.floor(scores / tie_width) if tie_width > 0 else scores
    return 1 + (s[..., None, :] > s[..., :, None]).sum(axis=-1)


def _latent_scores(rng, true_scores, n_participants, n_videos, participant_sd, video_sd, noise_sd, size=()):
    k = len(true_scores)
    u = rng.standard_normal(size + (n_participants, 1, k)) * participant_sd
    w = rng.standard_normal(size + (1, n_videos, k)) * video_sd
    e = rng.standard_normal(size + (n_participants, n_videos, k)) * noise_sd
    return np.asarray(true_scores, dtype=float) + u + w + e


def simulate_rankings(
    methods: Sequence[str],
    true_scores: Sequence[float],
    n_participants: int = 13,
    n_videos: int = 8,
    *,
    participant_sd: float = 0.3,
    video_sd: float = 0.3,
    noise_sd: float = 1.0,
    tie_width: float = 0.0,
    n_attention: int = 0,
    n_repeat: int = 0,
    n_training: int = 0,
    careless: Sequence[int] = (),
    seed: int = 0,
) -> pd.DataFrame:
    """A rankings table (schema :data:`~study_app.analysis.schema.RANKING_COLUMNS`).

    Every participant ranks every video once (``main`` trials), in a random order and with a
    random method-to-slot mapping. ``n_attention`` attention trials add the control stimulus
    :data:`CONTROL_METHOD` (expected worst); ``n_repeat`` main trials are shown again; the
    participants whose indices are in ``careless`` answer at random in every trial.
    """
    rng = np.random.default_rng(seed)
    methods = list(methods)
    k = len(methods)
    scores = _latent_scores(rng, true_scores, n_participants, n_videos, participant_sd, video_sd, noise_sd)
    ranks = competition_ranks(scores, tie_width)
    rows = []
    t0 = pd.Timestamp("2025-01-01T10:00:00Z")
    for p in range(n_participants):
        pid = f"P{p + 1:02d}"
        is_careless = p in set(careless)
        trials = []  # (kind, video index, ranks of methods, method names, expect, repeat_of)
        for _ in range(n_training):
            v = int(rng.integers(n_videos))
            trials.append(("training", v, competition_ranks(rng.standard_normal(k)), methods, None, None))
        order = rng.permutation(n_videos)
        main = [("main", int(v), ranks[p, v], methods, None, None) for v in order]
        for _ in range(n_attention):
            v = int(rng.integers(n_videos))
            s = np.append(scores[p, v], -np.inf)
            trials_ranks = competition_ranks(s)
            main.insert(int(rng.integers(len(main) + 1)),
                        ("attention", v, trials_ranks, methods + [CONTROL_METHOD], "worst", None))
        trials.extend(main)
        main_positions = [i for i, t in enumerate(trials) if t[0] == "main"]
        for j in rng.choice(main_positions, size=min(n_repeat, len(main_positions)), replace=False):
            v = trials[j][1]
            # A repeat sees the same stimuli again: same latent scores, fresh momentary noise.
            s = scores[p, v] + 0.5 * noise_sd * rng.standard_normal(k)
            trials.append(("repeat", v, competition_ranks(s, tie_width), methods, None, int(j) + 1))
        for t_index, (kind, v, trial_ranks, names, expect, repeat_of) in enumerate(trials):
            m = len(names)
            if is_careless:
                trial_ranks = rng.permutation(m) + 1
            slots = rng.permutation(m)
            start = t0 + pd.Timedelta(minutes=p * 60 + t_index)
            for i, name in enumerate(names):
                rows.append({
                    "schema_version": SCHEMA_VERSION, "study_id": "simulated", "participant": pid,
                    "session": f"{pid}-s1", "trial": t_index + 1, "trial_kind": kind, "video": f"video{v + 1:02d}",
                    "method": name, "slot": int(slots[i]), "rank": int(trial_ranks[i]),
                    "attention_expect": ("worst" if (expect and name == CONTROL_METHOD) else ""),
                    "repeat_of": repeat_of, "started_at": start.isoformat(),
                    "answered_at": (start + pd.Timedelta(seconds=40)).isoformat(), "device": "desktop",
                })
    df = pd.DataFrame(rows)
    df["repeat_of"] = df["repeat_of"].astype("Int64")
    return df


def simulate_pairwise(
    methods: Sequence[str],
    true_scores: Sequence[float],
    n_participants: int = 5,
    n_videos: int = 21,
    *,
    participant_sd: float = 0.3,
    video_sd: float = 0.3,
    noise_sd: float = 1.0,
    tie_margin: float = 0.5,
    first_bias: float = 0.0,
    pairs: Sequence[tuple[str, str]] | None = None,
    n_attention: int = 0,
    careless: Sequence[int] = (),
    seed: int = 0,
) -> pd.DataFrame:
    """A pairwise table (schema :data:`~study_app.analysis.schema.PAIRWISE_COLUMNS`).

    Every participant compares every pair (default: all pairs of ``methods``) on every video.
    ``first_bias`` adds that much latent score to whichever method is shown first.
    Attention trials compare the first method with :data:`CONTROL_METHOD` (expected answer:
    the real method).
    """
    rng = np.random.default_rng(seed)
    methods = list(methods)
    idx = {m: i for i, m in enumerate(methods)}
    pairs = list(pairs) if pairs is not None else [(a, b) for i, a in enumerate(methods) for b in methods[i + 1:]]
    mu = np.asarray(true_scores, dtype=float)
    u = rng.standard_normal((n_participants, len(methods))) * participant_sd
    w = rng.standard_normal((n_videos, len(methods))) * video_sd
    rows = []
    t0 = pd.Timestamp("2025-01-01T10:00:00Z")
    for p in range(n_participants):
        pid = f"U{p + 1}"
        trials = [("main", v, a, b, "") for v in range(n_videos) for a, b in pairs]
        for _ in range(n_attention):
            v = int(rng.integers(n_videos))
            trials.append(("attention", v, methods[0], CONTROL_METHOD, "a"))
        order = rng.permutation(len(trials))
        for t_index, j in enumerate(order):
            kind, v, a, b, expect = trials[j]
            first = "a" if rng.random() < 0.5 else "b"
            if kind == "attention":
                diff = 10.0
            else:
                ia, ib = idx[a], idx[b]
                diff = (mu[ia] - mu[ib]) + (u[p, ia] - u[p, ib]) + (w[v, ia] - w[v, ib]) \
                    + noise_sd * np.sqrt(2.0) * rng.standard_normal()
            diff += first_bias if first == "a" else -first_bias
            answer = "equal" if abs(diff) < tie_margin else ("a" if diff > 0 else "b")
            if p in set(careless):
                answer = rng.choice(["a", "b", "equal"])
            start = t0 + pd.Timedelta(minutes=p * 60 + t_index)
            rows.append({
                "schema_version": SCHEMA_VERSION, "study_id": "simulated-vr", "participant": pid, "session": f"{pid}-s1",
                "trial": t_index + 1, "trial_kind": kind, "video": f"video{v + 1:02d}", "method_a": a, "method_b": b,
                "first_shown": first, "answer": answer, "attention_expect": expect, "repeat_of": pd.NA,
                "started_at": start.isoformat(), "answered_at": (start + pd.Timedelta(seconds=30)).isoformat(),
                "device": "quest3",
            })
    df = pd.DataFrame(rows)
    df["repeat_of"] = df["repeat_of"].astype("Int64")
    return df
