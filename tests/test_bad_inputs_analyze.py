"""`stereobench analyze` bad inputs: each is one `error:` line, exit 2, no traceback, nothing lost.

Every case builds its input in ``tmp_path`` from a small valid simulated study (4 participants x 3
videos x 3 methods; a pairwise study of 3 participants x 4 videos) and breaks one thing. All
checks run before any resampling, so each case takes milliseconds to a few tens of them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from study_app.analysis.simulate import simulate_pairwise, simulate_rankings
from tests.badinput import assert_clean_error


def _rankings() -> pd.DataFrame:
    return simulate_rankings(["A", "B", "C"], [1.0, 0.0, -1.0], n_participants=4, n_videos=3, seed=0)


def _pairwise() -> pd.DataFrame:
    return simulate_pairwise(["A", "B"], [0.5, 0.0], n_participants=3, n_videos=4, seed=0)


def _csv(tmp: Path, df: pd.DataFrame, name: str = "rankings.csv") -> str:
    path = tmp / name
    df.to_csv(path, index=False)
    return str(path)


def _text(tmp: Path, name: str, text: str | bytes) -> str:
    path = tmp / name
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return str(path)


def _row(df: pd.DataFrame, participant: str = "P01", trial: int = 1, method: str | None = None):
    """Index labels of one trial's rows (or one method's row)."""
    sel = (df["participant"] == participant) & (df["trial"] == trial)
    if method is not None:
        sel &= df["method"] == method
    return df.index[sel]


def _set(df: pd.DataFrame, rows, column: str, value) -> pd.DataFrame:
    df = df.copy()
    df[column] = df[column].astype(object)
    df.loc[rows, column] = value
    return df


def _good(tmp: Path) -> str:
    return _csv(tmp, _rankings())


AGG = """kind: aggregate
name: paper
rankings:
  n_rankings: {n}
  methods:
    - {{method: M2SVid, average_rank: {avg}, chosen_best: {best}}}
    - {{method: {second}, average_rank: 2.0, chosen_best: 10}}
"""
AGG_PAIRS = """kind: aggregate
pairwise:
  pairs: {pairs}
"""


def _agg(tmp: Path, n=20, avg=1.5, best=8, second="SVG", name="agg.yaml") -> str:
    return _text(tmp, name, AGG.format(n=n, avg=avg, best=best, second=second))


def _pairs(tmp: Path, pairs: str) -> str:
    return _text(tmp, "pairs.yaml", AGG_PAIRS.format(pairs=pairs))


def _pw(tmp: Path, df: pd.DataFrame) -> str:
    return _csv(tmp, df, "pairwise.csv")


def _video_twice(tmp: Path) -> str:
    df = _rankings()
    first_video = df.loc[_row(df, "P01", 1), "video"].iloc[0]
    return _csv(tmp, _set(df, _row(df, "P01", 2), "video", first_video))


def _pair_twice(tmp: Path) -> str:
    df = _pairwise()
    u1 = df[df["participant"] == "U1"]
    # U1's second comparison shows the video of the first again, with A and B swapped.
    df = _set(df, [u1.index[1]], "video", u1["video"].iloc[0])
    df.loc[u1.index[1], ["method_a", "method_b"]] = ["B", "A"]
    return _pw(tmp, df)


def _mixed_versions(tmp: Path) -> str:
    df = _rankings()
    return _csv(tmp, _set(df, df.index[df["participant"] == "P04"], "schema_version", "2.0"))


def _incomplete(tmp: Path) -> str:
    df = _rankings()
    worst = df.loc[_row(df, "P02", 2), "rank"].idxmax()
    return _csv(tmp, df.drop(index=worst))


def _single_method(tmp: Path) -> str:
    df = _rankings()
    rows = _row(df, "P01", 1)
    keep = df.loc[rows, "rank"].idxmin()
    return _csv(tmp, df.drop(index=[r for r in rows if r != keep]))


def _two_videos(tmp: Path) -> str:
    df = _rankings()
    return _csv(tmp, _set(df, _row(df, "P01", 1, "A"), "video", "video99"))


def _non_utf8(tmp: Path) -> str:
    df = _set(_rankings(), _row(_rankings(), "P01", 1), "participant", "Jos\u00e9")
    path = tmp / "latin1.csv"
    path.write_bytes(df.to_csv(index=False).encode("latin-1"))
    return str(path)


def _empty_parquet(tmp: Path) -> str:
    path = tmp / "empty.parquet"
    _rankings().iloc[:0].to_parquet(path)
    return str(path)


def _out_file(tmp: Path) -> str:
    path = tmp / "report.md"
    path.write_text("an earlier report\n")
    return str(path)


POWER_R = ["analyze", "power", "rankings", "--participants", "5", "--videos", "5", "--n-sim", "10"]
POWER_P = ["analyze", "power", "pairwise", "--participants", "5", "--videos", "5", "--n-sim", "10"]

# id -> builder(tmp) -> (argv without --out, text the error line must contain)
CASES = {
    # --- files
    "missing-csv": lambda t: (["analyze", str(t / "nope.csv")], "does not exist"),
    "missing-yaml": lambda t: (["analyze", str(t / "nope.yaml")], "does not exist"),
    "folder-as-file": lambda t: (["analyze", str(t)], "is a folder"),
    "unknown-extension": lambda t: (["analyze", _text(t, "r.xlsx", "x")], "unknown file type"),
    "no-extension": lambda t: (["analyze", _text(t, "responses", "participant\n")], "unknown file type"),
    "empty-csv": lambda t: (["analyze", _text(t, "r.csv", "")], "empty"),
    "header-only-csv": lambda t: (["analyze", _text(t, "r.csv", "participant,trial,trial_kind,video,method,rank\n")],
                                  "no rows"),
    "non-utf8-csv": lambda t: (["analyze", _non_utf8(t)], "UTF-8"),
    "corrupt-parquet": lambda t: (["analyze", _text(t, "r.parquet", b"PAR1\x00\x01garbage")], "cannot read"),
    "csv-named-parquet": lambda t: (["analyze", _text(t, "r.parquet", _rankings().to_csv(index=False))], "cannot read"),
    "empty-parquet": lambda t: (["analyze", _empty_parquet(t)], "no rows"),
    "semicolon-csv": lambda t: (["analyze", _text(t, "r.csv", _rankings().to_csv(index=False, sep=";"))],
                                "cannot tell the table kind"),
    "wrong-columns": lambda t: (["analyze", _csv(t, _rankings().rename(columns={"rank": "score"}))],
                                "cannot tell the table kind"),
    "missing-video-column": lambda t: (["analyze", _csv(t, _rankings().drop(columns="video"))],
                                       ["'video'", "required column is missing"]),
    "misspelled-optional-column": lambda t: (["analyze", _csv(t, _rankings().rename(columns={"attention_expect":
                                                                                           "attention_expct"}))],
                                             ["'attention_expct'", "did you mean 'attention_expect'"]),
    "misspelled-pairwise-column": lambda t: (["analyze", _pw(t, _pairwise().rename(columns={"repeat_of": "repeat-of"}))],
                                             "did you mean 'repeat_of'"),
    "missing-participant-column": lambda t: (["analyze", _csv(t, _rankings().drop(columns="participant"))],
                                             "'participant'"),
    "schema-version-2": lambda t: (["analyze", _csv(t, _rankings().assign(schema_version="2.0"))], "not compatible"),
    "mixed-schema-versions": lambda t: (["analyze", _mixed_versions(t)], "mixes versions"),
    "same-file-twice": lambda t: (["analyze", _good(t), str(t / "rankings.csv")], "overlap"),
    # --- rankings values
    "rank-zero": lambda t: (["analyze", _csv(t, _set(_rankings(), _row(_rankings(), method="A"), "rank", 0))],
                            "out of range"),
    "rank-above-methods": lambda t: (["analyze", _csv(t, _set(_rankings(), _row(_rankings(), method="A"), "rank", 9))],
                                     "out of range 1..3"),
    "rank-negative": lambda t: (["analyze", _csv(t, _set(_rankings(), _row(_rankings(), method="A"), "rank", -1))],
                                "out of range"),
    "rank-not-a-number": lambda t: (["analyze", _csv(t, _set(_rankings(), _row(_rankings(), method="A"), "rank", "first"))],
                                    "not a number"),
    "rank-fraction": lambda t: (["analyze", _csv(t, _set(_rankings(), _row(_rankings(), method="A"), "rank", 1.5))],
                                "not a whole number"),
    "ranks-not-a-ranking": lambda t: (["analyze", _csv(t, _set(_rankings(), _row(_rankings()), "rank", 2))],
                                      "neither competition"),
    "method-twice-in-trial": lambda t: (["analyze", _csv(t, _set(_rankings(), _row(_rankings(), method="B"), "method", "A"))],
                                        "appears twice"),
    "video-ranked-twice": lambda t: (["analyze", _video_twice(t)], ["again in main trial", "repeat"]),
    "two-videos-in-one-trial": lambda t: (["analyze", _two_videos(t)], "several values of 'video'"),
    "single-method-trial": lambda t: (["analyze", _single_method(t)], "fewer than two methods"),
    "unknown-trial-kind": lambda t: (["analyze", _csv(t, _set(_rankings(), _row(_rankings()), "trial_kind", "practice"))],
                                     "not allowed"),
    "bad-attention-expect": lambda t: (["analyze", _csv(t, _set(_rankings(), _row(_rankings(), method="A"),
                                                                 "attention_expect", "maybe"))], "not allowed"),
    "participant-missing": lambda t: (["analyze", _csv(t, _set(_rankings(), _row(_rankings(), method="A"),
                                                                "participant", ""))], "value is missing"),
    "trial-not-a-number": lambda t: (["analyze", _csv(t, _set(_rankings(), _row(_rankings()), "trial", "one"))],
                                     "not a number"),
    "incomplete-trial": lambda t: (["analyze", _incomplete(t)], "--incomplete"),
    "only-training-trials": lambda t: (["analyze", _csv(t, _rankings().assign(trial_kind="training"))], "main"),
    # --- pairwise values
    "pairwise-bad-answer": lambda t: (["analyze", _pw(t, _set(_pairwise(), [0], "answer", "yes"))], "not allowed"),
    "pairwise-self-pair": lambda t: (["analyze", _pw(t, _set(_pairwise(), [0], "method_b", "A"))], "same method"),
    "pairwise-bad-first-shown": lambda t: (["analyze", _pw(t, _set(_pairwise(), [0], "first_shown", "left"))],
                                           "not allowed"),
    "pairwise-trial-twice": lambda t: (["analyze", _pw(t, _set(_pairwise(), [1], "trial", 1))], "two answers"),
    "pairwise-pair-twice-on-a-video": lambda t: (["analyze", _pair_twice(t)], "again in main trial"),
    # --- aggregate counts
    "aggregate-without-kind": lambda t: (["analyze", _text(t, "a.yaml", "name: x\n")], "kind: aggregate"),
    "aggregate-bad-yaml": lambda t: (["analyze", _text(t, "a.yaml", "kind: [aggregate\n")], "not valid YAML"),
    "aggregate-non-utf8": lambda t: (["analyze", _text(t, "a.yaml", "kind: aggregate\nname: Jos\xe9\n".encode("latin-1"))],
                                     "UTF-8"),
    "aggregate-best-exceeds-n": lambda t: (["analyze", _agg(t, n=5, best=8)], "exceeds n_rankings"),
    "aggregate-zero-rankings": lambda t: (["analyze", _agg(t, n=0, best=0)], "at least 1"),
    "aggregate-average-rank-range": lambda t: (["analyze", _agg(t, avg=7)], "outside 1..2"),
    "aggregate-method-twice": lambda t: (["analyze", _agg(t, second="M2SVid")], "listed twice"),
    "aggregate-negative-count": lambda t: (["analyze", _pairs(t, "[{method_a: A, method_b: B, prefer_a: -1, prefer_b: 2, "
                                                                "equal: 0}]")], "non-negative"),
    "aggregate-self-pair": lambda t: (["analyze", _pairs(t, "[{method_a: A, method_b: A, prefer_a: 1, prefer_b: 2, "
                                                           "equal: 0}]")], "two methods"),
    "aggregate-pairs-not-a-list": lambda t: (["analyze", _pairs(t, "A-B")], "list"),
    # --- analysis options
    "no-responses": lambda t: (["analyze"], "no responses"),
    "methods-unknown": lambda t: (["analyze", _good(t), "--methods", "A,Zed"], "unknown method 'Zed'"),
    "methods-typo": lambda t: (["analyze", _good(t), "--methods", "A,Bx"], "Did you mean 'B'"),
    "methods-only-one": lambda t: (["analyze", _good(t), "--methods", "A"], "at least two"),
    "methods-twice": lambda t: (["analyze", _good(t), "--methods", "A,B,A"], "twice"),
    "exclude-unknown-participant": lambda t: (["analyze", _good(t), "--exclude", "P1"], ["'P1'", "Did you mean"]),
    "exclude-with-aggregate-only": lambda t: (["analyze", _agg(t), "--exclude", "P01"], "aggregate counts"),
    "n-boot-too-small": lambda t: (["analyze", _good(t), "--n-boot", "5"], "--n-boot must be at least 10"),
    "n-perm-zero": lambda t: (["analyze", _good(t), "--n-perm", "0"], "--n-perm"),
    "n-boot-model-negative": lambda t: (["analyze", _good(t), "--n-boot-model", "-3"], "--n-boot-model"),
    "n-boot-not-a-number": lambda t: (["analyze", _good(t), "--n-boot", "many"], "--n-boot"),
    "alpha-zero": lambda t: (["analyze", _good(t), "--alpha", "0"], "--alpha"),
    "alpha-above-one": lambda t: (["analyze", _good(t), "--alpha", "1.5"], "--alpha"),
    "alpha-nan": lambda t: (["analyze", _good(t), "--alpha", "nan"], "--alpha"),
    "seed-negative": lambda t: (["analyze", _good(t), "--seed", "-1"], "--seed"),
    "attention-share-above-one": lambda t: (["analyze", _good(t), "--max-attention-fail", "1.5"], "--max-attention-fail"),
    "attention-share-word": lambda t: (["analyze", _good(t), "--max-attention-fail", "most"], "--max-attention-fail"),
    "repeat-tau-above-one": lambda t: (["analyze", _good(t), "--min-repeat-tau", "2"], "--min-repeat-tau"),
    "repeat-agreement-negative": lambda t: (["analyze", _good(t), "--min-repeat-agreement", "-0.1"],
                                            "--min-repeat-agreement"),
    "min-main-trials-negative": lambda t: (["analyze", _good(t), "--min-main-trials", "-1"], "--min-main-trials"),
    "incomplete-unknown-policy": lambda t: (["analyze", _good(t), "--incomplete", "ignore"], "--incomplete"),
    "on-invalid-unknown-policy": lambda t: (["analyze", _good(t), "--on-invalid", "skip"], "--on-invalid"),
    "wilcoxon-unknown-method": lambda t: (["analyze", _good(t), "--wilcoxon", "fast"], "--wilcoxon"),
    "out-is-a-file": lambda t: (["analyze", _good(t), "--out", _out_file(t)], "is a file"),
    "out-under-a-file": lambda t: (["analyze", _good(t), "--out", str(Path(_out_file(t)) / "sub")], "under the file"),
    "demo-out-is-a-file": lambda t: (["analyze", "--demo", "--out", _out_file(t)], "is a file"),
    # --- power analysis
    "power-without-kind": lambda t: (["analyze", "power"], "say which power analysis"),
    "power-unknown-kind": lambda t: (["analyze", "power", "ranking"], "say which power analysis"),
    "power-with-files": lambda t: (POWER_R[:3] + [_good(t)] + POWER_R[3:], "reads no responses"),
    "power-with-trailing-file": lambda t: (POWER_R + [_good(t)], "unrecognized arguments"),  # argparse's own form
    "power-option-with-files": lambda t: (["analyze", "--power", "pairwise", _good(t)], "reads no responses"),
    "power-participants-negative": lambda t: (POWER_R + ["--participants", "-5"], "--participants"),
    "power-participants-zero": lambda t: (POWER_R + ["--participants", "0,5"], "--participants"),
    "power-participants-word": lambda t: (POWER_R + ["--participants", "ten"], "--participants"),
    "power-videos-zero": lambda t: (POWER_R + ["--videos", "0"], "--videos"),
    "power-alpha-zero": lambda t: (POWER_R + ["--alpha", "0"], "--alpha"),
    "power-alpha-one": lambda t: (POWER_P + ["--alpha", "1"], "--alpha"),
    "power-zero-simulations": lambda t: (POWER_R + ["--n-sim", "0"], "--n-sim"),
    "power-negative-simulations": lambda t: (POWER_P + ["--n-sim", "-10"], "--n-sim"),
    "power-one-method": lambda t: (POWER_R + ["--n-methods", "1"], "--n-methods"),
    "power-negative-rank-difference": lambda t: (POWER_R + ["--rank-difference", "-0.5"], "--rank-difference"),
    "power-impossible-rank-difference": lambda t: (POWER_R + ["--rank-difference", "3.5"], "--rank-difference"),
    "power-negative-tie-width": lambda t: (POWER_R + ["--tie-width", "-1"], "--tie-width"),
    "power-negative-participant-sd": lambda t: (POWER_R + ["--participant-sd", "-0.3"], "--participant-sd"),
    "power-target-above-one": lambda t: (POWER_R + ["--target-power", "1.5"], "--target-power"),
    "power-share-above-one": lambda t: (POWER_P + ["--share", "1.5"], "--share"),
    "power-share-zero": lambda t: (POWER_P + ["--share", "0"], "--share"),
    "power-tie-share-one": lambda t: (POWER_P + ["--tie-share", "1"], "--tie-share"),
    "power-grid-too-large": lambda t: (POWER_R + ["--n-sim", "100000", "--participants", "500", "--videos", "500"], "GiB"),
    "power-out-is-a-file": lambda t: (POWER_R + ["--out", _out_file(t)], "is a file"),
}


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_analyze_bad_input(case, tmp_path, capsys):
    argv, contains = CASES[case](tmp_path)
    if "--out" not in argv:
        out = tmp_path / "out"
        # An earlier report in --out must survive the failed call untouched.
        out.mkdir()
        (out / "report.md").write_text("an earlier report\n")
        argv = argv + ["--out", str(out)]
    before = _snapshot(tmp_path)
    assert_clean_error(argv, capsys, contains=contains)
    assert _snapshot(tmp_path) == before, "a failed analyze call changed or removed files"


def test_case_count():
    # The issue asks for at least 35 analyze cases; keep the list from shrinking unnoticed.
    assert len(CASES) >= 35


def test_valid_inputs_of_the_cases_are_accepted(tmp_path):
    """The unbroken study every case starts from is valid, so each error comes from its one change."""
    from study_app.analysis.io import load_responses

    res = load_responses([_good(tmp_path), _pw(tmp_path, _pairwise()), _agg(tmp_path)])
    assert len(res.rankings) == 4 * 3 * 3 and len(res.pairwise) == 3 * 4 and len(res.aggregates) == 1
    assert len(res.exclusions) == 0


def test_video_ranked_twice_is_excluded_not_lost_with_on_invalid_exclude(tmp_path):
    """--on-invalid exclude drops only the later trial and names it in the exclusion log."""
    from study_app.analysis.io import load_responses

    res = load_responses([_video_twice(tmp_path)], on_invalid="exclude")
    assert len(res.rankings) == 4 * 3 * 3 - 3
    assert res.exclusions[["participant", "trial"]].values.tolist() == [["P01", 2]]
    assert "again in main trial 2 (first in trial 1)" in res.exclusions["reason"].iloc[0]
