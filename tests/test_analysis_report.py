"""The paper's published counts, the report, the CLI and the power analysis end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.cli import main
from benchmark.errors import StereobenchError
from study_app.analysis import aggregate, power
from study_app.analysis.simulate import simulate_pairwise

PAPER = Path(__file__).resolve().parents[1] / "study_app" / "analysis" / "data" / "m2svid_paper.yaml"
FAST = ["--n-boot", "100", "--n-perm", "199", "--n-boot-model", "10", "--wilcoxon", "approx"]


def test_paper_aggregates_reproduce_headline_ratios_and_sign_test():
    res = aggregate.analyze_aggregate(aggregate.load_aggregate(PAPER))
    r = res["rankings"].set_index("method")
    # FACTS section 1 / paper Table 2: chosen best 76, 29, 16, 4 of 112.
    assert list(r.index) == ["M2SVid", "StereoCrafter-25", "SVG", "StereoCrafter-1"]
    assert r.loc["StereoCrafter-25", "best_ratio_vs_top"] == pytest.approx(76 / 29)
    assert round(r.loc["StereoCrafter-25", "best_ratio_vs_top"], 1) == 2.6
    assert r.loc["SVG", "best_ratio_vs_top"] == pytest.approx(4.75)
    assert r.loc["M2SVid", "chosen_best_share"] == pytest.approx(76 / 112)
    # Table 3: 39 M2SVid, 9 StereoCrafter, 57 equal of 105.
    p = res["pairwise"].iloc[0]
    assert (p["prefer_a"], p["prefer_b"], p["equal"], p["n"]) == (39, 9, 57, 105)
    assert p["p_sign"] == pytest.approx(stats.binomtest(39, 48, 0.5).pvalue)
    assert 1e-5 < p["p_sign"] < 2e-5  # 1.52e-05
    assert p["p_ties_split"] == pytest.approx(stats.binomtest(67, 105, 0.5).pvalue)


def test_aggregate_input_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: aggregate\nrankings:\n  n_rankings: 10\n  methods:\n    - {method: A, chosen_best: 11}\n"
                   "    - {method: B, chosen_best: 1}\n")
    with pytest.raises(StereobenchError, match="chosen_best 11 exceeds n_rankings 10"):
        aggregate.load_aggregate(bad)
    bad.write_text("rankings: {}\n")
    with pytest.raises(StereobenchError, match="kind: aggregate"):
        aggregate.load_aggregate(bad)


def test_cli_paper_report(tmp_path, capsys):
    assert main(["analyze", str(PAPER), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2.62x as often as StereoCrafter-25" in out and "4.75x as often as SVG" in out
    assert "39 of 105" in out and "p = 1.5e-05" in out
    md = (tmp_path / "report.md").read_text()
    assert "76/29 of 112" in md
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in html


def test_cli_demo_report_is_complete_self_contained_and_reproducible(tmp_path, capsys):
    out1, out2 = tmp_path / "a", tmp_path / "b"
    assert main(["analyze", "--demo", "--out", str(out1), *FAST]) == 0
    files = [str(out1 / "responses" / "rankings.csv"), str(out1 / "responses" / "pairwise.csv")]
    assert main(["analyze", *files, "--out", str(out2), *FAST]) == 0
    md1, md2 = (out1 / "report.md").read_text(), (out2 / "report.md").read_text()
    strip = lambda s: s.split("## Provenance")[0].split("Reproduce every number")[0]  # noqa: E731
    assert strip(md1) == strip(md2)  # same numbers from the exported files
    for section in ("## Summary", "## Quality control and exclusions", "## Ranking study", "## Pairwise study",
                    "Friedman, blocks = participants", "Friedman, blocks = videos", "Conover", "Wilcoxon",
                    "McNemar", "Cochran", "Davidson", "First-position bias", "participant excluded"):
        assert section in md1, section
    html = (out1 / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5
    assert "src=\"http" not in html and "<script" not in html
    for name in ("rank_distribution", "chosen_best", "cd_diagram", "pairwise"):
        assert (out1 / "plots" / f"{name}.png").stat().st_size > 1000
    summary = pd.read_csv(out1 / "tables" / "rankings_summary.csv")
    assert summary["method"].iloc[0] == "M2SVid"  # the simulated true best
    assert (summary["average_rank_ci_low"] <= summary["average_rank"]).all()


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "missing.csv")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    assert main(["analyze", str(tmp_path / "x.csv")]) == 2
    assert "cannot tell the table kind" in capsys.readouterr().err


def test_pairwise_analysis_counts_and_position_bias():
    from study_app.analysis.pairwise import analyze_pairwise
    from study_app.analysis.schema import validate_pairwise

    df = simulate_pairwise(["A", "B"], [0.0, 0.0], n_participants=6, n_videos=40, first_bias=1.0, seed=3)
    table, _ = validate_pairwise(df)
    res = analyze_pairwise(table, n_boot=200, seed=0)
    row = res.counts.iloc[0]
    assert row["prefer_a"] == (table["answer"] == "a").sum()
    assert row["prefer_b"] + row["prefer_a"] + row["equal"] == len(table) == row["n"]
    assert res.per_user[["prefer_a", "prefer_b", "equal"]].to_numpy().sum() == len(table)
    first = ((table["answer"] != "equal") & (table["answer"] == table["first_shown"])).sum()
    assert res.bias["prefers_first"] == first
    assert res.bias["pvalue"] < 1e-3  # a strong simulated first-position bias is detected
    df = simulate_pairwise(["A", "B", "C"], [1.0, 0.0, -1.0], n_participants=4, n_videos=6, seed=1)
    res = analyze_pairwise(validate_pairwise(df)[0], n_boot=100, n_boot_model=20)
    assert list(res.thurstone["method"]) == ["A", "B", "C"]
    assert list(res.davidson["method"]) == ["A", "B", "C"]


def test_power_grows_with_sample_and_is_calibrated():
    # Rank difference calibration: simulate with the calibrated delta and measure the difference.
    delta = power.calibrate_delta(0.5, 4)
    sd = np.sqrt(0.3 ** 2 + 0.3 ** 2 + 1.0)
    from study_app.analysis.simulate import competition_ranks

    z = np.random.default_rng(99).standard_normal((200_000, 4))
    ranks = competition_ranks(np.array([delta, 0, 0, 0]) + sd * z)
    assert ranks[:, 1].mean() - ranks[:, 0].mean() == pytest.approx(0.5, abs=0.01)
    table = power.ranking_power([4, 16], [10], rank_difference=0.5, n_sim=150, seed=0)
    assert table["power_crossed"].iloc[1] > table["power_crossed"].iloc[0] + 0.2
    assert table["power_best_vs_second"].iloc[1] > table["power_best_vs_second"].iloc[0] + 0.2
    # Under no difference the rejection rate is the size of the test.
    pw = power.pairwise_power([8], [20], share=0.5, tie_share=0.2, participant_sd=0.0, n_sim=3000, seed=0)
    assert pw["power_sign_test"].iloc[0] < 0.07
    # With answers clustered by participant, the pooled sign test is liberal; the participant-level test is not.
    pw = power.pairwise_power([5], [21], share=0.5, tie_share=0.3, participant_sd=1.0, n_sim=3000, seed=0)
    assert pw["power_sign_test"].iloc[0] > 0.15
    assert pw["power_participant_level"].iloc[0] < 0.08
    pw = power.pairwise_power([5, 20], [21], share=0.8, n_sim=1000, seed=0)
    assert pw["power_sign_test"].iloc[1] >= pw["power_sign_test"].iloc[0]
    assert power.smallest_design(pw, "power_sign_test", 0.8)["n_participants"] == 5


def test_cli_power(tmp_path, capsys):
    assert main(["analyze", "power", "pairwise", "--participants", "5,10", "--videos", "10,20", "--n-sim", "500",
                 "--out", str(tmp_path)]) == 0
    assert (tmp_path / "power_pairwise.csv").exists()
    assert "power_sign_test" in capsys.readouterr().out
    assert main(["analyze", "power", "--out", str(tmp_path)]) == 2


def test_scale_plot_draws_an_interval_that_excludes_the_estimate():
    """A percentile bootstrap interval can miss the point estimate (a small study export did:
    `stereobench analyze` crashed in matplotlib's errorbar with "'xerr' must not contain negative
    values"); the plot draws it as it is."""
    from study_app.analysis.report import plot_scale

    scale = pd.DataFrame({"method": ["a", "b", "c"], "scale": [0.5, 0.0, -0.5], "ci_low": [0.6, -0.2, -0.9],
                          "ci_high": [1.2, 0.3, -0.6], "unit": "log-strength (centred)"})
    png = plot_scale(scale, "Davidson scale")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
