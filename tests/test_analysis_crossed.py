"""The crossed participant x video design: the decision rule holds alpha, the power tool says so,
and the report words its conclusions from the p-values (statistics reviewer's findings 2, 3, 5, 9)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from study_app.analysis import power, rankings
from study_app.analysis.bootstrap import crossed_weights
from study_app.analysis.pipeline import AnalysisOptions, analyze_responses
from study_app.analysis.quality import ExclusionRule
from study_app.analysis.report import best_ratio_lines, build_document
from study_app.analysis.schema import Responses, validate_rankings
from study_app.analysis.simulate import simulate_rankings

FAST = dict(n_boot=100, n_perm=199, n_boot_model=10, wilcoxon_method="approx",
            rule=ExclusionRule(max_attention_fail_share=None, min_repeat_tau=None))


def _rm(true_scores, n_p, n_v, seed, **kw):
    df = simulate_rankings([f"M{i}" for i in range(len(true_scores))], true_scores, n_p, n_v, seed=seed, **kw)
    return rankings.ranking_matrix(validate_rankings(df)[0])


def test_pair_test_variances_equal_statsmodels_two_way_cluster_and_t_test():
    import statsmodels.api as sm

    rm = _rm([0.5, 0.0, 0.0], 9, 7, seed=1, tie_width=0.5)
    keep = np.random.default_rng(0).random(rm.n) < 0.8  # unbalanced: drop a fifth of the rankings
    mid, part, vid = rm.mid[keep], rm.participant[keep], rm.video[keep]
    res = rankings.crossed_robust_test(mid, part, vid, np.array([1.0, -1.0, 0.0]))
    d = mid[:, 0] - mid[:, 1]
    # Independent reference: OLS on a constant with statsmodels' two-way cluster-robust covariance
    # (Cameron-Gelbach-Miller; its small-sample factor is G/(G-1) per term, N-1/N-K = 1 here).
    fit = sm.OLS(d, np.ones((len(d), 1))).fit(cov_type="cluster", cov_kwds={"groups": np.column_stack([part, vid])})
    g = min(len(np.unique(part)), len(np.unique(vid)))
    assert res["mean_difference"][0] == pytest.approx(d.mean())
    assert res["statistic"] == pytest.approx(d.mean() ** 2 / fit.bse[0] ** 2, rel=1e-8)
    assert res["p_two_way"] == pytest.approx(stats.f.sf(d.mean() ** 2 / fit.bse[0] ** 2, 1, g - 1), rel=1e-8)
    # Balanced design: the participant-clustered test is the one-sample t-test of per-participant means.
    d_full = rm.mid[:, 0] - rm.mid[:, 1]
    res = rankings.crossed_robust_test(rm.mid, rm.participant, rm.video, np.array([1.0, -1.0, 0.0]))
    per_p = pd.Series(d_full).groupby(rm.participant).mean()
    assert res["p_participant"] == pytest.approx(stats.ttest_1samp(per_p, 0.0).pvalue, rel=1e-8)
    assert res["pvalue"] == max(res["p_two_way"], res["p_participant"], res["p_video"])


def test_power_at_zero_effect_is_near_alpha_and_friedman_videos_fixed_is_not():
    # 400 simulated null studies per design: Monte Carlo SE of a 5% rate is 0.011.
    table = power.ranking_power([32, 12], [5, 12], rank_difference=0.0, n_sim=400, seed=3)
    assert table.attrs["latent_delta"] == 0.0
    for col in ("type1_crossed", "type1_best_vs_second", "power_crossed", "power_best_vs_second"):
        assert (table[col] <= 0.05 + 3 * 0.011).all(), (col, table[col].tolist())
    # The per-participant Friedman test (videos treated as fixed) rejects far too often with many
    # participants and few videos: the check above can fail.
    fixed = table.set_index(["n_participants", "n_videos"]).loc[(32, 5), "type1_friedman_videos_fixed"]
    assert fixed > 0.15
    # With a real difference the rule still has power.
    table = power.ranking_power([24], [12], rank_difference=0.5, n_sim=200, seed=0)
    assert table["power_best_vs_second"].iloc[0] > 0.5 and table["type1_best_vs_second"].iloc[0] < 0.09


@pytest.mark.slow
@pytest.mark.parametrize("sds", [(0.3, 0.3), (1.0, 1.0), (0.0, 0.5), (0.5, 0.0), (0.0, 0.0)])
def test_type1_error_many_simulations(sds):
    table = power.ranking_power([8, 20, 40, 13], [20, 10], rank_difference=0.0, participant_sd=sds[0],
                                video_sd=sds[1], n_sim=2000, seed=11)
    # 2000 studies: SE 0.005; the rule is approximate (F reference), allow 0.07.
    assert (table["type1_crossed"] <= 0.07).all() and (table["type1_best_vs_second"] <= 0.07).all()


def test_smallest_design_skips_designs_whose_power_is_type1_inflation():
    table = pd.DataFrame({"n_participants": [8, 16], "n_videos": [5, 5], "n_rankings": [40, 80],
                          "power_crossed": [0.9, 0.95], "type1_crossed": [0.30, 0.04]})
    table.attrs.update({"alpha": 0.05, "n_sim": 400})
    assert power.smallest_design(table, "power_crossed", 0.8)["n_participants"] == 16
    table["type1_crossed"] = 0.05
    assert power.smallest_design(table, "power_crossed", 0.8)["n_participants"] == 8


def _summary(result) -> list[str]:
    doc, _ = build_document(result)
    return next(b[1] for b in doc.blocks if b[0] == "ul")


def test_summary_is_worded_from_the_p_values_at_alpha():
    null = simulate_rankings(["A", "B", "C"], [0, 0, 0], n_participants=6, n_videos=6, seed=11)
    res = analyze_responses(Responses(rankings=validate_rankings(null)[0]), AnalysisOptions(**FAST))
    p = res.rankings.crossed["pvalue"]
    lines = " ".join(_summary(res))
    assert p >= 0.05
    assert "The methods' ranks differ" not in lines and "No difference between the methods' ranks was shown" in lines
    assert "videos treated as fixed" in lines and "sharp null" in lines and "not cluster-robust" in lines
    strong = simulate_rankings(["A", "B", "C"], [2.0, 0.0, -2.0], n_participants=8, n_videos=8, seed=1)
    res = analyze_responses(Responses(rankings=validate_rankings(strong)[0]), AnalysisOptions(**FAST))
    assert res.rankings.crossed["pvalue"] < 0.05
    assert "The methods' ranks differ at alpha = 0.05" in " ".join(_summary(res))
    # The chosen alpha is used: at a tiny alpha the same data do not reach the verdict.
    res = analyze_responses(Responses(rankings=validate_rankings(strong)[0]),
                            AnalysisOptions(alpha=res.rankings.crossed["pvalue"] / 2, **FAST))
    assert "The methods' ranks differ" not in " ".join(_summary(res))


def _matrix(given, participant, video):
    given = np.asarray(given, dtype=float)
    return rankings.RankingMatrix(list("ABC")[:given.shape[1]], given, rankings.midranks(given),
                                  np.asarray(participant), np.asarray(video),
                                  [f"p{i}" for i in range(max(participant) + 1)],
                                  [f"v{i}" for i in range(max(video) + 1)], pd.DataFrame())


def test_ratio_reference_is_most_chosen_best_and_infinite_resamples_are_kept():
    # A has the best average rank (1.67) but B is ranked best more often (6 vs 4); C twice, both
    # by participant 0, so resamples without participant 0 have C never best (ratio x/0).
    a_best, b_best, c_best = [1, 3, 2], [2, 1, 3], [2, 3, 1]
    given = np.array([c_best] + [a_best] * 3 + [c_best] + [a_best] + [b_best] * 6, dtype=float)
    n = len(given)
    rm = _matrix(given, np.arange(n) % 4, np.arange(n) // 4)
    t = rankings.summary(rm, n_boot=400, seed=0)
    assert list(t["method"]) == ["A", "B", "C"]  # sorted by average rank
    assert t.attrs["best_ratio_reference"] == "B"
    ref = t.set_index("method")
    assert ref.loc["A", "best_ratio_vs_top"] == pytest.approx(6 / 4)
    assert ref.loc["C", "best_ratio_vs_top"] == pytest.approx(6 / 2)
    assert (t["best_ratio_vs_top"] >= 1).all()
    # Independent replicate of the interval: same weights, x/0 = inf, 0/0 dropped, order statistics.
    w = crossed_weights(rm.participant, rm.video, 4, 3, 400, np.random.default_rng(0))
    w = w[w.sum(axis=1) > 0]
    cb, cc = w @ (given[:, 1] == 1), w @ (given[:, 2] == 1)
    ratio = np.where(cc > 0, cb / np.where(cc > 0, cc, 1), np.where(cb > 0, np.inf, np.nan))
    ratio = ratio[~np.isnan(ratio)]
    assert np.mean(np.isinf(ratio)) > 0.1  # many resamples never pick C as best
    lo, hi = np.quantile(ratio, [0.025, 0.975], method="inverted_cdf")
    assert ref.loc["C", "best_ratio_ci_low"] == lo and ref.loc["C", "best_ratio_ci_high"] == hi == np.inf
    lines = best_ratio_lines(t, n)
    assert len(lines) == 2 and all(line.startswith("**B** was ranked best") for line in lines)
    assert "1.50x as often as A" in lines[0] and "3.00x as often as C" in lines[1] and lines[1].endswith("-∞x).")
