"""The shared stereo stage: video I/O, clip protocols, depth -> disparity, forward warps,
hole masks and the on-disk cache of :class:`StereoInput` objects."""

from benchmark.stereo.input import StereoInput

__all__ = ["StereoInput"]
