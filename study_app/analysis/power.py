"""Power analysis by simulation: how many participants and videos a study needs.

Rankings (``ranking_power``): k methods; the best has latent quality ``delta`` above the
others (all equal), with participant and video random effects (see
:mod:`study_app.analysis.simulate`). ``delta`` is calibrated so that the expected difference
in average rank between the best and the second method equals the requested
``rank_difference``. Every participant ranks every video. For each design in the grid, ``n_sim``
studies are simulated at once (one array (n_sim, participants, videos, k)) and analysed as the
report does: Friedman on per-participant mean mid-ranks (any difference) and a paired Wilcoxon
between the two methods on the same collapsed data (the difference that matters).

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

from study_app.analysis.rankings import friedman, midranks
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
    if not 0 < rank_difference < hi_diff:
        raise ValueError(f"rank difference must be in (0, {hi_diff:.2f}) for {k} methods")
    lo, hi = 0.0, 50.0
    for _ in range(50):  # common random numbers make the difference monotone in delta
        mid = 0.5 * (lo + hi)
        if _rank_diff(mid, k, participant_sd, video_sd, noise_sd, tie_width, z) < rank_difference:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def ranking_power(participants: Sequence[int], videos: Sequence[int], rank_difference: float = 0.5, k: int = 4,
                  participant_sd: float = 0.3, video_sd: float = 0.3, noise_sd: float = 1.0, tie_width: float = 0.0,
                  n_sim: int = 200, alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Power of the ranking analysis over a grid of designs; one row per (participants, videos)."""
    delta = calibrate_delta(rank_difference, k, participant_sd, video_sd, noise_sd, tie_width, seed)
    mu = np.zeros(k)
    mu[0] = delta
    rows = []
    rng = np.random.default_rng(seed + 1)
    for n_p in participants:
        for n_v in videos:
            u = rng.standard_normal((n_sim, n_p, 1, k)) * participant_sd
            w = rng.standard_normal((n_sim, 1, n_v, k)) * video_sd
            e = rng.standard_normal((n_sim, n_p, n_v, k)) * noise_sd
            mid = midranks(competition_ranks(mu + u + w + e, tie_width).astype(float))
            by_participant = mid.mean(axis=2)  # (n_sim, n_p, k)
            p_friedman = friedman(by_participant)["pvalue"] if n_p >= 2 else np.ones(n_sim)
            diff = by_participant[..., 0] - by_participant[..., 1]
            p_pair = np.ones(n_sim)
            informative = ~np.all(np.isclose(diff, 0), axis=1)
            if n_p >= 2 and informative.any():
                p_pair[informative] = stats.wilcoxon(diff[informative], zero_method="pratt", method="approx", axis=1).pvalue
            rows.append({"n_participants": n_p, "n_videos": n_v, "n_rankings": n_p * n_v,
                         "power_friedman": float(np.mean(p_friedman < alpha)),
                         "power_best_vs_second": float(np.mean(p_pair < alpha))})
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


def smallest_design(power: pd.DataFrame, column: str, target: float = 0.8) -> pd.Series | None:
    """The design with the fewest answers (then fewest participants) reaching ``target`` power."""
    size = "n_rankings" if "n_rankings" in power else "n_comparisons"
    ok = power[power[column] >= target]
    if ok.empty:
        return None
    return ok.sort_values([size, "n_participants"]).iloc[0]
