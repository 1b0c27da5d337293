"""``folder``: your own videos as a dataset.

Layout of ``root`` (any video format FFmpeg reads, or a folder of PNG/JPG frames, in place of
``.mp4``)::

    root/
      street_left.mp4          left view (required)
      street_right.mp4         ground-truth right view (optional: enables scoring)
      street_disparity.npy     disparity of the LEFT view in pixels, float (T, H, W) or
                               (T, 1, H, W), x_R = x_L - d, NaN = invalid (optional: without it
                               a depth source must provide disparity)
      street_depth.npy         your own depth maps for ``--depth files`` (optional): .npy/.npz
                               (T, H, W), or a folder street_depth/ of per-frame PNG16/EXR/NPY
                               files; disparity-like (larger = nearer) unless declared depth
      beach.mp4                a video without "_left" is a left-only (monocular) clip

Clip names are the file stems without ``_left``: ``street``, ``beach``. Sizes and frame rates stay
native; a clip protocol resamples them later. Only the left video is required: a clip without a
right view is run (with a depth source naming where its disparity comes from) but not scored.
"""

from __future__ import annotations

import functools

import hashlib
from pathlib import Path

import numpy as np
import torch

from benchmark.datasets.base import DatasetSpec
from benchmark.types import Clip, TimeWindow
from benchmark.errors import StereobenchError, did_you_mean

# Bump when the clips the loader makes from the same files change (it is in the revision).
LOADER_VERSION = 2

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")


def _is_video(path: Path) -> bool:
    if path.is_dir():
        return any(p.suffix.lower() in (".png", ".jpg", ".jpeg") for p in path.iterdir())
    return path.suffix.lower() in VIDEO_SUFFIXES


def _display_rotation(path: Path) -> int:
    """Counter-clockwise degrees (0, 90, 180, 270) of a video file's display matrix (phone videos);
    0 for frame folders and files PyAV cannot decode (read_video reports those)."""
    if not path.is_file():
        return 0
    import av

    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                return round((frame.rotation or 0) / 90.0) % 4 * 90
    except (av.error.FFmpegError, IndexError):
        return 0
    return 0


def _upright(frames: torch.Tensor, rotation: int) -> torch.Tensor:
    k = (rotation // 90) % 4
    return torch.rot90(frames, k, dims=(-2, -1)).contiguous() if k else frames


DEPTH_FILE_SUFFIXES = (".npy", ".npz")


def _depth_files(root: Path, name: str) -> Path | None:
    """``<name>_depth.npy`` / ``.npz`` or a ``<name>_depth/`` folder of per-frame files, if any."""
    folder = root / f"{name}_depth"
    if folder.is_dir():
        return folder
    for suffix in DEPTH_FILE_SUFFIXES:
        candidate = root / f"{name}_depth{suffix}"
        if candidate.is_file():
            return candidate
    return None


class FolderDataset:
    """A directory of ``<name>_left.*`` [+ ``<name>_right.*``, ``<name>_disparity.npy``] or
    plain (left-only) videos. Option ``root``: the directory. ``name``: dataset name used in clip
    ids (default ``folder-<directory name>``)."""

    def __init__(self, root: str | Path | None = None, name: str | None = None):
        if root is None:
            raise StereobenchError("the folder dataset needs a directory: --dataset path/to/videos "
                                   "or --option root=path/to/videos")
        self.root = Path(root).expanduser()
        requested_name = name
        if not self.root.is_dir():
            raise StereobenchError(f"dataset folder {str(self.root)!r} does not exist or is not a directory; "
                                   f"pass a directory of <name>_left.mp4 [+ <name>_right.mp4] videos")
        self._clips: dict[str, dict[str, Path]] = {}
        try:
            entries = sorted(self.root.iterdir())
        except OSError as exc:
            raise StereobenchError(f"cannot read dataset folder {str(self.root)!r} ({exc.strerror}); "
                                   f"check its permissions") from None
        for path in entries:
            if path.name.startswith(".") or not _is_video(path):
                continue
            stem = path.stem if path.is_file() else path.name
            if stem.endswith(("_right", "_disparity", "_depth")):
                continue
            name = stem[: -len("_left")] if stem.endswith("_left") else stem
            files = {"left": path}
            for candidate in entries:
                cstem = candidate.stem if candidate.is_file() else candidate.name
                if cstem == f"{name}_right" and _is_video(candidate):
                    files["right"] = candidate
            disparity = self.root / f"{name}_disparity.npy"
            if disparity.is_file():
                files["disparity"] = disparity
            depth = _depth_files(self.root, name)
            if depth is not None:
                files["depth"] = depth
            self._clips[name] = files
        if not self._clips:
            raise StereobenchError(f"dataset folder {str(self.root)!r} holds no videos; expected "
                                   f"<name>_left.mp4 [+ <name>_right.mp4] or plain videos")
        digest = hashlib.sha256()
        # What the loader makes of the files is part of the revision: 2 = rotation metadata
        # applied (upright frames), so inputs cached from sideways frames are never reused.
        digest.update(f"loader:{LOADER_VERSION}".encode())
        for name, files in sorted(self._clips.items()):
            for role, path in sorted(files.items()):
                digest.update(f"{name}:{role}:{path.name}".encode())
                # A frame folder's own stat does not change when a frame inside is overwritten,
                # so hash every file in it; nanosecond mtimes tell same-size rewrites within a
                # second apart.
                members = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
                for member in members:
                    stat = member.stat()
                    digest.update(f"|{member.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        self.name = str(requested_name) if requested_name else f"folder-{self.root.resolve().name}"
        self.spec = DatasetSpec(
            name=self.name,
            description=f"videos from {self.root}",
            revision="files:" + digest.hexdigest()[:16],
            has_ground_truth=all("right" in f for f in self._clips.values()),
            default_protocol="paper",
        )

    def clip_names(self) -> list[str]:
        return sorted(self._clips)

    def load_clip(self, name: str, window: TimeWindow | None = None) -> Clip:
        """Clip ``name`` at native size.

        Args:
            name: a name from :meth:`clip_names`.
            window: the time window a clip protocol keeps (:meth:`ClipProtocol.time_window
                <benchmark.stereo.protocol.ClipProtocol.time_window>`), or None for every frame.
                With a window only those frames are decoded (decoding stops after
                ``window.num_frames`` output frames) and the clip comes resampled to
                ``window.fps``, on the protocol's own clock, so applying the protocol afterwards
                gives exactly the clip the full read would give; ``metadata["source_frame_indices"]``
                says which source frame each clip frame is, and only those disparity frames are
                read from the ``.npy`` (memory-mapped).

        Raises:
            StereobenchError: unknown clip, unreadable video, mismatched right video or disparity.
        """
        from benchmark.video_io import open_source, read_video

        if name not in self._clips:
            raise did_you_mean(name, self._clips, f"clip of {self.root}")
        files = self._clips[name]
        if window is None:
            read = dict(fps=None, max_frames=None, start_time=0.0)
        else:
            read = dict(fps=window.fps, max_frames=window.num_frames, start_time=window.start_time)
        left = read_video(files["left"], **read)
        # A display rotation (phone videos) is applied, as `convert` does: clips come upright, and
        # disparity and depth files are at the upright size.
        left_frames = _upright(left.frames, _display_rotation(files["left"]))

        @functools.cache
        def left_count() -> int | None:  # the container's full length, asked once (windowed reads)
            return open_source(files["left"]).frame_count
        right = disparity = None
        if "right" in files:
            right_video = read_video(files["right"], **read)
            right_frames = _upright(right_video.frames, _display_rotation(files["right"]))
            if right_frames.shape != left_frames.shape:
                raise StereobenchError(
                    f"{files['right'].name} has shape {tuple(right_frames.shape)} but {files['left'].name} has "
                    f"{tuple(left_frames.shape)}; left and right videos must match in frames and size")
            if window is not None:
                # Only a window was decoded: compare the full lengths where the containers know them.
                counts = [left_count(), open_source(files["right"]).frame_count]
                if None not in counts and counts[0] != counts[1]:
                    raise StereobenchError(
                        f"{files['right'].name} has {counts[1]} frames but {files['left'].name} has {counts[0]}; "
                        f"left and right videos must match in frames and size")
            right = right_frames
        metadata = {role: str(path) for role, path in files.items()}
        if "disparity" in files:
            try:
                # Memory-mapped: a windowed read touches only the frames it uses.
                array = np.load(files["disparity"], mmap_mode="r" if window is not None else None)
            except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty or cut-off file
                raise StereobenchError(f"cannot read {files['disparity']} ({type(exc).__name__}: {exc}); save a "
                                       f"float array with numpy.save") from None
            if array.dtype.kind not in "biuf":  # strings, complex, datetimes... would cast silently or fail late
                raise StereobenchError(f"{files['disparity'].name} has dtype {array.dtype}; disparity must be a "
                                       f"real number array (float32, pixels), saved with numpy.save")
            if array.ndim == 3:
                array = array[:, None]
            t, _, h, w = left_frames.shape
            if window is None:
                expected_frames = t
            else:
                # The whole video was not decoded: its frame count comes from the container
                # (exact for MP4 and frame folders); without one, the used frames must exist.
                expected_frames = left_count()
                if expected_frames is None and left.source_indices is not None:
                    expected_frames = max(array.shape[0], int(left.source_indices.max()) + 1)
            if array.ndim != 4 or array.shape[1:] != (1, h, w) or (expected_frames is not None
                                                                    and array.shape[0] != expected_frames):
                frames = expected_frames if expected_frames is not None else "T"
                raise StereobenchError(f"{files['disparity'].name} has shape {array.shape}, expected ({frames}, {h}, "
                                       f"{w}) to match {files['left'].name}")
            if window is not None:
                if left.source_indices is None:  # pragma: no cover - a windowed read never seeks
                    raise StereobenchError(f"cannot tell which frames of {files['left'].name} were read; "
                                           f"read the clip without a time window")
                array = array[left.source_indices.numpy()]
            disparity = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
            disparity = torch.where(torch.isfinite(disparity), disparity, torch.nan)
        if window is not None and left.source_indices is not None:
            metadata["source_frame_indices"] = left.source_indices.tolist()
        if "depth" in files:
            # The depth files must hold one map per frame of the whole video (checked when read).
            total = left_frames.shape[0] if window is None else left_count()
            if total is not None:
                metadata["source_frame_count"] = int(total)
        return Clip(clip_id=f"{self.name}/{name}", left=left_frames, fps=left.fps, right=right,
                    disparity=disparity, timestamps=left.timestamps, metadata=metadata)
