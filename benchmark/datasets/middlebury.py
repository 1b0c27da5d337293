"""``middlebury-motorcycle``: a real stereo pair with ground truth, shipped inside scikit-image.

Source: ``skimage.data.stereo_motorcycle()``, the Middlebury 2014 "Motorcycle" scene downsampled
4x: left and right views (500, 741, 3) uint8 and the disparity of the LEFT view (500, 741) float32
in pixels, x_R = x_L - d. Invalid pixels are +inf in the package (about 7%; its docstring says
NaN); here they become NaN, the suite's convention.

Invalid disparity is filled from the background side before any warp (option ``fill_disparity``,
on by default; :mod:`benchmark.datasets.disparity_fill`): along each row an invalid run takes
the smaller (farther) of the two valid disparities at its ends. Unfilled, those pixels would land
nowhere and leave holes that are missing data, not disocclusions (with the ``quick`` protocol,
17.6% of the hole mask; docs/datasets.md). The fill runs once on the whole pair, so a window's
values never depend on where the window cuts a row; ``Clip.disparity_filled`` marks the filled
pixels (estimates, not measurements) and ``metadata["disparity_fill"]`` names the rule.

A still pair becomes a short clip by a slow horizontal pan of a crop window: frame k shows the
window starting at column ``x0 + k * step``. The SAME window is cut from the left view, the right
view and the disparity, so for every frame the right view is the real right view and
x_R = x_L - d holds exactly in window coordinates (a horizontal crop offset cancels in both eyes).

Clips:
    pan-right   500 x 600 window moving right by ``step`` px per frame (default 8)
    pan-left    the same window moving left
    square      448 x 448 window, rows 26..474, moving right; already square, so centre-cropping
                protocols keep the whole window

Licence: the Middlebury stereo datasets are free for research use; cite Scharstein et al.,
"High-resolution stereo datasets with subpixel-accurate ground truth", GCPR 2014.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import torch

from benchmark.datasets.base import DatasetSpec, option_bool, option_int
from benchmark.datasets.disparity_fill import FILL_RULE, fill_disparity_from_background
from benchmark.errors import StereobenchError, did_you_mean
from benchmark.types import Clip, TimeWindow

#: Bump when the clip construction changes (part of ``spec.revision``).
CLIP_VERSION = "2"  # 2: invalid disparity filled from the background side (option fill_disparity)

# name -> (window height, window width, top row, direction)
CLIPS: dict[str, tuple[int | None, int, int, int]] = {
    "pan-right": (None, 600, 0, +1),
    "pan-left": (None, 600, 0, -1),
    "square": (448, 448, 26, +1),
}

_PAIR_CACHE: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, str]] = {}
_FILLED_CACHE: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def load_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """The scikit-image pair as (left uint8 HxWx3, right uint8 HxWx3, disparity float32 HxW with
    NaN = invalid, sha256 checksum of the three original arrays). Cached per process."""
    if "pair" not in _PAIR_CACHE:
        try:
            from skimage import data
            left, right, disparity = data.stereo_motorcycle()
        except Exception as exc:  # missing package or a broken install
            raise StereobenchError(f"cannot load skimage.data.stereo_motorcycle() ({exc}); "
                                   f"install scikit-image (`make install`)") from exc
        digest = hashlib.sha256()
        for array in (left, right, disparity):
            digest.update(np.ascontiguousarray(array).tobytes())
        disparity = np.where(np.isfinite(disparity), disparity, np.nan).astype(np.float32)
        _PAIR_CACHE["pair"] = (left, right, disparity, digest.hexdigest())
    return _PAIR_CACHE["pair"]


def filled_disparity() -> tuple[np.ndarray, np.ndarray]:
    """The pair's disparity with invalid pixels filled from the background side (float32 HxW)
    and the mask of filled pixels (bool HxW). Computed once per process on the whole image."""
    if "filled" not in _FILLED_CACHE:
        filled, was_filled = fill_disparity_from_background(torch.from_numpy(load_pair()[2]))
        _FILLED_CACHE["filled"] = (filled.numpy(), was_filled.numpy())
    return _FILLED_CACHE["filled"]


class MiddleburyMotorcycle:
    """The Middlebury Motorcycle pair as panning clips (see the module docstring).

    Options:
        num_frames: frames per clip (default 16).
        fps: frame rate (default 5: the paper protocol's rate, so every frame is used).
        step: window motion in pixels per frame (default 8; clamped so the window stays inside).
        fill_disparity: fill invalid ground-truth disparity from the background side before the
            warp (default True; see the module docstring). False keeps NaN there.
    """

    def __init__(self, num_frames: int = 16, fps: float = 5.0, step: int = 8, fill_disparity: bool | str = True):
        self.num_frames = option_int("middlebury-motorcycle", "num_frames", num_frames)
        self.fps = float(fps)
        self.step = option_int("middlebury-motorcycle", "step", step)
        self.fill_disparity = option_bool("middlebury-motorcycle", "fill_disparity", fill_disparity)
        if self.num_frames < 1 or not (self.fps > 0 and math.isfinite(self.fps)) or self.step < 0:
            raise StereobenchError(f"middlebury-motorcycle needs num_frames >= 1, fps > 0, step >= 0; got "
                                   f"num_frames={self.num_frames}, fps={self.fps}, step={self.step}")
        checksum = load_pair()[3]
        # Every constructor option changes the clips (fps changes their timestamps), so all of
        # them go into the revision: the stereo-input cache keys on it.
        options = dict(num_frames=self.num_frames, fps=self.fps, step=self.step,
                       fill_disparity=FILL_RULE if self.fill_disparity else "none")
        options_hash = "o" + hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:12]
        self.spec = DatasetSpec(
            name="middlebury-motorcycle",
            description=("Middlebury 2014 Motorcycle stereo pair (from scikit-image, 4x downsampled) as short "
                         "panning clips with real right views and ground-truth disparity."),
            licence="Middlebury stereo data: free for research use, cite Scharstein et al. GCPR 2014",
            revision=(f"sha256:{checksum[:16]}-clips{CLIP_VERSION}-f{self.num_frames}-s{self.step}"
                      f"-{'fill' if self.fill_disparity else 'nofill'}-{options_hash}"),
            url="https://vision.middlebury.edu/stereo/data/scenes2014/",
            citation=("D. Scharstein, H. Hirschmueller, Y. Kitajima, G. Krathwohl, N. Nesic, X. Wang, P. Westling. "
                      "High-resolution stereo datasets with subpixel-accurate ground truth. GCPR 2014."),
            has_ground_truth=True,
            default_protocol="quick",
        )

    def clip_names(self) -> list[str]:
        return list(CLIPS)

    def window_columns(self, name: str) -> np.ndarray:
        """First column of the crop window per frame, int (T,)."""
        if name not in CLIPS:
            raise did_you_mean(name, CLIPS, "middlebury-motorcycle clip")
        full_w = load_pair()[0].shape[1]
        _, width, _, direction = CLIPS[name]
        travel = full_w - width
        step = min(self.step, travel // max(1, self.num_frames - 1)) if self.num_frames > 1 else 0
        starts = np.arange(self.num_frames) * step
        return starts if direction > 0 else travel - starts

    def load_clip(self, name: str, window: TimeWindow | None = None) -> Clip:
        """Clip ``name`` (see the module docstring). ``window`` (a protocol's time window) is
        accepted for the common dataset interface and ignored: the clip is a few crops of one
        image pair, and the clip protocol cuts the window afterwards."""
        left, right, disparity, checksum = load_pair()
        filled_mask = None
        if self.fill_disparity:
            disparity, filled_mask = filled_disparity()
        starts = self.window_columns(name)
        height, width, top, _ = CLIPS[name]
        height = left.shape[0] if height is None else height
        cols = starts[:, None] + np.arange(width)[None, :]  # (T, w) window columns per frame
        rows = slice(top, top + height)
        # Gather all frames at once: (H, T, w, 3) -> (T, 3, H, w).
        left_clip = torch.from_numpy(left[rows][:, cols]).permute(1, 3, 0, 2).float().div_(255.0)
        right_clip = torch.from_numpy(right[rows][:, cols]).permute(1, 3, 0, 2).float().div_(255.0)
        disparity_clip = torch.from_numpy(disparity[rows][:, cols]).permute(1, 0, 2).unsqueeze(1).contiguous()
        filled_clip = None
        if filled_mask is not None:
            filled_clip = torch.from_numpy(filled_mask[rows][:, cols]).permute(1, 0, 2).unsqueeze(1).contiguous()
        timestamps = torch.arange(self.num_frames, dtype=torch.float64) / self.fps
        return Clip(
            clip_id=f"middlebury-motorcycle/{name}", left=left_clip.contiguous(), fps=self.fps,
            right=right_clip.contiguous(), disparity=disparity_clip, timestamps=timestamps,
            metadata=dict(source="skimage.data.stereo_motorcycle", checksum_sha256=checksum,
                          window_top=top, window_size=[height, width],
                          window_columns=[int(c) for c in starts], revision=self.spec.revision,
                          disparity_fill=FILL_RULE if self.fill_disparity else "none"),
            disparity_filled=filled_clip,
        )
