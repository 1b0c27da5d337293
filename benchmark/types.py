"""The data contracts every floor of the suite shares: :class:`Clip`, :class:`StereoInput`,
:class:`TimeWindow` and :func:`params_hash`.

This module is on the ground floor: it imports only the standard library and torch, never
``benchmark.stereo`` or ``benchmark.datasets``, so both may import it without a package cycle
(datasets may import stereo; stereo never imports datasets).

Conventions (docs/stereo.md): video float32 (T, 3, H, W) in [0, 1] RGB; hole mask bool
(T, 1, H, W), True = hole; disparity float32 (T, 1, H, W) in pixels of the LEFT view,
x_R = x_L - d, larger = nearer, NaN = invalid.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["Clip", "StereoInput", "TimeWindow", "params_hash"]


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
        disparity_filled: bool (T, 1, H, W), True where ``disparity`` is not measured but was
            filled in by the dataset (e.g. Middlebury's background fill of invalid pixels), so
            scoring can tell estimates from ground truth; None when nothing was filled.
    """

    clip_id: str
    left: torch.Tensor
    fps: float
    right: torch.Tensor | None = None
    disparity: torch.Tensor | None = None
    timestamps: torch.Tensor | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    disparity_filled: torch.Tensor | None = None

    @property
    def num_frames(self) -> int:
        return int(self.left.shape[0])


@dataclass(frozen=True)
class TimeWindow:
    """The part of a clip's time line that a clip protocol keeps, passed to a dataset's
    ``load_clip(name, window=...)`` so a reader decodes only those frames.

    Output frame k is the source frame nearest to ``start_time + k / fps`` (seconds; ``fps``
    None = every source frame from ``start_time``); at most ``num_frames`` frames (None = to
    the end). ``start_time`` None means "the clip's first timestamp" (what the protocols use).
    """

    start_time: float | None = None
    num_frames: int | None = None
    fps: float | None = None

    def __post_init__(self) -> None:
        if self.num_frames is not None and int(self.num_frames) <= 0:
            raise ValueError(f"TimeWindow.num_frames must be positive, got {self.num_frames}")
        if self.fps is not None and not (self.fps > 0 and math.isfinite(self.fps)):
            raise ValueError(f"TimeWindow.fps must be a positive number, got {self.fps}")
        if self.start_time is not None and not (self.start_time >= 0 and math.isfinite(self.start_time)):
            raise ValueError(f"TimeWindow.start_time must be >= 0 seconds, got {self.start_time}")


@dataclass(frozen=True)
class StereoInput:
    """Shared input of the refinement step for one clip.

    Built once per clip and parameter set by the shared stage (depth -> disparity -> forward
    warp -> hole mask) and cached on disk; the same object goes to every method, so only the
    refinement differs between methods.

    Attributes:
        left: left video (the given monocular video), float32 (T, 3, H, W) in [0, 1], RGB.
        warped: left view forward-warped to the right camera, float32 (T, 3, H, W) in [0, 1];
            hole pixels are 0.
        mask: hole (disocclusion) mask, bool (T, 1, H, W), True where no source pixel landed
            (after the protocol's post-processing, e.g. the paper's 11x11 closing).
        disparity: disparity of the LEFT view in pixels, float32 (T, 1, H, W); x_R = x_L - d,
            larger = nearer, NaN = invalid.
        clip_id: dataset-qualified clip identity, e.g. ``"synthetic/clip-000"``.
        fps: frame rate of the clip after the protocol's resampling, frames per second.
        params: every parameter that made this input (depth source, D_max, warp mode and name,
            protocol and its settings, hole-mask post-processing); part of the cache key.
        disparity_filled: bool (T, 1, H, W), True where ``disparity`` is an estimate the dataset
            filled in (:attr:`Clip.disparity_filled`), not a measurement: the warp used it, but
            scores that need ground-truth disparity must leave those pixels out. None when
            every finite value is measured.
    """

    left: torch.Tensor
    warped: torch.Tensor
    mask: torch.Tensor
    disparity: torch.Tensor
    clip_id: str
    fps: float
    params: dict[str, Any] = field(default_factory=dict)
    disparity_filled: torch.Tensor | None = None

    @property
    def measured_disparity(self) -> torch.Tensor:
        """``disparity`` with filled-in (estimated) pixels set to NaN: ground truth only."""
        if self.disparity_filled is None:
            return self.disparity
        return self.disparity.masked_fill(self.disparity_filled, float("nan"))

    @property
    def num_frames(self) -> int:
        return int(self.left.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return int(self.left.shape[-2]), int(self.left.shape[-1])

    def to(self, device: torch.device | str) -> "StereoInput":
        """A copy with every tensor on ``device``."""
        return StereoInput(
            left=self.left.to(device), warped=self.warped.to(device), mask=self.mask.to(device),
            disparity=self.disparity.to(device), clip_id=self.clip_id, fps=self.fps, params=dict(self.params),
            disparity_filled=None if self.disparity_filled is None else self.disparity_filled.to(device),
        )

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first broken contract (shapes, dtypes, ranges)."""
        t, c, h, w = self.left.shape
        if c != 3 or self.left.dtype != torch.float32:
            raise ValueError(f"left must be float32 (T,3,H,W), got {tuple(self.left.shape)} {self.left.dtype}")
        if self.warped.shape != self.left.shape:
            raise ValueError(f"warped {tuple(self.warped.shape)} does not match left {tuple(self.left.shape)}")
        if self.mask.shape != (t, 1, h, w) or self.mask.dtype != torch.bool:
            raise ValueError(f"mask must be bool (T,1,H,W)={(t, 1, h, w)}, got {tuple(self.mask.shape)} {self.mask.dtype}")
        if self.disparity.shape != (t, 1, h, w):
            raise ValueError(f"disparity must be (T,1,H,W)={(t, 1, h, w)}, got {tuple(self.disparity.shape)}")
        filled = self.disparity_filled
        if filled is not None and (filled.shape != (t, 1, h, w) or filled.dtype != torch.bool):
            raise ValueError(f"disparity_filled must be bool (T,1,H,W)={(t, 1, h, w)}, got "
                             f"{tuple(filled.shape)} {filled.dtype}")


def params_hash(identity: dict[str, Any]) -> str:
    """Stable hex digest of a JSON-serialisable dict (clip identity + every parameter)."""
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]
