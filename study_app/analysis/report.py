"""The study report: Markdown plus a self-contained HTML page (plots embedded as PNG).

``write_report(result, out_dir)`` writes ``report.md``, ``report.html``, the plots as
``plots/*.png`` (referenced by the Markdown) and every table as ``tables/*.csv`` so that each
number can be reused. Files are written atomically. The report opens with a plain-language
summary, then quality control and exclusions (always shown, even when nobody was excluded),
the ranking study, the pairwise study, aggregate inputs, methods used and provenance.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.fileio import atomic_write_bytes
from study_app.analysis.pipeline import StudyResult
from study_app.analysis.reproduce import reproduce_command


# ----------------------------------------------------------------------------- formatting

def fmt_p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "n/a"
    if p < 1e-4:
        return f"{p:.1e}"
    return f"{p:.4f}" if p < 0.01 else f"{p:.3f}"


def _fmt(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return "" if np.isnan(v) else ("∞" if v > 0 else "-∞")
        if v != 0 and abs(v) < 1e-3:
            return f"{v:.2e}"
        return f"{v:.3f}"
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return ""
    return str(v)


class Doc:
    """A tiny document model rendered to both Markdown and HTML."""

    def __init__(self):
        self.blocks: list[tuple] = []
        self.images: dict[str, bytes] = {}

    def h(self, level: int, text: str):
        self.blocks.append(("h", level, text))

    def p(self, text: str):
        self.blocks.append(("p", text))

    def bullets(self, items: list[str]):
        if items:
            self.blocks.append(("ul", items))

    def table(self, df: pd.DataFrame, caption: str = ""):
        self.blocks.append(("table", df, caption))

    def image(self, name: str, png: bytes, alt: str):
        self.images[name] = png
        self.blocks.append(("img", name, alt))

    def markdown(self) -> str:
        out = []
        for b in self.blocks:
            if b[0] == "h":
                out.append("#" * b[1] + " " + b[2])
            elif b[0] == "p":
                out.append(b[1])
            elif b[0] == "ul":
                out.append("\n".join(f"- {x}" for x in b[1]))
            elif b[0] == "table":
                df, cap = b[1], b[2]
                lines = ([f"*{cap}*", ""] if cap else [])
                lines.append("| " + " | ".join(map(str, df.columns)) + " |")
                lines.append("|" + "---|" * len(df.columns))
                for row in df.itertuples(index=False):
                    lines.append("| " + " | ".join(_fmt(v).replace("|", "\\|") for v in row) + " |")
                out.append("\n".join(lines))
            elif b[0] == "img":
                out.append(f"![{b[2]}](plots/{b[1]}.png)")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        body = []
        for b in self.blocks:
            if b[0] == "h":
                body.append(f"<h{b[1]}>{html.escape(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                body.append(f"<p>{_inline(b[1])}</p>")
            elif b[0] == "ul":
                body.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in b[1]) + "</ul>")
            elif b[0] == "table":
                df, cap = b[1], b[2]
                head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
                rows = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>"
                               for r in df.itertuples(index=False))
                capt = f"<caption>{html.escape(cap)}</caption>" if cap else ""
                body.append(f"<table>{capt}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif b[0] == "img":
                data = base64.b64encode(self.images[b[1]]).decode()
                body.append(f'<figure><img alt="{html.escape(b[2])}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{html.escape(b[2])}</figcaption></figure>")
        style = ("body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em;color:#222}"
                 "table{border-collapse:collapse;margin:1em 0;font-size:90%}td,th{border:1px solid #ccc;padding:.2em .5em;"
                 "text-align:right}th{background:#f3f3f3}caption{font-style:italic;text-align:left}"
                 "img{max-width:100%}code{background:#f3f3f3;padding:0 .2em}")
        return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _inline(text: str) -> str:
    """Escape, then render `code` and **bold** spans."""
    import re

    t = html.escape(text)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", t)


# ----------------------------------------------------------------------------- plots

def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_rank_distribution(table: pd.DataFrame, k: int) -> bytes:
    """Stacked horizontal bars: share of rankings giving each method rank 1..k."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(table) + 1.2))
    cmap = plt.get_cmap("RdYlGn_r")
    left = np.zeros(len(table))
    y = np.arange(len(table))[::-1]
    totals = table[[f"count_rank_{r}" for r in range(1, k + 1)]].sum(axis=1).to_numpy()
    for r in range(1, k + 1):
        share = table[f"count_rank_{r}"].to_numpy() / totals
        ax.barh(y, share, left=left, color=cmap((r - 1) / max(k - 1, 1)), label=f"rank {r}", edgecolor="white")
        for yi, (l, s) in enumerate(zip(left, share)):
            if s > 0.06:
                ax.text(l + s / 2, y[yi], f"{s:.0%}", ha="center", va="center", fontsize=8)
        left += share
    ax.set_yticks(y, table["method"])
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of rankings (ties: each tied method gets the rank given)")
    ax.legend(ncol=k, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False, fontsize=8)
    return _png(fig)


def plot_share_with_ci(labels, share, low, high, xlabel: str) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(labels) + 1.0))
    y = np.arange(len(labels))[::-1]
    share, low, high = map(np.asarray, (share, low, high))
    ax.barh(y, share, color="#4C72B0", alpha=0.8)
    ax.errorbar(share, y, xerr=[np.clip(share - low, 0, None), np.clip(high - share, 0, None)], fmt="none",
                ecolor="black", capsize=4)
    ax.set_yticks(y, labels)
    ax.set_xlim(0, 1)
    ax.set_xlabel(xlabel)
    return _png(fig)


def plot_pairwise(counts: pd.DataFrame) -> bytes:
    """Stacked bars per pair: prefer A / equal / prefer B, with the CI of A's decided share."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(counts) + 1.2))
    y = np.arange(len(counts))[::-1]
    n = counts["n"].to_numpy(float)
    a, e, b = counts["prefer_a"] / n, counts["equal"] / n, counts["prefer_b"] / n
    ax.barh(y, a, color="#4C72B0", label="prefer A")
    ax.barh(y, e, left=a, color="#BBBBBB", label="equal")
    ax.barh(y, b, left=a + e, color="#DD8452", label="prefer B")
    ax.set_yticks(y, [f"A={r.method_a}\nB={r.method_b}" for r in counts.itertuples()])
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of comparisons")
    ax.legend(ncol=3, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False, fontsize=8)
    return _png(fig)


def plot_cd(avg_ranks: dict, pvalues: pd.DataFrame) -> bytes | None:
    """Critical-difference diagram (scikit-posthocs) from mean ranks and Conover p-values."""
    import scikit_posthocs as sp

    plt = _plt()
    if pvalues.isna().all(axis=None):
        return None
    fig, ax = plt.subplots(figsize=(7, 2.2))
    sp.critical_difference_diagram(pd.Series(avg_ranks), pvalues.fillna(1.0), ax=ax)
    ax.set_title("mean mid-rank per method (bars join methods not significantly different, Conover-Holm)",
                 fontsize=8)
    return _png(fig)


def plot_scale(scale: pd.DataFrame, title: str) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(scale) + 1.0))
    y = np.arange(len(scale))[::-1]
    # The interval as its own segment: a percentile bootstrap interval need not contain the point
    # estimate (few participants), which errorbar's non-negative xerr cannot draw.
    ax.hlines(y, scale["ci_low"], scale["ci_high"], color="C0")
    ax.plot(scale["scale"], y, "o", color="C0")
    ax.set_yticks(y, scale["method"])
    ax.axvline(0, color="#999", lw=0.8)
    ax.set_xlabel(f"{title} ({scale['unit'].iloc[0]}, 95% crossed-bootstrap CI)")
    return _png(fig)


# ----------------------------------------------------------------------------- sections

def _fmt_ratio(v: float) -> str:
    return "∞" if np.isposinf(v) else f"{v:.1f}"


def best_ratio_lines(t: pd.DataFrame, n: int, prefix: str = "", counts_sep: str = " vs ") -> list[str]:
    """"X was ranked best R x as often as Y" lines; X = the method chosen best most often.

    ``t``: a Table-2 frame (method, chosen_best, best_ratio_vs_top, optional best_ratio_ci_*)
    in average-rank order; the reference is the first row with the largest chosen_best count,
    the same rule as :func:`study_app.analysis.rankings.summary`, so every ratio is >= 1.
    """
    lines = []
    if t.empty:
        return lines
    ref_pos = int(np.argmax(t["chosen_best"].to_numpy()))
    ref = t.iloc[ref_pos]
    for j in range(len(t)):
        if j == ref_pos:
            continue
        r = t.iloc[j]
        if r["chosen_best"] > 0:
            ci = ""
            if "best_ratio_ci_low" in t and np.isfinite(r["best_ratio_ci_low"]):
                ci = f" (95% CI {_fmt_ratio(r['best_ratio_ci_low'])}-{_fmt_ratio(r['best_ratio_ci_high'])}x)"
            lines.append(f"{prefix}**{ref['method']}** was ranked best {r['best_ratio_vs_top']:.2f}x as often as "
                         f"{r['method']} ({int(ref['chosen_best'])}{counts_sep}{int(r['chosen_best'])} of {n} rankings){ci}.")
        else:
            lines.append(f"{prefix}{r['method']} was never ranked best ({ref['method']}: {int(ref['chosen_best'])} of {n}).")
    return lines


def _ranking_summary_lines(t: pd.DataFrame, n: int) -> list[str]:
    return best_ratio_lines(t, n)


def _decision_lines(ra, alpha: float) -> list[str]:
    """Plain-language conclusions at ``alpha`` from the crossed-robust tests (the decision rule)."""
    t, cr = ra.table, ra.crossed
    lines = []
    p = cr.get("pvalue", np.nan)
    if np.isfinite(p):
        verdict = ("The methods' ranks differ" if p < alpha else
                   "No difference between the methods' ranks was shown")
        lines.append(f"{verdict} at alpha = {alpha:g}: crossed-robust test (participants and videos both random) "
                     f"p = {fmt_p(p)}.")
    else:
        lines.append(f"Whether the methods' ranks differ cannot be tested with participants and videos both random: "
                     f"that needs more than {ra.rm.k - 1} participants and more than {ra.rm.k - 1} videos "
                     f"({len(ra.rm.participants)} and {len(ra.rm.videos)} here).")
    lines.append(f"Tests that ignore a random factor (can reject without a real difference): Friedman on per-participant "
                 f"means p = {fmt_p(ra.friedman_participant['pvalue'])} (videos treated as fixed; Kendall's W = "
                 f"{ra.friedman_participant['kendall_w']:.2f}), on per-video means p = {fmt_p(ra.friedman_video['pvalue'])} "
                 f"(participants treated as fixed); within-ranking permutation p = {fmt_p(ra.permutation['pvalue'])} "
                 "(tests the sharp null that the methods are exchangeable in every ranking; not cluster-robust).")
    pairs = ra.crossed_pairs
    if pairs is not None and len(t) > 1 and len(pairs):
        a, b = t["method"].iloc[0], t["method"].iloc[1]
        row = pairs[((pairs.method_1 == a) & (pairs.method_2 == b)) | ((pairs.method_1 == b) & (pairs.method_2 == a))]
        if len(row):
            ph = row["p_holm"].iloc[0]
            if np.isfinite(ph):
                verdict = (f"{a} is ranked better than {b}" if ph < alpha else
                           f"{a} and {b} are not distinguishable")
                extra = ""
                w = ra.wilcoxon
                wrow = w[((w.method_1 == a) & (w.method_2 == b)) | ((w.method_1 == b) & (w.method_2 == a))] if len(w) else w
                if len(wrow):
                    extra = (f"; paired Wilcoxon-Holm on per-participant means p = {fmt_p(wrow['p_holm'].iloc[0])} "
                             "(videos treated as fixed)")
                lines.append(f"{verdict} at alpha = {alpha:g}: crossed-robust test of the pair, Holm-adjusted over all "
                             f"pairs, p = {fmt_p(ph)}{extra}.")
    return lines


def _rankings_section(doc: Doc, ra, plots_ok: bool, files: dict):
    rm, t = ra.rm, ra.table
    doc.h(2, "Ranking study")
    doc.p(f"{rm.n} rankings of {rm.k} methods ({', '.join(rm.methods)}) by {len(rm.participants)} participants on "
          f"{len(rm.videos)} videos (main trials after exclusions). Rank 1 = best; ties allowed.")
    show = t[["method", "n_rankings", "average_rank", "average_rank_ci_low", "average_rank_ci_high", "average_midrank",
              "chosen_best", "chosen_best_share", "chosen_best_share_ci_low", "chosen_best_share_ci_high",
              "best_ratio_vs_top", "best_ratio_ci_low", "best_ratio_ci_high"]]
    doc.table(show, "Table 2 style: average rank as given (ties share the better rank, as in the paper) and mid-rank; "
                    "'chosen best' counts every method tied at rank 1; 95% CIs by crossed bootstrap of participants and "
                    f"videos ({t.attrs.get('n_boot_used', '?')} resamples).")
    files["rankings_summary"] = t
    doc.image("rank_distribution", plot_rank_distribution(t, rm.k), "Rank distribution per method")
    doc.image("chosen_best", plot_share_with_ci(t["method"], t["chosen_best_share"], t["chosen_best_share_ci_low"],
                                                t["chosen_best_share_ci_high"], "share of rankings where chosen best (95% CI)"),
              "Chosen-best share per method with crossed-bootstrap 95% CI")
    doc.h(3, "Do the methods differ?")
    fp, fv, fr = ra.friedman_participant, ra.friedman_video, ra.friedman_rankings
    cr = ra.crossed
    tests = pd.DataFrame([
        {"test": "Crossed-robust Wald test, participants and videos random (decision rule)",
         "statistic": cr.get("statistic", np.nan), "df": cr.get("df1", np.nan),
         "n_blocks": min(len(rm.participants), len(rm.videos)), "p": fmt_p(cr.get("pvalue", np.nan)), "Kendall_W": np.nan},
        {"test": "Friedman, blocks = participants (mean mid-rank; videos treated as fixed)", "statistic": fp["statistic"],
         "df": fp["df"], "n_blocks": fp["n_blocks"], "p": fmt_p(fp["pvalue"]), "Kendall_W": fp["kendall_w"]},
        {"test": "Friedman, blocks = videos (mean mid-rank; participants treated as fixed)", "statistic": fv["statistic"],
         "df": fv["df"], "n_blocks": fv["n_blocks"], "p": fmt_p(fv["pvalue"]), "Kendall_W": fv["kendall_w"]},
        {"test": "Within-ranking permutation test (sharp null, not cluster-robust)", "statistic": ra.permutation["statistic"],
         "df": np.nan, "n_blocks": rm.n, "p": fmt_p(ra.permutation["pvalue"]), "Kendall_W": fr["kendall_w"]},
        {"test": "Cochran's Q on 'chosen best' (rankings as blocks)", "statistic": ra.cochran["statistic"],
         "df": ra.cochran["df"], "n_blocks": rm.n, "p": fmt_p(ra.cochran["pvalue"]), "Kendall_W": np.nan},
    ])
    doc.table(tests, "Omnibus tests. Decision rule: the crossed-robust test (two-way cluster-robust Wald test of the mean "
                     "mid-rank contrasts, F reference with min(participants, videos) clusters, p = the largest of the "
                     "two-way and the two one-way clustered tests; n_blocks = that cluster count). The Friedman tests "
                     "treat the other factor as fixed and are anti-conservative when it has per-method effects; the "
                     f"permutation test ({ra.permutation['n_resamples']} resamples) tests the sharp null that methods are "
                     "exchangeable in every ranking. Kendall's W of the permutation row is computed on all rankings "
                     "(descriptive).")
    files["rankings_tests"] = tests
    doc.h(3, "Which pairs differ?")
    if ra.crossed_pairs is not None and len(ra.crossed_pairs):
        show_pairs = ra.crossed_pairs.copy()
        for col in ("p_two_way", "p_participant", "p_video", "p", "p_holm"):
            show_pairs[col] = show_pairs[col].map(fmt_p)
        doc.table(show_pairs, "Crossed-robust test per pair (decision rule; participants and videos random): p = the "
                              "largest of the two-way and one-way clustered p-values, Holm-adjusted over pairs "
                              "(negative difference: method_1 ranked better).")
        files["rankings_crossed_pairs"] = ra.crossed_pairs
    con = ra.conover.copy()
    con.insert(0, "method", con.index)
    doc.table(con, "Conover-Friedman post hoc on per-participant mean ranks (videos treated as fixed), Holm-adjusted "
                   "p-values.")
    files["rankings_conover"] = con
    if len(ra.wilcoxon):
        doc.table(ra.wilcoxon, "Paired Wilcoxon signed-rank (zero_method='pratt') on per-participant mean mid-ranks "
                               "(videos treated as fixed), Holm-adjusted (negative difference: method_1 ranked better).")
    files["rankings_wilcoxon"] = ra.wilcoxon
    if ra.wilcoxon_video is not None and len(ra.wilcoxon_video):
        doc.table(ra.wilcoxon_video, "Paired Wilcoxon signed-rank on per-video mean mid-ranks (participants treated as "
                                     "fixed), Holm-adjusted.")
        files["rankings_wilcoxon_video"] = ra.wilcoxon_video
    doc.table(ra.mcnemar, "Exact McNemar per pair on 'chosen best', Holm-adjusted.")
    files["rankings_mcnemar"] = ra.mcnemar
    if plots_ok:
        png = plot_cd(dict(zip(t["method"], t["average_midrank"])), ra.conover)
        if png:
            doc.image("cd_diagram", png, "Critical-difference diagram (Conover-Friedman on per-participant means, videos "
                                         "treated as fixed; Holm, alpha 0.05)")
    doc.h(3, "Scale (Davidson model with ties)")
    doc.table(ra.scale, "Rankings expanded to pairwise outcomes (ties kept as ties); log-strength theta, centred; "
                        "exp(theta_i - theta_j) = odds that i beats j; nu = tie propensity; 95% crossed-bootstrap CI.")
    files["rankings_scale"] = ra.scale
    doc.image("ranking_scale", plot_scale(ra.scale, "Davidson scale"), "Davidson scale with 95% CI")
    for note in ra.notes:
        doc.p("Note: " + note)


def _pairwise_section(doc: Doc, pa, files: dict):
    c = pa.counts
    doc.h(2, "Pairwise study")
    doc.p(f"{len(pa.table)} comparisons of {len(pa.methods)} methods by {pa.table['participant'].nunique()} participants "
          f"on {pa.table['video'].nunique()} videos (main trials after exclusions).")
    show = c.copy()
    for col in ("p_sign", "p_ties_split"):
        show[col] = show[col].map(fmt_p)
    doc.table(show, "Table 3 style: counts per pair; share_a_decided = A's share of non-tie answers with a crossed-"
                    "bootstrap 95% CI; p_sign = exact sign test, ties excluded; p_ties_split = sensitivity with ties "
                    "split half to each side (odd tie to the less preferred method).")
    files["pairwise_counts"] = c
    doc.image("pairwise", plot_pairwise(c), "Pairwise answers per pair")
    doc.image("pairwise_share", plot_share_with_ci([f"{r.method_a} vs {r.method_b}" for r in c.itertuples()],
                                                   c["share_a_decided"], c["share_a_ci_low"], c["share_a_ci_high"],
                                                   "share preferring A among decided answers (95% CI)"),
              "Preference share with crossed-bootstrap 95% CI")
    b = pa.bias
    doc.p(f"First-position bias: the method shown first was preferred in {b['prefers_first']} of {b['n_decided']} "
          f"decided answers ({_fmt(b['share_first'])}); exact binomial test p = {fmt_p(b['pvalue'])}.")
    doc.table(pa.per_user, "Counts per participant.")
    files["pairwise_per_participant"] = pa.per_user
    if pa.thurstone is not None:
        doc.table(pa.thurstone, "Thurstone Case V scale in JOD (1 JOD = 75% preference), ties split; 95% crossed-bootstrap CI.")
        doc.table(pa.davidson, "Davidson scale (ties modelled).")
        doc.image("pairwise_scale", plot_scale(pa.thurstone, "Thurstone Case V"), "Thurstone Case V scale (JOD)")
        files["pairwise_thurstone"] = pa.thurstone
        files["pairwise_davidson"] = pa.davidson
    for note in pa.notes:
        doc.p("Note: " + note)


def _pairwise_summary_lines(c: pd.DataFrame) -> list[str]:
    lines = []
    for r in c.itertuples():
        ci = ""
        if "share_a_ci_low" in c and np.isfinite(r.share_a_ci_low):
            ci = f" (95% CI {r.share_a_ci_low:.0%}-{r.share_a_ci_high:.0%})"
        elif "share_a_ci_low_indep" in c and np.isfinite(r.share_a_ci_low_indep):
            ci = f" (95% CI {r.share_a_ci_low_indep:.0%}-{r.share_a_ci_high_indep:.0%}, answers assumed independent)"
        lines.append(f"**{r.method_a}** was preferred in {r.prefer_a} of {r.n} comparisons, {r.method_b} in "
                     f"{r.prefer_b}, and {r.equal} were judged equal: {r.method_a} wins {r.share_a_decided:.0%} of "
                     f"decided answers{ci}; exact sign test p = {fmt_p(r.p_sign)} (ties excluded), "
                     f"p = {fmt_p(r.p_ties_split)} with ties split.")
    return lines


def _aggregate_section(doc: Doc, agg: dict, files: dict, idx: int):
    doc.h(2, f"Aggregate input: {agg['name']}")
    doc.p("Only published counts are available: no participant or video structure, so intervals below assume "
          "independent rankings / answers (they are too narrow if answers cluster) and no Friedman test is possible.")
    if agg["rankings"] is not None:
        t = agg["rankings"]
        doc.table(t, "Average rank and times chosen best as published; Wilson 95% CI of the share.")
        files[f"aggregate{idx}_rankings"] = t
        doc.image(f"aggregate{idx}_chosen_best", plot_share_with_ci(t["method"], t["chosen_best_share"],
                                                                    t["share_ci_low_indep"], t["share_ci_high_indep"],
                                                                    "share of rankings chosen best (95% CI, independent)"),
                  "Chosen-best share (aggregate input)")
    if agg["pairwise"] is not None:
        show = agg["pairwise"].copy()
        for col in ("p_sign", "p_ties_split"):
            show[col] = show[col].map(fmt_p)
        doc.table(show, "Pairwise counts as published; exact sign test (ties excluded) and ties-split sensitivity.")
        files[f"aggregate{idx}_pairwise"] = agg["pairwise"]


def _aggregate_summary_lines(agg: dict) -> list[str]:
    lines = []
    if agg["rankings"] is not None:
        t = agg["rankings"]
        lines += best_ratio_lines(t, int(t["n_rankings"].iloc[0]), prefix=f"[{agg['name']}] ", counts_sep="/")
    if agg["pairwise"] is not None:
        lines += [f"[{agg['name']}] " + s for s in _pairwise_summary_lines(agg["pairwise"])]
    return lines


def build_document(result: StudyResult) -> tuple[Doc, dict]:
    """The report as a :class:`Doc` plus the tables to save as CSV (name -> DataFrame)."""
    doc = Doc()
    files: dict[str, pd.DataFrame] = {}
    doc.h(1, "User-study report")
    summary = []
    if result.rankings is not None:
        ra = result.rankings
        summary += _ranking_summary_lines(ra.table, ra.rm.n)
        t = ra.table
        if len(t) > 1:
            summary.append(f"Average rank {t['method'].iloc[0]} {t['average_rank'].iloc[0]:.2f} "
                           f"(95% CI {t['average_rank_ci_low'].iloc[0]:.2f}-{t['average_rank_ci_high'].iloc[0]:.2f}) vs "
                           f"{t['method'].iloc[1]} {t['average_rank'].iloc[1]:.2f} "
                           f"({t['average_rank_ci_low'].iloc[1]:.2f}-{t['average_rank_ci_high'].iloc[1]:.2f}).")
        summary += _decision_lines(ra, result.options.alpha)
    if result.pairwise is not None:
        summary += _pairwise_summary_lines(result.pairwise.counts)
    for agg in result.aggregates:
        summary += _aggregate_summary_lines(agg)
    n_excl = len(result.exclusions)
    summary.append(f"{n_excl} exclusion(s) applied before the analysis (listed under Quality control)." if n_excl
                   else "No participant or trial was excluded.")
    doc.h(2, "Summary")
    doc.bullets(summary)
    doc.p("Reproduce every number: `" + reproduce_command(result.provenance.get("sources", []), result.options) + "`.")

    doc.h(2, "Quality control and exclusions")
    doc.p("Exclusion rule: " + result.options.rule.describe() + ". Training trials are never analysed.")
    for kind in ("rankings", "pairwise"):
        qc = getattr(result, f"qc_{kind}")
        if qc is not None:
            doc.table(qc, f"Per-participant quality control ({kind}).")
            files[f"qc_{kind}"] = qc
    if n_excl:
        doc.table(result.exclusions, "Everything removed before the analysis, with the reason.")
    else:
        doc.p("Exclusions: none.")
    files["exclusions"] = result.exclusions

    if result.rankings is not None:
        _rankings_section(doc, result.rankings, True, files)
    if result.pairwise is not None:
        _pairwise_section(doc, result.pairwise, files)
    for i, agg in enumerate(result.aggregates):
        _aggregate_section(doc, agg, files, i)

    doc.h(2, "Methods")
    doc.bullets([
        "Ranks are converted to mid-ranks (ties share the mean position) for every test; the average rank is that of "
        "the ranks as given (competition or dense, re-ranked only when methods are removed from the analysis).",
        "Rankings are clustered by participant and by video, and each video (and participant) can have its own effect "
        "on each method. The decision rule is the crossed-robust test, which treats both as random: a two-way "
        "cluster-robust (Cameron-Gelbach-Miller) Wald test of the mean mid-rank contrasts with an F reference on "
        "min(participants, videos) clusters, p = the largest of the two-way and the two one-way clustered tests. "
        "Friedman/Conover/Wilcoxon on per-participant means treat videos as fixed (and on per-video means, "
        "participants as fixed): they are anti-conservative when the other factor matters. The within-ranking "
        "permutation test tests the sharp null that the methods are exchangeable in every ranking; it is not "
        "cluster-robust.",
        "Confidence intervals: crossed bootstrap, participants and videos resampled independently (a ranking's weight is "
        "the product of its participant's and its video's draw counts), percentile intervals.",
        "Pairwise: exact sign test with ties excluded (scipy.stats.binomtest), ties-split sensitivity, first-position "
        "bias test, Thurstone Case V (JOD) and Davidson scales for more than two methods.",
    ])
    doc.h(2, "Provenance")
    doc.p("`" + json.dumps(result.provenance, default=str) + "`")
    return doc, files




def write_report(result: StudyResult, out_dir: str | Path) -> dict:
    """Write report.md, report.html, plots/*.png and tables/*.csv under ``out_dir``.

    Returns {"markdown": path, "html": path, "summary": list of plain-language lines}.
    """
    out = Path(out_dir)
    doc, files = build_document(result)
    paths = {"markdown": out / "report.md", "html": out / "report.html",
             "summary": next((b[1] for b in doc.blocks if b[0] == "ul"), [])}
    for name, png in doc.images.items():
        atomic_write_bytes(out / "plots" / f"{name}.png", png)
    for name, df in files.items():
        atomic_write_bytes(out / "tables" / f"{name}.csv", df.to_csv(index=False).encode())
    atomic_write_bytes(paths["markdown"], doc.markdown().encode())
    atomic_write_bytes(paths["html"], doc.html("User-study report").encode())
    return paths
