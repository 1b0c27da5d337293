"""Paired-comparison scaling models with ties: Davidson (Bradley-Terry with ties), Thurstone V.

Both take counts over ordered pairs: ``wins[i, j]`` = how often method i was preferred to j,
``ties[i, j]`` = how often i and j were judged equal (symmetric: ties[i, j] == ties[j, i],
each tie counted once in each of the two cells).

* **Davidson (1970)**: P(i > j) = pi_i / D, P(tie) = nu sqrt(pi_i pi_j) / D with
  D = pi_i + pi_j + nu sqrt(pi_i pi_j). Scale: theta = log pi, centred to mean 0 (natural-log
  units; exp(theta_i - theta_j) is the odds of i beating j ignoring ties). nu = 0 is
  Bradley-Terry.
* **Thurstone Case V** in JOD units (just-objectionable differences, as in the image-quality
  toolbox pwcmp): P(i > j) = Phi((q_i - q_j) / sigma) with sigma = 1 / Phi^-1(0.75) = 1.4826,
  so a difference of 1 JOD means 75% of answers prefer the better method. Ties are split half
  to each side (pwcmp's convention). Scale centred to mean 0.

Intervals come from the crossed bootstrap (participants x videos), refitting each resample;
the model's own Fisher information would ignore the clustering of answers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from study_app.analysis.bootstrap import crossed_weights, nonzero_resamples

JOD_SIGMA = 1.0 / stats.norm.ppf(0.75)
_BOUND = 15.0


def rankings_to_pairs(mid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pair outcomes of rankings (N, k) mid-ranks -> win (N, k, k) and tie (N, k, k) float arrays.

    win[n, i, j] = 1 when ranking n put i strictly before j; tie[n, i, j] = 1 when tied (i != j).
    """
    a = mid[:, :, None]
    b = mid[:, None, :]
    win = (a < b).astype(float)
    tie = (a == b).astype(float)
    idx = np.arange(mid.shape[1])
    tie[:, idx, idx] = 0.0
    return win, tie


def davidson_loglik(params: np.ndarray, wins: np.ndarray, ties: np.ndarray) -> tuple[float, np.ndarray]:
    """Negative log-likelihood and its gradient; params = (theta_1..theta_k, log nu)."""
    k = wins.shape[0]
    theta, log_nu = params[:k], params[k]
    nu = np.exp(log_nu)
    a = np.exp(theta)
    sq = np.sqrt(a[:, None] * a[None, :])
    denom = a[:, None] + a[None, :] + nu * sq
    off = ~np.eye(k, dtype=bool)
    log_denom = np.where(off, np.log(denom), 0.0)
    half_t = 0.5 * ties
    ll = (wins * (theta[:, None] - log_denom)).sum() + (half_t * (log_nu + 0.5 * (theta[:, None] + theta[None, :]) - log_denom)).sum()
    c = np.where(off, wins + half_t, 0.0)
    g = np.where(off, (a[:, None] + 0.5 * nu * sq) / denom, 0.0)  # d log D_ij / d theta_i
    h = np.where(off, nu * sq / denom, 0.0)  # d log D_ij / d log nu
    grad_theta = wins.sum(axis=1) + 0.25 * (ties.sum(axis=1) + ties.sum(axis=0)) - ((c + c.T) * g).sum(axis=1)
    grad_nu = half_t.sum() - (c * h).sum()
    return -ll, -np.append(grad_theta, grad_nu)


def fit_davidson(wins: np.ndarray, ties: np.ndarray | None = None, start: tuple[np.ndarray, float] | None = None
                 ) -> tuple[np.ndarray, float]:
    """Maximum-likelihood Davidson fit. Returns (theta (k,) centred log-strengths, nu >= 0).

    Parameters are bounded (|theta| <= 15, log nu in [-15, 5]) so that data where a method never
    loses give a large finite scale instead of diverging.
    """
    wins = np.asarray(wins, dtype=float)
    k = wins.shape[0]
    ties = np.zeros_like(wins) if ties is None else np.asarray(ties, dtype=float)
    has_ties = ties.sum() > 0
    x0 = np.append(np.zeros(k), 0.0 if has_ties else -_BOUND)
    if start is not None and has_ties and start[1] > 0:  # warm start (bootstrap refits)
        x0 = np.append(start[0], np.log(start[1]))
    bounds = [(-_BOUND, _BOUND)] * k + ([(-_BOUND, 5.0)] if has_ties else [(-_BOUND, -_BOUND)])
    res = optimize.minimize(davidson_loglik, x0, args=(wins, ties), jac=True, method="L-BFGS-B", bounds=bounds,
                            options={"maxiter": 500, "ftol": 1e-12, "gtol": 1e-9})
    theta = res.x[:k] - res.x[:k].mean()
    nu = float(np.exp(res.x[k])) if has_ties else 0.0
    return theta, nu


def fit_thurstone(wins: np.ndarray, ties: np.ndarray | None = None, start: np.ndarray | None = None) -> np.ndarray:
    """Thurstone Case V maximum-likelihood scale in JOD units (ties split), centred, (k,)."""
    wins = np.asarray(wins, dtype=float)
    k = wins.shape[0]
    c = wins + (0.0 if ties is None else 0.5 * np.asarray(ties, dtype=float))
    off = ~np.eye(k, dtype=bool)
    c = np.where(off, c, 0.0)

    def nll(q):
        x = (q[:, None] - q[None, :]) / JOD_SIGMA
        logp = special.log_ndtr(x)
        ratio = np.exp(stats.norm.logpdf(x) - logp)  # phi / Phi
        grad = ((c * ratio).sum(axis=1) - (c * ratio).sum(axis=0)) / JOD_SIGMA
        return -(c * logp).sum(), -grad

    res = optimize.minimize(nll, np.zeros(k) if start is None else start, jac=True, method="L-BFGS-B", bounds=[(-_BOUND, _BOUND)] * k,
                            options={"maxiter": 500, "ftol": 1e-12, "gtol": 1e-9})
    return res.x - res.x.mean()


def scale_with_ci(win: np.ndarray, tie: np.ndarray, participant: np.ndarray, video: np.ndarray, methods: list[str],
                  model: str = "davidson", n_boot: int = 200, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Fit ``model`` ('davidson' or 'thurstone') to per-unit outcomes with crossed-bootstrap CIs.

    ``win``, ``tie``: float (N, k, k) outcomes of each unit (ranking or comparison);
    ``participant``, ``video``: int codes (N,). Returns one row per method: method, scale,
    ci_low, ci_high, plus the Davidson tie parameter ``nu`` (same for all rows) when relevant.
    """
    def one(wins, ties, start=None):
        if model == "davidson":
            return fit_davidson(wins, ties, start)
        return fit_thurstone(wins, ties, None if start is None else start[0]), np.nan

    theta, nu = one(win.sum(axis=0), tie.sum(axis=0))
    rng = np.random.default_rng(seed)
    n_p, n_v = int(participant.max()) + 1, int(video.max()) + 1
    w = nonzero_resamples(crossed_weights(participant, video, n_p, n_v, n_boot, rng))
    boot_w = np.einsum("bn,nij->bij", w, win)
    boot_t = np.einsum("bn,nij->bij", w, tie)
    reps = np.array([one(boot_w[b], boot_t[b], (theta, nu))[0] for b in range(w.shape[0])])
    a = (1 - level) / 2
    lo, hi = np.quantile(reps, a, axis=0), np.quantile(reps, 1 - a, axis=0)
    df = pd.DataFrame({"method": methods, "scale": theta, "ci_low": lo, "ci_high": hi})
    df["model"] = model
    df["unit"] = "log-strength (centred)" if model == "davidson" else "JOD (centred)"
    if model == "davidson":
        df["nu"] = nu
    return df.sort_values("scale", ascending=False, kind="stable").reset_index(drop=True)


def davidson_scale_with_ci(rm, n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """Davidson scale of a :class:`~study_app.analysis.rankings.RankingMatrix` (rankings as pairs)."""
    win, tie = rankings_to_pairs(rm.mid)
    return scale_with_ci(win, tie, rm.participant, rm.video, rm.methods, "davidson", n_boot, seed)
