"""Statistics of pairwise preference studies (the paper's Table 3 and what it left out).

Per pair of methods: how often each was preferred and how often the answer was ``equal``;
an exact sign test with ties excluded (``scipy.stats.binomtest(n_a, n_a + n_b)``), and a
sensitivity analysis that counts ties half for each side (an odd tie goes to the *less*
preferred method, so the sensitivity p-value is never optimistic). Answers are clustered
(one participant gives many), so the preference share also gets a crossed-bootstrap interval
(participants x videos) and the per-participant counts are reported. A first-position bias
test asks whether the method shown first was preferred more often than half the time
(non-tie answers). With more than two methods, a Thurstone Case V (JOD) and a Davidson scale
summarise all pairs on one axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from benchmark.errors import StereobenchError, did_you_mean
from study_app.analysis.bootstrap import crossed_weights
from study_app.analysis.models import scale_with_ci


def sign_test(n_a: int, n_b: int) -> float:
    """Two-sided exact sign test of n_a vs n_b (ties already excluded); 1.0 when both are 0."""
    n = int(n_a) + int(n_b)
    return float(stats.binomtest(int(n_a), n, 0.5).pvalue) if n > 0 else 1.0


def ties_split_test(n_a: int, n_b: int, n_equal: int) -> tuple[float, float, float]:
    """Sensitivity analysis: ties split half to each side.

    Returns (share of A with ties split, k, p) where k = n_a + floor or ceil of half the ties,
    rounded towards the less preferred side, tested against n = n_a + n_b + n_equal.
    """
    n = n_a + n_b + n_equal
    half = n_equal / 2.0
    k = n_a + (np.floor(half) if n_a >= n_b else np.ceil(half))
    p = float(stats.binomtest(int(k), n, 0.5).pvalue) if n > 0 else 1.0
    return (n_a + half) / n if n else np.nan, int(k), p


def canonical_pairs(table: pd.DataFrame, methods: list[str] | None = None) -> pd.DataFrame:
    """Orient every comparison so that method_a is first in ``methods`` order (default: first seen).

    With ``methods``, only comparisons whose two methods are both listed are kept (a name not in
    the table is an error suggesting the closest one), so each unordered pair gives one row of
    the counts. Answers and ``first_shown`` are flipped with the orientation. Adds
    ``prefers_first`` (True / False / NA for equal): whether the answer chose the method shown first.
    """
    seen = list(dict.fromkeys(table[["method_a", "method_b"]].to_numpy().ravel().tolist()))
    if methods:
        unknown = [m for m in methods if m not in seen]
        if unknown:
            raise did_you_mean(unknown[0], seen, "method")
        order = list(dict.fromkeys(methods))
        table = table[table["method_a"].isin(order) & table["method_b"].isin(order)]
        if table.empty:
            raise StereobenchError(f"no pairwise comparison has both methods in --methods ({', '.join(order)}); "
                                   "list at least two methods that were compared with each other")
    else:
        order = seen
    pos = {m: i for i, m in enumerate(order)}
    t = table.copy()
    swap = t["method_a"].map(pos) > t["method_b"].map(pos)
    flip = {"a": "b", "b": "a", "equal": "equal"}
    t.loc[swap, ["method_a", "method_b"]] = t.loc[swap, ["method_b", "method_a"]].to_numpy()
    t.loc[swap, "answer"] = t.loc[swap, "answer"].map(flip)
    t.loc[swap, "first_shown"] = t.loc[swap, "first_shown"].map(flip)
    decided = t["answer"] != "equal"
    t["prefers_first"] = pd.array(np.where(decided, t["answer"] == t["first_shown"], pd.NA), dtype="boolean")
    return t


def pair_counts(t: pd.DataFrame, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """The paper's Table 3 with tests: one row per (method_a, method_b) of a canonical table.

    Columns: n, prefer_a, prefer_b, equal, share_a_decided (A's share of non-tie answers) with
    crossed-bootstrap CI, share_a_ties_split, p_sign (ties excluded), p_ties_split, and
    n_participants / n_videos.
    """
    rows = []
    rng = np.random.default_rng(seed)
    a = (1 - level) / 2
    for (ma, mb), g in t.groupby(["method_a", "method_b"], sort=False):
        n_a = int((g["answer"] == "a").sum())
        n_b = int((g["answer"] == "b").sum())
        n_e = int((g["answer"] == "equal").sum())
        share_split, _, p_split = ties_split_test(n_a, n_b, n_e)
        pc, pn = pd.factorize(g["participant"])
        vc, vn = pd.factorize(g["video"])
        w = crossed_weights(pc, vc, len(pn), len(vn), n_boot, rng)
        wa = w @ (g["answer"] == "a").to_numpy(float)
        wb = w @ (g["answer"] == "b").to_numpy(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = wa / (wa + wb)
        rows.append({
            "method_a": ma, "method_b": mb, "n": len(g), "prefer_a": n_a, "prefer_b": n_b, "equal": n_e,
            "share_a_decided": n_a / (n_a + n_b) if n_a + n_b else np.nan,
            "share_a_ci_low": np.nanquantile(share, a) if np.isfinite(share).any() else np.nan,
            "share_a_ci_high": np.nanquantile(share, 1 - a) if np.isfinite(share).any() else np.nan,
            "share_a_ties_split": share_split, "p_sign": sign_test(n_a, n_b), "p_ties_split": p_split,
            "n_participants": len(pn), "n_videos": len(vn),
        })
    return pd.DataFrame(rows)


def per_participant(t: pd.DataFrame) -> pd.DataFrame:
    """Counts per participant and pair: prefer_a, prefer_b, equal, and A's share of non-ties."""
    g = t.groupby(["participant", "method_a", "method_b", "answer"]).size().unstack("answer", fill_value=0)
    g = g.reindex(columns=["a", "b", "equal"], fill_value=0).rename(columns={"a": "prefer_a", "b": "prefer_b"})
    g.columns.name = None
    g = g.reset_index()
    dec = g["prefer_a"] + g["prefer_b"]
    g["share_a_decided"] = np.where(dec > 0, g["prefer_a"] / dec.where(dec > 0, 1), np.nan)
    return g


def position_bias(t: pd.DataFrame) -> dict:
    """Binomial test of "the method shown first is preferred" among non-tie answers."""
    dec = t["prefers_first"].dropna()
    k, n = int(dec.sum()), int(len(dec))
    return {"n_decided": n, "prefers_first": k, "share_first": k / n if n else np.nan,
            "pvalue": float(stats.binomtest(k, n, 0.5).pvalue) if n else 1.0}


@dataclass
class PairwiseAnalysis:
    table: pd.DataFrame
    counts: pd.DataFrame
    per_user: pd.DataFrame
    bias: dict
    thurstone: pd.DataFrame | None
    davidson: pd.DataFrame | None
    methods: list[str]
    notes: list[str] = field(default_factory=list)


def analyze_pairwise(table: pd.DataFrame, methods: list[str] | None = None, n_boot: int = 2000,
                     n_boot_model: int = 200, seed: int = 0) -> PairwiseAnalysis:
    """Run every pairwise statistic on the ``main`` trials of a validated pairwise table."""
    main = table[table["trial_kind"] == "main"]
    if main.empty:
        raise StereobenchError("the pairwise table has no main trials (trial_kind == 'main'); nothing to analyse")
    t = canonical_pairs(main, methods)
    all_methods = list(dict.fromkeys(t[["method_a", "method_b"]].to_numpy().ravel().tolist()))
    counts = pair_counts(t, n_boot=n_boot, seed=seed)
    notes = []
    thurstone = davidson = None
    if len(all_methods) > 2:
        pos = {m: i for i, m in enumerate(all_methods)}
        k, n = len(all_methods), len(t)
        win = np.zeros((n, k, k))
        tie = np.zeros((n, k, k))
        ia, ib = t["method_a"].map(pos).to_numpy(), t["method_b"].map(pos).to_numpy()
        ans = t["answer"].to_numpy()
        rows = np.arange(n)
        win[rows, ia, ib] = ans == "a"
        win[rows, ib, ia] = ans == "b"
        tie[rows, ia, ib] = ans == "equal"
        tie[rows, ib, ia] = ans == "equal"
        pc, _ = pd.factorize(t["participant"])
        vc, _ = pd.factorize(t["video"])
        thurstone = scale_with_ci(win, tie, pc, vc, all_methods, "thurstone", n_boot_model, seed)
        davidson = scale_with_ci(win, tie, pc, vc, all_methods, "davidson", n_boot_model, seed)
        # A scale is only identified when the comparison graph is connected.
        adj = (win + tie).sum(axis=0) > 0
        reach = adj | adj.T | np.eye(k, dtype=bool)
        for _ in range(k):
            reach = reach | ((reach.astype(int) @ reach.astype(int)) > 0)
        if not reach.all():
            notes.append("The comparison graph is not connected: scale values of unconnected groups are not comparable.")
    return PairwiseAnalysis(t, counts, per_participant(t), position_bias(t), thurstone, davidson, all_methods, notes)
