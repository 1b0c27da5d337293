"""Statistics of the study analysis against independent references (scipy, pingouin, choix,
published textbook values, closed forms)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from study_app.analysis import models, pairwise, power, rankings
from study_app.analysis.bootstrap import crossed_weights
from study_app.analysis.schema import validate_rankings
from study_app.analysis.simulate import competition_ranks, simulate_rankings

# Hollander & Wolfe (1973), p. 140: rounding-first-base times of 22 players with 3 methods.
# Published (R's friedman.test documentation): Friedman chi-squared = 11.143, df = 2, p = 0.003805.
ROUNDING_TIMES = np.array([
    5.40, 5.50, 5.55, 5.85, 5.70, 5.75, 5.20, 5.60, 5.50, 5.55, 5.50, 5.40, 5.90, 5.85, 5.70, 5.45, 5.55, 5.60,
    5.40, 5.40, 5.35, 5.45, 5.50, 5.35, 5.25, 5.15, 5.00, 5.85, 5.80, 5.70, 5.25, 5.20, 5.10, 5.65, 5.55, 5.45,
    5.60, 5.35, 5.45, 5.05, 5.00, 4.95, 5.50, 5.50, 5.40, 5.45, 5.55, 5.50, 5.55, 5.55, 5.35, 5.45, 5.50, 5.55,
    5.50, 5.45, 5.25, 5.65, 5.60, 5.40, 5.70, 5.65, 5.55, 6.30, 6.30, 6.25]).reshape(22, 3)


@pytest.fixture(scope="module")
def study():
    df = simulate_rankings(["A", "B", "C", "D"], [1.0, 0.5, 0.0, -0.5], n_participants=9, n_videos=6,
                           tie_width=0.6, seed=3)
    table, _ = validate_rankings(df)
    return rankings.ranking_matrix(table)


def test_friedman_textbook_example_with_ties():
    res = rankings.friedman(ROUNDING_TIMES)
    assert res["statistic"] == pytest.approx(11.143, abs=5e-4)
    assert res["pvalue"] == pytest.approx(0.003805, abs=5e-7)
    assert res["df"] == 2
    assert res["kendall_w"] == pytest.approx(11.142857 / (22 * 2), rel=1e-5)


@pytest.mark.parametrize("by", ["participant", "video"])
def test_friedman_equals_scipy_on_collapsed_data(study, by):
    blocks = rankings.collapse(study, by)
    ours = rankings.friedman(blocks.to_numpy())
    ref = stats.friedmanchisquare(*blocks.to_numpy().T)
    assert ours["statistic"] == pytest.approx(ref.statistic, rel=1e-10)
    assert ours["pvalue"] == pytest.approx(ref.pvalue, rel=1e-8)
    assert len(blocks) == (9 if by == "participant" else 6)
    # Collapsing is a per-block mean of mid-ranks: rows sum to k(k+1)/2.
    np.testing.assert_allclose(blocks.sum(axis=1), 10.0)


def test_friedman_batched_matches_loop():
    rng = np.random.default_rng(0)
    batch = rng.integers(1, 4, size=(5, 7, 4)).astype(float)  # many ties
    res = rankings.friedman(batch)
    for b in range(5):
        ref = stats.friedmanchisquare(*batch[b].T)
        assert res["statistic"][b] == pytest.approx(ref.statistic, rel=1e-10)


def test_kendall_w_equals_pingouin(study):
    import pingouin as pg

    blocks = rankings.collapse(study, "participant")
    ref = pg.friedman(blocks)
    ours = rankings.friedman(blocks.to_numpy())
    assert ours["kendall_w"] == pytest.approx(float(ref["W"].iloc[0]), rel=1e-8)
    assert ours["pvalue"] == pytest.approx(float(ref["p_unc"].iloc[0]), rel=1e-8)


def test_permutation_test_agrees_with_scipy(study):
    ours = rankings.permutation_test(study, n_resamples=4000, seed=1)

    def statistic(*cols, axis=-1):
        # cols: k arrays of per-ranking mid-ranks; permutation_type='samples' permutes within rankings.
        mid = np.stack(cols, axis=-1)
        return ((mid.mean(axis=-2) - 2.5) ** 2).sum(axis=-1)

    ref = stats.permutation_test(tuple(study.mid.T), statistic, permutation_type="samples", n_resamples=4000,
                                 alternative="greater", vectorized=True, rng=np.random.default_rng(2))
    assert ours["statistic"] == pytest.approx(ref.statistic)
    assert abs(ours["pvalue"] - ref.pvalue) < 0.02
    # Under the null (random rankings) the test does not reject.
    null = rankings.RankingMatrix(study.methods, study.given, rankings.midranks(
        np.random.default_rng(5).permuted(study.given, axis=1)), study.participant, study.video,
        study.participants, study.videos, study.trials)
    assert rankings.permutation_test(null, n_resamples=999, seed=0)["pvalue"] > 0.01


def test_midranks_and_chosen_best_count_every_tied_method():
    given = np.array([[1, 1, 3, 4], [1, 2, 2, 4], [2, 1, 1, 1]], dtype=float)
    np.testing.assert_allclose(rankings.midranks(given)[0], [1.5, 1.5, 3, 4])
    np.testing.assert_allclose(rankings.midranks(given)[2], [4, 2, 2, 2])
    rm = rankings.RankingMatrix(list("ABCD"), given, rankings.midranks(given), np.zeros(3, int), np.arange(3),
                                ["p"], ["v0", "v1", "v2"], pd.DataFrame())
    np.testing.assert_array_equal(rm.best.sum(axis=0), [2, 2, 1, 1])


def test_wilcoxon_posthoc_equals_scipy_and_holm(study):
    from statsmodels.stats.multitest import multipletests

    blocks = rankings.collapse(study, "participant")
    res = rankings.posthoc_wilcoxon(blocks, method="approx")
    assert len(res) == 6
    ref_p = [stats.wilcoxon(blocks[a], blocks[b], zero_method="pratt", method="approx").pvalue
             for a, b in zip(res["method_1"], res["method_2"])]
    np.testing.assert_allclose(res["p"], ref_p)
    np.testing.assert_allclose(res["p_holm"], multipletests(ref_p, method="holm")[1])
    assert (res["p_holm"] >= res["p"] - 1e-15).all()


def test_conover_is_symmetric_and_detects_the_clear_pair(study):
    con = rankings.posthoc_conover(rankings.collapse(study, "participant"))
    np.testing.assert_allclose(con.to_numpy(), con.to_numpy().T)
    assert con.loc["A", "D"] < 0.05


def test_chosen_best_tests_against_statsmodels_on_known_table():
    from statsmodels.stats.contingency_tables import mcnemar

    # A alone best 10 times, B alone best 2 times, both (tie) 3 times, neither 5 times.
    given = np.array([[1, 2, 3]] * 10 + [[2, 1, 3]] * 2 + [[1, 1, 3]] * 3 + [[2, 2, 1]] * 5, dtype=float)
    n = len(given)
    rm = rankings.RankingMatrix(list("ABC"), given, rankings.midranks(given), np.arange(n), np.zeros(n, int),
                                [str(i) for i in range(n)], ["v"], pd.DataFrame())
    q, pairs = rankings.chosen_best_tests(rm)
    ab = pairs.iloc[0]
    assert (ab["only_1_best"], ab["only_2_best"], ab["both_best"]) == (10, 2, 3)
    # Exact McNemar = two-sided binomial test on the discordant pairs.
    assert ab["p"] == pytest.approx(stats.binomtest(10, 12).pvalue)
    assert ab["p"] == pytest.approx(mcnemar([[3, 10], [2, 5]], exact=True).pvalue)
    assert 0 <= q["pvalue"] < 0.05


def test_crossed_bootstrap_weights_are_products_of_counts():
    rng = np.random.default_rng(0)
    participant = np.array([0, 0, 1, 1, 2])
    video = np.array([0, 1, 0, 1, 1])
    w = crossed_weights(participant, video, 3, 2, 500, rng)
    rng = np.random.default_rng(0)
    cp = rng.multinomial(3, [1 / 3] * 3, size=500)
    cv = rng.multinomial(2, [0.5, 0.5], size=500)
    np.testing.assert_array_equal(w, cp[:, participant] * cv[:, video])


def test_sign_test_equals_scipy_binomtest():
    for a, b in [(39, 9), (5, 5), (0, 7), (12, 3), (1, 0)]:
        assert pairwise.sign_test(a, b) == pytest.approx(stats.binomtest(a, a + b, 0.5).pvalue)
        assert power.sign_test_pvalue(np.array([a]), np.array([a + b]))[0] == pytest.approx(
            stats.binomtest(a, a + b, 0.5).pvalue)
    assert pairwise.sign_test(0, 0) == 1.0


def test_ties_split_sensitivity_is_conservative():
    share, k, p = pairwise.ties_split_test(39, 9, 57)
    assert share == pytest.approx((39 + 28.5) / 105)
    assert k == 39 + 28  # odd tie goes to the less preferred side
    assert p == pytest.approx(stats.binomtest(67, 105).pvalue)
    assert p > pairwise.sign_test(39, 9)


def test_davidson_without_ties_equals_bradley_terry_of_choix():
    import choix

    rng = np.random.default_rng(4)
    wins = rng.integers(1, 20, size=(4, 4)).astype(float)
    np.fill_diagonal(wins, 0)
    theta, nu = models.fit_davidson(wins)
    assert nu == 0.0
    np.testing.assert_allclose(theta, choix.ilsr_pairwise_dense(wins), atol=1e-5)


def test_davidson_gradient_and_two_method_closed_form():
    from scipy import optimize

    rng = np.random.default_rng(1)
    w = rng.integers(0, 10, (3, 3)).astype(float)
    np.fill_diagonal(w, 0)
    t = rng.integers(0, 5, (3, 3)).astype(float)
    t = t + t.T
    np.fill_diagonal(t, 0)
    x = rng.normal(size=4)
    num = optimize.approx_fprime(x, lambda z: models.davidson_loglik(z, w, t)[0], 1e-7)
    np.testing.assert_allclose(models.davidson_loglik(x, w, t)[1], num, rtol=1e-4, atol=1e-4)
    # Two methods: the MLE is closed form. With a wins, b losses, e ties out of n:
    # pi_a/pi_b = a/b and nu = e / sqrt(a b).
    a, b, e = 39.0, 9.0, 57.0
    theta, nu = models.fit_davidson(np.array([[0, a], [b, 0]]), np.array([[0, e], [e, 0]]))
    assert theta[0] - theta[1] == pytest.approx(np.log(a / b), abs=1e-4)
    assert nu == pytest.approx(e / np.sqrt(a * b), rel=1e-4)


def test_thurstone_two_methods_closed_form_in_jod():
    # Ties split: 39 + 28.5 vs 9 + 28.5 -> share 0.643; JOD difference = Phi^-1(share) / Phi^-1(0.75).
    q = models.fit_thurstone(np.array([[0, 39.0], [9.0, 0]]), np.array([[0, 57.0], [57.0, 0]]))
    expected = stats.norm.ppf(67.5 / 105) / stats.norm.ppf(0.75)
    assert q[0] - q[1] == pytest.approx(expected, abs=1e-4)
    # 75% preference is exactly 1 JOD.
    q = models.fit_thurstone(np.array([[0, 75.0], [25.0, 0]]))
    assert q[0] - q[1] == pytest.approx(1.0, abs=1e-4)


def test_rankings_to_pairs_counts():
    mid = rankings.midranks(np.array([[1, 1, 3]], dtype=float))
    win, tie = models.rankings_to_pairs(mid)
    assert win[0, 0, 2] == 1 and win[0, 1, 2] == 1 and win[0, 2].sum() == 0
    assert tie[0, 0, 1] == 1 and tie[0, 1, 0] == 1 and np.trace(tie[0]) == 0


def test_competition_ranks():
    np.testing.assert_array_equal(competition_ranks(np.array([3.0, 3.0, 1.0, 2.0])), [1, 1, 4, 3])
