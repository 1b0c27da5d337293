"""The shared stereo stage: clip protocols, depth -> disparity, forward warps, hole masks and the
on-disk cache of :class:`StereoInput` objects.

Public API (see docs/stereo.md):

- video (re-exported from :mod:`benchmark.video_io`): :func:`read_video`, :func:`iter_video`,
  :func:`write_video`, :class:`VideoWriter`, :func:`write_frames`, :func:`read_mask`,
  :func:`write_mask`, :class:`VideoData`
- protocols: :class:`ClipProtocol`, :data:`PROTOCOLS`, :func:`get_protocol`, :func:`apply_protocol`,
  :func:`load_windowed_clip` (a dataset's clip, decoding only the protocol's time window where it can)
- disparity: :func:`disparity_from_inverse_depth`, :func:`disparity_from_metric_depth`,
  :func:`disparity_from_disparity`, :func:`disparity_from_normalized_depth` (normalised depth,
  D_max and convergence -> pixels), :func:`d_max_pixels` (D_max in pixels or percent of the width)
- warps: :func:`forward_warp` (the shared warp), :data:`WARPS` / :func:`get_warp` (``shared``,
  ``m2svid``, ``stereocrafter``, ``svg``), :func:`close_hole_mask`, :func:`dilate_mask`
- cache: :func:`build_stereo_input`, :class:`StereoInputCache`

Submodules are imported lazily (attribute access), so ``import benchmark.stereo`` stays cheap.
This package never imports :mod:`benchmark.datasets` (a higher floor); the data contracts it
shares with the datasets live in :mod:`benchmark.types`.
"""

from __future__ import annotations

import importlib

from benchmark.registry import LazyRegistry
from benchmark.types import StereoInput, params_hash

#: name -> warp callable ``(left, disparity) -> (warped, hole_mask)``.
WARPS = LazyRegistry("warp", {
    "shared": "benchmark.stereo.warp:forward_warp",
    "m2svid": "benchmark.stereo.native_warps:warp_m2svid",
    "stereocrafter": "benchmark.stereo.native_warps:warp_stereocrafter",
    "svg": "benchmark.stereo.native_warps:warp_svg",
})


def get_warp(name: str):
    """The warp callable registered as ``name`` (StereobenchError with did-you-mean otherwise)."""
    return WARPS[name]


#: name -> module (relative names are submodules of benchmark.stereo).
_LAZY = {
    "VideoData": "benchmark.video_io", "read_video": "benchmark.video_io", "iter_video": "benchmark.video_io",
    "write_video": "benchmark.video_io", "VideoWriter": "benchmark.video_io", "write_frames": "benchmark.video_io",
    "read_mask": "benchmark.video_io", "write_mask": "benchmark.video_io",
    "ClipProtocol": "protocol", "PROTOCOLS": "protocol", "get_protocol": "protocol", "apply_protocol": "protocol",
    "load_windowed_clip": "protocol", "resize_flags": "protocol",
    "disparity_from_inverse_depth": "disparity", "disparity_from_metric_depth": "disparity",
    "disparity_from_disparity": "disparity", "disparity_from_normalized_depth": "disparity",
    "d_max_pixels": "disparity",
    "forward_warp": "warp", "close_hole_mask": "warp", "dilate_mask": "warp", "erode_mask": "warp",
    "warp_m2svid": "native_warps", "warp_stereocrafter": "native_warps", "warp_svg": "native_warps",
    "build_stereo_input": "cache", "StereoInputCache": "cache", "STAGE_VERSION": "cache",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'benchmark.stereo' has no attribute {name!r}")
    full = module if module.startswith("benchmark.") else f"benchmark.stereo.{module}"
    value = getattr(importlib.import_module(full), name)
    globals()[name] = value
    return value


__all__ = ["StereoInput", "params_hash", "WARPS", "get_warp", *_LAZY]
