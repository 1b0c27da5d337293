"""Power analysis by simulation: how many participants and videos a study needs.

Rankings (``ranking_power``): k methods; the best has latent quality ``delta`` above the
others (all equal), with participant and video random effects per method (see
:mod:`study_app.analysis.simulate`). ``delta`` is calibrated so that the expected difference
in average rank between the best and the second method equals the requested
``rank_difference`` (0 = no difference). Every participant ranks every video. For each design
in the grid, ``n_sim`` studies are simulated at once (one array (n_sim, participants, videos, k))
and analysed with the report's decision rule, the crossed-robust test
(:func:`~study_app.analysis.rankings.crossed_robust_test`, participants and videos both random):
all methods (any difference) and best vs second (the difference that matters). Each design is
also simulated at delta = 0, and the share of those studies that reject is the **type-I error**
of the rule (it should be close to alpha; a power table whose rule rejects too often under no
difference would count that inflation as power). For comparison, the Friedman test on
per-participant mean ranks (videos treated as fixed) is reported with its own type-I error: it
is anti-conservative because a video's per-method effect is shared by all participants.

Pairwise (``pairwise_power``): each answer is ``equal`` with probability ``tie_share``;
otherwise participant p prefers A with probability expit(logit(share) + participant_sd z_p).
Tests: the exact sign test on pooled non-tie answers (as in the paper), and a one-sample t-test
of the per-participant shares against 0.5 (which respects that answers cluster by participant).

Power = share of simulated studies with p < alpha. All draws are seeded.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import special, stats

from study_app.analysis.rankings import crossed_robust_test, friedman, midranks
from study_app.analysis.simulate import competition_ranks


def _rank_diff(delta: float, k: int, participant_sd: float, video_sd: float, noise_sd: float, tie_width: float,
               z: np.ndarray) -> float:
    sd = np.sqrt(participant_sd ** 2 + video_sd ** 2 + noise_sd ** 2)
    mu = np.zeros(k)
    mu[0] = delta
    ranks = competition_ranks(mu + sd * z, tie_width)
    return float(ranks[:, 1].mean() - ranks[:, 0].mean())


def calibrate_delta(rank_difference: float, k: int, participant_sd: float = 0.3, video_sd: float = 0.3,
                    noise_sd: float = 1.0, tie_width: float = 0.0, seed: int = 0) -> float:
    """Latent advantage of the best method that gives ``rank_difference`` in average (given) rank."""
    z = np.random.default_rng(seed).standard_normal((40000, k))
    hi_diff = _rank_diff(50.0, k, participant_sd, video_sd, noise_sd, tie_width, z)
    if rank_difference == 0:
        return 0.0
    if not 0 < rank_difference < hi_diff:
        raise ValueError(f"rank difference must be in [0, {hi_diff:.2f}) for {k} methods")
    lo, hi = 0.0, 50.0
    for _ in range(50):  # common random numbers make the difference monotone in delta
        mid = 0.5 * (lo + hi)
        if _rank_diff(mid, k, participant_sd, video_sd, noise_sd, tie_width, z) < rank_difference:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _ranking_pvalues(mu, n_p, n_v, participant_sd, video_sd, noise_sd, tie_width, n_sim, rng) -> dict:
    """p-values (n_sim,) of every ranking test for n_sim simulated studies of one design."""
    k = len(mu)
    u = rng.standard_normal((n_sim, n_p, 1, k)) * participant_sd
    w = rng.standard_normal((n_sim, 1, n_v, k)) * video_sd
    e = rng.standard_normal((n_sim, n_p, n_v, k)) * noise_sd
    mid = midranks(competition_ranks(mu + u + w + e, tie_width).astype(float))
    participant = np.repeat(np.arange(n_p), n_v)
    video = np.tile(np.arange(n_v), n_p)
    flat = mid.reshape(n_sim, n_p * n_v, k)
    pair = np.zeros(k)
    pair[0], pair[1] = 1.0, -1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p_all = crossed_robust_test(flat, participant, video)["pvalue"]
        p_pair = crossed_robust_test(flat, participant, video, pair)["pvalue"]
    p_fixed = friedman(mid.mean(axis=2))["pvalue"] if n_p >= 2 else np.ones(n_sim)
    nan_to_one = lambda p: np.where(np.isfinite(p), p, 1.0)  # noqa: E731 - untestable design never rejects
    return {"all": nan_to_one(p_all), "pair": nan_to_one(p_pair), "fixed": nan_to_one(p_fixed)}


def ranking_power(participants: Sequence[int], videos: Sequence[int], rank_difference: float = 0.5, k: int = 4,
                  participant_sd: float = 0.3, video_sd: float = 0.3, noise_sd: float = 1.0, tie_width: float = 0.0,
                  n_sim: int = 200, alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Power and type-I error of the ranking analysis over a grid of designs.

    One row per (participants, videos): ``power_crossed`` (crossed-robust test of all methods,
    the report's headline rule) and ``power_best_vs_second`` (crossed-robust test of the pair),
    each with ``type1_*`` = its rejection rate when no method differs (delta = 0, fresh draws);
    ``power_friedman_videos_fixed`` / ``type1_friedman_videos_fixed`` show the per-participant
    Friedman test for comparison (its type-I error exceeds alpha when videos have effects).
    """
    delta = calibrate_delta(rank_difference, k, participant_sd, video_sd, noise_sd, tie_width, seed)
    mu = np.zeros(k)
    mu[0] = delta
    rows = []
    rng = np.random.default_rng(seed + 1)
    for n_p in participants:
        for n_v in videos:
            alt = _ranking_pvalues(mu, n_p, n_v, participant_sd, video_sd, noise_sd, tie_width, n_sim, rng)
            null = _ranking_pvalues(np.zeros(k), n_p, n_v, participant_sd, video_sd, noise_sd, tie_width, n_sim, rng)
            rows.append({"n_participants": n_p, "n_videos": n_v, "n_rankings": n_p * n_v,
                         "power_crossed": float(np.mean(alt["all"] < alpha)),
                         "type1_crossed": float(np.mean(null["all"] < alpha)),
                         "power_best_vs_second": float(np.mean(alt["pair"] < alpha)),
                         "type1_best_vs_second": float(np.mean(null["pair"] < alpha)),
                         "power_friedman_videos_fixed": float(np.mean(alt["fixed"] < alpha)),
                         "type1_friedman_videos_fixed": float(np.mean(null["fixed"] < alpha))})
    out = pd.DataFrame(rows)
    out.attrs.update({"latent_delta": delta, "rank_difference": rank_difference, "k": k, "alpha": alpha, "n_sim": n_sim})
    return out


def sign_test_pvalue(k: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Vectorised exact two-sided sign test (binomial, p = 0.5); equals scipy.stats.binomtest."""
    k = np.asarray(k)
    n = np.asarray(n)
    tail = np.minimum(k, n - k)
    p = 2.0 * stats.binom.cdf(tail, n, 0.5)
    return np.where(n > 0, np.minimum(p, 1.0), 1.0)


def pairwise_power(participants: Sequence[int], videos: Sequence[int], share: float = 0.7, tie_share: float = 0.3,
                   participant_sd: float = 0.5, n_sim: int = 2000, alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Power of the pairwise analysis (one pair, each participant judges every video once)."""
    if not 0 < share < 1 or not 0 <= tie_share < 1:
        raise ValueError("share must be in (0, 1) and tie_share in [0, 1)")
    rng = np.random.default_rng(seed)
    rows = []
    for n_p in participants:
        for n_v in videos:
            z = rng.standard_normal((n_sim, n_p))
            p_user = special.expit(special.logit(share) + participant_sd * z)
            decided = rng.binomial(n_v, 1.0 - tie_share, size=(n_sim, n_p))
            prefer_a = rng.binomial(decided, p_user)
            p_sign = sign_test_pvalue(prefer_a.sum(axis=1), decided.sum(axis=1))
            with np.errstate(invalid="ignore", divide="ignore"):
                user_share = np.where(decided > 0, prefer_a / np.maximum(decided, 1), np.nan)
            if n_p >= 2:
                with warnings.catch_warnings():  # identical shares in a simulated study: p is NaN -> 1
                    warnings.simplefilter("ignore", RuntimeWarning)
                    p_t = stats.ttest_1samp(user_share, 0.5, axis=1, nan_policy="omit").pvalue
                p_t = np.where(np.isfinite(p_t), p_t, 1.0)
            else:
                p_t = np.ones(n_sim)
            rows.append({"n_participants": n_p, "n_videos": n_v, "n_comparisons": n_p * n_v,
                         "power_sign_test": float(np.mean(p_sign < alpha)),
                         "power_participant_level": float(np.mean(p_t < alpha))})
    out = pd.DataFrame(rows)
    out.attrs.update({"share": share, "tie_share": tie_share, "alpha": alpha, "n_sim": n_sim})
    return out


def smallest_design(power: pd.DataFrame, column: str, target: float = 0.8,
                    max_type1: float | None = None) -> pd.Series | None:
    """The design with the fewest answers (then fewest participants) reaching ``target`` power.

    ``column``: a power column of a rule that holds alpha (``power_crossed``,
    ``power_best_vs_second``, ``power_participant_level``). When the table has the matching
    ``type1_*`` column, designs whose measured type-I error exceeds ``max_type1`` (default:
    alpha + 3 Monte Carlo standard errors) are skipped: their power would be inflation.
    """
    size = "n_rankings" if "n_rankings" in power else "n_comparisons"
    ok = power[power[column] >= target]
    t1 = column.replace("power_", "type1_", 1)
    if t1 in power and len(ok):
        alpha = power.attrs.get("alpha", 0.05)
        limit = max_type1 if max_type1 is not None else alpha + 3 * np.sqrt(alpha * (1 - alpha) / power.attrs.get("n_sim", 200))
        ok = ok[ok[t1] <= limit]
    if ok.empty:
        return None
    return ok.sort_values([size, "n_participants"]).iloc[0]
