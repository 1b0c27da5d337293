"""Simulated studies with a known true ordering: the analysis recovers it and its intervals cover."""

from __future__ import annotations

import numpy as np
import pytest

from study_app.analysis import rankings
from study_app.analysis.models import davidson_scale_with_ci
from study_app.analysis.schema import validate_rankings
from study_app.analysis.simulate import competition_ranks, simulate_rankings

METHODS = ["best", "second", "third", "worst"]
TRUE_SCORES = np.array([1.2, 0.6, 0.0, -0.6])
PARTICIPANT_SD, VIDEO_SD, NOISE_SD = 0.3, 0.3, 1.0


def true_average_ranks() -> np.ndarray:
    """Population average rank: u, w, e are independent per method, so scores are N(mu, total var)."""
    sd = np.sqrt(PARTICIPANT_SD ** 2 + VIDEO_SD ** 2 + NOISE_SD ** 2)
    z = np.random.default_rng(123).standard_normal((400_000, 4))
    return competition_ranks(TRUE_SCORES + sd * z).mean(axis=0)


def run_simulations(n_sim: int, n_participants: int, n_videos: int, n_boot: int):
    truth = true_average_ranks()
    order_ok = top_ok = 0
    covered = np.zeros(4)
    for s in range(n_sim):
        df = simulate_rankings(METHODS, TRUE_SCORES, n_participants, n_videos, participant_sd=PARTICIPANT_SD,
                               video_sd=VIDEO_SD, noise_sd=NOISE_SD, seed=1000 + s)
        rm = rankings.ranking_matrix(validate_rankings(df)[0])
        table = rankings.summary(rm, n_boot=n_boot, seed=s).set_index("method").loc[METHODS]
        order_ok += list(table.sort_values("average_rank").index) == METHODS
        top_ok += table["average_rank"].idxmin() == "best"
        covered += ((table["average_rank_ci_low"] <= truth) & (truth <= table["average_rank_ci_high"])).to_numpy()
    return order_ok / n_sim, top_ok / n_sim, covered / n_sim


def test_true_order_recovered_and_intervals_cover():
    order, top, coverage = run_simulations(n_sim=40, n_participants=12, n_videos=8, n_boot=400)
    assert top >= 0.95
    assert order >= 0.8
    # 95% intervals over 160 (study, method) pairs; the percentile crossed bootstrap with few
    # clusters is slightly liberal, so the tolerance is one-sided around 0.95.
    assert coverage.mean() >= 0.85
    assert coverage.min() >= 0.75


def test_permutation_and_friedman_reject_with_a_real_difference_only():
    df = simulate_rankings(METHODS, TRUE_SCORES, 10, 6, seed=7)
    rm = rankings.ranking_matrix(validate_rankings(df)[0])
    assert rankings.permutation_test(rm, n_resamples=999, seed=0)["pvalue"] < 0.01
    assert rankings.friedman(rankings.collapse(rm, "participant").to_numpy())["pvalue"] < 0.01
    null = simulate_rankings(METHODS, np.zeros(4), 10, 6, participant_sd=0, video_sd=0, seed=8)
    rm0 = rankings.ranking_matrix(validate_rankings(null)[0])
    assert rankings.permutation_test(rm0, n_resamples=999, seed=0)["pvalue"] > 0.01


def test_davidson_scale_recovers_order():
    df = simulate_rankings(METHODS, TRUE_SCORES, 12, 8, tie_width=0.5, seed=11)
    rm = rankings.ranking_matrix(validate_rankings(df)[0])
    scale = davidson_scale_with_ci(rm, n_boot=30, seed=0)
    assert list(scale["method"]) == METHODS
    assert (scale["ci_low"] <= scale["scale"]).all() and (scale["scale"] <= scale["ci_high"]).all()
    assert scale["nu"].iloc[0] > 0  # ties were simulated and are modelled


@pytest.mark.slow
def test_coverage_many_simulations():
    order, top, coverage = run_simulations(n_sim=200, n_participants=12, n_videos=8, n_boot=1000)
    assert top >= 0.97 and order >= 0.8
    assert 0.88 <= coverage.mean() <= 0.99
