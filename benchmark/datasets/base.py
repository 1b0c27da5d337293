"""Dataset contracts: :class:`DatasetSpec` (and :class:`Clip`, defined in :mod:`benchmark.types`),
and the checks of dataset options (:func:`option_int`, :func:`option_bool`).

A dataset yields clips at their native size and frame rate; a clip protocol
(:mod:`benchmark.stereo.protocol`) then resamples, resizes and crops them, and the shared stage
turns them into :class:`benchmark.types.StereoInput` objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmark.errors import StereobenchError
from benchmark.types import Clip  # noqa: F401  (datasets make Clips; the contract lives on the ground floor)


@dataclass(frozen=True)
class DatasetSpec:
    """Declarative description of a dataset (name, licence, revision, where it comes from).

    ``revision`` identifies the exact content (a version string or checksum) and goes into
    every run's manifest and every cache key, so changed data never reuses stale results.
    """

    name: str
    description: str
    licence: str = ""
    revision: str = ""
    url: str = ""
    citation: str = ""
    has_ground_truth: bool = True
    default_protocol: str = "paper"


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def option_int(dataset: str, option: str, value: Any) -> int:
    """A whole-number dataset option (``2``, ``"2"``, ``2.0``); anything else, ``2.5`` included
    (which ``int()`` would silently truncate), is a one-line :class:`StereobenchError`."""
    if isinstance(value, bool):
        raise StereobenchError(f"{dataset} option {option} must be a whole number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise StereobenchError(f"{dataset} option {option} must be a whole number, got {value!r}") from None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise StereobenchError(f"{dataset} option {option} must be a whole number, got {value!r}") from None
    if not math.isfinite(number) or number != int(number):
        raise StereobenchError(f"{dataset} option {option} must be a whole number, got {value!r}")
    return int(number)


def option_bool(dataset: str, option: str, value: Any) -> bool:
    """A true/false dataset option (a bool, 0/1, or one of true/false/yes/no/on/off in any case);
    anything else is a one-line :class:`StereobenchError` instead of a silent False."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and int(value) in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise StereobenchError(f"{dataset} option {option} must be true or false, got {value!r}")
