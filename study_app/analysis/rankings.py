"""Statistics of ranking studies (the paper's Table 2 and the tests it lacked).

The unit of data is a *ranking*: one participant ranks k methods on one video. Rankings are
not independent (the same participant ranks many videos, the same video is ranked by many
participants), so:

* the **crossed-robust test** (:func:`crossed_robust_test`, the headline decision rule) treats
  both participants and videos as random: a Wald test of the methods' mean mid-rank contrasts
  with a two-way cluster-robust covariance (Cameron, Gelbach & Miller 2011) and a Hotelling-type
  F reference with min(#participants, #videos) clusters; its p-value is the largest of that test
  and the one-way participant- and video-clustered versions. Measured type-I error at alpha 0.05
  stays at or below about 0.065 in the crossed designs of ``docs/analysis.md``;
* Friedman, Conover and Wilcoxon tests run on **collapsed** data: each method's mean mid-rank
  per participant (blocks = participants; *videos treated as fixed*) and, separately, per video
  (*participants treated as fixed*). Each is anti-conservative when the other factor has a
  per-method random effect (a video's effect is shared by every participant who saw it);
* the within-ranking permutation test permutes method labels inside each ranking, which is
  exact for the *sharp* null "the methods are exchangeable in every ranking"; it is not
  cluster-robust (it rejects when participants or videos disagree about the methods even if
  the methods are equal on average);
* confidence intervals come from a **crossed bootstrap**: participants and videos are
  resampled independently with replacement and a ranking enters with weight
  (times its participant was drawn) x (times its video was drawn).

All heavy work is vectorised NumPy on a (resamples, rankings, methods) layout and seeded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from benchmark.errors import StereobenchError
from study_app.analysis.bootstrap import crossed_weights, nonzero_resamples, percentile_ci
from study_app.analysis.models import davidson_scale_with_ci
from study_app.analysis.schema import empty_exclusions

INCOMPLETE_POLICIES = ("error", "drop-trials", "drop-methods")


@dataclass
class RankingMatrix:
    """Main-trial rankings in wide form.

    ``given``: float64 (N, k) ranks as the participants gave them; ``mid``: float64 (N, k)
    mid-ranks (ties get the average of the positions they span, rows sum to k(k+1)/2);
    ``participant`` / ``video``: int64 (N,) codes into ``participants`` / ``videos``;
    ``trials``: DataFrame (N rows) with participant, trial, video.
    """

    methods: list[str]
    given: np.ndarray
    mid: np.ndarray
    participant: np.ndarray
    video: np.ndarray
    participants: list[str]
    videos: list[str]
    trials: pd.DataFrame
    exclusions: pd.DataFrame = field(default_factory=empty_exclusions)

    @property
    def n(self) -> int:
        return self.given.shape[0]

    @property
    def k(self) -> int:
        return self.given.shape[1]

    @property
    def best(self) -> np.ndarray:
        """bool (N, k): the method was (one of those) ranked 1 in the ranking."""
        return self.given == self.given.min(axis=1, keepdims=True)


def midranks(ranks: np.ndarray) -> np.ndarray:
    """Mid-ranks along the last axis (ties share the mean of their positions), float64."""
    return stats.rankdata(ranks, axis=-1, method="average")


def _rerank(given: np.ndarray, dense: np.ndarray) -> np.ndarray:
    """Re-rank rows of ``given`` (N, k) after methods were removed, keeping each row's convention.

    ``dense``: bool (N,), rows given as dense ranks (1, 1, 2, 3) stay dense; the others get
    competition ranks (1, 1, 3, 4). Without ties both conventions are 1..k.
    """
    less = given[:, None, :] < given[:, :, None]  # [n, a, b]: method b ranked better than a
    first = np.ones_like(given, dtype=bool)  # first occurrence of each value in its row
    for j in range(1, given.shape[1]):
        first[:, j] = ~(given[:, :j] == given[:, [j]]).any(axis=1)
    competition = 1.0 + less.sum(axis=-1)
    dense_ranks = 1.0 + (less & first[:, None, :]).sum(axis=-1)
    return np.where(dense[:, None], dense_ranks, competition)


def _is_dense_with_ties(values: np.ndarray) -> np.ndarray:
    """bool (N,): the non-NaN values of each row are a dense ranking with at least one tie."""
    out = np.zeros(len(values), dtype=bool)
    for i, row in enumerate(values):
        v = row[~np.isnan(row)]
        u = np.unique(v)
        out[i] = len(u) < len(v) and np.array_equal(u, np.arange(1, len(u) + 1))
    return out


def ranking_matrix(table: pd.DataFrame, methods: list[str] | None = None, incomplete: str = "error") -> RankingMatrix:
    """Build the wide matrix of the ``main`` trials of a validated rankings table.

    Ranks are kept **as given** (competition 1, 1, 3, 4 or dense 1, 1, 2, 3), so the average
    rank is that of the participants' answers. Only when methods are removed from the analysis
    (``methods`` lists a subset, or ``incomplete="drop-methods"``) are the remaining ranks of
    each trial re-ranked among themselves, in the trial's own convention (dense rankings with
    ties stay dense, all others become competition ranks).

    ``methods``: restrict (and order) the analysis to these methods (unknown names: an error
    suggesting the closest name). ``incomplete``: what to do with trials that lack one of the
    analysed methods: ``error`` (default, names the method and how many trials have it),
    ``drop-trials`` (remove those trials, each logged) or ``drop-methods`` (analyse only methods
    present in every trial, each removed method logged).
    """
    if incomplete not in INCOMPLETE_POLICIES:
        raise StereobenchError(f"--incomplete must be one of {', '.join(INCOMPLETE_POLICIES)}, not {incomplete!r}")
    main = table[table["trial_kind"] == "main"]
    if main.empty:
        raise StereobenchError("the rankings table has no main trials (trial_kind == 'main'); nothing to analyse")
    all_methods = list(dict.fromkeys(main["method"].tolist()))
    log_rows = []
    if methods:
        unknown = [m for m in methods if m not in all_methods]
        if unknown:
            from benchmark.errors import did_you_mean
            raise did_you_mean(unknown[0], all_methods, "method")
        methods = list(dict.fromkeys(methods))
    else:
        methods = all_methods
    wide_all = main.pivot(index=["participant", "trial"], columns="method", values="rank").reindex(columns=all_methods)
    dense_rows = pd.Series(_is_dense_with_ties(wide_all.to_numpy(dtype=float)), index=wide_all.index)
    video = main.groupby(["participant", "trial"])["video"].first()
    wide = wide_all.reindex(columns=methods)
    present = wide.notna()
    counts = present.sum()
    n_trials = len(wide)
    missing_methods = [m for m in methods if counts[m] < n_trials]
    if missing_methods:
        desc = ", ".join(f"{m!r} in {int(counts[m])} of {n_trials} trials" for m in missing_methods)
        if incomplete == "error":
            raise StereobenchError(
                f"not every main trial ranks the same methods: {desc}. Pass --incomplete drop-trials (keep only trials "
                f"with all methods) or --incomplete drop-methods (analyse only methods in every trial), or --methods")
        if incomplete == "drop-methods":
            keep = [m for m in methods if m not in missing_methods]
            if len(keep) < 2:
                raise StereobenchError(f"fewer than two methods appear in every main trial ({desc}); use --incomplete drop-trials")
            for m in missing_methods:
                log_rows.append({"table": "rankings", "participant": "(all)", "trial": pd.NA,
                                 "reason": f"method {m!r} removed from the analysis: present in only {int(counts[m])} of {n_trials} main trials"})
            wide = wide[keep]
            methods = keep
        else:
            incomplete_rows = ~present.all(axis=1)
            for (part, trial) in wide.index[incomplete_rows]:
                lacking = [m for m in methods if pd.isna(wide.at[(part, trial), m])]
                log_rows.append({"table": "rankings", "participant": str(part), "trial": int(trial),
                                 "reason": f"trial dropped: lacks method(s) {', '.join(lacking)}"})
            wide = wide[~incomplete_rows]
    if wide.empty:
        raise StereobenchError("no main trial ranks all analysed methods; check --methods / --incomplete")
    given = wide.to_numpy(dtype=float)
    if set(methods) != set(all_methods):
        # Methods were removed: the remaining ranks may have gaps or start above 1.
        given = _rerank(given, dense_rows.loc[wide.index].to_numpy())
    trials = wide.index.to_frame(index=False)
    trials["video"] = video.loc[wide.index].to_numpy()
    p_codes, participants = pd.factorize(trials["participant"], sort=True)
    v_codes, videos = pd.factorize(trials["video"], sort=True)
    log = pd.DataFrame(log_rows) if log_rows else empty_exclusions()
    return RankingMatrix(methods=list(methods), given=given, mid=midranks(given), participant=p_codes.astype(np.int64),
                         video=v_codes.astype(np.int64), participants=[str(p) for p in participants],
                         videos=[str(v) for v in videos], trials=trials, exclusions=log)


# ----------------------------------------------------------------------------- crossed-robust test

def _cluster_sums(r: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Sums of r (..., N, q) within groups given by codes (N,) -> (..., n_groups, q)."""
    onehot = np.zeros((n_groups, len(codes)))
    onehot[codes, np.arange(len(codes))] = 1.0
    return np.einsum("gn,...nq->...gq", onehot, r)


def _wald_f(xbar: np.ndarray, cov: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """Hotelling-type F test of xbar (..., q) = 0 with covariance cov (..., q, q), G clusters."""
    q = xbar.shape[-1]
    if n_clusters <= q:
        nan = np.full(xbar.shape[:-1], np.nan)
        return nan, nan
    with np.errstate(divide="ignore", invalid="ignore"):
        ridge = 1e-12 * np.trace(cov, axis1=-2, axis2=-1)[..., None, None] * np.eye(q)
        try:
            sol = np.linalg.solve(cov + ridge, xbar[..., None])[..., 0]
        except np.linalg.LinAlgError:
            sol = np.einsum("...ij,...j->...i", np.linalg.pinv(cov), xbar)
        wald = np.einsum("...i,...i->...", xbar, sol)
        wald = np.where(np.all(np.abs(xbar) < 1e-12, axis=-1), 0.0, wald)  # no difference at all: p = 1
        wald = np.where(np.isfinite(wald), wald, np.inf)
    f = wald / q * (n_clusters - q) / (n_clusters - 1)
    return f, stats.f.sf(f, q, n_clusters - q)


def crossed_robust_test(mid: np.ndarray, participant: np.ndarray, video: np.ndarray,
                        contrast: np.ndarray | None = None) -> dict:
    """Test "the methods' mean mid-ranks are equal" with participants AND videos random.

    ``mid``: (..., N, k) mid-ranks of N rankings (leading axes: independent simulated studies
    sharing the design); ``participant`` / ``video``: int (N,) codes. ``contrast``: (q, k) rows
    of the hypothesis (default: every method minus the last, i.e. all equal; pass
    ``e_a - e_b`` for one pair).

    The contrasts x_i = C mid_i have mean xbar. Its covariance is estimated three ways from the
    residuals r_i = x_i - xbar: clustered by participant (V_P), by video (V_V), and two-way
    V_P + V_V - V_PV (Cameron, Gelbach & Miller 2011; V_PV clusters by participant x video
    cell; replaced by V_P + V_V if not positive definite), each sum of cluster outer products
    scaled by G/(G-1)/N^2. Each gives a Hotelling-type statistic
    F = W/q * (G-q)/(G-1) ~ F(q, G-q) with W = xbar' V^-1 xbar and G its number of clusters
    (min of the two for the two-way one). The reported ``pvalue`` is the largest of the three:
    the two-way estimate is noisy when the random effects are small, and then the one-way tests
    are the valid ones. NaN when there are not more clusters than contrasts.

    Returns dict of arrays: statistic (two-way F), df1, df2, pvalue, p_two_way, p_participant,
    p_video, mean_difference (xbar).
    """
    mid = np.asarray(mid, dtype=float)
    k = mid.shape[-1]
    if contrast is None:
        contrast = np.hstack([np.eye(k - 1), -np.ones((k - 1, 1))])
    contrast = np.atleast_2d(np.asarray(contrast, dtype=float))
    q = contrast.shape[0]
    x = mid @ contrast.T  # (..., N, q)
    n = x.shape[-2]
    xbar = x.mean(axis=-2)
    r = x - xbar[..., None, :]
    _, p_codes = np.unique(participant, return_inverse=True)
    _, v_codes = np.unique(video, return_inverse=True)
    g_p, g_v = int(p_codes.max()) + 1, int(v_codes.max()) + 1
    cell_codes = np.unique(p_codes * g_v + v_codes, return_inverse=True)[1]
    g_c = int(cell_codes.max()) + 1

    def cov(codes, g):
        s = _cluster_sums(r, codes, g)
        return np.einsum("...gi,...gj->...ij", s, s) * (g / max(g - 1, 1)) / n ** 2

    v_p, v_v, v_c = cov(p_codes, g_p), cov(v_codes, g_v), cov(cell_codes, g_c)
    v_two = v_p + v_v - v_c
    not_pd = np.linalg.eigvalsh(v_two).min(axis=-1) <= 0
    v_two = np.where(not_pd[..., None, None], v_p + v_v, v_two)
    g_two = min(g_p, g_v)
    f_two, p_two = _wald_f(xbar, v_two, g_two)
    _, p_part = _wald_f(xbar, v_p, g_p)
    _, p_vid = _wald_f(xbar, v_v, g_v)
    p = np.maximum(np.maximum(p_two, p_part), p_vid)
    return {"statistic": f_two, "df1": q, "df2": g_two - q, "pvalue": p, "p_two_way": p_two,
            "p_participant": p_part, "p_video": p_vid, "mean_difference": xbar,
            "n_participants": g_p, "n_videos": g_v}


def crossed_robust_pairs(rm: RankingMatrix) -> pd.DataFrame:
    """:func:`crossed_robust_test` for every pair of methods (mean mid-rank difference), Holm."""
    from statsmodels.stats.multitest import multipletests

    rows = []
    for i, a in enumerate(rm.methods):
        for j in range(i + 1, rm.k):
            c = np.zeros(rm.k)
            c[i], c[j] = 1.0, -1.0
            res = crossed_robust_test(rm.mid, rm.participant, rm.video, c)
            rows.append({"method_1": a, "method_2": rm.methods[j], "mean_rank_difference": float(res["mean_difference"][0]),
                         "p_two_way": float(res["p_two_way"]), "p_participant": float(res["p_participant"]),
                         "p_video": float(res["p_video"]), "p": float(res["pvalue"])})
    out = pd.DataFrame(rows, columns=["method_1", "method_2", "mean_rank_difference", "p_two_way", "p_participant",
                                      "p_video", "p"])
    p = out["p"].to_numpy(dtype=float)
    holm = np.full(len(p), np.nan)
    ok = np.isfinite(p)
    if ok.any():
        holm[ok] = multipletests(p[ok], method="holm")[1]
    out["p_holm"] = holm
    return out


# ----------------------------------------------------------------------------- Friedman family

def friedman(blocks: np.ndarray) -> dict:
    """Friedman test with tie correction on (..., n_blocks, k) data (any leading batch axes).

    Values are ranked within each block (mid-ranks). Returns dict of arrays: ``statistic``
    (chi-square, tie-corrected), ``df`` (k - 1), ``pvalue``, ``kendall_w`` = chi2 / (n (k - 1)).
    Equal to :func:`scipy.stats.friedmanchisquare` on the same blocks.
    """
    blocks = np.asarray(blocks, dtype=float)
    n, k = blocks.shape[-2:]
    r = midranks(blocks)
    col_sums = r.sum(axis=-2)
    chi2 = 12.0 / (n * k * (k + 1)) * (col_sums ** 2).sum(axis=-1) - 3.0 * n * (k + 1)
    # Tie correction: sum over tie groups of t^3 - t equals the sum over elements of t^2 - 1.
    tie_size = (r[..., :, None] == r[..., None, :]).sum(axis=-1)
    ties = (tie_size.astype(float) ** 2 - 1.0).sum(axis=(-2, -1))
    correction = 1.0 - ties / (n * (k ** 3 - k))
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = np.where(correction > 0, chi2 / correction, np.nan)
    return {"statistic": chi2, "df": k - 1, "pvalue": stats.chi2.sf(chi2, k - 1), "kendall_w": chi2 / (n * (k - 1)),
            "n_blocks": n}


def collapse(rm: RankingMatrix, by: str) -> pd.DataFrame:
    """Mean mid-rank of each method per participant (``by="participant"``) or per video."""
    codes, names = (rm.participant, rm.participants) if by == "participant" else (rm.video, rm.videos)
    sums = np.zeros((len(names), rm.k))
    np.add.at(sums, codes, rm.mid)
    counts = np.bincount(codes, minlength=len(names))[:, None]
    return pd.DataFrame(sums / counts, index=pd.Index(names, name=by), columns=rm.methods)


def permutation_test(rm: RankingMatrix, n_resamples: int = 9999, seed: int = 0, chunk: int = 500) -> dict:
    """Within-ranking permutation test of "all methods are exchangeable".

    Statistic: sum over methods of (mean mid-rank - (k+1)/2)^2 over all rankings (Friedman's
    statistic up to a constant). Each resample permutes the method labels independently inside
    every ranking (ties move with their values). p = (1 + #{T* >= T}) / (1 + resamples).
    """
    rng = np.random.default_rng(seed)
    centre = (rm.k + 1) / 2.0

    def stat(mid):  # (..., N, k)
        return ((mid.mean(axis=-2) - centre) ** 2).sum(axis=-1)

    observed = float(stat(rm.mid))
    exceed = 0
    done = 0
    while done < n_resamples:
        b = min(chunk, n_resamples - done)
        perm = np.argsort(rng.random((b, rm.n, rm.k)), axis=-1)
        shuffled = np.take_along_axis(np.broadcast_to(rm.mid, (b, rm.n, rm.k)), perm, axis=-1)
        exceed += int((stat(shuffled) >= observed - 1e-12).sum())
        done += b
    return {"statistic": observed, "pvalue": (1 + exceed) / (1 + n_resamples), "n_resamples": n_resamples}


def posthoc_conover(collapsed: pd.DataFrame) -> pd.DataFrame:
    """Conover-Friedman post hoc (tie-corrected) on collapsed blocks, Holm-adjusted p-values."""
    import scikit_posthocs as sp

    return sp.posthoc_conover_friedman(collapsed.to_numpy(), p_adjust="holm").set_axis(
        collapsed.columns, axis=0).set_axis(collapsed.columns, axis=1)


def posthoc_wilcoxon(collapsed: pd.DataFrame, zero_method: str = "pratt", method: str = "auto") -> pd.DataFrame:
    """Paired Wilcoxon signed-rank test for every pair of methods on collapsed blocks, Holm.

    ``zero_method='pratt'`` keeps tied blocks in the ranking (scipy's default 'wilcox' drops
    them). ``method`` is scipy's: 'auto' is exact (a permutation over sign flips) for small
    samples with ties, which takes about a second per pair; 'approx' is the normal approximation.
    Returns one row per pair: method_1, method_2, mean difference, W, p, p_holm.
    """
    from statsmodels.stats.multitest import multipletests

    rows = []
    cols = list(collapsed.columns)
    for i, a in enumerate(cols):
        for b in cols[i + 1:]:
            d = collapsed[a].to_numpy() - collapsed[b].to_numpy()
            if np.allclose(d, 0):
                w, p = 0.0, 1.0
            else:
                res = stats.wilcoxon(collapsed[a], collapsed[b], zero_method=zero_method, method=method)
                w, p = float(res.statistic), float(res.pvalue)
            rows.append({"method_1": a, "method_2": b, "mean_rank_difference": float(d.mean()), "W": w, "p": p})
    out = pd.DataFrame(rows)
    out["p_holm"] = multipletests(out["p"].to_numpy(), method="holm")[1] if len(out) else []
    return out


def chosen_best_tests(rm: RankingMatrix) -> tuple[dict, pd.DataFrame]:
    """Cochran's Q over methods and exact McNemar per pair (Holm) on "chosen best" (rank 1).

    Both treat rankings as independent blocks; the crossed bootstrap intervals of the shares are
    the cluster-aware complement.
    """
    from statsmodels.stats.contingency_tables import cochrans_q, mcnemar
    from statsmodels.stats.multitest import multipletests

    best = rm.best.astype(int)
    q = cochrans_q(best)
    rows = []
    for i, a in enumerate(rm.methods):
        for j in range(i + 1, rm.k):
            b = rm.methods[j]
            n10 = int(((best[:, i] == 1) & (best[:, j] == 0)).sum())
            n01 = int(((best[:, i] == 0) & (best[:, j] == 1)).sum())
            n11 = int(((best[:, i] == 1) & (best[:, j] == 1)).sum())
            n00 = rm.n - n10 - n01 - n11
            res = mcnemar(np.array([[n11, n10], [n01, n00]]), exact=True)
            rows.append({"method_1": a, "method_2": b, "only_1_best": n10, "only_2_best": n01, "both_best": n11,
                         "p": float(res.pvalue)})
    pairs = pd.DataFrame(rows)
    pairs["p_holm"] = multipletests(pairs["p"].to_numpy(), method="holm")[1]
    return {"statistic": float(q.statistic), "df": int(q.df), "pvalue": float(q.pvalue)}, pairs


# ----------------------------------------------------------------------------- crossed bootstrap

def summary(rm: RankingMatrix, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """The paper's Table 2 with intervals: one row per method, sorted by average rank.

    Columns: method, n_rankings, average_rank (as given) with ci_low/ci_high, average_midrank
    with CI, chosen_best (count, ties count for every tied method), chosen_best_share with CI,
    best_ratio_vs_top (the chosen-best count of the method chosen best most often, ties broken by
    average rank, divided by this method's; +inf when this method was never chosen best) with a
    crossed-bootstrap CI (+inf bounds kept), and the rank distribution count_rank_1..count_rank_k
    (given ranks). ``attrs["best_ratio_reference"]`` names the reference method.
    """
    rng = np.random.default_rng(seed)
    w = nonzero_resamples(crossed_weights(rm.participant, rm.video, len(rm.participants), len(rm.videos), n_boot, rng))
    tot = w.sum(axis=1, keepdims=True)
    best = rm.best.astype(float)
    boot_given = (w @ rm.given) / tot
    boot_mid = (w @ rm.mid) / tot
    boot_best_count = w @ best
    boot_share = boot_best_count / tot
    avg_given = rm.given.mean(axis=0)
    order = np.argsort(avg_given, kind="stable")
    counts = best.sum(axis=0)
    # Reference of the ratio: the method chosen best most often (ties: the better average rank),
    # so every ratio reads "reference was ranked best R x as often as this method", R >= 1.
    top = order[int(np.argmax(counts[order]))]
    num = boot_best_count[:, [top]]
    with np.errstate(divide="ignore", invalid="ignore"):
        # x / 0 = +inf (a resample where this method is never best); only 0 / 0 is undefined.
        boot_ratio = np.where(boot_best_count > 0, num / np.where(boot_best_count > 0, boot_best_count, 1.0),
                              np.where(num > 0, np.inf, np.nan))
    lo_g, hi_g = percentile_ci(boot_given, level)
    lo_m, hi_m = percentile_ci(boot_mid, level)
    lo_s, hi_s = percentile_ci(boot_share, level)
    lo_r, hi_r = percentile_ci(boot_ratio, level, method="inverted_cdf")  # order statistics: +inf passes through
    rows = []
    for j in order:
        row = {
            "method": rm.methods[j], "n_rankings": rm.n,
            "average_rank": avg_given[j], "average_rank_ci_low": lo_g[j], "average_rank_ci_high": hi_g[j],
            "average_midrank": rm.mid[:, j].mean(), "average_midrank_ci_low": lo_m[j], "average_midrank_ci_high": hi_m[j],
            "chosen_best": int(counts[j]), "chosen_best_share": counts[j] / rm.n,
            "chosen_best_share_ci_low": lo_s[j], "chosen_best_share_ci_high": hi_s[j],
            "best_ratio_vs_top": counts[top] / counts[j] if counts[j] > 0 else np.inf,
            "best_ratio_ci_low": lo_r[j], "best_ratio_ci_high": hi_r[j],
        }
        for r in range(1, rm.k + 1):
            row[f"count_rank_{r}"] = int((rm.given[:, j] == r).sum())
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["n_boot_used"] = int(w.shape[0])
    out.attrs["best_ratio_reference"] = rm.methods[top]
    return out


@dataclass
class RankingAnalysis:
    """Everything the report shows about a ranking study."""

    rm: RankingMatrix
    table: pd.DataFrame
    friedman_participant: dict
    friedman_video: dict
    friedman_rankings: dict
    permutation: dict
    conover: pd.DataFrame
    wilcoxon: pd.DataFrame
    cochran: dict
    mcnemar: pd.DataFrame
    scale: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    crossed: dict = field(default_factory=dict)  # crossed_robust_test on all methods (headline rule)
    crossed_pairs: pd.DataFrame | None = None  # crossed_robust_pairs (headline pair tests)
    wilcoxon_video: pd.DataFrame | None = None  # Wilcoxon on per-video means (participants fixed)


def analyze_rankings(rm: RankingMatrix, n_boot: int = 2000, n_perm: int = 9999, n_boot_model: int = 200,
                     seed: int = 0, wilcoxon_method: str = "auto") -> RankingAnalysis:
    """Run every ranking statistic of the report on ``rm`` (already quality-filtered)."""
    notes = []
    by_p = collapse(rm, "participant")
    by_v = collapse(rm, "video")
    if len(by_p) < 2:
        notes.append("Only one participant: the per-participant Friedman test and post hoc tests are undefined.")
    fr_p = {k: (float(v) if np.ndim(v) == 0 else v) for k, v in friedman(by_p.to_numpy()).items()}
    fr_v = {k: (float(v) if np.ndim(v) == 0 else v) for k, v in friedman(by_v.to_numpy()).items()}
    fr_r = {k: (float(v) if np.ndim(v) == 0 else v) for k, v in friedman(rm.mid).items()}
    perm = permutation_test(rm, n_resamples=n_perm, seed=seed)
    if len(by_p) >= 3:
        conover = posthoc_conover(by_p)
        wil = posthoc_wilcoxon(by_p, method=wilcoxon_method)
    else:
        conover = pd.DataFrame(np.nan, index=rm.methods, columns=rm.methods)
        wil = pd.DataFrame(columns=["method_1", "method_2", "mean_rank_difference", "W", "p", "p_holm"])
    wil_v = posthoc_wilcoxon(by_v, method=wilcoxon_method) if len(by_v) >= 3 else None
    crossed = {key: (float(v) if np.ndim(v) == 0 else v)
               for key, v in crossed_robust_test(rm.mid, rm.participant, rm.video).items()}
    if not np.isfinite(crossed["pvalue"]):
        notes.append(f"The crossed-robust test of all {rm.k} methods needs more than {rm.k - 1} participants and more "
                     f"than {rm.k - 1} videos ({len(rm.participants)} and {len(rm.videos)} here); it is not reported.")
    pairs = crossed_robust_pairs(rm)
    cq, mcn = chosen_best_tests(rm)
    table = summary(rm, n_boot=n_boot, seed=seed)
    scale = davidson_scale_with_ci(rm, n_boot=n_boot_model, seed=seed)
    return RankingAnalysis(rm, table, fr_p, fr_v, fr_r, perm, conover, wil, cq, mcn, scale, notes,
                           crossed=crossed, crossed_pairs=pairs, wilcoxon_video=wil_v)
