"""Video I/O in the project's data contract.

Reading returns float32 RGB video (T, 3, H, W) in [0, 1] with per-frame timestamps in seconds;
writing takes the same layout. Everything goes through PyAV (FFmpeg), so MP4/H.264, H.265,
VP9/WebM, MOV and MKV all work, plus folders of PNG/JPG frames.

- :func:`read_video` decodes only what it needs (it stops after ``max_frames`` output frames)
  and can resample to a target frame rate by timestamp: output frame k is the source frame
  nearest to ``start_time + k / fps`` (the behaviour of FFmpeg's ``fps`` filter with its default
  ``round=near``; an exact tie, within 1 microsecond, goes to the later frame as there). Output frames whose target time lies past the last source frame (by more than
  half a source frame interval) are not produced, so a resampled clip never invents frames.
- :func:`iter_video` streams a long video in chunks of ``chunk_frames`` frames (bounded memory).
- :func:`write_video` writes H.264 MP4 (yuv420p, ``+faststart``) that browsers and headsets
  play. yuv420p needs even sizes: an odd height or width is padded by one row/column that
  replicates the last one (the padding is at the bottom/right, so pixel (y, x) keeps its place).
- :func:`write_frames` / PNG folders are lossless at 8 bits (values are rounded to k/255).
  Reading also takes 16-bit grayscale PNG/TIFF frames (scaled by 1/65535, full precision).
- Masks: :func:`read_mask` thresholds the mean over RGB at 0.5 (white = hole);
  :func:`write_mask` writes a lossless PNG folder or a lossless (``crf 0``) H.264 MP4 whose true
  (possibly odd) size is kept in the ``comment`` metadata, so the round trip is exact.

Every file is written atomically (a temporary name in the same directory, then ``os.replace``),
so an interrupted write never leaves a truncated file under the final name.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.errors import StereobenchError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_FOLDER_FPS = 30.0
#: Two source frames whose distances to a resampling target differ by less than this (seconds)
#: are a tie; ties go to the later frame (FFmpeg's fps filter does the same).
TIE_TOLERANCE_S = 1e-6
#: Container "comment" metadata holding a video's true size before even-size padding.
_SIZE_TAG = re.compile(r"stereobench-size=(\d+)x(\d+)")


@dataclass
class VideoData:
    """Decoded video.

    Attributes:
        frames: float32 (T, 3, H, W) in [0, 1], RGB.
        fps: frame rate of ``frames`` (the target rate when resampled), frames per second.
        timestamps: float64 (T,) seconds of each frame (presentation time in the source, or
            the output clock ``start_time + k / fps`` when resampled).
    """

    frames: torch.Tensor
    fps: float
    timestamps: torch.Tensor

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


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


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise StereobenchError(f"video {str(path)!r} does not exist; check the path")


def _iter_source_frames(path: Path, start_time: float, folder_fps: float):
    """Yield (uint8 or float32 HxWx3 RGB array, timestamp seconds) for every source frame at or after
    ``start_time`` (minus one frame, kept for nearest-frame resampling), and the native fps as
    the first item."""
    if path.is_dir():
        files = _list_image_files(path)
        if not files:
            raise StereobenchError(
                f"folder {str(path)!r} holds no image frames ({', '.join(IMAGE_SUFFIXES)}); "
                "point to a video file or a folder of PNG/JPG frames")
        from PIL import Image

        yield float(folder_fps)
        first = max(0, int(math.floor(start_time * folder_fps)) - 1)
        size = None
        for index in range(first, len(files)):
            try:
                with Image.open(files[index]) as img:
                    arr = _image_to_array(img)
            except Exception as exc:  # PIL raises many types for broken files
                raise StereobenchError(
                    f"cannot read frame {str(files[index])!r} ({exc}); replace or remove it") from exc
            if size is None:
                size = arr.shape
            elif arr.shape != size:
                raise StereobenchError(
                    f"frame {str(files[index])!r} is {arr.shape[1]}x{arr.shape[0]} but earlier frames are "
                    f"{size[1]}x{size[0]}; all frames of a folder must have one size")
            yield arr, index / folder_fps
        return

    import av

    def open_container():
        try:
            opened = av.open(str(path))
        except Exception as exc:
            raise StereobenchError(
                f"cannot open video {str(path)!r} ({type(exc).__name__}: {exc}); "
                "check that it is a complete video file (re-encode it with ffmpeg if needed)") from exc
        if not opened.streams.video:
            opened.close()
            raise StereobenchError(f"{str(path)!r} has no video stream; give a video file")
        opened.streams.video[0].thread_type = "AUTO"
        return opened, opened.streams.video[0]

    def timed_frames(container, stream, origin, seeked):
        """Yield (av.VideoFrame, seconds since the stream start)."""
        count = 0
        for frame in container.decode(stream):
            if frame.pts is not None:
                if origin is None:
                    # No stream start time: the first decoded frame is t = 0 unless we seeked.
                    origin = frame.pts if not seeked else 0
                t = (frame.pts - origin) * time_base
            else:
                t = count / native_fps
            count += 1
            yield frame, t

    container, stream = open_container()
    try:
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        native_fps = float(rate) if rate else DEFAULT_FOLDER_FPS
        yield native_fps
        time_base = float(stream.time_base) if stream.time_base else 1.0 / native_fps
        origin = stream.start_time
        # write_video(keep_size=True) records the true size of a video padded to even sizes.
        match = _SIZE_TAG.fullmatch(str(container.metadata.get("comment", "")))
        true_size = (int(match.group(1)), int(match.group(2))) if match else None

        def to_array(frame):
            arr = frame.to_ndarray(format="rgb24")
            return arr[: true_size[0], : true_size[1]] if true_size else arr
        frames = None
        if start_time > 0:
            # Seek to the key frame before start_time. Some containers (MPEG-TS) seek badly: the
            # seek raises, nothing decodes after it, or it lands past start_time (so the frame
            # before start_time, needed for nearest-frame resampling, is lost). Then decode from
            # the start instead; frames before start_time are skipped below.
            try:
                container.seek(int((origin or 0) + start_time / time_base), stream=stream,
                               backward=True, any_frame=False)
                frames = timed_frames(container, stream, origin, seeked=True)
                first = next(frames, None)
                if first is None or first[1] > start_time + 1e-9:
                    frames = None
                else:
                    frames = _chain_first(first, frames)
            except av.error.FFmpegError:
                frames = None
            if frames is None:
                container.close()
                container, stream = open_container()
        if frames is None:
            frames = timed_frames(container, stream, origin, seeked=False)
        # The last frame before start_time is always kept as a candidate (also on variable
        # frame rate files, where a fixed cut-off in source intervals could drop the nearest
        # frame); the nearest-frame rule downstream decides whether it is used.
        pending = None
        try:
            for frame, t in frames:
                if t < start_time:
                    pending = (frame, t)
                    continue
                if pending is not None:
                    yield to_array(pending[0]), pending[1]
                    pending = None
                yield to_array(frame), t
            if pending is not None:
                yield to_array(pending[0]), pending[1]
        except av.error.FFmpegError as exc:
            raise StereobenchError(
                f"cannot decode video {str(path)!r} ({type(exc).__name__}: {exc}); "
                "the file looks corrupt or truncated, re-encode it with ffmpeg") from exc
    finally:
        container.close()


def _chain_first(first, rest):
    yield first
    yield from rest


def _iter_output_frames(path: Path, fps: float | None, start_time: float, folder_fps: float):
    """Yield the native fps, then (uint8 frame, output timestamp) after resampling."""
    source = _iter_source_frames(path, start_time, folder_fps)
    native_fps = next(source)
    yield native_fps
    if fps is None:
        for arr, t in source:
            if t >= start_time - 0.5 / native_fps:
                yield arr, t
        return
    if fps <= 0:
        raise StereobenchError(f"fps must be positive, got {fps}")
    # Nearest-frame resampling: keep the previous source frame; when a source frame passes the
    # target time, emit whichever of the two is nearer. Ties (within TIE_TOLERANCE_S, so float
    # rounding of timestamps cannot flip them) go to the later frame, as FFmpeg's fps filter
    # (round=near) does: e.g. 30 -> 20 fps gives source frames 0, 2, 3, 5, 6, 8, ...
    k = 0
    prev = None
    for arr, t in source:
        while True:
            target = start_time + k / fps
            if t < target:
                break
            if prev is not None and (target - prev[1]) < (t - target) - TIE_TOLERANCE_S:
                yield prev[0], target
            else:
                yield arr, target
            k += 1
        prev = (arr, t)
    if prev is not None:
        # Targets past the last frame: only within half a source interval of it.
        while start_time + k / fps <= prev[1] + 0.5 / native_fps + 1e-9:
            yield prev[0], start_time + k / fps
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


def read_video(path: str | os.PathLike, fps: float | None = None, max_frames: int | None = None,
               start_time: float = 0.0, folder_fps: float = DEFAULT_FOLDER_FPS) -> VideoData:
    """Read a video file or a folder of frames into float32 (T, 3, H, W) in [0, 1].

    Args:
        path: video file (anything FFmpeg decodes) or a folder of PNG/JPG frames, sorted
            naturally (``frame_2`` before ``frame_10``).
        fps: resample to this frame rate by timestamp (nearest source frame to
            ``start_time + k / fps``); None keeps every source frame.
        max_frames: stop after this many output frames (decoding stops there too).
        start_time: seconds into the video where reading starts.
        folder_fps: frame rate of a folder of frames (a folder carries no timing).

    Returns:
        :class:`VideoData` with frames, fps (``fps`` or the native rate) and timestamps (s).

    Raises:
        StereobenchError: missing path, unreadable or corrupt file, or no frames.
    """
    path = Path(path)
    _check_exists(path)
    if max_frames is not None and max_frames <= 0:
        raise StereobenchError(f"max_frames must be positive, got {max_frames}")
    frames_iter = _iter_output_frames(path, fps, float(start_time), folder_fps)
    native_fps = next(frames_iter)
    frames, times = [], []
    for arr, t in frames_iter:
        frames.append(arr)
        times.append(t)
        if max_frames is not None and len(frames) >= max_frames:
            break
    frames_iter.close()
    if not frames:
        raise StereobenchError(
            f"video {str(path)!r} has no frames" + (f" after {start_time} s" if start_time else "")
            + "; check the file (and start_time)")
    return VideoData(frames=_to_tensor(frames), fps=float(fps if fps is not None else native_fps),
                     timestamps=torch.tensor(times, dtype=torch.float64))


def iter_video(path: str | os.PathLike, chunk_frames: int = 64, fps: float | None = None,
               start_time: float = 0.0, folder_fps: float = DEFAULT_FOLDER_FPS) -> Iterator[VideoData]:
    """Stream a video in chunks of at most ``chunk_frames`` frames (bounded memory).

    Same arguments and resampling as :func:`read_video`; concatenating the chunks gives what
    :func:`read_video` returns. Raises StereobenchError like :func:`read_video` (an empty video
    raises before the first chunk).
    """
    if chunk_frames <= 0:
        raise StereobenchError(f"chunk_frames must be positive, got {chunk_frames}")
    path = Path(path)
    _check_exists(path)
    frames_iter = _iter_output_frames(path, fps, float(start_time), folder_fps)
    native_fps = next(frames_iter)
    out_fps = float(fps if fps is not None else native_fps)
    frames, times = [], []
    produced = 0
    for arr, t in frames_iter:
        frames.append(arr)
        times.append(t)
        if len(frames) == chunk_frames:
            produced += len(frames)
            yield VideoData(_to_tensor(frames), out_fps, torch.tensor(times, dtype=torch.float64))
            frames, times = [], []
    if frames:
        produced += len(frames)
        yield VideoData(_to_tensor(frames), out_fps, torch.tensor(times, dtype=torch.float64))
    if produced == 0:
        raise StereobenchError(f"video {str(path)!r} has no frames; check the file (and start_time)")


def _check_video_tensor(video: torch.Tensor, what: str = "video") -> torch.Tensor:
    if not isinstance(video, torch.Tensor) or video.dim() != 4 or video.shape[1] not in (1, 3):
        shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise StereobenchError(f"{what} must be a tensor (T, 3, H, W) (or (T, 1, H, W)), got {shape}")
    if video.shape[0] == 0:
        raise StereobenchError(f"{what} has no frames; nothing to write")
    return video


def _to_uint8_hwc(video: torch.Tensor) -> np.ndarray:
    """(T, C, H, W) float in [0, 1] (or bool) -> uint8 (T, H, W, 3), rounded, NaN -> 0."""
    v = video.detach().to("cpu")
    if v.dtype == torch.bool:
        v = v.to(torch.uint8) * 255
    else:
        v = torch.nan_to_num(v.to(torch.float32), nan=0.0).clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
    if v.shape[1] == 1:
        v = v.expand(-1, 3, -1, -1)
    return v.permute(0, 2, 3, 1).contiguous().numpy()


def _tmp_sibling(path: Path, suffix: str = "") -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")


def write_video(path: str | os.PathLike, video: torch.Tensor, fps: float, crf: int = 18,
                lossless: bool = False, keep_size: bool = False) -> Path:
    """Write float32 (T, 3, H, W) in [0, 1] as H.264 MP4 (yuv420p, +faststart), atomically.

    Odd heights/widths are padded by one replicated row/column at the bottom/right (yuv420p needs
    even sizes). ``keep_size=True`` also records the true size in the container's ``comment``
    metadata (``stereobench-size=HxW``) and :func:`read_video` then crops the padding away, so the
    round trip keeps the shape (players still show the padded frame). ``crf`` 18 is visually lossless; ``lossless=True`` uses ``crf 0`` (exact luma,
    but a High 4:4:4 Predictive profile that some browsers refuse: use it for masks, not previews).
    Returns the path written.
    """
    import av

    path = Path(path)
    video = _check_video_tensor(video)
    if fps <= 0 or not math.isfinite(fps):
        raise StereobenchError(f"fps must be a positive number, got {fps}")
    _, _, h, w = video.shape
    pad_h, pad_w = h % 2, w % 2
    if pad_h or pad_w:
        video = F.pad(video.to(torch.float32), (0, pad_w, 0, pad_h), mode="replicate")
    frames = _to_uint8_hwc(video)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path, ".mp4")
    rate = Fraction(fps).limit_denominator(1001000)
    try:
        with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            if keep_size:
                container.metadata["comment"] = f"stereobench-size={h}x{w}"
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "0" if lossless else str(int(crf)), "preset": "medium"}
            for arr in frames:
                frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_frames(folder: str | os.PathLike, video: torch.Tensor, prefix: str = "frame_") -> Path:
    """Write (T, C, H, W) as a lossless 8-bit PNG sequence ``<prefix>00000.png`` ... atomically.

    The folder is built under a temporary name and moved into place; an existing folder of the
    same name is replaced. Values are rounded to k/255 (exact for 8-bit content).
    """
    from PIL import Image

    folder = Path(folder)
    video = _check_video_tensor(video)
    frames = _to_uint8_hwc(video)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(folder)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        gray = video.shape[1] == 1
        for index, arr in enumerate(frames):
            img = Image.fromarray(arr[..., 0] if gray else arr, mode="L" if gray else "RGB")
            img.save(tmp / f"{prefix}{index:05d}.png", compress_level=1)
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
