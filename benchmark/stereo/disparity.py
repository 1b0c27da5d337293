"""Depth to disparity, in the project convention (DESIGN.md section 2).

Disparity is float32 (T, 1, H, W) in pixels of the LEFT view: a point at x_L appears at
x_R = x_L - d in the right view, larger = nearer, NaN = invalid. Every function here returns that
layout (a (T, H, W) input gets the channel axis added) and turns invalid input into NaN.

How the three methods' own rules map onto :func:`disparity_from_inverse_depth` (``n`` = depth
model output normalised to [0, 1], 1 = nearest):

- M2SVid: ``d = n * int(0.05 * W)``: ``d_max_px=int(0.05 * W)``, ``convergence=0``
  (``normalise="clip"`` for a clip-normalised depth video).
- StereoCrafter: ``d = (2n - 1) * 20``: ``d_max_px=40``, ``convergence=0.5``, ``normalise="clip"``.
- SVG: ``Z = 1 / (n + 0.1)`` with f = 800 px, B = 0.08: ``d = f B (n + 0.1)``:
  ``d_max_px=64``, ``convergence=-0.1`` (a negative convergence moves every point nearer).
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import torch

from benchmark.errors import StereobenchError

NORMALISE_MODES = ("clip", "frame")
DISPARITY_FILE_SUFFIXES = (".npy", ".pt", ".pth")


def _as_t1hw(x: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise StereobenchError(f"{what} must be a torch tensor, got {type(x).__name__}")
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1] != 1:
        raise StereobenchError(f"{what} must be (T, 1, H, W) or (T, H, W), got {tuple(x.shape)}")
    return x.to(torch.float32)


def _nan() -> float:
    return float("nan")


def disparity_from_inverse_depth(inv_depth: torch.Tensor, d_max_px: float | None = None,
                                 d_max_frac: float | None = None, normalise: str = "clip",
                                 convergence: float = 0.0) -> torch.Tensor:
    """Disparity from relative inverse depth (e.g. a monocular depth model's output).

    The valid (finite) values are normalised to [0, 1] (min -> 0 = farthest, max -> 1 = nearest)
    over the whole clip (``normalise="clip"``, temporally stable) or per frame
    (``normalise="frame"``); a constant input normalises to 0. Then
    ``d = (n - convergence) * D_max`` with ``D_max = d_max_px`` or ``d_max_frac * W`` (give
    exactly one). ``convergence`` is the normalised inverse depth of the zero-parallax plane
    (0 = everything in front of the screen, 0.5 = mid depth on the screen).

    Args:
        inv_depth: relative inverse depth (T, 1, H, W) or (T, H, W); larger = nearer.
    Returns:
        float32 disparity (T, 1, H, W) in pixels; NaN where the input was not finite.
    """
    inv = _as_t1hw(inv_depth, "inverse depth")
    if normalise not in NORMALISE_MODES:
        raise StereobenchError(f"normalise must be one of {NORMALISE_MODES}, got {normalise!r}")
    if (d_max_px is None) == (d_max_frac is None):
        raise StereobenchError("give exactly one of d_max_px (pixels) or d_max_frac (fraction of the width)")
    d_max = float(d_max_px) if d_max_px is not None else float(d_max_frac) * inv.shape[-1]
    if not torch.isfinite(torch.tensor(d_max)) or d_max < 0:
        raise StereobenchError(f"the maximum disparity must be a finite number >= 0, got {d_max}")
    valid = torch.isfinite(inv)
    if not bool(valid.any()):
        raise StereobenchError("inverse depth has no finite value; check the depth source")
    dims = (0, 1, 2, 3) if normalise == "clip" else (1, 2, 3)
    lo = torch.where(valid, inv, torch.full_like(inv, float("inf"))).amin(dim=dims, keepdim=True)
    hi = torch.where(valid, inv, torch.full_like(inv, float("-inf"))).amax(dim=dims, keepdim=True)
    span = hi - lo
    # A flat (or fully invalid) frame normalises to 0 instead of dividing by zero.
    safe_span = torch.where(torch.isfinite(span) & (span > 0), span, torch.ones_like(span))
    lo = torch.where(torch.isfinite(lo), lo, torch.zeros_like(lo))
    normalised = ((inv - lo) / safe_span).clamp_(0.0, 1.0)
    normalised = torch.where(torch.isfinite(span) & (span > 0), normalised, torch.zeros_like(normalised))
    disparity = (normalised - float(convergence)) * d_max
    return torch.where(valid, disparity, torch.full_like(disparity, _nan()))


def d_max_pixels(width: int, d_max_px: float | None = None, d_max_percent: float | None = None) -> float:
    """D_max in pixels from pixels or a percentage of ``width`` (iw3's ``--divergence``); give one.

    Raises:
        StereobenchError: both or neither given, or a negative / non-finite value.
    """
    if (d_max_px is None) == (d_max_percent is None):
        raise StereobenchError("give exactly one of D_max in pixels or in percent of the width")
    value = float(d_max_px) if d_max_px is not None else float(d_max_percent) / 100.0 * int(width)
    if not (value >= 0 and value < float("inf")):
        raise StereobenchError(f"the maximum disparity must be a finite number >= 0, got {value}")
    return value


def disparity_from_normalized_depth(normalized: torch.Tensor, d_max_px: float | None = None,
                                    d_max_percent: float | None = None, convergence: float = 0.0) -> torch.Tensor:
    """Disparity from depth already normalised to [0, 1] (1 = nearest), e.g. by
    :func:`benchmark.depth.normalize_video` or a streaming
    :class:`benchmark.depth.TemporalNormalizer`: ``d = (n - convergence) * D_max``.

    ``D_max`` is ``d_max_px`` pixels or ``d_max_percent`` percent of the width (iw3's
    ``--divergence``: total parallax ``D/100 * W * (n - c)``); give exactly one. ``convergence``
    is the normalised depth of the zero-parallax (screen) plane: 0 puts everything in front of the
    screen (M2SVid's rule), 0.5 mid depth on it (iw3's default), 1 everything behind it. Unlike
    :func:`disparity_from_inverse_depth` nothing is renormalised here, so a stream of windows maps
    each frame alone.

    Args:
        normalized: (T, H, W) or (T, 1, H, W) in [0, 1]; non-finite = invalid.
    Returns:
        float32 (T, 1, H, W) pixels of the left view (x_R = x_L - d); NaN where invalid.
    """
    n = _as_t1hw(normalized, "normalised depth")
    d_max = d_max_pixels(n.shape[-1], d_max_px, d_max_percent)
    valid = torch.isfinite(n)
    disparity = (n.clamp(0.0, 1.0) - float(convergence)) * d_max
    return torch.where(valid, disparity, torch.full_like(disparity, _nan()))


def disparity_from_metric_depth(depth_m: torch.Tensor, focal_px: float, baseline_m: float) -> torch.Tensor:
    """Disparity ``d = focal_px * baseline_m / Z`` from metric depth Z (metres).

    Depth that is <= 0, NaN or infinite is invalid and gives NaN (an infinite depth is treated as
    "no measurement", not as zero disparity). Returns float32 (T, 1, H, W) pixels.
    """
    depth = _as_t1hw(depth_m, "depth")
    if not (focal_px > 0) or not (baseline_m > 0):
        raise StereobenchError(f"focal_px and baseline_m must be positive, got {focal_px} and {baseline_m}")
    valid = torch.isfinite(depth) & (depth > 0)
    safe = torch.where(valid, depth, torch.ones_like(depth))
    disparity = (float(focal_px) * float(baseline_m)) / safe
    return torch.where(valid, disparity, torch.full_like(disparity, _nan()))


def disparity_from_disparity(disp: torch.Tensor, scale: float = 1.0, convergence_px: float = 0.0) -> torch.Tensor:
    """Rescale a disparity map: ``d' = d * scale - convergence_px`` (pixels); non-finite -> NaN.

    ``scale`` adapts a disparity measured at another width (``new_width / old_width``) or
    strengthens/weakens the stereo effect; ``convergence_px`` moves the zero-parallax plane to the
    points whose scaled disparity equals it.
    """
    d = _as_t1hw(disp, "disparity")
    valid = torch.isfinite(d)
    out = d * float(scale) - float(convergence_px)
    return torch.where(valid & torch.isfinite(out), out, torch.full_like(out, _nan()))


# --------------------------------------------------------------------------------------------
# disparity files


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def load_disparity(path: str | os.PathLike, what: str = "disparity") -> torch.Tensor:
    """Read a disparity file safely: float32 (T, 1, H, W) pixels, non-finite values as NaN.

    ``path``: a ``.npy`` array (read with ``allow_pickle=False``) or a ``.pt`` / ``.pth`` tensor
    (read with ``torch.load(weights_only=True)``, which refuses to run any pickled code), of
    shape (T, H, W) or (T, 1, H, W), real numbers in pixels of the left view (x_R = x_L - d).
    ``what`` names the file in messages.

    Raises:
        StereobenchError: one line naming the file and the fix, for a missing path, a folder, an
            unsupported suffix, an unreadable or corrupt file, a pickle the safe loader blocks,
            a container (dict, list) instead of one array, a non-numeric dtype, a wrong number of
            dimensions, no frames, or no finite value at all.
    """
    import numpy as np

    p = Path(path)
    save_hint = "save one array of (T, H, W) pixels with numpy.save or torch.save"
    if not p.exists():
        raise StereobenchError(f"{what} file {str(p)!r} does not exist; check the path")
    if p.is_dir():
        raise StereobenchError(f"{what} {str(p)!r} is a directory, not a file; give a .npy or .pt file")
    suffix = p.suffix.lower()
    if suffix not in DISPARITY_FILE_SUFFIXES:
        raise StereobenchError(f"{what} {str(p)!r}: use a .npy or .pt file of (T, H, W) pixels")
    try:
        if suffix == ".npy":
            data = np.load(p, allow_pickle=False)
        else:
            import warnings

            with warnings.catch_warnings():  # torch warns about pickle protocols before refusing; the error says it
                warnings.simplefilter("ignore")
                data = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        blocked = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if blocked:
            raise StereobenchError(
                f"{what} {str(p)!r} holds a pickled {blocked.group(1)}, which the safe loader refuses to load "
                f"(torch.load(weights_only=True) allows only tensors and plain containers); {save_hint}") from None
        # torch's own message is many lines of advice to turn the safety off; ours is one line.
        raise StereobenchError(
            f"cannot read {what} {str(p)!r}: it is not a file torch.save wrote, or it holds pickled code that the "
            f"safe loader refuses to run; {save_hint}") from None
    except (OSError, ValueError, RuntimeError, EOFError, TypeError, AttributeError, ImportError) as exc:
        if isinstance(exc, ValueError) and "allow_pickle" in str(exc):
            raise StereobenchError(f"{what} {str(p)!r} holds Python objects, not numbers (a pickled object array); "
                                   f"{save_hint}") from None
        raise StereobenchError(f"cannot read {what} {str(p)!r} ({_first_line(exc)}); {save_hint}") from None
    if isinstance(data, np.ndarray):
        if not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)):
            raise StereobenchError(f"{what} {str(p)!r} holds {data.dtype} values, not real numbers; {save_hint}")
        data = torch.from_numpy(np.ascontiguousarray(data))
    elif not isinstance(data, torch.Tensor):
        kind = type(data).__name__
        keys = f" with keys {sorted(map(str, data))[:5]}" if isinstance(data, dict) else ""
        raise StereobenchError(f"{what} {str(p)!r} holds a {kind}{keys}, not one array; {save_hint} "
                               f"(e.g. torch.save(disparity_tensor, path))")
    if data.is_complex() or data.dtype == torch.bool:
        raise StereobenchError(f"{what} {str(p)!r} holds {data.dtype} values, not real numbers; {save_hint}")
    if data.ndim == 3:
        data = data.unsqueeze(1)
    if data.ndim != 4 or data.shape[1] != 1:
        raise StereobenchError(f"{what} {str(p)!r} has shape {tuple(data.shape)}; expected (T, H, W) or "
                               f"(T, 1, H, W) pixels, one map per frame")
    if data.shape[0] == 0:
        raise StereobenchError(f"{what} {str(p)!r} has no frames (shape {tuple(data.shape)}); give one map per frame")
    disparity = data.to(torch.float32)
    return torch.where(torch.isfinite(disparity), disparity, torch.full_like(disparity, _nan()))


def match_disparity(disparity: torch.Tensor, frames: int, height: int, width: int,
                    what: str = "disparity") -> torch.Tensor:
    """The first ``frames`` maps of ``disparity`` (T, 1, H, W), checked against a clip of
    ``frames`` x ``height`` x ``width``; raises :class:`StereobenchError` naming ``what`` for
    too few maps, another size, or no finite value in the maps used."""
    t, _, h, w = disparity.shape
    if (h, w) != (height, width):
        raise StereobenchError(f"{what} maps are {w}x{h} but the videos are {width}x{height} (WxH); "
                               f"give the disparity at the videos' size")
    if t < frames:
        raise StereobenchError(f"{what} has {t} frames but the videos have {frames}; give one map per frame "
                               f"(or score fewer frames with --max-frames {t})")
    disparity = disparity[:frames]
    if not bool(torch.isfinite(disparity).any()):
        raise StereobenchError(f"{what} has no finite value (all NaN/inf); it must hold pixels of the left view "
                               f"(x_R = x_L - d), NaN only where invalid")
    return disparity
