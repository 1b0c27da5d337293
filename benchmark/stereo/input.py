"""The object every method consumes: :class:`StereoInput`.

Built once per clip and parameter set by the shared stage (depth -> disparity -> forward warp ->
hole mask) and cached on disk; the same object goes to every method, so only the refinement
differs between methods.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class StereoInput:
    """Shared input of the refinement step for one clip.

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
    """

    left: torch.Tensor
    warped: torch.Tensor
    mask: torch.Tensor
    disparity: torch.Tensor
    clip_id: str
    fps: float
    params: dict[str, Any] = field(default_factory=dict)

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


def params_hash(identity: dict[str, Any]) -> str:
    """Stable hex digest of a JSON-serialisable dict (clip identity + every parameter)."""
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]
