"""Probing, segment encoding and the final join (video remux + audio) of ``stereobench convert``.

Everything runs through PyAV (its wheel carries FFmpeg with libx264, libx265 and aac), no
``ffmpeg`` binary is needed.

- :func:`probe` reads what the conversion needs from the source: frame rate (exact rational, the
  stream's average rate, so a variable-frame-rate file gets its mean rate), the rotation of its
  display matrix, size after rotation, and the first audio stream.
- :class:`SegmentWriter` encodes one segment (H.264 yuv420p by default, or H.265) into a
  temporary file and moves it into place on :meth:`~SegmentWriter.close`: a segment file exists
  only when it is complete. Every segment starts a fresh encoder, so it opens with a key frame
  (a closed GOP) and the same frames always give the same bytes (x264 and x265 are
  deterministic at fixed settings).
- :func:`join_segments` remuxes the segments' packets, shifted by each segment's start, into one
  MP4 (no re-encoding) and adds the source's first audio stream: stream-copied when the MP4 muxer
  accepts the codec (AAC, MP3, Opus, AC-3 ...), re-encoded to AAC otherwise (PCM, or a rate below
  16 kHz, iw3's rule). The file is written under a temporary name and moved onto the output.
"""

from __future__ import annotations

import contextlib
import math
import os
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmark.errors import StereobenchError, did_you_mean

CODECS = {"h264": "libx264", "h265": "libx265"}
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
#: Audio codecs the MP4 muxer takes as they are (anything else is re-encoded to AAC).
MP4_AUDIO_COPY = ("aac", "mp3", "opus", "ac3", "eac3", "alac", "flac")
MIN_AUDIO_RATE = 16000
#: H.264 frame-packing SEI values (x264 ``frame-packing``): 3 = side by side, 4 = top-bottom.
FRAME_PACKING = {"sbs": 3, "tb": 4}


@dataclass(frozen=True)
class SourceInfo:
    """What ``convert`` needs to know about its input before decoding it."""

    path: Path
    fps: Fraction  # average frame rate (exact when the container knows it)
    rotation: int  # counter-clockwise degrees the display matrix asks for (0, 90, 180, 270)
    height: int  # after rotation
    width: int
    frame_count: int | None  # the container's count (None when unknown)
    duration_s: float | None
    audio_codec: str | None  # first audio stream's codec, None without audio


def tmp_name(path: Path, suffix: str = "") -> Path:
    """A temporary sibling ``.<name>.tmp-<pid>-<token><suffix>`` (the project's debris-sweep pattern)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")


def _open_input(path: Path):
    import av

    try:
        return av.open(str(path))
    except Exception as exc:
        raise StereobenchError(f"cannot open {str(path)!r} as a video ({type(exc).__name__}: {exc}); "
                               "give a video file FFmpeg can read (MP4, MOV, MKV, WebM, ...)") from exc


def probe(path: str | os.PathLike) -> SourceInfo:
    """Frame rate, rotation, size and audio of a video file.

    Raises:
        StereobenchError: the path is missing, a folder, not a video, or holds no decodable frame.
    """
    import av

    path = Path(path)
    if not path.exists():
        raise StereobenchError(f"input video {str(path)!r} does not exist; check the path")
    if path.is_dir():
        raise StereobenchError(f"input {str(path)!r} is a folder; `convert` takes one video file")
    container = _open_input(path)
    try:
        if not container.streams.video:
            raise StereobenchError(f"{str(path)!r} has no video stream; give a video file")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate or rate <= 0:
            raise StereobenchError(f"{str(path)!r} has no frame rate; re-encode it with a constant frame rate")
        first = None
        try:
            for frame in container.decode(stream):
                first = frame
                break
        except av.error.FFmpegError as exc:
            raise StereobenchError(f"cannot decode {str(path)!r} ({exc}); the file looks corrupt, re-encode it") from exc
        if first is None:
            raise StereobenchError(f"video {str(path)!r} has no frames; give a video with at least one frame")
        rotation = round((first.rotation or 0) / 90.0) % 4 * 90
        height, width = first.height, first.width
        if rotation in (90, 270):
            height, width = width, height
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
        duration = float(container.duration) / 1e6 if container.duration else None
        return SourceInfo(path=path, fps=Fraction(rate).limit_denominator(1_001_000), rotation=rotation,
                          height=height, width=width, frame_count=int(stream.frames) or None,
                          duration_s=duration, audio_codec=audio)
    finally:
        container.close()


def rotate(video: torch.Tensor, rotation: int) -> torch.Tensor:
    """Apply a display rotation (counter-clockwise degrees, multiple of 90) to (T, C, H, W)."""
    k = (rotation // 90) % 4
    return torch.rot90(video, k, dims=(-2, -1)).contiguous() if k else video


def check_codec(codec: str, preset: str, crf: int) -> None:
    if codec not in CODECS:
        raise did_you_mean(str(codec), CODECS, "codec")
    if preset not in PRESETS:
        raise did_you_mean(str(preset), PRESETS, "encoder preset")
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
        raise StereobenchError(f"--crf must be an integer from 0 (lossless) to 51, got {crf!r}")


class SegmentWriter:
    """Encode frames into one segment file, atomically (temporary name, moved on :meth:`close`).

    Args:
        path: the segment's final path (``.mp4``).
        fps: exact output frame rate.
        codec: ``h264`` (libx264) or ``h265`` (libx265), yuv420p.
        crf, preset: the encoder's rate factor and speed preset.
        packing: ``"sbs"`` / ``"tb"`` to write an H.264 frame-packing SEI (players that honour it
            show the file as 3-D; some, like Windows Photos, then show it flat), None for none.
    """

    def __init__(self, path: Path, fps: Fraction, codec: str = "h264", crf: int = 20, preset: str = "medium",
                 packing: str | None = None):
        self.path = Path(path)
        self.fps = Fraction(fps)
        self.codec, self.crf, self.preset, self.packing = codec, int(crf), preset, packing
        self.frames = 0
        self._tmp: Path | None = None
        self._container = None
        self._stream = None
        self._size: tuple[int, int] | None = None

    def _start(self, height: int, width: int) -> None:
        import av

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = tmp_name(self.path, ".mp4")
        self._container = av.open(str(self._tmp), mode="w", format="mp4")
        stream = self._container.add_stream(CODECS[self.codec], rate=self.fps)
        stream.width, stream.height = width + width % 2, height + height % 2
        stream.pix_fmt = "yuv420p"
        options = {"crf": str(self.crf), "preset": self.preset}
        if self.codec == "h264" and self.packing in FRAME_PACKING:
            options["x264-params"] = f"frame-packing={FRAME_PACKING[self.packing]}"
        if self.codec == "h265":
            options["x265-params"] = "log-level=error"
            stream.codec_context.codec_tag = "hvc1"  # Apple players and browsers want hvc1 in MP4
        stream.options = options
        self._stream = stream
        self._size = (height, width)

    def append(self, frames: torch.Tensor) -> None:
        """Encode float (T, 3, H, W) in [0, 1] (rounded to 8 bits; odd sizes padded by replication)."""
        import av

        if self._container is None:
            self._start(int(frames.shape[-2]), int(frames.shape[-1]))
        h, w = self._size
        if frames.shape[-2:] != (h, w):
            raise StereobenchError(f"frames of {tuple(frames.shape[-2:])} appended to a {h}x{w} segment")
        if h % 2 or w % 2:
            frames = F.pad(frames, (0, w % 2, 0, h % 2), mode="replicate")
        for begin in range(0, frames.shape[0], 8):  # a few frames at a time: no full uint8 copy of a long batch
            # Round in the tensor's own (contiguous) layout, then lay out the bytes as HWC: the
            # float work never walks a permuted array (3x faster than NumPy on the permuted view).
            chunk = frames[begin:begin + 8].detach().to("cpu", torch.float32).nan_to_num(0.0)
            hwc = chunk.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
            for image in hwc:
                for packet in self._stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    self._container.mux(packet)
                self.frames += 1

    def close(self) -> Path:
        if self._container is None:
            raise StereobenchError(f"segment {str(self.path)!r} got no frames")
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        if self._container is not None:
            import av

            with contextlib.suppress(av.error.FFmpegError, OSError, ValueError):  # the file is discarded anyway
                self._container.close()
            self._container = None
        if self._tmp is not None and self._tmp.exists():
            self._tmp.unlink()


def _copy_audio_ok(codec: str, rate: int) -> bool:
    return codec in MP4_AUDIO_COPY and rate >= MIN_AUDIO_RATE


def join_segments(segments: list[Path], output: Path, fps: Fraction, audio_source: Path | None = None,
                  audio_mode: str = "auto") -> str:
    """Remux ``segments`` (in order) into ``output`` with the source's first audio stream.

    Video packets are copied, their timestamps shifted by the number of frames before their
    segment (segments are whole frames at ``fps``). ``audio_mode``: ``auto`` (copy when the MP4
    muxer takes the codec, else AAC), ``aac`` (always re-encode), ``none`` (drop the audio).
    Returns what happened to the audio: ``"copied"``, ``"aac"`` or ``"none"``.
    """
    import av

    if not segments:
        raise StereobenchError("nothing to join: no segment was encoded")
    output = Path(output)
    tmp = tmp_name(output, output.suffix or ".mp4")
    out = av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
    audio_done = "none"
    try:
        first = av.open(str(segments[0]))
        try:
            template = first.streams.video[0]
            video_out = out.add_stream_from_template(template)
            if template.codec_context.name == "hevc":  # the template drops the segments' hvc1 tag (Apple)
                video_out.codec_context.codec_tag = "hvc1"
            seg_time_base = template.time_base
        finally:
            first.close()
        source = None
        audio_in = audio_out = None
        if audio_source is not None and audio_mode != "none":
            source = _open_input(Path(audio_source))
            if source.streams.audio:
                audio_in = source.streams.audio[0]
                rate = audio_in.codec_context.sample_rate or 0
                if audio_mode == "auto" and _copy_audio_ok(audio_in.codec_context.name, rate):
                    audio_out = out.add_stream_from_template(audio_in)
                    audio_done = "copied"
                else:
                    audio_out = out.add_stream("aac", rate=max(rate, MIN_AUDIO_RATE))
                    audio_done = "aac"
        # Video: shift each segment's packets by the frames before it.
        frames_before = 0
        frame_ticks = (1 / Fraction(fps)) / seg_time_base
        for segment in segments:
            seg = av.open(str(segment))
            try:
                stream = seg.streams.video[0]
                if stream.time_base != seg_time_base:
                    raise StereobenchError(f"segment {str(segment)!r} has another time base; delete the .parts "
                                           "folder and convert again")
                offset = round(frames_before * frame_ticks)
                count = int(stream.frames) or 0
                for packet in seg.demux(stream):
                    if packet.dts is None and packet.pts is None:
                        continue  # the demuxer's flush packet
                    packet.pts = None if packet.pts is None else packet.pts + offset
                    packet.dts = None if packet.dts is None else packet.dts + offset
                    packet.stream = video_out
                    out.mux(packet)
                frames_before += count
            finally:
                seg.close()
        if audio_in is not None:
            _mux_audio(source, audio_in, out, audio_out, audio_done == "copied")
        if source is not None:
            source.close()
        out.close()
        os.replace(tmp, output)
    except BaseException:
        with contextlib.suppress(av.error.FFmpegError, OSError, ValueError):  # the temporary file is deleted below
            out.close()
        if tmp.exists():
            tmp.unlink()
        raise
    return audio_done


def _mux_audio(source, audio_in, out, audio_out, copy: bool) -> None:
    import av

    if copy:
        for packet in source.demux(audio_in):
            if packet.dts is None and packet.pts is None:
                continue
            packet.stream = audio_out
            out.mux(packet)
        return
    resampler = av.AudioResampler(format=audio_out.codec_context.format or "fltp", layout=audio_in.layout.name
                                  if audio_in.layout else "stereo", rate=audio_out.codec_context.sample_rate)
    for frame in source.decode(audio_in):
        frame.pts = None
        for resampled in resampler.resample(frame):
            for packet in audio_out.encode(resampled):
                out.mux(packet)
    for resampled in resampler.resample(None):
        for packet in audio_out.encode(resampled):
            out.mux(packet)
    for packet in audio_out.encode(None):
        out.mux(packet)


def frames_of(path: Path) -> int:
    """Number of video frames in a segment (container count, else decoded)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.frames:
            return int(stream.frames)
        return sum(1 for _ in container.decode(stream))


def fps_to_float(fps: Fraction) -> float:
    value = float(fps)
    if not (value > 0 and math.isfinite(value)):
        raise StereobenchError(f"frame rate must be positive, got {fps}")
    return value
