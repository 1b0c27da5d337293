"""Dataset contracts: :class:`DatasetSpec` (and :class:`Clip`, defined in :mod:`benchmark.types`).

A dataset yields clips at their native size and frame rate; a clip protocol
(:mod:`benchmark.stereo.protocol`) then resamples, resizes and crops them, and the shared stage
turns them into :class:`benchmark.types.StereoInput` objects.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.types import Clip  # noqa: F401  # moved; shim removed at integration


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
