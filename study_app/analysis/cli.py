"""Analyse user-study responses: Table 2/3-style tables with the right tests and intervals.

Reads the response tables the study app exports (CSV or Parquet; rankings and/or pairwise,
schema in docs/analysis.md) and aggregate counts (YAML), validates them, applies the
quality-control exclusion rule (every exclusion is listed in the report), and writes
report.md, a self-contained report.html, plots/*.png and tables/*.csv to --out.

Rankings: average rank and "chosen best" per method with crossed-bootstrap CIs (participants x
videos); the decision rule is a crossed-robust test (participants and videos both random, per
pair Holm-adjusted) and the summary states its conclusion at --alpha; also Friedman on
per-participant means (videos treated as fixed) and per-video means, a within-ranking
permutation test (sharp null), Kendall's W, Conover-Friedman and paired Wilcoxon post hoc
(Holm), Cochran's Q and exact
McNemar for "chosen best", a Davidson (Bradley-Terry with ties) scale, a critical-difference
diagram. Pairwise: counts A/B/equal, exact sign test (ties excluded) and ties-split
sensitivity, per-participant counts, first-position bias, Thurstone (JOD) / Davidson scales.

Examples:
  stereobench analyze responses_rankings.csv responses_vr.parquet --out results/analysis/study1
  stereobench analyze study_app/analysis/data/m2svid_paper.yaml --out results/analysis/paper
  stereobench analyze rankings.csv --on-invalid exclude --incomplete drop-trials --out out/
  stereobench analyze rankings.csv --max-attention-fail none --exclude P07,P11 --out out/
  stereobench analyze --demo --out results/analysis/demo        # simulated study, end to end
Plan a study (power by simulation):
  stereobench analyze power rankings --rank-difference 0.5 --participants 5,10,15,20 --videos 5,10,20
  stereobench analyze power pairwise --share 0.7 --tie-share 0.4 --participants 5,10,20 --videos 10,21,40
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from benchmark.errors import StereobenchError
from benchmark.fileio import atomic_write_bytes


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive whole numbers, got {text!r}")
    return values


def _optional_float(text: str) -> float | None:
    if text.lower() in ("none", "off"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("responses", nargs="*", metavar="RESPONSES",
                        help="exported response files (.csv/.parquet tables, .yaml aggregate counts); or 'power rankings' / "
                             "'power pairwise' for a power analysis")
    parser.add_argument("--out", type=Path, default=Path("results/analysis"), help="output folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every resampling (default: %(default)s)")
    parser.add_argument("--n-boot", type=int, default=2000, help="crossed-bootstrap resamples for CIs (default: %(default)s)")
    parser.add_argument("--n-perm", type=int, default=9999, help="permutation-test resamples (default: %(default)s)")
    parser.add_argument("--n-boot-model", type=int, default=200,
                        help="bootstrap refits of the Davidson/Thurstone scales (default: %(default)s)")
    parser.add_argument("--methods", default="", help="comma-separated methods to analyse, in this order (default: all)")
    parser.add_argument("--incomplete", choices=("error", "drop-trials", "drop-methods"), default="error",
                        help="main trials that lack some method: stop with an error, drop those trials, or drop methods "
                             "not in every trial (drops are listed in the report; default: %(default)s)")
    parser.add_argument("--on-invalid", choices=("error", "exclude"), default="error",
                        help="rows that break the schema (missing or out-of-range rank...): stop, or exclude their trials "
                             "and list them in the report (default: %(default)s)")
    parser.add_argument("--wilcoxon", choices=("auto", "approx", "exact"), default="auto",
                        help="p-values of the paired Wilcoxon post hoc: scipy's 'auto' (exact/permutation for small "
                             "samples, about 1 s per pair with ties) or the normal approximation (default: %(default)s)")
    g = parser.add_argument_group("exclusion rule (applied before the analysis, reported)")
    g.add_argument("--max-attention-fail", type=_optional_float, default=0.25,
                   help="exclude participants failing more than this share of attention trials; 'none' disables "
                        "(default: %(default)s)")
    g.add_argument("--min-repeat-tau", type=_optional_float, default=0.0,
                   help="exclude ranking participants whose mean repeat Kendall tau is below this; 'none' disables "
                        "(default: %(default)s)")
    g.add_argument("--min-repeat-agreement", type=_optional_float, default=None,
                   help="exclude pairwise participants whose repeat agreement is below this share (default: off)")
    g.add_argument("--min-main-trials", type=int, default=1, help="exclude participants with fewer valid main trials "
                                                                   "(default: %(default)s)")
    g.add_argument("--exclude", default="", help="comma-separated participant ids to exclude (reason: listed)")
    d = parser.add_argument_group("demo and power analysis")
    d.add_argument("--demo", action="store_true", help="simulate a ranking and a pairwise study, save them under "
                                                       "OUT/responses/ and analyse them")
    d.add_argument("--power", choices=("rankings", "pairwise"), help="run a power analysis instead (same as 'power KIND')")
    d.add_argument("--participants", type=_int_list, default=[5, 10, 15, 20, 30], help="participant counts to try")
    d.add_argument("--videos", type=_int_list, default=[5, 10, 20], help="video counts to try (each participant sees all)")
    d.add_argument("--rank-difference", type=float, default=0.5,
                   help="rankings: true difference in average rank between the best and second method (default: %(default)s)")
    d.add_argument("--n-methods", type=int, default=4, help="rankings: methods per trial (default: %(default)s)")
    d.add_argument("--tie-width", type=float, default=0.0, help="rankings: latent tie grid width (default: no ties)")
    d.add_argument("--share", type=float, default=0.7,
                   help="pairwise: true share of non-tie answers preferring the better method (default: %(default)s)")
    d.add_argument("--tie-share", type=float, default=0.3, help="pairwise: share of 'equal' answers (default: %(default)s)")
    d.add_argument("--participant-sd", type=float, default=None,
                   help="between-participant spread (latent SD for rankings, default 0.3; logit SD for pairwise, default 0.5)")
    d.add_argument("--alpha", type=float, default=0.05,
                   help="significance level of the report's conclusions and of the power analysis (default: %(default)s)")
    d.add_argument("--target-power", type=float, default=0.8, help="power to reach (default: %(default)s)")
    d.add_argument("--n-sim", type=int, default=None, help="simulated studies per design (default 300 rankings, 2000 pairwise)")


def _rule(args):
    from study_app.analysis.quality import ExclusionRule

    return ExclusionRule(max_attention_fail_share=args.max_attention_fail, min_repeat_tau=args.min_repeat_tau,
                         min_repeat_agreement=args.min_repeat_agreement, min_main_trials=args.min_main_trials,
                         exclude=tuple(x.strip() for x in args.exclude.split(",") if x.strip()))


def options_from_args(args):
    """The :class:`AnalysisOptions` of parsed ``stereobench analyze`` arguments."""
    from study_app.analysis.pipeline import AnalysisOptions

    return AnalysisOptions(seed=args.seed, n_boot=args.n_boot, n_perm=args.n_perm, n_boot_model=args.n_boot_model,
                           methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
                           incomplete=args.incomplete, on_invalid=args.on_invalid, rule=_rule(args),
                           wilcoxon_method=args.wilcoxon, alpha=args.alpha)


def _check_out(out: Path) -> None:
    """--out must be (or become) a folder: no existing file on its path, and writable."""
    for p in [out, *out.parents]:
        if p.exists():
            if not p.is_dir():
                what = "is a file" if p == out else f"lies under the file {str(p)!r}"
                raise StereobenchError(f"--out {str(out)!r} {what}; pass a folder for the report (it is created if missing)")
            if not os.access(p, os.W_OK | os.X_OK):
                raise StereobenchError(f"--out {str(out)!r}: cannot write in {str(p)!r}; pass a folder you can write to")
            return


def _in_range(name: str, value: float | None, low: float, high: float, *, low_open: bool = False,
              high_open: bool = False) -> None:
    """One-line error unless ``value`` (None = option off) lies in the interval; NaN never does."""
    if value is None:
        return
    ok = (low < value if low_open else low <= value) and (value < high if high_open else value <= high)
    if not ok:  # also NaN: every comparison is False
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise StereobenchError(f"{name} must be in {interval}, not {value:g}")


def validate_args(args: argparse.Namespace, power_kind: str | None) -> None:
    """Check every option before any file is read or any resample drawn (each check is cheap).

    ``power_kind``: 'rankings' / 'pairwise' for a power analysis, None for an analysis of
    responses. Raises :class:`StereobenchError` naming the option, the value and the valid range.
    """
    inf = float("inf")
    if args.seed < 0:
        raise StereobenchError(f"--seed must be a non-negative whole number, not {args.seed}")
    _in_range("--alpha", args.alpha, 0.0, 1.0, low_open=True, high_open=True)
    _check_out(Path(args.out))
    if power_kind is not None:
        _in_range("--target-power", args.target_power, 0.0, 1.0, low_open=True, high_open=True)
        if args.n_sim is not None and args.n_sim < 1:
            raise StereobenchError(f"--n-sim must be at least 1 simulated study per design, not {args.n_sim}")
        if args.participant_sd is not None:
            _in_range("--participant-sd", args.participant_sd, 0.0, inf, high_open=True)
        if power_kind == "rankings":
            if args.n_methods < 2:
                raise StereobenchError(f"--n-methods must be at least 2 (a ranking compares methods), not {args.n_methods}")
            _in_range("--rank-difference", args.rank_difference, 0.0, float(args.n_methods - 1), high_open=True)
            _in_range("--tie-width", args.tie_width, 0.0, inf, high_open=True)
            n_sim = args.n_sim or 300
            # Float64 arrays (n_sim, participants, videos, methods), about eight alive at once.
            need = 8 * 8 * n_sim * max(args.participants) * max(args.videos) * args.n_methods
        else:
            _in_range("--share", args.share, 0.0, 1.0, low_open=True, high_open=True)
            _in_range("--tie-share", args.tie_share, 0.0, 1.0, high_open=True)
            need = 8 * 8 * (args.n_sim or 2000) * max(args.participants)
        if need > 8 * 2 ** 30:
            raise StereobenchError(f"this power grid needs about {need / 2 ** 30:.0f} GiB of memory per design; lower "
                                   "--n-sim or the largest --participants / --videos / --n-methods")
        return
    for name, value in (("--n-boot", args.n_boot), ("--n-perm", args.n_perm), ("--n-boot-model", args.n_boot_model)):
        if value < 10:
            raise StereobenchError(f"{name} must be at least 10, not {value}")
    _in_range("--max-attention-fail", args.max_attention_fail, 0.0, 1.0)
    _in_range("--min-repeat-tau", args.min_repeat_tau, -1.0, 1.0)
    _in_range("--min-repeat-agreement", args.min_repeat_agreement, 0.0, 1.0)
    if args.min_main_trials < 0:
        raise StereobenchError(f"--min-main-trials must be 0 or more, not {args.min_main_trials}")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.methods.strip() and len(methods) < 2:
        raise StereobenchError(f"--methods lists {len(methods)} method ({args.methods!r}); list at least two to compare")
    twice = sorted({m for m in methods if methods.count(m) > 1})
    if twice:
        raise StereobenchError(f"--methods lists {twice[0]!r} twice; list each method once")


def _run_power(args, kind: str) -> int:
    from study_app.analysis import power
    from study_app.analysis.report import Doc

    doc = Doc()
    try:
        if kind == "rankings":
            table = power.ranking_power(args.participants, args.videos, args.rank_difference, args.n_methods,
                                        participant_sd=0.3 if args.participant_sd is None else args.participant_sd,
                                        tie_width=args.tie_width, n_sim=args.n_sim or 300, alpha=args.alpha,
                                        seed=args.seed)
            columns = ["power_best_vs_second", "power_crossed"]
            what = (f"a difference of {args.rank_difference} in average rank between the best and the second of "
                    f"{args.n_methods} methods (latent advantage {table.attrs['latent_delta']:.3f} noise SD) with the "
                    "report's decision rule, the crossed-robust test (participants and videos both random). "
                    "type1_* columns: the same rule's rejection rate when no method differs (should be near alpha); "
                    "the Friedman test on per-participant means (videos treated as fixed) is shown for comparison: "
                    "its type-I error exceeds alpha, and that excess is not power")
        else:
            table = power.pairwise_power(args.participants, args.videos, args.share, args.tie_share,
                                         participant_sd=0.5 if args.participant_sd is None else args.participant_sd,
                                         n_sim=args.n_sim or 2000, alpha=args.alpha, seed=args.seed)
            columns = ["power_participant_level", "power_sign_test"]
            what = f"a preference share of {args.share:.0%} among non-tie answers with {args.tie_share:.0%} ties"
    except ValueError as exc:
        raise StereobenchError(f"power analysis: {exc}") from None
    doc.h(1, f"Power analysis ({kind})")
    doc.p(f"Power to detect {what} at alpha = {args.alpha}, {table.attrs['n_sim']} simulated studies per design, seed {args.seed}.")
    lines = []
    for col in columns:
        best = power.smallest_design(table, col, args.target_power)
        lines.append(f"{col}: " + (f"{int(best['n_participants'])} participants x {int(best['n_videos'])} videos reach "
                                   f"{best[col]:.0%}" if best is not None else
                                   f"no design in the grid reaches {args.target_power:.0%}; add participants"))
    doc.bullets(lines)
    doc.table(table, "Power per design (share of simulated studies with p < alpha); type1_*: the share when there "
                     "is no difference. Designs whose type-I error exceeds alpha by more than 3 Monte Carlo standard "
                     "errors are not chosen.")
    out = Path(args.out)
    atomic_write_bytes(out / f"power_{kind}.md", doc.markdown().encode())
    atomic_write_bytes(out / f"power_{kind}.csv", table.to_csv(index=False).encode())
    print(table.to_string(index=False))
    for line in lines:
        print(line)
    print(f"wrote {out / f'power_{kind}.md'}")
    return 0


def _write_demo(out: Path) -> list[Path]:
    from study_app.analysis.simulate import simulate_pairwise, simulate_rankings

    methods = ["M2SVid", "StereoCrafter-25", "SVG", "StereoCrafter-1"]
    rankings = simulate_rankings(methods, [1.2, 0.6, 0.0, -0.6], n_participants=13, n_videos=9, tie_width=0.4,
                                 n_attention=2, n_repeat=2, n_training=1, careless=[5], seed=1)
    pairwise = simulate_pairwise(methods[:2], [0.6, 0.0], n_participants=5, n_videos=21, tie_margin=1.0,
                                 n_attention=2, seed=2)
    paths = [out / "responses" / "rankings.csv", out / "responses" / "pairwise.csv"]
    atomic_write_bytes(paths[0], rankings.to_csv(index=False).encode())
    atomic_write_bytes(paths[1], pairwise.to_csv(index=False).encode())
    return paths


def run(args: argparse.Namespace) -> int:
    from study_app.analysis.pipeline import analyze_files
    from study_app.analysis.report import write_report

    responses = list(args.responses)
    if args.power or (responses and responses[0] == "power"):
        extra = responses[2:] if not args.power else [r for r in responses if r != "power"]
        kind = args.power or (responses[1] if len(responses) > 1 else "")
        if kind not in ("rankings", "pairwise"):
            raise StereobenchError("say which power analysis: `stereobench analyze power rankings` or `... power pairwise`"
                                   + (f", not {kind!r}" if kind else ""))
        if extra or args.demo:
            what = "--demo" if args.demo else repr(" ".join(extra))
            raise StereobenchError(f"a power analysis plans a study and reads no responses; drop {what} or analyse "
                                   "the responses in a separate `stereobench analyze FILES` call")
        validate_args(args, kind)
        return _run_power(args, kind)
    validate_args(args, None)
    if args.demo:
        responses += [str(p) for p in _write_demo(Path(args.out))]
    if not responses:
        raise StereobenchError("no responses given: pass the exported CSV/Parquet files (or --demo); see --help")
    options = options_from_args(args)
    result = analyze_files(responses, options)
    paths = write_report(result, args.out)
    for line in paths["summary"]:
        print("- " + line.replace("**", ""))
    print(f"wrote {paths['markdown']} and {paths['html']}")
    return 0
