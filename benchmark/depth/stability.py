"""Temporal normalisation of relative depth: [0, 1] per video without per-frame flicker.

A per-frame depth model (Depth Anything V2) gives every frame its own affine-invariant scale, and
the range of a frame changes whenever a near object enters or leaves it. Per-frame min-max (iw3's
default for video) therefore rescales the whole frame each time: the background "breathes".

:class:`TemporalNormalizer` follows iw3's ``--ema-normalize`` (``EMAMinMaxScaler``, decay 0.75,
buffer 30, nagadomi/nunif ``iw3/depth_scaler.py``) with robust statistics:

1. each frame gets a robust range: its ``low_percentile`` and ``high_percentile`` (1st / 99th by
   default) over its finite pixels (a strided subsample of at most ``max_samples`` pixels), so a
   few near particles do not set the maximum (iw3 issue #583);
2. frames are queued until ``lookahead`` frames (30) are buffered; the range of the buffer (the
   frame about to leave and the ones after it: a look-ahead window) is the smallest low and the
   largest high of its frames;
3. an exponential moving average ``m = decay * m + (1 - decay) * window`` (``decay`` 0.75; the
   first window initialises it) smooths those ranges over time;
4. the frame leaving the queue is normalised with the averaged range and clamped to [0, 1]
   (1 = nearest); at the end (:meth:`~TemporalNormalizer.flush`) the average is updated once with
   the whole remaining queue and every remaining frame gets that range (iw3's flush).

A clip shorter than ``lookahead`` is thus normalised by one range for the whole clip: its robust
per-video range, exactly ``mode="video"``. :func:`normalize_video` runs the same object over a whole clip, so streaming
in chunks of any size gives exactly the same frames. ``mode="video"`` (one robust range for the
whole clip) and ``mode="frame"`` (per-frame min-max, for comparison) are available too.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import torch

from benchmark.errors import StereobenchError, did_you_mean

#: Normalisation modes: ``ema`` (streaming, the default), ``video`` (one robust range per clip),
#: ``frame`` (per-frame min-max: flickers; for comparison and iw3's default).
STABILITY_MODES = ("ema", "video", "frame")

DEFAULTS: dict[str, Any] = {"low_percentile": 1.0, "high_percentile": 99.0, "decay": 0.75, "lookahead": 30,
                            "max_samples": 1 << 16}


def _as_thw(raw: torch.Tensor, what: str = "raw depth") -> torch.Tensor:
    if not isinstance(raw, torch.Tensor):
        raise StereobenchError(f"{what} must be a torch tensor, got {type(raw).__name__}")
    if raw.dim() == 4 and raw.shape[1] == 1:
        raw = raw[:, 0]
    if raw.dim() == 2:
        raw = raw[None]
    if raw.dim() != 3:
        raise StereobenchError(f"{what} must be (T, H, W), got {tuple(raw.shape)}")
    return raw.to(torch.float32)


def frame_ranges(frames: torch.Tensor, low_percentile: float, high_percentile: float,
                 max_samples: int = DEFAULTS["max_samples"]) -> tuple[torch.Tensor, torch.Tensor]:
    """Robust (low, high) of each frame's finite values, as two float64 tensors (T,) on the CPU;
    NaN for a frame without any finite value.

    Percentiles 0 and 100 give the exact min and max. At most ``max_samples`` pixels per frame (a
    regular stride over the flattened frame) enter the percentiles, so the cost per frame is
    bounded; frames are processed in batches (one ``nanquantile`` call per batch).
    """
    frames = _as_thw(frames)
    t = frames.shape[0]
    flat = frames.reshape(t, -1)
    if flat.shape[1] > max_samples:
        flat = flat[:, :: math.ceil(flat.shape[1] / max_samples)]
    flat = torch.where(torch.isfinite(flat), flat, torch.full_like(flat, math.nan))
    los, his = [], []
    batch = max(1, (1 << 24) // max(1, flat.shape[1]))  # nanquantile's input size limit
    for i in range(0, t, batch):
        part = flat[i:i + batch]
        if low_percentile <= 0 and high_percentile >= 100:
            valid = torch.isfinite(part)
            lo = torch.where(valid, part, torch.full_like(part, math.inf)).amin(dim=1)
            hi = torch.where(valid, part, torch.full_like(part, -math.inf)).amax(dim=1)
            none = ~valid.any(dim=1)
            lo, hi = lo.masked_fill(none, math.nan), hi.masked_fill(none, math.nan)
        else:
            q = torch.tensor([low_percentile / 100.0, high_percentile / 100.0], dtype=part.dtype, device=part.device)
            lo, hi = torch.nanquantile(part, q, dim=1)
        los.append(lo.double().cpu())
        his.append(hi.double().cpu())
    return torch.cat(los), torch.cat(his)


def apply_range(frames: torch.Tensor, lo: torch.Tensor | float, hi: torch.Tensor | float,
                out: torch.Tensor | None = None) -> torch.Tensor:
    """``(frames - lo) / (hi - lo)`` clamped to [0, 1]; 0 where the range is empty or unknown;
    NaN stays NaN. ``lo`` / ``hi``: numbers, or (T,) tensors (one range per frame of (T, H, W)).
    ``out``: a float32 tensor of the frames' shape to write into (may be ``frames`` itself)."""
    frames = _as_thw(frames)
    t = frames.shape[0]
    lo = torch.as_tensor(lo, dtype=torch.float64).reshape(-1).expand(t) if t else torch.zeros(0, dtype=torch.float64)
    hi = torch.as_tensor(hi, dtype=torch.float64).reshape(-1).expand(t) if t else torch.zeros(0, dtype=torch.float64)
    span = hi - lo
    ok = torch.isfinite(lo) & torch.isfinite(span) & (span > 0)
    safe_lo = torch.where(ok, lo, torch.zeros_like(lo)).to(torch.float32).to(frames.device).view(-1, 1, 1)
    safe_span = torch.where(ok, span, torch.ones_like(span)).to(torch.float32).to(frames.device).view(-1, 1, 1)
    if out is None:
        out = torch.empty_like(frames)
    torch.sub(frames, safe_lo, out=out)
    out.div_(safe_span).clamp_(0.0, 1.0)  # NaN stays NaN through both
    if not bool(ok.all()):
        bad = (~ok).nonzero().reshape(-1).to(frames.device)
        out[bad] = torch.where(torch.isfinite(frames[bad]), 0.0, math.nan)
    return out


class TemporalNormalizer:
    """Streaming [0, 1] normalisation of relative inverse depth (see the module docstring).

    Args:
        low_percentile, high_percentile: the robust range of a frame (percent, 0..100).
        decay: EMA decay of the range (0 = no smoothing; iw3's default 0.75).
        lookahead: frames buffered before the first output (iw3's ``--ema-buffer`` 30); the
            output lags the input by ``lookahead - 1`` frames until :meth:`flush`.
        max_samples: pixels per frame that enter the percentiles.

    Attributes:
        ranges: the (low, high) each output frame was normalised with, in output order.
    """

    def __init__(self, *, low_percentile: float = DEFAULTS["low_percentile"],
                 high_percentile: float = DEFAULTS["high_percentile"], decay: float = DEFAULTS["decay"],
                 lookahead: int = DEFAULTS["lookahead"], max_samples: int = DEFAULTS["max_samples"]):
        if not (0.0 <= low_percentile < high_percentile <= 100.0):
            raise StereobenchError(f"depth percentiles must satisfy 0 <= low < high <= 100, got {low_percentile} and "
                                   f"{high_percentile}")
        if not (0.0 <= decay < 1.0):
            raise StereobenchError(f"depth EMA decay must be in [0, 1), got {decay}")
        if int(lookahead) < 1 or int(max_samples) < 2:
            raise StereobenchError(f"depth look-ahead must be >= 1 frame (got {lookahead}) and max_samples >= 2")
        self.low_percentile = float(low_percentile)
        self.high_percentile = float(high_percentile)
        self.decay = float(decay)
        self.lookahead = int(lookahead)
        self.max_samples = int(max_samples)
        self._queue: deque[tuple[float, float]] = deque()  # (low, high) of each queued frame
        self._frames: deque[torch.Tensor] = deque()  # the queued frames themselves (views, no copies)
        self._shape: tuple[int, int] | None = None
        self._ema: tuple[float, float] | None = None
        self.ranges: list[tuple[float, float]] = []

    def settings(self) -> dict[str, Any]:
        """The parameters (for cache keys and records)."""
        return {"low_percentile": self.low_percentile, "high_percentile": self.high_percentile,
                "decay": self.decay, "lookahead": self.lookahead, "max_samples": self.max_samples}

    def reset(self) -> None:
        """Forget the moving average (a scene cut); queued frames are kept."""
        self._ema = None

    @property
    def pending(self) -> int:
        """Frames pushed but not yet returned."""
        return len(self._queue)

    def _next_range(self) -> tuple[float, float]:
        """Pop the queue's head: its (low, high) after the look-ahead window and the EMA."""
        los = [lo for lo, _ in self._queue if math.isfinite(lo)]
        his = [hi for _, hi in self._queue if math.isfinite(hi)]
        if los and his:
            window = (min(los), max(his))
            if self._ema is None:
                self._ema = window
            else:
                d = self.decay
                self._ema = (d * self._ema[0] + (1 - d) * window[0], d * self._ema[1] + (1 - d) * window[1])
        self._queue.popleft()
        lo, hi = self._ema if self._ema is not None else (math.nan, math.nan)
        self.ranges.append((lo, hi))
        return lo, hi

    def _flush_ranges(self) -> list[tuple[float, float]]:
        """Ranges of every queued frame at the end: one update of the average with the whole
        remaining queue (iw3's flush), then that range for each of them."""
        count = len(self._queue)
        first = self._next_range()  # the window is the whole remaining queue
        ranges = [first]
        for _ in range(count - 1):
            self._queue.popleft()
            self.ranges.append(first)
            ranges.append(first)
        return ranges

    def _take(self, ranges: list[tuple[float, float]]) -> torch.Tensor:
        """The next ``len(ranges)`` queued frames, normalised with those ranges (one copy)."""
        frames = [self._frames.popleft() for _ in ranges]
        out = torch.stack(frames)
        lo = torch.tensor([r[0] for r in ranges], dtype=torch.float64)
        hi = torch.tensor([r[1] for r in ranges], dtype=torch.float64)
        return apply_range(out, lo, hi, out=out)

    def push(self, raw: torch.Tensor) -> torch.Tensor:
        """Add frames (t, H, W); returns the normalised frames that are ready (k, H, W), k >= 0."""
        raw = _as_thw(raw)
        if self._shape is not None and tuple(raw.shape[1:]) != self._shape:
            raise StereobenchError(f"depth frames changed size from {self._shape} to {tuple(raw.shape[1:])} within "
                                   f"one video")
        self._shape = tuple(raw.shape[1:])
        lo, hi = frame_ranges(raw, self.low_percentile, self.high_percentile, self.max_samples)
        ready = []
        for i in range(raw.shape[0]):
            self._queue.append((float(lo[i]), float(hi[i])))
            self._frames.append(raw[i])
            if len(self._queue) >= self.lookahead:
                ready.append(self._next_range())
        if not ready:
            return raw.new_zeros((0, *raw.shape[1:]))
        return self._take(ready)

    def flush(self) -> torch.Tensor:
        """Normalise and return every frame still queued (k, H, W); the object can go on after."""
        if not self._frames:
            return torch.zeros((0, *(self._shape or (0, 0))))
        return self._take(self._flush_ranges())


def normalize_video(raw: torch.Tensor, mode: str = "ema", **params: Any) -> torch.Tensor:
    """Relative inverse depth of a whole clip (T, H, W) -> [0, 1] (1 = nearest), NaN kept.

    Args:
        raw: (T, H, W) or (T, 1, H, W) relative inverse depth.
        mode: ``ema`` (:class:`TemporalNormalizer`; the same frames as streaming), ``video``
            (one robust range for the whole clip: the smallest low and largest high percentile
            of its frames), ``frame`` (per-frame min-max; flickers).
        **params: :class:`TemporalNormalizer` parameters (``ema``; ``video`` uses the
            percentiles and ``max_samples``).
    """
    if mode not in STABILITY_MODES:
        raise did_you_mean(str(mode), STABILITY_MODES, "depth stability mode")
    raw = _as_thw(raw)
    if raw.shape[0] == 0:
        return raw.clone()
    if mode == "ema":
        normalizer = TemporalNormalizer(**params)
        head = normalizer.push(raw)
        return torch.cat([head, normalizer.flush()])
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise StereobenchError(f"depth normalisation does not take {', '.join(unknown)}; it takes "
                               f"{', '.join(sorted(DEFAULTS))}")
    settings = {**DEFAULTS, **params}
    if mode == "frame":
        lo, hi = frame_ranges(raw, 0.0, 100.0)
        return apply_range(raw, lo, hi)
    lo, hi = frame_ranges(raw, settings["low_percentile"], settings["high_percentile"], settings["max_samples"])
    finite = torch.isfinite(lo)
    if not bool(finite.any()):
        return apply_range(raw, math.nan, math.nan)
    return apply_range(raw, float(lo[finite].min()), float(hi[finite].max()))


__all__ = ["DEFAULTS", "STABILITY_MODES", "TemporalNormalizer", "apply_range", "frame_ranges", "normalize_video"]
