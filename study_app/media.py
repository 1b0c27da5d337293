"""Study media: browser-playable H.264 under opaque tokens, with synchronised frame grids.

Every stimulus of one video (the methods' right views, the references, the controls) is encoded
by :func:`encode_stimuli` with the **same** frame rate, frame count and GOP, so that a seek to
``(n + 0.5) / fps`` lands on frame ``n`` in every player of a trial:

* H.264 (libx264), ``yuv420p``, MP4 with ``+faststart`` (the index is at the front, so a
  browser starts playing before the download ends), no B-frames (``bf=0``: presentation order =
  decode order), a closed GOP of exactly ``gop`` frames (``keyint_min = gop``, scene-cut key
  frames off), constant frame rate.
* All inputs are resampled to one clock (``fps``, nearest source frame, as
  :func:`benchmark.video_io.iter_video` does) and cut to the shortest input's frame count.
* Metadata stripped: the muxer runs with ``fflags=+bitexact`` (no encoder tag), no title or
  comment is written, nothing of the source container is copied; file names are
  :func:`new_token` values (``media/<token>.mp4``). Nothing in a media file names a method or a
  path (``tests/test_study_package.py`` checks the bytes).

Side-by-side stereo (the VR study) is the left view and a method's right view packed full width
(``2W x H``, :func:`benchmark.layouts.side_by_side`), which headset players recognise from the
file name :func:`vr_download_name` gives (iw3's ``_LRF_Full_SBS``).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.errors import StereobenchError
from benchmark.layouts import output_name, side_by_side
from benchmark.video_io import ContainerSource, iter_video, open_source

log = logging.getLogger(__name__)

#: Frames decoded and encoded per chunk (bounds memory).
CHUNK_FRAMES = 16
TOKEN_BYTES = 16


def new_token() -> str:
    """An opaque, unguessable media token (32 hex characters)."""
    return secrets.token_hex(TOKEN_BYTES)


@dataclass(frozen=True)
class Stimulus:
    """What to encode: ``sources`` is one video path, or two (left, right) packed side by side."""

    sources: tuple[Path, ...]
    out: Path

    @property
    def side_by_side(self) -> bool:
        return len(self.sources) == 2


@dataclass(frozen=True)
class EncodeInfo:
    fps: float
    frames: int
    gop: int
    height: int
    width: int


def native_fps(path: str | os.PathLike) -> float:
    """The frame rate of a video file (or 30 for a folder of frames / an image)."""
    source = open_source(path)
    return float(source.native_fps) if isinstance(source, ContainerSource) else 30.0


def _even(x: int) -> int:
    return x - x % 2


def _scaled_size(height: int, width: int, max_height: int | None) -> tuple[int, int]:
    if max_height is not None and height > max_height:
        width = round(width * max_height / height)
        height = max_height
    return max(2, _even(height)), max(2, _even(width))


def _chunks(stim: Stimulus, fps: float) -> Iterator[torch.Tensor]:
    """Float (T, 3, H, W) chunks of the stimulus on the common clock (side by side: hstack)."""
    if not stim.side_by_side:
        for data in iter_video(stim.sources[0], chunk_frames=CHUNK_FRAMES, fps=fps):
            yield data.frames
        return
    left_iter = iter_video(stim.sources[0], chunk_frames=CHUNK_FRAMES, fps=fps)
    right_iter = iter_video(stim.sources[1], chunk_frames=CHUNK_FRAMES, fps=fps)
    for left, right in zip(left_iter, right_iter):
        n = min(left.frames.shape[0], right.frames.shape[0])
        lf, rf = left.frames[:n], right.frames[:n]
        if lf.shape[-2:] != rf.shape[-2:]:
            rf = F.interpolate(rf, size=lf.shape[-2:], mode="bilinear", align_corners=False)
        yield side_by_side(lf, rf)  # full width: left | right
        if n < max(left.frames.shape[0], right.frames.shape[0]):
            return


def _encode(stim: Stimulus, fps: float, gop: int, crf: int, preset: str, max_frames: int | None,
            max_height: int | None) -> EncodeInfo:
    """Encode one stimulus atomically; returns what was written."""
    import av

    out = Path(stim.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}.mp4")
    container = None
    frames = 0
    size = None
    try:
        container = av.open(str(tmp), mode="w", format="mp4",
                            options={"movflags": "+faststart", "fflags": "+bitexact"})
        stream = None
        for chunk in _chunks(stim, fps):
            if max_frames is not None:
                chunk = chunk[: max_frames - frames]
            if chunk.shape[0] == 0:
                break
            if stream is None:
                h, w = chunk.shape[-2:]
                size = _scaled_size(int(h), int(w), max_height)
                stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001000))
                stream.height, stream.width = size
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf), "preset": preset, "g": str(gop), "keyint_min": str(gop),
                                  "sc_threshold": "0", "bf": "0", "flags": "+cgop"}
            if tuple(chunk.shape[-2:]) != size:
                chunk = F.interpolate(chunk, size=size, mode="bilinear", align_corners=False, antialias=True)
            images = (chunk.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
            for image in images:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                    container.mux(packet)
                frames += 1
            if max_frames is not None and frames >= max_frames:
                break
        if stream is None:
            raise StereobenchError(f"video {str(stim.sources[0])!r} has no frames; check the file")
        for packet in stream.encode():
            container.mux(packet)
        container.close()
        container = None
        os.replace(tmp, out)
    finally:
        if container is not None:
            try:
                container.close()
            except (OSError, ValueError) as exc:  # discarded anyway; the original error matters
                log.debug("closing a discarded encoder output failed: %s", exc)
        if tmp.exists():
            tmp.unlink()
    return EncodeInfo(fps=float(fps), frames=frames, gop=gop, height=size[0], width=size[1])


def encode_stimuli(stimuli: Sequence[Stimulus], fps: float, *, gop: int | None = None, crf: int = 20,
                   preset: str = "veryfast", max_height: int | None = None) -> EncodeInfo:
    """Encode every stimulus of one video on one frame grid (same fps, frame count, GOP).

    The stimuli are encoded in full; those longer than the shortest are then re-encoded cut to
    the shortest's frame count. Returns the common :class:`EncodeInfo`.

    Raises:
        StereobenchError: a source is missing, unreadable or empty (nothing is left behind).
    """
    if not stimuli:
        raise StereobenchError("no stimulus to encode")
    gop = int(gop) if gop is not None else max(1, round(fps))
    infos = [_encode(s, fps, gop, crf, preset, None, max_height) for s in stimuli]
    n = min(i.frames for i in infos)
    sizes = {(i.height, i.width) for i, s in zip(infos, stimuli) if not s.side_by_side}
    for info, stim in zip(infos, stimuli):
        if info.frames > n:
            _encode(stim, fps, gop, crf, preset, n, max_height)
    if len(sizes) > 1:
        log.info("stimuli of one video have different sizes %s; each keeps its own", sorted(sizes))
    first = infos[0]
    return EncodeInfo(fps=float(fps), frames=n, gop=gop, height=first.height, width=first.width)


def probe(path: str | os.PathLike) -> dict:
    """Frame rate, frame count, key-frame indices, pixel format, size and metadata of a media file
    (what the synchronisation and anonymity checks read)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        keyframes, pts = [], []
        for i, packet in enumerate(p for p in container.demux(stream) if p.size):
            if packet.is_keyframe:
                keyframes.append(i)
            pts.append(packet.pts)
        return {
            "fps": float(stream.average_rate) if stream.average_rate else None,
            "frames": len(pts),
            "keyframes": keyframes,
            "pts": sorted(p for p in pts if p is not None),
            "pix_fmt": stream.codec_context.pix_fmt,
            "codec": stream.codec_context.name,
            "height": stream.codec_context.height,
            "width": stream.codec_context.width,
            "container_metadata": dict(container.metadata),
            "stream_metadata": dict(stream.metadata),
        }


def vr_download_name(study_id: str, trial_number: int, label: str) -> str:
    """A file name VR players recognise as full side-by-side (iw3's naming through
    :func:`benchmark.layouts.output_name`), naming no method: ``<study>-trial03-A_LRF_Full_SBS.mp4``."""
    return output_name(f"{study_id}-trial{int(trial_number):02d}-{label}", "full-sbs")
