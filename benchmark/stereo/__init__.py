"""The shared stereo stage: video I/O, clip protocols, depth -> disparity, forward warps,
hole masks and the on-disk cache of :class:`StereoInput` objects.

Public API (see docs/stereo.md):

- video: :func:`read_video`, :func:`iter_video`, :func:`write_video`, :func:`write_frames`,
  :func:`read_mask`, :func:`write_mask`, :class:`VideoData`
- protocols: :class:`ClipProtocol`, :data:`PROTOCOLS`, :func:`get_protocol`, :func:`apply_protocol`
- disparity: :func:`disparity_from_inverse_depth`, :func:`disparity_from_metric_depth`,
  :func:`disparity_from_disparity`
- warps: :func:`forward_warp` (the shared warp), :data:`WARPS` / :func:`get_warp` (``shared``,
  ``m2svid``, ``stereocrafter``, ``svg``), :func:`close_hole_mask`, :func:`dilate_mask`
- cache: :func:`build_stereo_input`, :class:`StereoInputCache`

Submodules are imported lazily (attribute access), so ``import benchmark.stereo`` stays cheap.
"""

from __future__ import annotations

import importlib

from benchmark.registry import LazyRegistry
from benchmark.stereo.input import StereoInput, params_hash

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


_LAZY = {
    "VideoData": "video_io", "read_video": "video_io", "iter_video": "video_io", "write_video": "video_io",
    "write_frames": "video_io", "read_mask": "video_io", "write_mask": "video_io",
    "ClipProtocol": "protocol", "PROTOCOLS": "protocol", "get_protocol": "protocol", "apply_protocol": "protocol",
    "disparity_from_inverse_depth": "disparity", "disparity_from_metric_depth": "disparity",
    "disparity_from_disparity": "disparity",
    "forward_warp": "warp", "close_hole_mask": "warp", "dilate_mask": "warp", "erode_mask": "warp",
    "warp_m2svid": "native_warps", "warp_stereocrafter": "native_warps", "warp_svg": "native_warps",
    "build_stereo_input": "cache", "StereoInputCache": "cache", "STAGE_VERSION": "cache",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'benchmark.stereo' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"benchmark.stereo.{module}"), name)
    globals()[name] = value
    return value


__all__ = ["StereoInput", "params_hash", "WARPS", "get_warp", *_LAZY]
