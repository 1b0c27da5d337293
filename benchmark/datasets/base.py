"""Dataset contracts: :class:`Clip` and :class:`DatasetSpec`.

A dataset yields clips at their native size and frame rate; a clip protocol
(:mod:`benchmark.stereo.protocol`) then resamples, resizes and crops them, and the shared stage
turns them into :class:`benchmark.stereo.input.StereoInput` objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Clip:
    """One clip of a dataset.

    Attributes:
        clip_id: dataset-qualified identity, ``"<dataset>/<clip name>"``; stable across runs.
        left: left video, float32 (T, 3, H, W) in [0, 1], RGB.
        fps: frame rate of ``left`` in frames per second.
        right: ground-truth right video, same shape as ``left``, or None (monocular input).
        disparity: ground-truth disparity of the LEFT view in pixels, float32 (T, 1, H, W),
            x_R = x_L - d, NaN = invalid; or None when disparity must come from a depth source.
        timestamps: seconds of each frame (T,), or None for uniform ``k / fps``.
        metadata: free-form facts about the clip (source file, licence, camera), JSON-serialisable.
    """

    clip_id: str
    left: torch.Tensor
    fps: float
    right: torch.Tensor | None = None
    disparity: torch.Tensor | None = None
    timestamps: torch.Tensor | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.left.shape[0])


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
