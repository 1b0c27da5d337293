"""Balanced assignment of study units (videos, or (video, pair) comparisons) to participant slots.

Pure NumPy, seeded. :func:`balanced_assignment` gives each of ``n_slots`` slots ``per_slot``
distinct units such that every unit is assigned to either ``floor(n_slots * per_slot / n_units)``
or one more slot (each video is seen by about the same number of participants) and no slot sees
a unit twice. The construction is a cyclic design over a random permutation of the units:
slot ``s`` takes the ``per_slot`` consecutive units starting at ``s * per_slot`` (mod ``n_units``)
of the permuted list, so the units are dealt round-robin and the counts differ by at most one.

:func:`slot_permutation` draws a random method-to-slot mapping and :func:`shuffled_order` a
per-participant trial order; both take a ``numpy.random.Generator`` so a study build is
reproducible from its seed.
"""

from __future__ import annotations

import numpy as np

from benchmark.errors import StereobenchError


def balanced_assignment(n_units: int, n_slots: int, per_slot: int | None = None,
                        rng: np.random.Generator | None = None) -> list[list[int]]:
    """Unit indices per slot (each list in the slot's assignment order, not yet shuffled).

    Args:
        n_units: number of units (videos or comparisons), >= 1.
        n_slots: number of participant slots, >= 1.
        per_slot: units per slot (default: all units, i.e. every participant sees everything).
        rng: random generator (default: seed 0).

    Raises:
        StereobenchError: ``per_slot`` outside 1..n_units, or no unit/slot.
    """
    if n_units < 1:
        raise StereobenchError("the study has no usable video: nothing to assign to participants")
    if n_slots < 1:
        raise StereobenchError(f"participants must be at least 1, got {n_slots}")
    per_slot = n_units if per_slot is None else int(per_slot)
    if not 1 <= per_slot <= n_units:
        raise StereobenchError(f"videos per participant must be from 1 to the {n_units} usable unit(s), got {per_slot}")
    rng = rng if rng is not None else np.random.default_rng(0)
    perm = rng.permutation(n_units)
    starts = (np.arange(n_slots) * per_slot) % n_units
    idx = (starts[:, None] + np.arange(per_slot)[None, :]) % n_units
    return [[int(u) for u in perm[row]] for row in idx]


def assignment_counts(assignment: list[list[int]], n_units: int) -> np.ndarray:
    """How many slots see each unit (length ``n_units``)."""
    flat = np.fromiter((u for row in assignment for u in row), dtype=np.int64)
    return np.bincount(flat, minlength=n_units)


def slot_permutation(n: int, rng: np.random.Generator) -> list[int]:
    """A random order of ``n`` stimuli: element ``i`` is the stimulus shown in slot ``i``."""
    return [int(i) for i in rng.permutation(n)]


def shuffled_order(n: int, rng: np.random.Generator) -> list[int]:
    """A random presentation order of ``n`` trials."""
    return [int(i) for i in rng.permutation(n)]
