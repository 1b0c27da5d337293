"""The response tables a user study exports, versioned and validated on load.

Two long tables, one row per answer unit; the study app writes exactly these (CSV or Parquet)
and ``stereobench analyze`` reads them back.

* **Rankings** (desktop study): one row per (participant, trial, method). A trial shows the same
  clip converted by several methods side by side; the participant gives each method a rank,
  1 = best, ties allowed (tied methods share a value). Ranks are stored *as given*: both
  competition ranks (1, 1, 3, 4) and dense ranks (1, 1, 2, 3) are valid; the analysis converts
  them to mid-ranks (1.5, 1.5, 3, 4) for the tests and also reports the average of the given
  ranks, which is what the M2SVid paper's Table 2 shows.
* **Pairwise** (VR study): one row per comparison of two methods on one clip; the answer names
  the preferred method (``a`` / ``b``) or ``equal``, independent of the order shown, and
  ``first_shown`` records which one was shown first (or on the left).

Every column is described in :data:`RANKING_COLUMNS` / :data:`PAIRWISE_COLUMNS` (name, dtype,
required, allowed values, meaning); ``docs/analysis.md`` prints the same tables.
:func:`validate_rankings` / :func:`validate_pairwise` coerce dtypes and check every rule;
problems are reported with the row number (1-based data row of the file) and column. Reading
files is :func:`study_app.analysis.io.load_responses`.
Validation never drops rows silently: with ``on_invalid="error"`` (default) the first problems
raise :class:`StereobenchError`; with ``on_invalid="exclude"`` the affected trials are removed
and each removal is returned in the exclusion log that the report prints.

This module imports only pandas/NumPy and :mod:`benchmark.errors` (no statistics, no file
formats), so the Streamlit study app can import it cheaply; ``tests/test_analysis_schema.py``
checks that in a fresh interpreter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from benchmark.errors import StereobenchError

#: Version of the response schema. Bump the major number when a column changes meaning.
SCHEMA_VERSION = "1.0"

TRIAL_KINDS = ("main", "attention", "repeat", "training")
ATTENTION_EXPECT_RANKING = ("", "worst", "best")
ANSWERS = ("a", "b", "equal")
FIRST_SHOWN = ("a", "b")


@dataclass(frozen=True)
class Column:
    """One column of a response table."""

    name: str
    dtype: str  # "string", "int", "float", "datetime", "bool"
    required: bool
    description: str
    allowed: tuple[str, ...] = ()


_COMMON_HEAD = [
    Column("schema_version", "string", False, f"Schema version of the export, currently {SCHEMA_VERSION!r}."),
    Column("study_id", "string", False, "Identifier of the study (one file may hold several studies only if this differs)."),
    Column("participant", "string", True, "Anonymous participant id; stable across sessions."),
    Column("session", "string", False, "Session id (a participant may do several sessions)."),
    Column("trial", "int", True, "Trial number, unique within a participant (order of presentation)."),
    Column("trial_kind", "string", True,
           "main = analysed; attention = a check with a known answer; repeat = a repeated main trial "
           "(consistency); training = warm-up, never analysed.", TRIAL_KINDS),
    Column("video", "string", True, "Identifier of the source clip shown in the trial."),
]
_COMMON_TAIL = [
    Column("repeat_of", "int", False, "For trial_kind=repeat: the trial number it repeats (same participant)."),
    Column("started_at", "datetime", False, "When the trial was shown (ISO 8601, UTC)."),
    Column("answered_at", "datetime", False, "When the answer was submitted (ISO 8601, UTC)."),
    Column("device", "string", False, "Display used, e.g. desktop, quest3, visionpro."),
]

RANKING_COLUMNS: tuple[Column, ...] = tuple(_COMMON_HEAD + [
    Column("method", "string", True, "Method (or control stimulus) shown; names as in the benchmark registry."),
    Column("slot", "int", False, "Screen position the method was shown in (0 = leftmost), randomised per trial."),
    Column("rank", "int", True, "Rank given, 1 = best, up to the number of methods in the trial; ties share a value."),
    Column("attention_expect", "string", False,
           "Only in attention trials: 'worst' for the clearly worst control (e.g. the raw warped view "
           "with holes), 'best' for a hidden reference; empty for ordinary methods.", ATTENTION_EXPECT_RANKING),
] + _COMMON_TAIL)

PAIRWISE_COLUMNS: tuple[Column, ...] = tuple(_COMMON_HEAD + [
    Column("method_a", "string", True, "First method of the pair (a label, not the display order)."),
    Column("method_b", "string", True, "Second method of the pair."),
    Column("first_shown", "string", True, "Which of the pair was shown first / on the left.", FIRST_SHOWN),
    Column("answer", "string", True, "Preferred method: a, b, or equal.", ANSWERS),
    Column("attention_expect", "string", False,
           "Only in attention trials: the answer a careful participant must give (a or b).", ("", "a", "b")),
] + _COMMON_TAIL)

_KEY_RANKING = ("participant", "trial", "method")
_KEY_PAIRWISE = ("participant", "trial")


@dataclass
class Responses:
    """Validated response tables plus the log of what validation removed.

    ``rankings`` / ``pairwise``: DataFrames with the schema's columns (optional ones filled),
    or None when the input had no table of that kind. ``aggregates``: parsed aggregate inputs
    (see :mod:`study_app.analysis.aggregate`). ``exclusions``: one row per removed trial or
    participant with columns ``table, participant, trial, reason``.
    """

    rankings: pd.DataFrame | None = None
    pairwise: pd.DataFrame | None = None
    aggregates: list[dict] = field(default_factory=list)
    exclusions: pd.DataFrame = field(default_factory=lambda: empty_exclusions())
    sources: list[str] = field(default_factory=list)


def empty_exclusions() -> pd.DataFrame:
    return pd.DataFrame({"table": pd.Series(dtype="string"), "participant": pd.Series(dtype="string"),
                         "trial": pd.Series(dtype="Int64"), "reason": pd.Series(dtype="string")})


@dataclass
class Problem:
    row: int | None  # 1-based data row in the file (header excluded); None for table-level
    column: str | None
    message: str
    participant: str | None = None
    trial: int | None = None

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column:
            where.append(f"column {self.column!r}")
        if self.participant is not None:
            where.append(f"participant {self.participant!r} trial {self.trial}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


def detect_kind(df: pd.DataFrame, source: str = "table") -> str:
    cols = set(df.columns)
    if "rank" in cols and "method" in cols:
        return "rankings"
    if "answer" in cols and "method_a" in cols:
        return "pairwise"
    raise StereobenchError(
        f"{source}: cannot tell the table kind; a rankings table has columns 'method' and 'rank', a pairwise "
        f"table 'method_a', 'method_b' and 'answer' (found: {', '.join(map(str, df.columns))})")


def _misspelled_columns(df: pd.DataFrame, columns: tuple[Column, ...], problems: list[Problem]) -> None:
    """Extra columns are allowed (exports may carry notes), but one that is a near miss of an
    absent schema column is a typo: ignoring it would silently skip what it holds (an
    ``attention_expct`` column would disable the attention check)."""
    import difflib

    absent = [c.name for c in columns if c.name not in df.columns]
    for name in map(str, df.columns):
        if name in {c.name for c in columns}:
            continue
        close = difflib.get_close_matches(name.strip().lower(), absent, n=1, cutoff=0.85)  # not device_id ~ device
        if close:
            problems.append(Problem(None, name, f"is not a column of the schema; did you mean {close[0]!r}? Rename it "
                                                "in the export (extra columns are allowed, near misses are not)"))


def _coerce(df: pd.DataFrame, columns: tuple[Column, ...], problems: list[Problem]) -> pd.DataFrame:
    _misspelled_columns(df, columns, problems)
    out = pd.DataFrame(index=df.index)
    for col in columns:
        if col.name not in df.columns:
            if col.required:
                problems.append(Problem(None, col.name, f"required column is missing ({col.description})"))
                continue
            raw = pd.Series([pd.NA] * len(df), index=df.index, dtype="object")
        else:
            raw = df[col.name]
        if col.dtype == "string":
            s = raw.astype("string").str.strip()
            if col.allowed:
                s = s.str.lower().fillna("") if "" in col.allowed else s.str.lower()
                bad = ~s.isin(col.allowed) & ~(s.isna() & ("" in col.allowed))
                bad &= ~s.isna() | col.required
                for i in np.flatnonzero(bad.to_numpy(dtype=bool, na_value=True))[:5]:
                    problems.append(Problem(int(i) + 1, col.name,
                                            f"value {raw.iloc[i]!r} not allowed; use one of {', '.join(repr(a) for a in col.allowed)}"))
            out[col.name] = s
        elif col.dtype in ("int", "float"):
            num = pd.to_numeric(raw, errors="coerce")
            unparsable = num.isna() & raw.notna() & (raw.astype("string").str.strip() != "")
            for i in np.flatnonzero(unparsable.to_numpy(dtype=bool, na_value=False))[:5]:
                problems.append(Problem(int(i) + 1, col.name, f"value {raw.iloc[i]!r} is not a number"))
            if col.dtype == "int":
                frac = num.notna() & (num != np.round(num))
                for i in np.flatnonzero(frac.to_numpy(dtype=bool, na_value=False))[:5]:
                    problems.append(Problem(int(i) + 1, col.name, f"value {raw.iloc[i]!r} is not a whole number"))
                num = num.where(~frac).round().astype("Int64")
            out[col.name] = num
        elif col.dtype == "datetime":
            out[col.name] = pd.to_datetime(raw, errors="coerce", utc=True)
        else:
            out[col.name] = raw
    return out


def _required_missing(df: pd.DataFrame, columns: tuple[Column, ...], problems: list[Problem]) -> pd.Series:
    """Rows with an empty required cell (each reported); returns the boolean mask."""
    mask = pd.Series(False, index=df.index)
    for col in columns:
        if col.required and col.name in df.columns:
            miss = df[col.name].isna()
            if col.dtype == "string":
                miss |= df[col.name].fillna("") == ""
            miss = miss.astype(bool)
            for i in np.flatnonzero(miss.to_numpy())[:20]:
                problems.append(Problem(int(i) + 1, col.name, "value is missing",
                                        _str_or_none(df["participant"].iloc[i]) if "participant" in df else None,
                                        _int_or_none(df["trial"].iloc[i]) if "trial" in df else None))
            mask |= miss
    return mask


def _str_or_none(v):
    return None if pd.isna(v) else str(v)


def _int_or_none(v):
    return None if pd.isna(v) else int(v)


def validate_rankings(df: pd.DataFrame, source: str = "rankings", on_invalid: str = "error") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Coerce and check a rankings table. Returns (clean table, exclusion log).

    Checks: required columns present and filled; trial_kind allowed; rank a whole number in
    1..(number of methods the study shows in a trial of that kind: the distinct methods of all
    trials of the kind, so a trial missing a method's row is left to ``--incomplete``); each
    trial's ranks a competition (1, 1, 3, 4) or dense (1, 1, 2, 3) ranking (minimum 1); no method
    twice in one trial; one video and one trial kind per (participant, trial); at least two
    methods per trial. A problem in a row invalidates its whole trial.
    """
    problems: list[Problem] = []
    table = _coerce(df.reset_index(drop=True), RANKING_COLUMNS, problems)
    if any(p.row is None for p in problems):
        raise StereobenchError(f"{source}: " + "; ".join(str(p) for p in problems if p.row is None))
    bad_row = _required_missing(table, RANKING_COLUMNS, problems)
    bad_row |= pd.Series([False] * len(table))
    table["_row"] = np.arange(1, len(table) + 1)
    kind_ok = table["trial_kind"].isin(TRIAL_KINDS).fillna(False).astype(bool)
    bad_row |= ~kind_ok
    ae = table["attention_expect"].fillna("")
    bad_row |= ~ae.isin(ATTENTION_EXPECT_RANKING).astype(bool)
    # Trial-level rules on rows whose keys are present.
    keyed = table.dropna(subset=["participant", "trial"])
    n_methods = keyed.groupby(["participant", "trial"])["method"].transform("size")
    # The rank range is the number of methods the study shows in a trial of that kind (the
    # distinct methods over all trials of the kind), not the rows present: a trial whose row
    # for one method is missing still ranked among all of them (--incomplete handles it).
    kind_key = keyed["trial_kind"].fillna("")
    n_shown = keyed.groupby(kind_key)["method"].transform("nunique").clip(lower=n_methods)
    rank = keyed["rank"]
    out_of_range = (rank.notna() & ((rank < 1) | (rank > n_shown))).to_numpy(dtype=bool)
    for i in keyed.index[out_of_range][:20]:
        problems.append(Problem(i + 1, "rank", f"rank {int(table.at[i, 'rank'])} out of range 1..{int(n_shown[i])} "
                                f"(the study shows {int(n_shown[i])} methods per {table.at[i, 'trial_kind']} trial)",
                                table.at[i, "participant"], int(table.at[i, "trial"])))
    bad_row.loc[keyed.index[out_of_range]] = True
    # Each ranking must follow the competition (1, 1, 3, 4) or the dense (1, 1, 2, 3) convention.
    checkable = keyed[~out_of_range & rank.notna().to_numpy(dtype=bool)]
    complete = checkable.groupby(["participant", "trial"])["rank"].transform("size") == \
        keyed.groupby(["participant", "trial"])["rank"].transform("size").loc[checkable.index]
    n_bad_conv = 0
    for (part, trial), g in checkable[complete.to_numpy(dtype=bool)].groupby(["participant", "trial"], sort=False):
        ranks = g["rank"].to_numpy(dtype=np.int64)
        if _ranking_consistent(ranks, int(n_shown[g.index[0]])):
            continue
        n_bad_conv += 1
        if n_bad_conv <= 20:
            shown = ", ".join(str(r) for r in ranks)
            problems.append(Problem(int(g.index[0]) + 1, "rank",
                                    f"ranks ({shown}) are neither competition ranks (1, 1, 3, ...) nor dense ranks (1, 1, 2, ...) "
                                    f"of the {int(n_shown[g.index[0]])} methods shown: the best gets rank 1 and tied methods "
                                    "share a rank", str(part), int(trial)))
        bad_row.loc[g.index] = True
    dup = keyed.duplicated(subset=list(_KEY_RANKING), keep=False)
    for i in keyed.index[dup.to_numpy()][:20]:
        problems.append(Problem(i + 1, "method", f"method {table.at[i, 'method']!r} appears twice in the same trial",
                                table.at[i, "participant"], int(table.at[i, "trial"])))
    bad_row.loc[keyed.index[dup.to_numpy()]] = True
    for colname in ("video", "trial_kind"):
        nun = keyed.groupby(["participant", "trial"])[colname].transform("nunique")
        for i in keyed.index[(nun > 1).to_numpy()][:5]:
            problems.append(Problem(i + 1, colname, f"one trial has several values of {colname!r}; each trial shows one clip",
                                    table.at[i, "participant"], int(table.at[i, "trial"])))
        bad_row.loc[keyed.index[(nun > 1).to_numpy()]] = True
    again = _main_trial_again(keyed, ["method"], table, problems, "ranked", dup.to_numpy())
    bad_row.loc[keyed.index[again]] = True
    single = n_methods < 2
    for i in keyed.index[single.to_numpy()][:5]:
        problems.append(Problem(i + 1, "method", "trial ranks fewer than two methods", table.at[i, "participant"], int(table.at[i, "trial"])))
    bad_row.loc[keyed.index[single.to_numpy()]] = True
    table = table.drop(columns="_row")
    return _finish(table, bad_row, problems, source, on_invalid, "rankings")


def _main_trial_again(keyed: pd.DataFrame, what: list[str], table: pd.DataFrame, problems: list[Problem],
                      verb: str, skip: np.ndarray | None = None) -> np.ndarray:
    """Rows of a later main trial that repeat (participant, video, ``what``) of an earlier main trial.

    A participant who judges the same stimuli twice as ``main`` trials would count twice in
    every statistic; a deliberate repeat is ``trial_kind='repeat'`` with ``repeat_of``, which
    feeds the consistency check instead. ``skip``: rows already reported for another reason.
    Returns a bool mask (len(keyed),); each flagged trial is reported once.
    """
    main = (keyed["trial_kind"] == "main").fillna(False).to_numpy(dtype=bool)
    if skip is not None:
        main &= ~skip
    cols = ["participant", "video", *what]
    rows = keyed[main].sort_values("trial", kind="stable")
    later = rows.duplicated(subset=cols, keep="first")
    mask = np.zeros(len(keyed), dtype=bool)
    if not later.any():
        return mask
    mask[keyed.index.get_indexer(rows.index[later.to_numpy()])] = True
    first_trial = rows.groupby(cols, sort=False)["trial"].transform("min")
    reported = set()
    for i in rows.index[later.to_numpy()]:
        key = (table.at[i, "participant"], int(table.at[i, "trial"]))
        if key in reported or len(reported) >= 5:
            continue
        reported.add(key)
        problems.append(Problem(i + 1, "video", f"participant {key[0]!r} {verb} video {table.at[i, 'video']!r} again in "
                                f"main trial {key[1]} (first in trial {int(first_trial[i])}); mark a deliberate repeat "
                                f"as trial_kind 'repeat' with repeat_of {int(first_trial[i])}", key[0], key[1]))
    return mask


def _ranking_consistent(ranks: np.ndarray, n_shown: int) -> bool:
    """Whether the ranks of one trial are a competition or dense ranking of ``n_shown`` methods.

    With fewer rows than methods shown (a method's row is missing), the ranks must become such
    a ranking once the missing methods are put back somewhere; with all rows present this is
    exact: the minimum is 1, and either each tie group of size c at rank r is followed by rank
    r + c (competition) or the distinct ranks are 1, 2, ..., D (dense).
    """
    values, counts = np.unique(ranks, return_counts=True)
    missing = n_shown - len(ranks)
    if values[0] < 1 or missing < 0:
        return False
    # Competition: filling in the missing methods needs (values[0] - 1) + sum of the gaps
    # (values[i+1] - values[i] - counts[i]) + (n_shown - values[-1] - counts[-1] + 1) = missing
    # methods in total, so it is possible exactly when no term is negative.
    competition = bool(np.all(counts[:-1] <= np.diff(values)) and values[-1] + counts[-1] - 1 <= n_shown)
    # Dense: every skipped value 1..max needs at least one missing method.
    dense = int(values[-1]) - len(values) <= missing
    return competition or dense


def validate_pairwise(df: pd.DataFrame, source: str = "pairwise", on_invalid: str = "error") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Coerce and check a pairwise table. Returns (clean table, exclusion log).

    Checks: required columns present and filled; answer in a/b/equal; first_shown in a/b;
    method_a differs from method_b; one row per (participant, trial).
    """
    problems: list[Problem] = []
    table = _coerce(df.reset_index(drop=True), PAIRWISE_COLUMNS, problems)
    if any(p.row is None for p in problems):
        raise StereobenchError(f"{source}: " + "; ".join(str(p) for p in problems if p.row is None))
    bad_row = _required_missing(table, PAIRWISE_COLUMNS, problems)
    for col, allowed in (("trial_kind", TRIAL_KINDS), ("answer", ANSWERS), ("first_shown", FIRST_SHOWN)):
        bad_row |= ~table[col].isin(allowed).fillna(False).astype(bool)
    bad_row |= ~table["attention_expect"].fillna("").isin(("", "a", "b")).astype(bool)
    same = (table["method_a"] == table["method_b"]).fillna(False).astype(bool)
    for i in np.flatnonzero(same.to_numpy())[:5]:
        problems.append(Problem(int(i) + 1, "method_b", "method_a and method_b are the same method"))
    bad_row |= same
    dup = table.duplicated(subset=list(_KEY_PAIRWISE), keep=False) & table["trial"].notna()
    for i in np.flatnonzero(dup.to_numpy())[:5]:
        problems.append(Problem(int(i) + 1, "trial", "two answers for the same (participant, trial)",
                                table.at[i, "participant"], _int_or_none(table.at[i, "trial"])))
    bad_row |= dup
    # The same pair on the same video twice, in either order, is one judgement given twice.
    keyed = table.dropna(subset=["participant", "trial"]).copy()
    a, b = keyed["method_a"].fillna(""), keyed["method_b"].fillna("")
    keyed["_pair"] = a.where(a <= b, b) + "\x00" + b.where(a <= b, a)
    again = _main_trial_again(keyed, ["_pair"], table, problems, "compared the same pair on",
                              dup.loc[keyed.index].to_numpy(dtype=bool))
    bad_row.loc[keyed.index[again]] = True
    return _finish(table, bad_row, problems, source, on_invalid, "pairwise")


def _finish(table, bad_row, problems, source, on_invalid, kind):
    if on_invalid not in ("error", "exclude"):
        raise StereobenchError(f"on_invalid must be 'error' or 'exclude', not {on_invalid!r}")
    bad_row = bad_row.astype(bool)
    if not bad_row.any():
        return table.reset_index(drop=True), empty_exclusions()
    if on_invalid == "error" or table.loc[bad_row, ["participant", "trial"]].isna().any(axis=None):
        shown = "; ".join(str(p) for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise StereobenchError(
            f"{source}: {len(problems)} problem(s) in the {kind} table: {shown}{more}. Fix the export, or pass "
            f"--on-invalid exclude to drop the affected trials (they are listed in the report)")
    # Exclude whole trials that contain a bad row, and log each with its reasons.
    bad_keys = table.loc[bad_row, ["participant", "trial"]].drop_duplicates()
    reasons = {}
    for p in problems:
        if p.row is None:
            continue
        r = table.iloc[p.row - 1]
        key = (str(r["participant"]), int(r["trial"]))
        reasons.setdefault(key, []).append(f"{p.column}: {p.message} (row {p.row})")
    log_rows = []
    for part, trial in bad_keys.itertuples(index=False):
        why = reasons.get((str(part), int(trial)), ["invalid value"])
        log_rows.append({"table": kind, "participant": str(part), "trial": int(trial),
                         "reason": "invalid response: " + "; ".join(dict.fromkeys(why))})
    key_index = pd.MultiIndex.from_frame(bad_keys)
    drop = pd.MultiIndex.from_frame(table[["participant", "trial"]]).isin(key_index)
    log = pd.DataFrame(log_rows).astype({"table": "string", "participant": "string", "trial": "Int64", "reason": "string"})
    return table.loc[~drop].reset_index(drop=True), log


def schema_markdown(columns: tuple[Column, ...]) -> str:
    """The column table as Markdown (used in docs/analysis.md and the report appendix)."""
    lines = ["| column | dtype | required | allowed values | meaning |", "|---|---|---|---|---|"]
    for c in columns:
        allowed = ", ".join(f"`{a}`" if a else "(empty)" for a in c.allowed)
        lines.append(f"| `{c.name}` | {c.dtype} | {'yes' if c.required else 'no'} | {allowed} | {c.description} |")
    return "\n".join(lines)
