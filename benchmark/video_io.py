"""Video I/O in the project's data contract.

Reading returns float32 RGB video (T, 3, H, W) in [0, 1] with per-frame timestamps in seconds;
writing takes the same layout (or uint8). Everything goes through PyAV (FFmpeg), so MP4/H.264,
H.265, VP9/WebM, MOV and MKV all work, plus folders of PNG/JPG frames and single images.

Reading is split in two layers:

- A :class:`FrameSource` per source type yields the source's own frames with their timestamps:
  :class:`ContainerSource` (any file FFmpeg opens, through PyAV), :class:`ImageFolderSource`
  (a folder of frames, sorted naturally, at ``folder_fps``) and :class:`ImageSource` (one still
  image: a one-frame clip). :func:`open_source` picks the source for a path.
- :func:`read_video` / :func:`iter_video` resample a source's frames to the output clock: output
  frame k is the source frame nearest to ``start_time + k / fps`` (the behaviour of FFmpeg's
  ``fps`` filter with its default ``round=near``; an exact tie, within 1 microsecond, goes to
  the later frame as there). Output frames whose target time lies past the last source frame
  (by more than half a source frame interval) are not produced, so a resampled clip never
  invents frames. Decoding stops after ``max_frames`` output frames.

Writing:

- :class:`VideoWriter` streams frames (or batches) into H.264 MP4 (yuv420p, ``+faststart``) that
  browsers and headsets play, with bounded memory (frames are encoded as they arrive, never
  kept), into a temporary file next to the target that is moved into place only on a clean
  :meth:`VideoWriter.close`; an exception inside its ``with`` block deletes the temporary file
  and leaves no target. :func:`write_video` is a thin user of it. yuv420p needs even sizes: an
  odd height or width is padded by one row/column that replicates the last one (at the
  bottom/right, so pixel (y, x) keeps its place).
- :func:`write_frames` / PNG folders are lossless at 8 bits (values are rounded to k/255).
  Reading also takes 16-bit grayscale PNG/TIFF frames (scaled by 1/65535, full precision).
- Masks: :func:`read_mask` thresholds the mean over RGB at 0.5 (white = hole);
  :func:`write_mask` writes a lossless PNG folder or a lossless (``crf 0``) H.264 MP4 whose true
  (possibly odd) size is kept in the ``comment`` metadata, so the round trip is exact.

Every file is written atomically (a temporary name in the same directory, then ``os.replace``),
so an interrupted write never leaves a truncated file under the final name. Temporary names are
``.<name>.tmp-<pid>-<token><suffix>``: the pid tells a debris sweep whether the writer is alive.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.errors import StereobenchError, did_you_mean

__all__ = [
    "DEFAULT_FOLDER_FPS", "IMAGE_SUFFIXES", "TIE_TOLERANCE_S", "ContainerSource", "FrameSource",
    "ImageFolderSource", "ImageSource", "SourceFrame", "VideoData", "VideoWriter", "iter_video",
    "open_source", "read_mask", "read_video", "write_frames", "write_mask", "write_video",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_FOLDER_FPS = 30.0
#: Two source frames whose distances to a resampling target differ by less than this (seconds)
#: are a tie; ties go to the later frame (FFmpeg's fps filter does the same).
TIE_TOLERANCE_S = 1e-6
#: Container "comment" metadata holding a video's true size before even-size padding.
_SIZE_TAG = re.compile(r"stereobench-size=(\d+)x(\d+)")
#: Frames converted to uint8 at a time by the writer: bounds its working memory for big batches.
_WRITE_CHUNK = 8


@dataclass
class VideoData:
    """Decoded video.

    Attributes:
        frames: float32 (T, 3, H, W) in [0, 1], RGB.
        fps: frame rate of ``frames`` (the target rate when resampled), frames per second.
        timestamps: float64 (T,) seconds of each frame (presentation time in the source, or
            the output clock ``start_time + k / fps`` when resampled).
        source_indices: int64 (T,) index of the source frame (0 = the source's first frame)
            each output frame came from, or None when unknown (a container read after a seek).
    """

    frames: torch.Tensor
    fps: float
    timestamps: torch.Tensor
    source_indices: torch.Tensor | None = None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


class SourceFrame(NamedTuple):
    """One decoded source frame: ``image`` uint8 (H, W, 3) RGB (k/255) or float32 (H, W, 3) in
    [0, 1] (high bit depth), ``time`` in seconds, ``index`` in the source (None if unknown)."""

    image: np.ndarray
    time: float
    index: int | None


# ---- sources ------------------------------------------------------------------------------------

def _natural_key(name: str) -> list:
    """Sort key so that frame_2.png comes before frame_10.png."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


def _list_image_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=lambda p: _natural_key(p.name))


def _image_to_array(img) -> np.ndarray:
    """PIL image -> uint8 (H, W, 3) RGB, or float32 (H, W, 3) in [0, 1] for high-bit-depth
    grayscale (modes I;16*, I, F), which ``convert("RGB")`` would clip to white.

    16-bit (I;16*) is divided by 65535. Mode I (int32) is divided by 65535 when its values fit
    in 16 bits (how 16-bit data usually arrives in mode I) and by 2**31 - 1 otherwise. Mode F is
    taken as already in [0, 1] (clamped; NaN -> 0). Float frames keep their full precision.
    """
    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        raw = np.asarray(img)
        if mode == "F":
            gray = np.clip(np.nan_to_num(raw.astype(np.float32), nan=0.0), 0.0, 1.0)
        else:
            raw = raw.astype(np.float64)
            if mode.startswith("I;16") or (raw.size and raw.min() >= 0 and raw.max() <= 65535):
                scale = 65535.0
            else:
                scale = float(np.iinfo(np.int32).max)
            gray = np.clip(raw / scale, 0.0, 1.0).astype(np.float32)
        return np.repeat(gray[..., None], 3, axis=2)
    return np.asarray(img.convert("RGB"))


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return _image_to_array(img)
    except Exception as exc:  # PIL raises many types for broken files
        raise StereobenchError(f"cannot read frame {str(path)!r} ({exc}); replace or remove it") from exc


class FrameSource(ABC):
    """Where frames come from: one subclass per source type.

    Attributes:
        path: the file or folder.
        native_fps: the source's frame rate in frames per second (a folder's or a still image's
            is the ``folder_fps`` it was opened with: they carry no timing).
        frame_count: number of frames when the source knows it without decoding, else None.
    """

    path: Path
    native_fps: float
    frame_count: int | None

    @abstractmethod
    def frames(self, start_time: float = 0.0) -> Iterator[SourceFrame]:
        """Source frames in presentation order from ``start_time`` (seconds) on, preceded by the
        last frame before ``start_time`` (a candidate for nearest-frame resampling).

        Raises:
            StereobenchError: unreadable or corrupt data (one line naming the file and the fix).
        """


class ImageFolderSource(FrameSource):
    """A folder of image frames (``IMAGE_SUFFIXES``), sorted naturally (``frame_2`` before
    ``frame_10``); frame k is at ``k / fps`` seconds. All frames must have one size."""

    def __init__(self, path: Path, fps: float = DEFAULT_FOLDER_FPS):
        self.path = Path(path)
        self.files = _list_image_files(self.path)
        if not self.files:
            raise StereobenchError(
                f"folder {str(self.path)!r} holds no image frames ({', '.join(IMAGE_SUFFIXES)}); "
                "point to a video file or a folder of PNG/JPG frames")
        self.native_fps = float(fps)
        self.frame_count = len(self.files)

    def frames(self, start_time: float = 0.0) -> Iterator[SourceFrame]:
        # Frames are at exact k / fps: the one before start_time is index floor(start * fps) - 1.
        first = max(0, int(math.floor(start_time * self.native_fps)) - 1)
        size = None
        for index in range(first, len(self.files)):
            image = _read_image(self.files[index])
            if size is None:
                size = image.shape
            elif image.shape != size:
                raise StereobenchError(
                    f"frame {str(self.files[index])!r} is {image.shape[1]}x{image.shape[0]} but earlier frames are "
                    f"{size[1]}x{size[0]}; all frames of a folder must have one size")
            yield SourceFrame(image, index / self.native_fps, index)


class ImageSource(FrameSource):
    """One still image (a one-frame clip at time 0), read by PIL so 16-bit grayscale keeps its
    precision (FFmpeg's image decoder would hand back 8 bits)."""

    def __init__(self, path: Path, fps: float = DEFAULT_FOLDER_FPS):
        self.path = Path(path)
        self.native_fps = float(fps)
        self.frame_count = 1

    def frames(self, start_time: float = 0.0) -> Iterator[SourceFrame]:
        yield SourceFrame(_read_image(self.path), 0.0, 0)


class ContainerSource(FrameSource):
    """Any file FFmpeg opens (MP4, MKV, MOV, WebM, MPEG-TS, ...), decoded by PyAV.

    Timestamps are presentation times relative to the stream's start time (so variable frame
    rate files keep their real timing). ``start_time > 0`` seeks to the key frame before it;
    containers that seek badly (MPEG-TS: the seek raises, nothing decodes after it, or it lands
    past ``start_time`` so the frame before it is lost) are decoded from the start instead.
    A video written with ``keep_size=True`` is cropped back to its recorded true size.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        container, stream = self._open()
        try:
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            self.native_fps = float(rate) if rate else DEFAULT_FOLDER_FPS
            self.time_base = float(stream.time_base) if stream.time_base else 1.0 / self.native_fps
            self.origin = stream.start_time
            self.frame_count = int(stream.frames) if stream.frames else None
            # write_video(keep_size=True) records the true size of a video padded to even sizes.
            match = _SIZE_TAG.fullmatch(str(container.metadata.get("comment", "")))
            self.true_size = (int(match.group(1)), int(match.group(2))) if match else None
        finally:
            container.close()

    def _open(self):
        import av

        try:
            container = av.open(str(self.path))
        except Exception as exc:
            raise StereobenchError(
                f"cannot open video {str(self.path)!r} ({type(exc).__name__}: {exc}); "
                "check that it is a complete video file (re-encode it with ffmpeg if needed)") from exc
        if not container.streams.video:
            container.close()
            raise StereobenchError(f"{str(self.path)!r} has no video stream; give a video file")
        container.streams.video[0].thread_type = "AUTO"
        return container, container.streams.video[0]

    def _timed(self, container, stream, seeked: bool):
        """(av.VideoFrame, seconds since the stream start, index or None) in decode order."""
        origin = self.origin
        count = 0
        for frame in container.decode(stream):
            if frame.pts is not None:
                if origin is None:
                    # No stream start time: the first decoded frame is t = 0 unless we seeked.
                    origin = frame.pts if not seeked else 0
                t = (frame.pts - origin) * self.time_base
            else:
                t = count / self.native_fps
            yield frame, t, (None if seeked else count)
            count += 1

    def _to_array(self, frame) -> np.ndarray:
        image = frame.to_ndarray(format="rgb24")
        return image[: self.true_size[0], : self.true_size[1]] if self.true_size else image

    def frames(self, start_time: float = 0.0) -> Iterator[SourceFrame]:
        import av

        container, stream = self._open()
        try:
            decoded = None
            if start_time > 0:
                try:
                    container.seek(int((self.origin or 0) + start_time / self.time_base), stream=stream,
                                   backward=True, any_frame=False)
                    decoded = self._timed(container, stream, seeked=True)
                    first = next(decoded, None)
                    if first is None or first[1] > start_time + 1e-9:
                        decoded = None
                    else:
                        decoded = _chain_first(first, decoded)
                except av.error.FFmpegError:
                    decoded = None
                if decoded is None:
                    container.close()
                    container, stream = self._open()
            if decoded is None:
                decoded = self._timed(container, stream, seeked=False)
            # The last frame before start_time is always kept as a candidate (also on variable
            # frame rate files, where a fixed cut-off in source intervals could drop the nearest
            # frame); the nearest-frame rule downstream decides whether it is used.
            pending = None
            try:
                for frame, t, index in decoded:
                    if t < start_time:
                        pending = (frame, t, index)
                        continue
                    if pending is not None:
                        yield SourceFrame(self._to_array(pending[0]), pending[1], pending[2])
                        pending = None
                    yield SourceFrame(self._to_array(frame), t, index)
                if pending is not None:
                    yield SourceFrame(self._to_array(pending[0]), pending[1], pending[2])
            except av.error.FFmpegError as exc:
                raise StereobenchError(
                    f"cannot decode video {str(self.path)!r} ({type(exc).__name__}: {exc}); "
                    "the file looks corrupt or truncated, re-encode it with ffmpeg") from exc
        finally:
            container.close()


def _chain_first(first, rest):
    yield first
    yield from rest


def open_source(path: str | os.PathLike, folder_fps: float = DEFAULT_FOLDER_FPS) -> FrameSource:
    """The :class:`FrameSource` for ``path``: a folder of frames, a still image, or a video file.

    Raises:
        StereobenchError: the path does not exist, or is a folder without frames, or a file
            FFmpeg cannot open or that has no video stream.
    """
    path = Path(path)
    if not path.exists():
        raise StereobenchError(f"video {str(path)!r} does not exist; check the path")
    if path.is_dir():
        return ImageFolderSource(path, folder_fps)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(path, folder_fps)
    return ContainerSource(path)


# ---- resampling and reading -----------------------------------------------------------------

def _output_frames(source: FrameSource, fps: float | None, start_time: float | None) -> Iterator[SourceFrame]:
    """The source's frames on the output clock: (image, output time, source index).

    ``start_time`` None starts at the first frame's own timestamp (decoding from the start, no
    seek): the clock :func:`benchmark.stereo.protocol.apply_protocol` uses.
    """
    native_fps = source.native_fps
    if fps is not None and not (fps > 0 and math.isfinite(fps)):
        raise StereobenchError(f"fps must be positive, got {fps}")
    frames = source.frames(0.0 if start_time is None else start_time)
    if start_time is None:
        first = next(frames, None)
        if first is None:
            return
        start_time = first.time
        frames = _chain_first(first, frames)
    if fps is None:
        for frame in frames:
            if frame.time >= start_time - 0.5 / native_fps:
                yield frame
        return
    # Nearest-frame resampling: keep the previous source frame; when a source frame passes the
    # target time, emit whichever of the two is nearer. Ties (within TIE_TOLERANCE_S, so float
    # rounding of timestamps cannot flip them) go to the later frame, as FFmpeg's fps filter
    # (round=near) does: e.g. 30 -> 20 fps gives source frames 0, 2, 3, 5, 6, 8, ...
    k = 0
    prev = None
    for frame in frames:
        while True:
            target = start_time + k / fps
            if frame.time < target:
                break
            if prev is not None and (target - prev.time) < (frame.time - target) - TIE_TOLERANCE_S:
                yield SourceFrame(prev.image, target, prev.index)
            else:
                yield SourceFrame(frame.image, target, frame.index)
            k += 1
        prev = frame
    if prev is not None:
        # Targets past the last frame: only within half a source interval of it.
        while start_time + k / fps <= prev.time + 0.5 / native_fps + 1e-9:
            yield SourceFrame(prev.image, start_time + k / fps, prev.index)
            k += 1


def _to_tensor(frames: list[np.ndarray]) -> torch.Tensor:
    """uint8 (H, W, 3) frames (k/255) and/or float32 (H, W, 3) frames in [0, 1] -> float32
    (T, 3, H, W); float frames (high bit depth) are kept as they are, not quantised."""
    if all(arr.dtype == np.uint8 for arr in frames):
        stacked = torch.from_numpy(np.stack(frames))  # (T, H, W, 3) uint8
        return stacked.permute(0, 3, 1, 2).to(torch.float32).div_(255.0).contiguous()
    floats = [arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
              for arr in frames]
    return torch.from_numpy(np.stack(floats)).permute(0, 3, 1, 2).contiguous()


def _video_data(frames: list[SourceFrame], fps: float) -> VideoData:
    indices = [f.index for f in frames]
    return VideoData(frames=_to_tensor([f.image for f in frames]), fps=fps,
                     timestamps=torch.tensor([f.time for f in frames], dtype=torch.float64),
                     source_indices=None if None in indices else torch.tensor(indices, dtype=torch.int64))


def read_video(path: str | os.PathLike, fps: float | None = None, max_frames: int | None = None,
               start_time: float | None = 0.0, folder_fps: float = DEFAULT_FOLDER_FPS) -> VideoData:
    """Read a video file, a still image or a folder of frames into float32 (T, 3, H, W) in [0, 1].

    Args:
        path: video file (anything FFmpeg decodes), an image, or a folder of PNG/JPG frames,
            sorted naturally (``frame_2`` before ``frame_10``).
        fps: resample to this frame rate by timestamp (nearest source frame to
            ``start_time + k / fps``); None keeps every source frame.
        max_frames: stop after this many output frames (decoding stops there too).
        start_time: seconds into the video where reading starts; None = at the first frame's own
            timestamp (output frame k nearest to ``t_first + k / fps``, the clock of the clip
            protocols), decoded from the start without a seek.
        folder_fps: frame rate of a folder of frames or a still image (they carry no timing).

    Returns:
        :class:`VideoData` with frames, fps (``fps`` or the native rate), timestamps (s) and the
        source index of each frame.

    Raises:
        StereobenchError: missing path, unreadable or corrupt file, or no frames.
    """
    if max_frames is not None and max_frames <= 0:
        raise StereobenchError(f"max_frames must be positive, got {max_frames}")
    source = open_source(path, folder_fps)
    frames: list[SourceFrame] = []
    stream = _output_frames(source, fps, None if start_time is None else float(start_time))
    try:
        for frame in stream:
            frames.append(frame)
            if max_frames is not None and len(frames) >= max_frames:
                break
    finally:
        stream.close()  # closes the container now, not at garbage collection
    if not frames:
        raise StereobenchError(
            f"video {str(path)!r} has no frames" + (f" after {start_time} s" if start_time else "")
            + "; check the file (and start_time)")
    return _video_data(frames, float(fps if fps is not None else source.native_fps))


def iter_video(path: str | os.PathLike, chunk_frames: int = 64, fps: float | None = None,
               start_time: float | None = 0.0, folder_fps: float = DEFAULT_FOLDER_FPS) -> Iterator[VideoData]:
    """Stream a video in chunks of at most ``chunk_frames`` frames (bounded memory).

    Same arguments and resampling as :func:`read_video`; concatenating the chunks gives what
    :func:`read_video` returns. Raises StereobenchError like :func:`read_video` (an empty video
    raises before the first chunk).
    """
    if chunk_frames <= 0:
        raise StereobenchError(f"chunk_frames must be positive, got {chunk_frames}")
    source = open_source(path, folder_fps)
    out_fps = float(fps if fps is not None else source.native_fps)
    frames: list[SourceFrame] = []
    produced = 0
    for frame in _output_frames(source, fps, None if start_time is None else float(start_time)):
        frames.append(frame)
        if len(frames) == chunk_frames:
            produced += len(frames)
            yield _video_data(frames, out_fps)
            frames = []
    if frames:
        produced += len(frames)
        yield _video_data(frames, out_fps)
    if produced == 0:
        raise StereobenchError(f"video {str(path)!r} has no frames; check the file (and start_time)")


# ---- writing ------------------------------------------------------------------------------------

def _check_video_tensor(video: torch.Tensor, what: str = "video") -> torch.Tensor:
    if not isinstance(video, torch.Tensor) or video.dim() != 4 or video.shape[1] not in (1, 3):
        shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise StereobenchError(f"{what} must be a tensor (T, 3, H, W) (or (T, 1, H, W)), got {shape}")
    if video.shape[0] == 0:
        raise StereobenchError(f"{what} has no frames; nothing to write")
    return video


def _to_uint8_hwc(video: torch.Tensor) -> np.ndarray:
    """(T, C, H, W) float in [0, 1], uint8 or bool -> uint8 (T, H, W, 3); floats rounded (half to
    even), NaN -> 0, clamped to [0, 1] first.

    The arithmetic runs in NumPy on the (small) chunk: element-wise NumPy is single-threaded, so a
    frame costs microseconds even when torch's thread pool is contended by other work.
    """
    v = video.detach().to("cpu")
    if v.shape[1] == 1:
        v = v.expand(-1, 3, -1, -1)
    hwc = v.permute(0, 2, 3, 1).numpy()
    if hwc.dtype == np.bool_:
        return np.ascontiguousarray(hwc, dtype=np.uint8) * np.uint8(255)
    if hwc.dtype == np.uint8:
        return np.ascontiguousarray(hwc)
    scaled = np.nan_to_num(hwc.astype(np.float32), nan=0.0)
    np.clip(scaled, 0.0, 1.0, out=scaled)
    scaled *= 255.0
    np.rint(scaled, out=scaled)
    return scaled.astype(np.uint8)


def _tmp_sibling(path: Path, suffix: str = "") -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")


class VideoWriter:
    """Streaming H.264 MP4 writer (yuv420p, ``+faststart``) with bounded memory and an atomic finish.

    Frames go to the encoder as they are appended and are not kept, so memory does not grow
    with the video's length. The file is built under a temporary name next to ``path``
    (``.<name>.tmp-<pid>-<token>.mp4``) and moved onto ``path`` by :meth:`close`; used as a
    context manager, an exception inside the block calls :meth:`abort` instead (temporary file
    deleted, ``path`` untouched). Nothing appears under ``path`` before a successful close.

    Args:
        path: target file (parent folders are created).
        fps: frame rate in frames per second (finite, > 0).
        crf: x264 constant rate factor; 18 is visually lossless.
        lossless: ``crf 0`` (exact luma, but a High 4:4:4 Predictive profile that some browsers
            refuse: use it for masks, not previews).
        keep_size: record the true (possibly odd) size in the ``comment`` metadata
            (``stereobench-size=HxW``) so :func:`read_video` crops the even-size padding away.
        preset: x264 speed preset (``"medium"`` by default; ``"ultrafast"`` ... ``"veryslow"``
            trade file size for encoding time, not quality at a given ``crf``).

    Example::

        with VideoWriter("out/right.mp4", fps=24) as writer:
            for batch in batches:          # (T, 3, H, W) float in [0, 1] or uint8, or (3, H, W)
                writer.append(batch)
    """

    PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")

    def __init__(self, path: str | os.PathLike, fps: float, crf: int = 18, lossless: bool = False,
                 keep_size: bool = False, preset: str = "medium"):
        try:
            valid_fps = not isinstance(fps, bool) and float(fps) > 0 and math.isfinite(float(fps))
        except (TypeError, ValueError):
            valid_fps = False
        if not valid_fps:
            raise StereobenchError(f"fps must be a positive number, got {fps!r}")
        if preset not in self.PRESETS:
            raise did_you_mean(str(preset), self.PRESETS, "x264 preset")
        if isinstance(crf, bool) or not isinstance(crf, (int, np.integer)) or not 0 <= int(crf) <= 51:
            raise StereobenchError(f"crf must be an integer from 0 (lossless) to 51, got {crf!r}")
        self.path = Path(path)
        self.fps = float(fps)
        self.crf = int(crf)
        self.preset = preset
        self.lossless = bool(lossless)
        self.keep_size = bool(keep_size)
        self.frames_written = 0
        self.size: tuple[int, int] | None = None  # true (height, width), set by the first append
        self._tmp: Path | None = None
        self._container = None
        self._stream = None
        self._closed = False

    # -- context manager ----------------------------------------------------------------------
    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- writing --------------------------------------------------------------------------------
    def _start(self, height: int, width: int) -> None:
        import av

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = _tmp_sibling(self.path, ".mp4")
        self._container = av.open(str(self._tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
        if self.keep_size:
            self._container.metadata["comment"] = f"stereobench-size={height}x{width}"
        stream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001000))
        stream.width, stream.height = width + width % 2, height + height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "0" if self.lossless else str(self.crf), "preset": self.preset}
        self._stream = stream
        self.size = (height, width)

    def append(self, frames: torch.Tensor) -> None:
        """Encode one frame (C, H, W) or a batch (T, C, H, W), C = 3 (RGB) or 1 (grey); float
        in [0, 1] (NaN -> 0, clamped, rounded to k/255), uint8, or bool (True = white).

        Raises:
            StereobenchError: wrong shape, a size different from the first frames', or a writer
                already closed.
        """
        if self._closed:
            raise StereobenchError(f"VideoWriter for {str(self.path)!r} is closed; open a new one to write again")
        if isinstance(frames, torch.Tensor) and frames.dim() == 3:
            frames = frames.unsqueeze(0)
        frames = _check_video_tensor(frames)
        _, _, height, width = frames.shape
        if self._container is None:
            try:
                self._start(height, width)
            except BaseException:
                self.abort()
                raise
        elif (height, width) != self.size:
            raise StereobenchError(f"frames of {height}x{width} appended to a {self.size[0]}x{self.size[1]} video "
                                   f"{str(self.path)!r}; every frame of a video must have one size")
        import av

        pad_h, pad_w = height % 2, width % 2
        # Convert a few frames at a time: a long batch never exists as a second full-size copy.
        for begin in range(0, frames.shape[0], _WRITE_CHUNK):
            chunk = frames[begin:begin + _WRITE_CHUNK]
            if pad_h or pad_w:
                if chunk.dtype in (torch.uint8, torch.bool):
                    chunk = chunk.to(torch.float32) / (255.0 if chunk.dtype == torch.uint8 else 1.0)
                chunk = F.pad(chunk.to(torch.float32), (0, pad_w, 0, pad_h), mode="replicate")
            for image in _to_uint8_hwc(chunk):
                for packet in self._stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    self._container.mux(packet)
                self.frames_written += 1

    def close(self) -> Path:
        """Flush the encoder, close the file and move it onto ``path`` (atomic). Returns ``path``.

        Raises:
            StereobenchError: no frame was appended (nothing is written).
        """
        if self._closed:
            return self.path
        if self._container is None:
            self._closed = True
            raise StereobenchError(f"video {str(self.path)!r} has no frames; nothing to write")
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Stop without publishing: close the encoder and delete the temporary file."""
        self._closed = True
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # the file is discarded anyway; the original error matters
                pass
            self._container = None
        if self._tmp is not None:
            try:
                self._tmp.unlink()
            except FileNotFoundError:
                pass


def write_video(path: str | os.PathLike, video: torch.Tensor, fps: float, crf: int = 18,
                lossless: bool = False, keep_size: bool = False) -> Path:
    """Write float32 (T, 3, H, W) in [0, 1] as H.264 MP4 (yuv420p, +faststart), atomically.

    A one-call :class:`VideoWriter`. Odd heights/widths are padded by one replicated row/column
    at the bottom/right (yuv420p needs even sizes). ``keep_size=True`` also records the true size
    in the container's ``comment`` metadata (``stereobench-size=HxW``) and :func:`read_video` then
    crops the padding away, so the round trip keeps the shape (players still show the padded
    frame). ``crf`` 18 is visually lossless; ``lossless=True`` uses ``crf 0``. Returns the path.
    """
    video = _check_video_tensor(video)
    with VideoWriter(path, fps=fps, crf=crf, lossless=lossless, keep_size=keep_size) as writer:
        writer.append(video)
    return writer.path


def write_frames(folder: str | os.PathLike, video: torch.Tensor, prefix: str = "frame_") -> Path:
    """Write (T, C, H, W) as a lossless 8-bit PNG sequence ``<prefix>00000.png`` ... atomically.

    The folder is built under a temporary name and moved into place; an existing folder of the
    same name is replaced. Values are rounded to k/255 (exact for 8-bit content).
    """
    from PIL import Image

    folder = Path(folder)
    video = _check_video_tensor(video)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(folder)
    tmp.mkdir()
    try:
        gray = video.shape[1] == 1
        for begin in range(0, video.shape[0], _WRITE_CHUNK):
            for offset, arr in enumerate(_to_uint8_hwc(video[begin:begin + _WRITE_CHUNK])):
                img = Image.fromarray(arr[..., 0] if gray else arr, mode="L" if gray else "RGB")
                img.save(tmp / f"{prefix}{begin + offset:05d}.png", compress_level=1)
        if folder.exists():
            old = _tmp_sibling(folder, ".old")
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def read_mask(path: str | os.PathLike, **kwargs) -> torch.Tensor:
    """Read a hole mask (video or PNG folder; white = hole) as bool (T, 1, H, W).

    A pixel is a hole where the mean over RGB is >= 0.5. ``kwargs`` go to :func:`read_video`
    (``fps``, ``max_frames``, ``start_time``).
    """
    data = read_video(path, **kwargs)
    return data.frames.mean(dim=1, keepdim=True) >= 0.5


def write_mask(path: str | os.PathLike, mask: torch.Tensor, fps: float = DEFAULT_FOLDER_FPS) -> Path:
    """Write a bool (T, 1, H, W) mask losslessly: a ``.mp4`` path gives lossless H.264 (crf 0),
    any other path a folder of 8-bit grayscale PNGs (255 = hole). Odd sizes survive the video
    round trip: the true size is recorded and :func:`read_mask` crops the even-size padding."""
    if not isinstance(mask, torch.Tensor) or mask.dim() != 4 or mask.shape[1] != 1:
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise StereobenchError(f"mask must be a tensor (T, 1, H, W), got {shape}")
    mask = mask.bool()
    path = Path(path)
    if path.suffix.lower() in (".mp4", ".mov", ".mkv"):
        return write_video(path, mask.to(torch.float32).expand(-1, 3, -1, -1), fps=fps, lossless=True,
                           keep_size=True)
    return write_frames(path, mask)
