"""Named clip protocols: which frames, at what rate and size, every method is evaluated on.

A :class:`ClipProtocol` turns a dataset :class:`~benchmark.types.Clip` (native size and
frame rate) into the clip the benchmark warps and scores, by :func:`apply_protocol`:

1. **Time**: frame k is the source frame nearest in time to ``t0 + k / fps`` (``t0`` = the
   clip's first timestamp; FFmpeg ``fps`` filter style: an exact tie, within 1 microsecond,
   goes to the later frame). ``fps=None`` keeps every frame.
   ``num_frames`` frames are taken from the start; a shorter clip is padded to ``num_frames``:
   ``pad="zero"`` (the paper's rule) appends black left/right frames whose disparity is NaN
   (no geometry: the shared warp marks such a frame entirely as hole, and
   ``clip.metadata["padded_frames"]`` says how many frames at the end are padding, so metrics can
   leave them out); ``pad="edge"`` repeats the last real frame (and its disparity).
2. **Size**: the short side goes to ``short_side`` with antialiased bilinear resizing
   (``torch.nn.functional.interpolate(..., antialias=True)``). Disparity is resized NaN-aware
   (the resample of the valid values divided by the resample of the validity; a pixel stays
   valid where at least half of its weight came from valid pixels) and its values are multiplied
   by the horizontal scale factor ``new_width / width``, because disparity is measured in pixels.
3. **Crop**: a centre crop to ``crop = (height, width)``.

The hole-mask closing (``hole_mask_closing``, a square kernel in pixels) is applied by the shared
stage after the warp, at the protocol's resolution (:func:`benchmark.stereo.cache.build_stereo_input`).

Built-in protocols (:data:`PROTOCOLS`):

- ``paper``: the M2SVid paper's evaluation (16 frames at 5 fps from the start, zero-padded,
  short side 512, centre crop 512x512, 11x11 closing).
- ``quick``: the light protocol that ``make benchmark`` uses on a 2-core CPU: the paper's 16
  frames at 5 fps (the paper's spatio-temporal MS-SSIM needs at least 9 frames), short side 192,
  centre crop 192x192 (MS-SSIM needs more than 160 px), 5x5 closing (the paper's 11 px kernel
  scaled by 192/512, rounded up to an odd size).
- ``native``: every frame at the native rate and size, 11x11 closing.

``get_protocol("paper", num_frames=8)`` gives a variant named ``paper[num_frames=8]``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from benchmark.types import Clip, TimeWindow
from benchmark.errors import StereobenchError, did_you_mean

PAD_MODES = ("zero", "edge")


@dataclass(frozen=True)
class ClipProtocol:
    """How clips are sampled, resized and cropped before the warp (None = keep native).

    Attributes:
        name: protocol name; variants record their overrides, e.g. ``"paper[num_frames=8]"``.
        num_frames: frames per clip (padded when the clip is shorter), or None for all.
        fps: sampling rate in frames per second, or None for the native rate.
        short_side: target length of the shorter image side in pixels, or None.
        crop: centre crop (height, width) in pixels after resizing, or None.
        pad: how a short clip is padded to ``num_frames``: ``"zero"`` or ``"edge"``.
        hole_mask_closing: side of the square closing kernel applied to the raw hole mask
            (pixels, odd; 0 or 1 = no closing).
        size: exact (height, width) to resize to (antialiased bilinear, the aspect ratio is not
            kept), instead of ``short_side``; None = use ``short_side``. The qualitative protocol
            resizes this way, as the paper's studies did ("re-size them to 640x1152").
        description: one line for listings.
    """

    name: str
    num_frames: int | None = 16
    fps: float | None = 5.0
    short_side: int | None = 512
    crop: tuple[int, int] | None = (512, 512)
    pad: str = "zero"
    hole_mask_closing: int = 11
    size: tuple[int, int] | None = None
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.num_frames is not None and self.num_frames <= 0:
            raise StereobenchError(f"protocol {self.name!r}: num_frames must be positive, got {self.num_frames}")
        if self.fps is not None and not (self.fps > 0 and math.isfinite(self.fps)):
            raise StereobenchError(f"protocol {self.name!r}: fps must be positive, got {self.fps}")
        if self.short_side is not None and self.short_side <= 0:
            raise StereobenchError(f"protocol {self.name!r}: short_side must be positive, got {self.short_side}")
        if self.crop is not None:
            if len(self.crop) != 2 or min(self.crop) <= 0:
                raise StereobenchError(f"protocol {self.name!r}: crop must be (height, width) > 0, got {self.crop}")
            object.__setattr__(self, "crop", (int(self.crop[0]), int(self.crop[1])))
        if self.size is not None:
            if len(self.size) != 2 or min(self.size) <= 0:
                raise StereobenchError(f"protocol {self.name!r}: size must be (height, width) > 0, got {self.size}")
            if self.short_side is not None:
                raise StereobenchError(f"protocol {self.name!r}: give size or short_side, not both")
            object.__setattr__(self, "size", (int(self.size[0]), int(self.size[1])))
        if self.pad not in PAD_MODES:
            raise did_you_mean(self.pad, PAD_MODES, "padding mode")
        if self.hole_mask_closing < 0:
            raise StereobenchError(
                f"protocol {self.name!r}: hole_mask_closing must be >= 0, got {self.hole_mask_closing}")

    def time_window(self) -> TimeWindow | None:
        """The part of a clip's time line this protocol keeps, for a dataset that can decode only
        that (``load_clip(name, window=...)``): from the clip's first timestamp, ``num_frames``
        frames at ``fps``. None when the protocol keeps every frame (nothing to cut)."""
        if self.num_frames is None and self.fps is None:
            return None
        return TimeWindow(start_time=None, num_frames=self.num_frames, fps=self.fps)

    def to_dict(self) -> dict:
        """Every field that changes the output (for cache keys and manifests)."""
        d = dataclasses.asdict(self)
        d.pop("description", None)
        d["crop"] = list(self.crop) if self.crop is not None else None
        if self.size is None:
            d.pop("size")  # protocols without an exact size keep the keys they had before it existed
        else:
            d["size"] = list(self.size)
        return d


PROTOCOLS: dict[str, ClipProtocol] = {
    "paper": ClipProtocol(
        name="paper", num_frames=16, fps=5.0, short_side=512, crop=(512, 512), pad="zero", hole_mask_closing=11,
        description="M2SVid paper: 16 frames at 5 fps from the start (zero-padded), short side 512, "
                    "centre crop 512x512, 11x11 hole-mask closing"),
    "quick": ClipProtocol(
        name="quick", num_frames=16, fps=5.0, short_side=192, crop=(192, 192), pad="zero", hole_mask_closing=5,
        description="light CPU protocol for `make benchmark`: 16 frames at 5 fps, short side 192, centre crop "
                    "192x192, 5x5 closing (the paper's 11 px scaled by 192/512)"),
    "qualitative": ClipProtocol(
        name="qualitative", num_frames=16, fps=8.0, short_side=None, crop=None, size=(640, 1152), pad="zero",
        hole_mask_closing=11,
        description="the M2SVid paper's qualitative studies: 16 frames at 8 fps from the start, resized to "
                    "640x1152 (height x width), 11x11 closing; for footage without ground truth"),
    "native": ClipProtocol(
        name="native", num_frames=None, fps=None, short_side=None, crop=None, pad="zero", hole_mask_closing=11,
        description="every frame at the native frame rate and size, 11x11 hole-mask closing"),
}


def get_protocol(name: str | ClipProtocol, **overrides) -> ClipProtocol:
    """Look up a protocol by name, optionally overriding fields.

    ``get_protocol("paper", num_frames=8)`` returns the paper protocol with 8 frames, named
    ``"paper[num_frames=8]"``. Unknown names and fields raise StereobenchError (did-you-mean).
    """
    if isinstance(name, ClipProtocol):
        base = name
    else:
        if name not in PROTOCOLS:
            raise did_you_mean(name, PROTOCOLS, "protocol")
        base = PROTOCOLS[name]
    if not overrides:
        return base
    fields = {f.name for f in dataclasses.fields(ClipProtocol)} - {"name", "description"}
    for key in overrides:
        if key not in fields:
            raise did_you_mean(key, fields, "protocol field")
    changed = {k: v for k, v in overrides.items() if getattr(base, k) != (tuple(v) if isinstance(v, list) else v)}
    if not changed:
        return base
    for key in ("crop", "size"):
        if key in changed and changed[key] is not None:
            changed[key] = tuple(changed[key])
    label = ",".join(f"{k}={_fmt(v)}" for k, v in sorted(changed.items()))
    return replace(base, name=f"{base.name}[{label}]", **changed)


def _fmt(value) -> str:
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    return str(value)


#: Seconds within which two source frames are equally near a target; ties go to the later frame.
TIE_TOLERANCE_S = 1e-6


def _temporal_indices(timestamps: torch.Tensor, src_fps: float, protocol: ClipProtocol) -> tuple[torch.Tensor, int]:
    """Source frame index for each output frame, and how many output frames are padding."""
    n_src = timestamps.numel()
    if protocol.fps is None:
        count = n_src if protocol.num_frames is None else min(n_src, protocol.num_frames)
        indices = torch.arange(count)
    else:
        t0 = float(timestamps[0])
        last = float(timestamps[-1]) + 0.5 / src_fps + 1e-9
        available = int(math.floor((last - t0) * protocol.fps + 1e-9)) + 1  # targets inside the clip
        count = available if protocol.num_frames is None else min(available, protocol.num_frames)
        targets = t0 + torch.arange(count, dtype=torch.float64) / protocol.fps
        # Nearest source frame: compare the neighbours on both sides of each target. Distances
        # within TIE_TOLERANCE_S are a tie (float rounding must not decide it); ties go to the
        # later frame, as FFmpeg's fps filter does (30 -> 20 fps: frames 0, 2, 3, 5, 6, 8, ...).
        right = torch.searchsorted(timestamps, targets).clamp_(max=n_src - 1)
        left = (right - 1).clamp_(min=0)
        pick_left = (targets - timestamps[left]) < (timestamps[right] - targets) - TIE_TOLERANCE_S
        indices = torch.where(pick_left, left, right)
    total = count if protocol.num_frames is None else protocol.num_frames
    return indices, total - count


def _pad_time(x: torch.Tensor | None, padded: int, mode: str, fill: float) -> torch.Tensor | None:
    if x is None or padded == 0:
        return x
    if mode == "edge":
        tail = x[-1:].expand(padded, *x.shape[1:])
    else:
        tail = torch.full((padded, *x.shape[1:]), fill, dtype=x.dtype, device=x.device)
    return torch.cat([x, tail], dim=0)


def resize_video(video: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of (T, C, H, W) to ``size`` = (height, width), clamped to [0, 1]."""
    if tuple(video.shape[-2:]) == tuple(size):
        return video
    out = F.interpolate(video, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0)


def resize_disparity(disparity: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """NaN-aware antialiased bilinear resize of disparity (T, 1, H, W) in pixels.

    Values are scaled by ``new_width / width`` (disparity is horizontal pixels). Non-finite input
    pixels are invalid; an output pixel is valid (finite) where at least half of its resampling
    weight came from valid pixels, and NaN otherwise.
    """
    h, w = disparity.shape[-2:]
    if (h, w) == tuple(size):
        return disparity
    valid = torch.isfinite(disparity)
    filled = torch.where(valid, disparity, torch.zeros((), dtype=disparity.dtype, device=disparity.device))
    stacked = torch.cat([filled, valid.to(disparity.dtype)], dim=1)  # one interpolate call for both
    out = F.interpolate(stacked, size=size, mode="bilinear", align_corners=False, antialias=True)
    value, weight = out[:, :1], out[:, 1:]
    scale = size[1] / w
    result = value / weight.clamp(min=1e-12) * scale
    return torch.where(weight >= 0.5, result, torch.full_like(result, float("nan")))


def load_windowed_clip(dataset, name: str, protocol: ClipProtocol | str | None = None) -> Clip:
    """``dataset.load_clip(name)``, passing ``protocol.time_window()`` as ``window=`` when the
    dataset's ``load_clip`` accepts a window, so the reader decodes only the frames the protocol
    keeps (the ``folder`` dataset does). The caller still applies the protocol, which then gives
    the same clip as after a full read. Datasets are duck-typed here: this floor never imports
    :mod:`benchmark.datasets`.

    Args:
        dataset: any object with ``load_clip(name[, window])``.
        name: clip name.
        protocol: protocol object or name; None (or a protocol that keeps every frame) reads all.
    """
    import inspect

    window = get_protocol(protocol).time_window() if protocol is not None else None
    if window is not None:
        try:
            accepts_window = "window" in inspect.signature(dataset.load_clip).parameters
        except (TypeError, ValueError):
            accepts_window = False
        if accepts_window:
            return dataset.load_clip(name, window=window)
    return dataset.load_clip(name)


def resize_flags(flags: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a bool (T, 1, H, W) per-pixel flag (e.g. "disparity filled in") conservatively: an
    output pixel is flagged where ANY of its antialiased resampling weight came from a flagged
    pixel, so a value that mixes in an estimate is never taken for a measurement."""
    if tuple(flags.shape[-2:]) == tuple(size):
        return flags.bool()
    weight = F.interpolate(flags.to(torch.float32), size=size, mode="bilinear", align_corners=False, antialias=True)
    return weight > 0


def _short_side_size(h: int, w: int, short_side: int) -> tuple[int, int]:
    scale = short_side / min(h, w)
    if h <= w:
        return short_side, max(1, int(round(w * scale)))
    return max(1, int(round(h * scale))), short_side


def apply_protocol(clip: Clip, protocol: ClipProtocol | str) -> Clip:
    """Resample, pad, resize and centre-crop a clip (left, right and disparity together).

    Returns a new :class:`Clip` (the input is not modified) with ``fps`` = the protocol's rate
    (or the clip's), ``timestamps`` = the output clock, and metadata entries ``protocol``
    (the protocol's fields), ``source_frame_indices`` (which source frame each output frame came
    from, -1 for padding; when the clip already carries ``source_frame_indices``, e.g. a reader
    that decoded only the protocol's time window, they are composed so the indices still refer
    to the original source), ``padded_frames`` and ``scale`` (horizontal resize factor).
    ``clip.disparity_filled`` goes through the same steps (resized by :func:`resize_flags`;
    padding frames are not filled).

    Raises:
        StereobenchError: inconsistent clip tensors, or a crop larger than the resized frame.
    """
    if isinstance(protocol, str):
        protocol = get_protocol(protocol)
    left = clip.left
    if left.dim() != 4 or left.shape[1] != 3 or left.shape[0] == 0:
        raise StereobenchError(f"clip {clip.clip_id!r}: left must be (T, 3, H, W) with T > 0, got {tuple(left.shape)}")
    t, _, h, w = left.shape
    if clip.right is not None and clip.right.shape != left.shape:
        raise StereobenchError(
            f"clip {clip.clip_id!r}: right {tuple(clip.right.shape)} does not match left {tuple(left.shape)}")
    if clip.disparity is not None and tuple(clip.disparity.shape) != (t, 1, h, w):
        raise StereobenchError(
            f"clip {clip.clip_id!r}: disparity {tuple(clip.disparity.shape)} does not match left (T,1,H,W)="
            f"{(t, 1, h, w)}; give one disparity map per frame at the video's size")
    filled = clip.disparity_filled
    if filled is not None and (clip.disparity is None or tuple(filled.shape) != (t, 1, h, w)):
        raise StereobenchError(
            f"clip {clip.clip_id!r}: disparity_filled {tuple(filled.shape)} needs a disparity and the shape "
            f"(T,1,H,W)={(t, 1, h, w)}")
    if clip.timestamps is not None:
        timestamps = clip.timestamps.to(torch.float64).cpu()
        if timestamps.numel() != t:
            raise StereobenchError(f"clip {clip.clip_id!r}: {timestamps.numel()} timestamps for {t} frames")
    else:
        timestamps = torch.arange(t, dtype=torch.float64) / clip.fps

    indices, padded = _temporal_indices(timestamps, clip.fps, protocol)
    idx = indices.to(left.device)
    new_left = left.index_select(0, idx)
    new_right = clip.right.index_select(0, idx) if clip.right is not None else None
    new_disp = clip.disparity.index_select(0, idx) if clip.disparity is not None else None
    new_filled = filled.index_select(0, idx.to(filled.device)) if filled is not None else None

    scale = 1.0
    size = None
    if protocol.size is not None:
        size = protocol.size
    elif protocol.short_side is not None:
        size = _short_side_size(h, w, protocol.short_side)
    if size is not None:
        scale = size[1] / w
        new_left = resize_video(new_left, size)
        new_right = resize_video(new_right, size) if new_right is not None else None
        new_disp = resize_disparity(new_disp, size) if new_disp is not None else None
        new_filled = resize_flags(new_filled, size) if new_filled is not None else None
        h, w = size

    if protocol.crop is not None:
        ch, cw = protocol.crop
        if ch > h or cw > w:
            raise StereobenchError(
                f"clip {clip.clip_id!r}: crop {ch}x{cw} is larger than the {h}x{w} frame after resizing; "
                f"use a protocol with a larger short_side or a smaller crop")
        top, lft = (h - ch) // 2, (w - cw) // 2
        new_left = new_left[..., top:top + ch, lft:lft + cw]
        new_right = new_right[..., top:top + ch, lft:lft + cw] if new_right is not None else None
        new_disp = new_disp[..., top:top + ch, lft:lft + cw] if new_disp is not None else None
        new_filled = new_filled[..., top:top + ch, lft:lft + cw] if new_filled is not None else None

    new_left = _pad_time(new_left.contiguous(), padded, protocol.pad, 0.0)
    new_right = _pad_time(new_right.contiguous(), padded, protocol.pad, 0.0) if new_right is not None else None
    new_disp = _pad_time(new_disp.contiguous(), padded, protocol.pad, float("nan")) if new_disp is not None else None
    if new_filled is not None:
        # Zero padding has no disparity at all (NaN, not an estimate); edge padding repeats a frame.
        new_filled = _pad_time(new_filled.bool().contiguous(), padded, protocol.pad, False)

    fps = float(protocol.fps) if protocol.fps is not None else float(clip.fps)
    if protocol.fps is not None:
        out_times = float(timestamps[0]) + torch.arange(new_left.shape[0], dtype=torch.float64) / fps
    else:
        real = timestamps.index_select(0, indices)
        extra = (real[-1] if real.numel() else 0.0) + torch.arange(1, padded + 1, dtype=torch.float64) / fps
        out_times = torch.cat([real, extra])
    source_indices = indices.tolist() + ([-1] * padded if protocol.pad == "zero" else [int(indices[-1])] * padded)
    prior = clip.metadata.get("source_frame_indices")
    if prior is not None and len(prior) == t:
        source_indices = [int(prior[i]) if i >= 0 else -1 for i in source_indices]
    metadata = dict(clip.metadata)
    metadata.update(protocol=protocol.to_dict(), source_frame_indices=source_indices, padded_frames=int(padded),
                    scale=scale)
    return Clip(clip_id=clip.clip_id, left=new_left, fps=fps, right=new_right, disparity=new_disp,
                timestamps=out_times, metadata=metadata, disparity_filled=new_filled)
