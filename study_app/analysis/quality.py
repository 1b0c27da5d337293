"""Quality control of participants: attention trials, repeat consistency, the exclusion rule.

* **Attention trials** have a known answer. Rankings: the row with ``attention_expect='worst'``
  (e.g. the raw warped view with holes) must be ranked strictly below every ordinary method;
  a row with ``'best'`` (a hidden reference) must be ranked at least as well as every ordinary
  method. Pairwise: the answer must equal ``attention_expect``.
* **Repeat trials** (``trial_kind='repeat'``, ``repeat_of`` = the original trial) measure
  consistency: Kendall's tau-b between the original and the repeated ranking (1 = identical,
  0 = unrelated), or for pairwise the share of repeats with the same answer.
* **Exclusion rule** (:class:`ExclusionRule`), applied before any analysis: a participant is
  excluded when listed explicitly, when the share of failed attention trials exceeds
  ``max_attention_fail_share``, when the mean repeat tau is below ``min_repeat_tau`` (or the
  repeat agreement below ``min_repeat_agreement``), or when fewer than ``min_main_trials``
  valid main trials remain. Every exclusion is logged with its reason and printed in the
  report; nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats


@dataclass(frozen=True)
class ExclusionRule:
    """Configurable participant-exclusion rule (CLI: --max-attention-fail, --min-repeat-tau, ...)."""

    max_attention_fail_share: float | None = 0.25
    min_repeat_tau: float | None = 0.0
    min_repeat_agreement: float | None = None
    min_main_trials: int = 1
    exclude: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = []
        if self.max_attention_fail_share is not None:
            parts.append(f"more than {self.max_attention_fail_share:.0%} of attention trials failed")
        if self.min_repeat_tau is not None:
            parts.append(f"mean repeat Kendall tau below {self.min_repeat_tau:g} (rankings)")
        if self.min_repeat_agreement is not None:
            parts.append(f"repeat agreement below {self.min_repeat_agreement:.0%} (pairwise)")
        parts.append(f"fewer than {self.min_main_trials} valid main trial(s)")
        if self.exclude:
            parts.append(f"listed explicitly: {', '.join(self.exclude)}")
        return "a participant is excluded when: " + "; ".join(parts)

    def as_dict(self) -> dict:
        return asdict(self)


def _ranking_attention(table: pd.DataFrame) -> pd.DataFrame:
    """One row per ranking attention trial: participant, trial, scored, passed."""
    att = table[table["trial_kind"] == "attention"]
    rows = []
    for (part, trial), g in att.groupby(["participant", "trial"], sort=False):
        expect = g["attention_expect"].fillna("")
        ordinary = g.loc[expect == "", "rank"].astype(float)
        worst = g.loc[expect == "worst", "rank"].astype(float)
        best = g.loc[expect == "best", "rank"].astype(float)
        scored = len(ordinary) > 0 and (len(worst) + len(best)) > 0
        passed = scored and bool((worst > ordinary.max()).all() and (best <= ordinary.min()).all())
        rows.append({"participant": part, "trial": int(trial), "scored": scored, "passed": passed})
    # Explicit dtypes: with no attention trial an empty frame would get object columns, and
    # boolean indexing with an empty object column selects columns instead of rows.
    return pd.DataFrame(rows, columns=["participant", "trial", "scored", "passed"]).astype(
        {"trial": "int64", "scored": bool, "passed": bool})


def _pairwise_attention(table: pd.DataFrame) -> pd.DataFrame:
    att = table[table["trial_kind"] == "attention"].copy()
    exp = att["attention_expect"].fillna("")
    return pd.DataFrame({"participant": att["participant"], "trial": att["trial"].astype(int),
                         "scored": (exp != "").to_numpy(), "passed": ((exp != "") & (att["answer"] == exp)).to_numpy()})


def ranking_repeats(table: pd.DataFrame) -> pd.DataFrame:
    """Kendall tau-b between each repeat trial and its original: participant, trial, repeat_of, tau."""
    rows = []
    rep = table[table["trial_kind"] == "repeat"]
    by_trial = {key: g for key, g in table.groupby(["participant", "trial"], sort=False)}
    for (part, trial), g in rep.groupby(["participant", "trial"], sort=False):
        orig_id = g["repeat_of"].iloc[0]
        orig = by_trial.get((part, int(orig_id))) if pd.notna(orig_id) else None
        tau = np.nan
        if orig is not None:
            merged = g.merge(orig, on="method", suffixes=("", "_orig"))
            if len(merged) >= 2:
                tau = stats.kendalltau(merged["rank"].astype(float), merged["rank_orig"].astype(float)).statistic
        rows.append({"participant": part, "trial": int(trial), "repeat_of": orig_id, "matched": orig is not None,
                     "tau": tau})
    return pd.DataFrame(rows, columns=["participant", "trial", "repeat_of", "matched", "tau"])


def pairwise_repeats(table: pd.DataFrame) -> pd.DataFrame:
    """Agreement of each repeated comparison with its original (method order aligned)."""
    rows = []
    rep = table[table["trial_kind"] == "repeat"]
    index = table.set_index(["participant", "trial"])
    flip = {"a": "b", "b": "a", "equal": "equal"}
    for r in rep.itertuples(index=False):
        key = (r.participant, int(r.repeat_of)) if pd.notna(r.repeat_of) else None
        same = np.nan
        matched = key is not None and key in index.index
        if matched:
            o = index.loc[key]
            ans = o["answer"] if o["method_a"] == r.method_a else flip[o["answer"]]
            same = float(ans == r.answer)
        rows.append({"participant": r.participant, "trial": int(r.trial), "repeat_of": r.repeat_of,
                     "matched": matched, "agree": same})
    return pd.DataFrame(rows, columns=["participant", "trial", "repeat_of", "matched", "agree"])


def quality_table(table: pd.DataFrame, kind: str, participants: list[str] | None = None) -> pd.DataFrame:
    """Per participant: trial counts by kind, attention failures, repeat consistency.

    ``participants``: every participant seen in the raw export (also those whose trials all
    failed validation), so that a participant with no valid trial still gets a row.
    """
    if kind == "rankings":
        trials = table.drop_duplicates(["participant", "trial"])
        att = _ranking_attention(table)
        rep = ranking_repeats(table)
        rep_col, rep_val = "repeat_tau_mean", "tau"
    else:
        trials = table
        att = _pairwise_attention(table)
        rep = pairwise_repeats(table)
        rep_col, rep_val = "repeat_agreement", "agree"
    names = list(dict.fromkeys((participants or []) + trials["participant"].astype(str).tolist()))
    counts = trials.groupby(["participant", "trial_kind"]).size().unstack(fill_value=0)
    out = pd.DataFrame(index=pd.Index(names, name="participant"))
    for k in ("main", "attention", "repeat", "training"):
        out[f"n_{k}"] = counts[k].reindex(out.index).fillna(0).astype(int) if k in counts else 0
    scored = att.loc[att["scored"].to_numpy(dtype=bool)]
    out["attention_scored"] = scored.groupby("participant").size().reindex(out.index).fillna(0).astype(int)
    out["attention_failed"] = (~scored["passed"].astype(bool)).groupby(scored["participant"]).sum().reindex(out.index).fillna(0).astype(int)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["attention_fail_share"] = np.where(out["attention_scored"] > 0, out["attention_failed"] / out["attention_scored"].clip(lower=1), np.nan)
    out["repeats_matched"] = rep.groupby("participant")["matched"].sum().reindex(out.index).fillna(0).astype(int)
    out[rep_col] = rep.groupby("participant")[rep_val].mean().reindex(out.index)
    return out.reset_index()


def apply_rule(qc: pd.DataFrame, rule: ExclusionRule, kind: str) -> pd.DataFrame:
    """Decide exclusions. Adds columns ``excluded`` (bool) and ``reason`` to a copy of ``qc``."""
    qc = qc.copy()
    reasons: list[list[str]] = [[] for _ in range(len(qc))]
    for i, r in enumerate(qc.itertuples(index=False)):
        if str(r.participant) in rule.exclude:
            reasons[i].append("listed in --exclude")
        if rule.max_attention_fail_share is not None and r.attention_scored > 0 \
                and r.attention_fail_share > rule.max_attention_fail_share:
            reasons[i].append(f"failed {r.attention_failed} of {r.attention_scored} attention trials "
                              f"(> {rule.max_attention_fail_share:.0%})")
        if kind == "rankings" and rule.min_repeat_tau is not None and pd.notna(r.repeat_tau_mean) \
                and r.repeat_tau_mean < rule.min_repeat_tau:
            reasons[i].append(f"repeat consistency Kendall tau {r.repeat_tau_mean:.2f} < {rule.min_repeat_tau:g}")
        if kind == "pairwise" and rule.min_repeat_agreement is not None and pd.notna(r.repeat_agreement) \
                and r.repeat_agreement < rule.min_repeat_agreement:
            reasons[i].append(f"repeat agreement {r.repeat_agreement:.0%} < {rule.min_repeat_agreement:.0%}")
        if r.n_main < rule.min_main_trials:
            reasons[i].append(f"only {r.n_main} valid main trial(s) (need {rule.min_main_trials})")
    qc["excluded"] = [bool(x) for x in reasons]
    qc["reason"] = ["; ".join(x) for x in reasons]
    return qc


def exclude(table: pd.DataFrame, qc: pd.DataFrame, kind: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drop excluded participants' rows; returns (kept table, exclusion log rows)."""
    out = qc[qc["excluded"]]
    log = pd.DataFrame({"table": kind, "participant": out["participant"].astype(str), "trial": pd.NA,
                        "reason": "participant excluded: " + out["reason"]})
    kept = table[~table["participant"].astype(str).isin(set(out["participant"].astype(str)))]
    return kept.reset_index(drop=True), log.astype({"trial": "Int64"})
