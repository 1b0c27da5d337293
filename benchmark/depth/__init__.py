"""Depth sources: models and files that give relative inverse depth for a video.

Public names (the API the stereo stage and ``stereobench convert`` build on):

- :data:`DEPTH_MODELS`, :func:`load_depth_model`, :class:`DepthModel` (``predict(frames)`` ->
  (T, H, W) float32 relative inverse depth, larger = nearer; ``spec``, ``settings``,
  ``licence``) -- :mod:`benchmark.depth.base`;
- :func:`read_depth_files` / :func:`write_depth_files` (PNG16, EXR, NPY/NPZ per frame or per
  video, disparity or depth) -- :mod:`benchmark.depth.files`;
- :class:`TemporalNormalizer` and :func:`normalize_video` ([0, 1], 1 = nearest, iw3's
  anti-flicker approach with robust percentiles) -- :mod:`benchmark.depth.stability`.

Normalised depth becomes pixels of disparity in
:func:`benchmark.stereo.disparity.disparity_from_normalized_depth` (D_max in pixels or percent
of the width, convergence). See docs/depth.md.
"""

from benchmark.depth.base import (
           DEPTH_MODELS,
           DepthModel,
           depth_model_class,
    depth_model_identity,
           load_depth_model,
)
from benchmark.depth.files import (
           DEPTH_KINDS,
           FileDepth,
           count_depth_frames,
           read_depth_files,
           write_depth_files,
)
from benchmark.depth.stability import (
           STABILITY_MODES,
           TemporalNormalizer,
           normalize_video,
)

__all__ = ["DEPTH_KINDS", "DEPTH_MODELS", "STABILITY_MODES", "DepthModel", "FileDepth", "TemporalNormalizer",
           "count_depth_frames", "depth_model_class", "depth_model_identity", "load_depth_model", "normalize_video", "read_depth_files",
           "write_depth_files"]
