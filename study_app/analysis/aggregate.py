"""Aggregate input: a study known only from its published counts (e.g. a paper's tables).

Format (YAML or JSON; ``study_app/analysis/data/m2svid_paper.yaml`` is a full example)::

    kind: aggregate
    name: "M2SVid paper, Tables 2 and 3"
    rankings:                       # optional
      n_rankings: 112               # required: number of rankings (trials)
      n_participants: 13            # optional, shown only
      n_videos: 21                  # optional, shown only
      methods:                      # required: one entry per method
        - {method: M2SVid, average_rank: 1.43, chosen_best: 76}
    pairwise:                       # optional
      n_participants: 5
      pairs:
        - {method_a: M2SVid, method_b: StereoCrafter-25, prefer_a: 39, prefer_b: 9, equal: 57}

What can be computed from counts alone: shares of "chosen best" and their ratios, the exact
sign test of a pair (ties excluded) and the ties-split sensitivity test, and Wilson / Clopper-
Pearson intervals that *assume independent rankings / answers* (the counts carry no
participant structure, so no clustered interval or Friedman test is possible; the report
says so).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from benchmark.errors import StereobenchError
from study_app.analysis.pairwise import sign_test, ties_split_test


def _need(d: dict, key: str, where: str, kind=None):
    if not isinstance(d, dict) or key not in d:
        raise StereobenchError(f"{where}: missing key {key!r} (see docs/analysis.md, 'Aggregate input')")
    v = d[key]
    if kind is int and (not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0):
        raise StereobenchError(f"{where}: {key!r} must be a non-negative whole number, not {v!r}")
    if kind is float:
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise StereobenchError(f"{where}: {key!r} must be a number, not {v!r}") from None
    return v


def parse_aggregate(data: dict, source: str = "aggregate") -> dict:
    """Validate an aggregate mapping; returns it normalised (lists of dicts, ints)."""
    if not isinstance(data, dict) or data.get("kind") != "aggregate":
        raise StereobenchError(f"{source}: an aggregate file needs 'kind: aggregate' at the top level")
    out = {"name": str(data.get("name", Path(source).stem)), "source": source, "rankings": None, "pairwise": None}
    if data.get("rankings") is not None:
        r = data["rankings"]
        n = _need(r, "n_rankings", f"{source} rankings", int)
        if n < 1:
            raise StereobenchError(f"{source} rankings: 'n_rankings' must be at least 1, not {n}")
        methods = _need(r, "methods", f"{source} rankings")
        if not isinstance(methods, list) or len(methods) < 2:
            raise StereobenchError(f"{source} rankings: 'methods' must list at least two methods")
        names = [str(m.get("method")) for m in methods if isinstance(m, dict)]
        twice = sorted({m for m in names if names.count(m) > 1})
        if twice:
            raise StereobenchError(f"{source} rankings: method {twice[0]!r} is listed twice; give each method once")
        rows = []
        for i, m in enumerate(methods):
            where = f"{source} rankings.methods[{i}]"
            row = {"method": str(_need(m, "method", where)), "chosen_best": _need(m, "chosen_best", where, int)}
            row["average_rank"] = _need(m, "average_rank", where, float) if "average_rank" in m else np.nan
            if row["chosen_best"] > n:
                raise StereobenchError(f"{where}: chosen_best {row['chosen_best']} exceeds n_rankings {n}")
            if not np.isnan(row["average_rank"]) and not 1 <= row["average_rank"] <= len(methods):
                raise StereobenchError(f"{where}: average_rank {row['average_rank']} outside 1..{len(methods)}")
            rows.append(row)
        out["rankings"] = {"n_rankings": n, "n_participants": r.get("n_participants"), "n_videos": r.get("n_videos"),
                           "methods": rows}
    if data.get("pairwise") is not None:
        p = data["pairwise"]
        pairs = _need(p, "pairs", f"{source} pairwise")
        if not isinstance(pairs, list) or not pairs:
            raise StereobenchError(f"{source} pairwise: 'pairs' must be a list of at least one pair "
                                   "(see docs/analysis.md, 'Aggregate input')")
        rows = []
        for i, pr in enumerate(pairs):
            where = f"{source} pairwise.pairs[{i}]"
            row = {"method_a": str(_need(pr, "method_a", where)), "method_b": str(_need(pr, "method_b", where)),
                   "prefer_a": _need(pr, "prefer_a", where, int), "prefer_b": _need(pr, "prefer_b", where, int),
                   "equal": _need(pr, "equal", where, int)}
            if row["method_a"] == row["method_b"]:
                raise StereobenchError(f"{where}: method_a and method_b are both {row['method_a']!r}; a pair compares two methods")
            rows.append(row)
        out["pairwise"] = {"n_participants": p.get("n_participants"), "pairs": rows}
    if out["rankings"] is None and out["pairwise"] is None:
        raise StereobenchError(f"{source}: an aggregate file needs a 'rankings' or a 'pairwise' section")
    return out


def load_aggregate(path: str | Path) -> dict:
    """Read and validate an aggregate YAML/JSON file (UTF-8); see the module docstring for the format."""
    path = Path(path)
    if not path.exists():
        raise StereobenchError(f"aggregate file {str(path)!r} does not exist")
    if path.is_dir():
        raise StereobenchError(f"aggregate file {str(path)!r} is a folder; pass the .yaml file inside it")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise StereobenchError(f"{str(path)!r} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise StereobenchError(f"{str(path)!r} is not valid YAML/JSON: {exc}".splitlines()[0]) from None
    return parse_aggregate(data, str(path))


def analyze_aggregate(agg: dict, level: float = 0.95) -> dict:
    """Tables for an aggregate input: {'name', 'rankings': DataFrame|None, 'pairwise': DataFrame|None}."""
    out = {"name": agg["name"], "rankings": None, "pairwise": None, "meta": agg}
    if agg["rankings"]:
        n = agg["rankings"]["n_rankings"]
        df = pd.DataFrame(agg["rankings"]["methods"])
        df = df.sort_values(["average_rank", "chosen_best"], ascending=[True, False], kind="stable").reset_index(drop=True)
        top = df["chosen_best"].max()  # reference: the method chosen best most often (ratios >= 1)
        df["chosen_best_share"] = df["chosen_best"] / n
        ci = [stats.binomtest(int(k), n).proportion_ci(level, method="wilson") for k in df["chosen_best"]]
        df["share_ci_low_indep"] = [c.low for c in ci]
        df["share_ci_high_indep"] = [c.high for c in ci]
        df["best_ratio_vs_top"] = np.where(df["chosen_best"] > 0, top / df["chosen_best"].where(df["chosen_best"] > 0, 1), np.inf)
        df.insert(1, "n_rankings", n)
        out["rankings"] = df
    if agg["pairwise"]:
        rows = []
        for pr in agg["pairwise"]["pairs"]:
            a, b, e = pr["prefer_a"], pr["prefer_b"], pr["equal"]
            share_split, _, p_split = ties_split_test(a, b, e)
            ci = stats.binomtest(a, a + b).proportion_ci(level, method="exact") if a + b else None
            rows.append({**pr, "n": a + b + e, "share_a_decided": a / (a + b) if a + b else np.nan,
                         "share_a_ci_low_indep": ci.low if ci else np.nan, "share_a_ci_high_indep": ci.high if ci else np.nan,
                         "ratio_a_to_b": a / b if b else np.inf, "share_a_ties_split": share_split,
                         "p_sign": sign_test(a, b), "p_ties_split": p_split})
        out["pairwise"] = pd.DataFrame(rows)
    return out
