"""Moved: video I/O lives in :mod:`benchmark.video_io` (a ground-floor module)."""

from benchmark.video_io import *  # noqa: F401,F403  # moved; shim removed at integration
from benchmark.video_io import (  # noqa: F401  # moved; shim removed at integration
    DEFAULT_FOLDER_FPS, IMAGE_SUFFIXES, TIE_TOLERANCE_S, VideoData, VideoWriter, iter_video, read_mask,
    read_video, write_frames, write_mask, write_video)
