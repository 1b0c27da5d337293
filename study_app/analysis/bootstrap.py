"""The crossed bootstrap shared by every analysis: participants and videos resampled independently.

Responses are clustered twice: one participant answers many videos and one video is answered
by many participants. Resampling rankings (or comparisons) one by one would treat them as
independent and give intervals that are too narrow. The crossed bootstrap draws participants
with replacement and, independently, videos with replacement; a unit (one ranking or one
comparison) of participant p on video v then enters a resample with weight c_p * c_v, the
product of the two draw counts. Every statistic that is a weighted mean or a weighted count of
units is then one matrix product ``weights @ values`` for all resamples at once.

This module needs only NumPy, so the rankings, pairwise and scaling modules can all use it
without importing each other.
"""

from __future__ import annotations

import warnings

import numpy as np


def crossed_weights(participant: np.ndarray, video: np.ndarray, n_participants: int, n_videos: int,
                    n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Weights (n_boot, N) float64 of a crossed bootstrap: participants and videos resampled independently.

    ``participant`` / ``video``: int codes (N,) in 0..n_participants-1 / 0..n_videos-1, one per
    unit (ranking or comparison). A unit of participant p on video v gets weight c_p * c_v where
    c are the multinomial draw counts of the resample. Resamples whose weights are all zero
    (possible with sparse designs) are returned as all-zero rows; callers drop them.
    """
    cp = rng.multinomial(n_participants, np.full(n_participants, 1.0 / n_participants), size=n_boot)
    cv = rng.multinomial(n_videos, np.full(n_videos, 1.0 / n_videos), size=n_boot)
    return (cp[:, participant] * cv[:, video]).astype(float)


def nonzero_resamples(weights: np.ndarray) -> np.ndarray:
    """The rows of ``weights`` (B, N) that keep at least one unit (a weighted mean needs one)."""
    return weights[weights.sum(axis=1) > 0]


def percentile_ci(samples: np.ndarray, level: float = 0.95, method: str = "linear") -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval per column of ``samples`` (B, ...); NaN replicates (a 0/0 ratio) are skipped.

    ``method="inverted_cdf"`` takes order statistics (no interpolation), so +inf replicates
    (a ratio x/0) give an infinite bound instead of being dropped or turning into NaN.
    Returns (low, high), each of shape ``samples.shape[1:]``.
    """
    a = (1 - level) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column -> NaN interval
        return (np.nanquantile(samples, a, axis=0, method=method),
                np.nanquantile(samples, 1 - a, axis=0, method=method))
