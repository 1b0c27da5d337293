"""Bad input never disappears silently: each problem is a clear error or is named in the report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark.errors import StereobenchError
from study_app.analysis import io as responses_io
from study_app.analysis import rankings, schema
from study_app.analysis.pipeline import AnalysisOptions, analyze_responses
from study_app.analysis.quality import ExclusionRule
from study_app.analysis.report import build_document
from study_app.analysis.reproduce import reproduce_command
from study_app.analysis.simulate import simulate_pairwise, simulate_rankings

FAST = dict(n_boot=100, n_perm=199, n_boot_model=10, wilcoxon_method="approx",
            rule=ExclusionRule(max_attention_fail_share=None, min_repeat_tau=None))


@pytest.fixture
def ranking_df():
    return simulate_rankings(["A", "B", "C"], [1.0, 0.0, -1.0], n_participants=5, n_videos=4, n_attention=1,
                             n_repeat=1, seed=0)


def _rows(df, participant, trial):
    return df.index[(df["participant"] == participant) & (df["trial"] == trial)]


def _report_text(result) -> str:
    return build_document(result)[0].markdown()


def test_valid_table_roundtrips_through_csv_and_parquet(ranking_df, tmp_path):
    ranking_df.to_csv(tmp_path / "r.csv", index=False)
    ranking_df.to_parquet(tmp_path / "r.parquet")
    a = responses_io.load_responses([tmp_path / "r.csv"]).rankings
    b = responses_io.load_responses([tmp_path / "r.parquet"]).rankings
    assert len(a) == len(ranking_df) == len(b)
    pd.testing.assert_series_equal(a["rank"], b["rank"])
    assert str(a["rank"].dtype) == "Int64"


def test_missing_rank_is_an_error_naming_row_and_column(ranking_df, tmp_path):
    df = ranking_df.astype({"rank": "object"})
    i = _rows(df, "P02", 3)[1]
    df.loc[i, "rank"] = None
    df.to_csv(tmp_path / "r.csv", index=False)
    with pytest.raises(StereobenchError, match=rf"row {i + 1}, column 'rank', participant 'P02' trial 3: value is missing"):
        responses_io.load_responses([tmp_path / "r.csv"])


def test_missing_rank_with_exclude_is_listed_in_report(ranking_df, tmp_path):
    df = ranking_df.astype({"rank": "object"})
    df.loc[_rows(df, "P02", 3)[0], "rank"] = None
    df.to_csv(tmp_path / "r.csv", index=False)
    res = responses_io.load_responses([tmp_path / "r.csv"], on_invalid="exclude")
    assert len(res.rankings) == len(df) - len(_rows(df, "P02", 3))  # the whole trial is removed ...
    log = res.exclusions
    assert list(log["participant"]) == ["P02"] and list(log["trial"]) == [3]  # ... and logged
    assert "missing" in log["reason"].iloc[0]
    text = _report_text(analyze_responses(res, AnalysisOptions(**FAST)))
    assert "P02" in text and "value is missing" in text


def test_rank_out_of_range_is_an_error(ranking_df):
    df = ranking_df.copy()
    df.loc[_rows(df, "P01", 2)[0], "rank"] = 4  # only 3 methods in the trial
    with pytest.raises(StereobenchError, match=r"rank 4 out of range 1\.\.3"):
        schema.validate_rankings(df)
    df.loc[_rows(df, "P01", 2)[0], "rank"] = 0
    with pytest.raises(StereobenchError, match=r"rank 0 out of range"):
        schema.validate_rankings(df)


def test_non_numeric_and_fractional_ranks_are_errors(ranking_df):
    df = ranking_df.astype({"rank": "object"})
    df.loc[0, "rank"] = "first"
    with pytest.raises(StereobenchError, match="'first' is not a number"):
        schema.validate_rankings(df)
    df.loc[0, "rank"] = 1.5
    with pytest.raises(StereobenchError, match="not a whole number"):
        schema.validate_rankings(df)


def test_missing_required_column_and_bad_values(ranking_df):
    with pytest.raises(StereobenchError, match="required column is missing.*|'video'"):
        schema.validate_rankings(ranking_df.drop(columns="video"))
    df = ranking_df.copy()
    df.loc[0, "trial_kind"] = "warmup"
    with pytest.raises(StereobenchError, match="'warmup' not allowed"):
        schema.validate_rankings(df)
    df = ranking_df.copy()
    df.loc[_rows(df, "P01", 2)[1], "method"] = df.loc[_rows(df, "P01", 2)[0], "method"]
    with pytest.raises(StereobenchError, match="appears twice"):
        schema.validate_rankings(df)


def test_participant_with_no_valid_trials_is_named(ranking_df):
    df = ranking_df.copy()
    df.loc[(df["participant"] == "P04") & (df["trial_kind"] == "main"), "rank"] = 9
    raw = df
    table, log = schema.validate_rankings(raw, on_invalid="exclude")
    res = schema.Responses(rankings=table, exclusions=log)
    result = analyze_responses(res, AnalysisOptions(**FAST))
    qc = result.qc_rankings.set_index("participant")
    assert qc.loc["P04", "n_main"] == 0 and qc.loc["P04", "excluded"]
    assert "only 0 valid main trial" in qc.loc["P04", "reason"]
    text = _report_text(result)
    assert "participant excluded: only 0 valid main trial(s)" in text
    assert "P04" not in result.rankings.rm.participants


def test_method_in_only_some_trials(ranking_df):
    df = ranking_df.copy()
    drop = _rows(df, "P03", 2)
    df = df.drop(index=drop[df.loc[drop, "method"] == "C"])
    df.loc[_rows(df, "P03", 2), "rank"] = [1, 2]
    table, _ = schema.validate_rankings(df)
    with pytest.raises(StereobenchError, match=r"'C' in 19 of 20 trials"):
        analyze_responses(schema.Responses(rankings=table), AnalysisOptions(**FAST))
    res = analyze_responses(schema.Responses(rankings=table), AnalysisOptions(incomplete="drop-trials", **FAST))
    assert res.rankings.rm.n == 19
    assert "trial dropped: lacks method(s) C" in _report_text(res)
    res = analyze_responses(schema.Responses(rankings=table), AnalysisOptions(incomplete="drop-methods", **FAST))
    assert res.rankings.rm.methods == ["A", "B"]
    assert "method 'C' removed from the analysis" in _report_text(res)


def test_attention_failures_and_repeat_consistency_drive_exclusion():
    df = simulate_rankings(["A", "B", "C", "D"], [2.0, 1.0, 0.0, -1.0], n_participants=6, n_videos=5, n_attention=2,
                           n_repeat=2, careless=[2], seed=4)
    table, _ = schema.validate_rankings(df)
    fast = {**FAST, "rule": ExclusionRule()}
    result = analyze_responses(schema.Responses(rankings=table), AnalysisOptions(**fast))
    qc = result.qc_rankings.set_index("participant")
    # The careless participant ranks at random: with 4 + 1 stimuli they almost surely fail an attention trial.
    assert qc.loc["P03", "excluded"] and "attention" in qc.loc["P03", "reason"]
    assert not qc.drop(index="P03")["excluded"].any()
    assert (qc.drop(index="P03")["attention_failed"] == 0).all()
    # An attentive participant's repeat agrees with the original better than chance.
    assert qc.drop(index="P03")["repeat_tau_mean"].mean() > 0.3
    # The rule is configurable: with it disabled nobody is excluded, and that is said.
    result = analyze_responses(schema.Responses(rankings=table), AnalysisOptions(**FAST))
    assert not result.qc_rankings["excluded"].any()
    assert "No participant or trial was excluded." in _report_text(result)


def test_pairwise_validation_and_attention():
    df = simulate_pairwise(["A", "B"], [0.5, 0.0], n_participants=3, n_videos=4, n_attention=2, careless=[1], seed=0)
    table, _ = schema.validate_pairwise(df)
    assert set(table["answer"]) <= {"a", "b", "equal"}
    bad = df.copy()
    bad.loc[0, "answer"] = "left"
    with pytest.raises(StereobenchError, match="'left' not allowed"):
        schema.validate_pairwise(bad)
    bad = df.copy()
    bad.loc[0, "method_b"] = bad.loc[0, "method_a"]
    with pytest.raises(StereobenchError, match="same method"):
        schema.validate_pairwise(bad)
    upper = df.copy()
    upper["answer"] = upper["answer"].str.upper()  # case is normalised, not rejected
    assert schema.validate_pairwise(upper)[0]["answer"].isin(["a", "b", "equal"]).all()


def test_schema_docs_list_every_column():
    md = schema.schema_markdown(schema.RANKING_COLUMNS)
    for col in schema.RANKING_COLUMNS:
        assert f"`{col.name}`" in md
    assert schema.SCHEMA_VERSION.startswith("1.")


def test_incompatible_schema_version(ranking_df, tmp_path):
    ranking_df.assign(schema_version="2.0").to_csv(tmp_path / "r.csv", index=False)
    with pytest.raises(StereobenchError, match="schema_version '2.0' is not compatible"):
        responses_io.load_responses([tmp_path / "r.csv"])


# ----------------------------------------------------------------------------- reviewer findings 1, 4, 6, 7, 8

def test_rankings_without_attention_trials_give_a_report(tmp_path, capsys):
    from benchmark.cli import main

    (tmp_path / "min.csv").write_text("participant,trial,trial_kind,video,method,rank\n"
                                      "P1,1,main,v1,A,1\nP1,1,main,v1,B,2\nP2,1,main,v1,A,1\nP2,1,main,v1,B,2\n"
                                      "P3,1,main,v1,A,2\nP3,1,main,v1,B,1\n")
    assert main(["analyze", str(tmp_path / "min.csv"), "--out", str(tmp_path / "out"), "--n-boot", "50",
                 "--n-perm", "99", "--n-boot-model", "10"]) == 0
    qc = pd.read_csv(tmp_path / "out" / "tables" / "qc_rankings.csv")
    assert list(qc["attention_scored"]) == [0, 0, 0] and list(qc["attention_failed"]) == [0, 0, 0]


def test_method_missing_from_a_trial_reaches_the_incomplete_policy(ranking_df):
    df = ranking_df.copy()
    main = df[df["trial_kind"] == "main"]
    # Drop the row of the method ranked BEST in two trials: the remaining ranks are 2 and 3.
    best = main.loc[main.groupby(["participant", "trial"])["rank"].idxmin()].index[:2]
    table, log = schema.validate_rankings(df.drop(index=best))
    assert len(log) == 0
    with pytest.raises(StereobenchError, match="in 18 of 20 trials"):
        analyze_responses(schema.Responses(rankings=table), AnalysisOptions(**FAST))
    res = analyze_responses(schema.Responses(rankings=table), AnalysisOptions(incomplete="drop-trials", **FAST))
    assert res.rankings.rm.n == 18
    res = analyze_responses(schema.Responses(rankings=table), AnalysisOptions(incomplete="drop-methods", **FAST))
    rm = res.rankings.rm
    assert len(rm.methods) == 2 and rm.n == 20
    # Remaining methods re-ranked among themselves: every ranking has a method at rank 1.
    assert (rm.given.min(axis=1) == 1).all() and set(np.unique(rm.given)) <= {1.0, 2.0}


def test_missing_participant_id_reports_only_that_row(ranking_df):
    df = ranking_df.copy()
    i = _rows(df, "P02", 3)[0]
    df.loc[i, "participant"] = None
    with pytest.raises(StereobenchError, match=r"1 problem\(s\).*column 'participant': value is missing"):
        schema.validate_rankings(df)


def test_dense_ranks_are_kept_as_given():
    dense = pd.DataFrame({"participant": ["P1"] * 4 + ["P2"] * 4, "trial": 1, "trial_kind": "main",
                          "video": ["v1"] * 4 + ["v2"] * 4, "method": list("ABCD") * 2,
                          "rank": [1, 1, 2, 3, 1, 2, 3, 4]})
    rm = rankings.ranking_matrix(schema.validate_rankings(dense)[0])
    expected = dense.groupby("method")["rank"].mean()
    np.testing.assert_allclose(rm.given.mean(axis=0), expected.loc[rm.methods].to_numpy())
    np.testing.assert_allclose(rm.mid[0], [1.5, 1.5, 3, 4])
    # Removing a method re-ranks in the trial's own convention: dense stays dense.
    rm = rankings.ranking_matrix(schema.validate_rankings(dense)[0], methods=["A", "C", "D"])
    np.testing.assert_array_equal(rm.given, [[1, 2, 3], [1, 2, 3]])
    rm = rankings.ranking_matrix(schema.validate_rankings(dense)[0], methods=["B", "C", "D"])
    np.testing.assert_array_equal(rm.given, [[1, 2, 3], [1, 2, 3]])


@pytest.mark.parametrize("ranks", [[3, 3, 3], [2, 2, 3], [1, 3, 3], [1, 1, 1]])
def test_impossible_rankings_are_rejected_naming_the_trial(ranks):
    odd = pd.DataFrame({"participant": ["P1"] * 3 + ["P2"] * 3, "trial": [7] * 3 + [1] * 3, "trial_kind": "main",
                        "video": "v1", "method": list("ABC") * 2, "rank": ranks + [1, 2, 3]})
    if ranks == [1, 1, 1]:  # all tied is a valid competition and dense ranking
        assert len(schema.validate_rankings(odd)[0]) == 6
        return
    with pytest.raises(StereobenchError, match=r"participant 'P1' trial 7: ranks .* are neither competition"):
        schema.validate_rankings(odd)
    table, log = schema.validate_rankings(odd, on_invalid="exclude")
    assert list(log["participant"]) == ["P1"] and set(table["participant"]) == {"P2"}


def test_methods_option_keeps_only_listed_pairs_one_row_each():
    from benchmark.errors import StereobenchError as SE
    from study_app.analysis.pairwise import analyze_pairwise

    df = simulate_pairwise(["A", "B", "C"], [0.6, 0.0, -0.3], n_participants=3, n_videos=4, seed=2)
    swap = (df["method_a"] == "A") & (df["method_b"] == "C") & (df.index % 2 == 0)
    df.loc[swap, ["method_a", "method_b"]] = df.loc[swap, ["method_b", "method_a"]].to_numpy()
    df.loc[swap, "answer"] = df.loc[swap, "answer"].map({"a": "b", "b": "a", "equal": "equal"})
    table, _ = schema.validate_pairwise(df)
    res = analyze_pairwise(table, methods=["C", "A"], n_boot=20, n_boot_model=5)
    assert res.counts[["method_a", "method_b"]].values.tolist() == [["C", "A"]]
    ac = table[table[["method_a", "method_b"]].apply(set, axis=1) == {"A", "C"}]
    prefer_c = ((ac["method_a"] == "C") & (ac["answer"] == "a")) | ((ac["method_b"] == "C") & (ac["answer"] == "b"))
    row = res.counts.iloc[0]
    assert row["n"] == len(ac) and row["prefer_a"] == prefer_c.sum() and row["equal"] == (ac["answer"] == "equal").sum()
    assert res.methods == ["C", "A"] and set(res.table["method_a"]) | set(res.table["method_b"]) == {"A", "C"}
    with pytest.raises(SE, match="Did you mean 'B'"):
        analyze_pairwise(table, methods=["A", "Bx"], n_boot=20)


def test_reproduce_command_round_trips_every_option(tmp_path):
    import argparse
    import shlex

    from study_app.analysis import cli

    opts = AnalysisOptions(seed=7, n_boot=123, n_perm=456, n_boot_model=17, methods=("B", "A"), incomplete="drop-trials",
                           on_invalid="exclude", wilcoxon_method="approx", alpha=0.01,
                           rule=ExclusionRule(max_attention_fail_share=None, min_repeat_tau=0.2, min_repeat_agreement=0.7,
                                              min_main_trials=3, exclude=("P 07", "P11")))
    cmd = reproduce_command([str(tmp_path / "my file.csv")], opts)
    argv = shlex.split(cmd)
    assert argv[:2] == ["stereobench", "analyze"]
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(argv[2:])
    assert args.responses == [str(tmp_path / "my file.csv")]
    assert cli.options_from_args(args) == opts
    assert cli.options_from_args(parser.parse_args(shlex.split(reproduce_command(["x.csv"], AnalysisOptions()))[2:])) \
        == AnalysisOptions()


# ----------------------------------------------------------------------------- import weight of the schema

_STATISTICS = ("scipy", "statsmodels", "pingouin", "scikit_posthocs", "matplotlib", "torch")
_ANALYSIS_MODULES = ("aggregate", "bootstrap", "cli", "io", "models", "pairwise", "pipeline", "power", "quality",
                     "rankings", "report", "simulate")


def _modules_after_import(module: str) -> set[str]:
    """sys.modules of a fresh interpreter after ``import module`` (nothing cached from this one)."""
    import subprocess
    import sys
    from pathlib import Path

    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in _STATISTICS
                  or m in {f"study_app.analysis.{name}" for name in _ANALYSIS_MODULES})


def test_schema_imports_no_statistics_in_a_fresh_interpreter():
    # The Streamlit app imports the response schema; it must not pay for scipy/statsmodels.
    loaded = _modules_after_import("study_app.analysis.schema")
    assert "pandas" in loaded and "study_app.analysis.schema" in loaded
    assert _heavy(loaded) == []
    # The check can fail: the statistics modules do pull these in.
    heavy = _heavy(_modules_after_import("study_app.analysis.rankings"))
    assert "scipy" in heavy and "study_app.analysis.bootstrap" in heavy
