"""From exported response files to every number of the report, in one call.

``analyze_files(paths, AnalysisOptions(...))`` loads and validates the files, runs quality
control and the exclusion rule (logging every exclusion), and analyses the ranking table, the
pairwise table and any aggregate inputs. The result is deterministic for a given seed.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field

import pandas as pd

from benchmark.errors import StereobenchError
from study_app.analysis import aggregate, quality
from study_app.analysis.io import load_responses
from study_app.analysis.schema import SCHEMA_VERSION, Responses, empty_exclusions


@dataclass
class AnalysisOptions:
    """Settings of one analysis (all recorded in the report)."""

    seed: int = 0
    n_boot: int = 2000
    n_perm: int = 9999
    n_boot_model: int = 200
    methods: tuple[str, ...] = ()
    incomplete: str = "error"
    on_invalid: str = "error"
    rule: quality.ExclusionRule = field(default_factory=quality.ExclusionRule)
    wilcoxon_method: str = "auto"
    alpha: float = 0.05  # significance level of the report's plain-language conclusions


@dataclass
class StudyResult:
    responses: Responses
    options: AnalysisOptions
    exclusions: pd.DataFrame
    qc_rankings: pd.DataFrame | None = None
    qc_pairwise: pd.DataFrame | None = None
    rankings: object | None = None  # rankings.RankingAnalysis
    pairwise: object | None = None  # pairwise.PairwiseAnalysis
    aggregates: list[dict] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)


def _provenance(options: AnalysisOptions, sources: list[str]) -> dict:
    import subprocess

    import numpy
    import scipy
    import statsmodels

    try:
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        git = ""
    opts = asdict(options)
    return {"schema_version": SCHEMA_VERSION, "sources": sources, "options": opts, "git": git or "unknown",
            "python": platform.python_version(), "numpy": numpy.__version__, "scipy": scipy.__version__,
            "statsmodels": statsmodels.__version__, "pandas": pd.__version__}


def _methods_per_table(res: Responses, methods: list[str]) -> dict:
    """Split ``--methods`` over the tables: each gets the listed methods it contains.

    A name found in no table is an error suggesting the closest name; a table that contains
    fewer than two of the listed methods is an error (it would have nothing to compare).
    """
    from benchmark.errors import did_you_mean

    out = {"rankings": None, "pairwise": None}
    if not methods:
        return out
    seen = {}
    if res.rankings is not None:
        seen["rankings"] = set(res.rankings.loc[res.rankings["trial_kind"] == "main", "method"])
    if res.pairwise is not None:
        main = res.pairwise[res.pairwise["trial_kind"] == "main"]
        seen["pairwise"] = set(main["method_a"]) | set(main["method_b"])
    known = set().union(*seen.values()) if seen else set()
    for m in methods:
        if m not in known:
            raise did_you_mean(m, known, "method")
    for kind, names in seen.items():
        listed = [m for m in methods if m in names]
        if len(listed) < 2:
            raise StereobenchError(f"--methods lists {len(listed)} method(s) of the {kind} table "
                                   f"({', '.join(listed) or 'none'}); list at least two of: {', '.join(sorted(names))}")
        out[kind] = listed
    return out


def _check_exclude_list(res: Responses, exclude: tuple[str, ...]) -> None:
    """Every participant named in ``--exclude`` occurs in the responses (a typo would exclude nobody)."""
    if not exclude:
        return
    if res.rankings is None and res.pairwise is None:
        raise StereobenchError("--exclude needs response tables: aggregate counts have no participants to exclude")
    known: set[str] = set(res.exclusions["participant"].dropna().astype(str))
    for table in (res.rankings, res.pairwise):
        if table is not None:
            known |= set(table["participant"].dropna().astype(str))
    for name in exclude:
        if name not in known:
            import difflib

            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise StereobenchError(f"--exclude names participant {name!r}, who is in no response table.{hint} "
                                   f"Participants: {', '.join(sorted(known)[:12])}{', ...' if len(known) > 12 else ''}")


def analyze_responses(res: Responses, options: AnalysisOptions | None = None) -> StudyResult:
    """Quality control, exclusions and every statistic for already-loaded responses."""
    from study_app.analysis.pairwise import analyze_pairwise
    from study_app.analysis.rankings import analyze_rankings, ranking_matrix

    options = options or AnalysisOptions()
    methods_by_kind = _methods_per_table(res, list(options.methods))
    _check_exclude_list(res, options.rule.exclude)
    logs = [res.exclusions] if len(res.exclusions) else []
    result = StudyResult(responses=res, options=options, exclusions=empty_exclusions())
    for kind in ("rankings", "pairwise"):
        table = getattr(res, kind)
        if table is None:
            continue
        seen = list(dict.fromkeys(res.exclusions.loc[res.exclusions["table"] == kind, "participant"].astype(str).tolist()))
        qc = quality.apply_rule(quality.quality_table(table, kind, seen), options.rule, kind)
        kept, log = quality.exclude(table, qc, kind)
        if len(log):
            logs.append(log)
        setattr(result, f"qc_{kind}", qc)
        if kept.empty or (kept["trial_kind"] == "main").sum() == 0:
            raise StereobenchError(
                f"no valid {kind} responses remain after the exclusion rule ({int(qc['excluded'].sum())} of {len(qc)} "
                f"participants excluded: {'; '.join((qc['participant'] + ': ' + qc['reason'])[qc['excluded']].tolist()[:3])}); "
                "relax --max-attention-fail / --min-repeat-tau or check the export")
        if kind == "rankings":
            rm = ranking_matrix(kept, methods_by_kind[kind], options.incomplete)
            if len(rm.exclusions):
                logs.append(rm.exclusions)
            result.rankings = analyze_rankings(rm, n_boot=options.n_boot, n_perm=options.n_perm,
                                               n_boot_model=options.n_boot_model, seed=options.seed,
                                               wilcoxon_method=options.wilcoxon_method)
        else:
            result.pairwise = analyze_pairwise(kept, methods_by_kind[kind], n_boot=options.n_boot,
                                               n_boot_model=options.n_boot_model, seed=options.seed)
    result.aggregates = [aggregate.analyze_aggregate(a) for a in res.aggregates]
    if logs:
        result.exclusions = pd.concat(logs, ignore_index=True)
    result.provenance = _provenance(options, res.sources)
    return result


def analyze_files(paths, options: AnalysisOptions | None = None) -> StudyResult:
    """Load, validate and analyse response files (CSV / Parquet tables, YAML aggregates)."""
    options = options or AnalysisOptions()
    return analyze_responses(load_responses(paths, on_invalid=options.on_invalid), options)
