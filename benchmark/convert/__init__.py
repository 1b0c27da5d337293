"""``stereobench convert``: any 2-D video to a headset-ready stereo video, streamed and resumable.

Public names: :func:`convert_video`, :class:`ConvertOptions`, :class:`ConvertResult`
(:mod:`benchmark.convert.pipeline`); probing, segment encoding and the join with audio live in
:mod:`benchmark.convert.encode`. See docs/convert.md.
"""

from benchmark.convert.pipeline import (
    ConvertOptions,
    ConvertResult,
    convert_video,
    parse_max_disparity,
)

__all__ = ["ConvertOptions", "ConvertResult", "convert_video", "parse_max_disparity"]
