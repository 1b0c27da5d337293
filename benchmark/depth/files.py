"""Depth the user already has, as files: PNG16, EXR, NPY or NPZ, per frame or per video.

Layouts :func:`read_depth_files` accepts:

- **one file per video**: ``clip.npy`` holding (T, H, W) (or (H, W) for one frame), or
  ``clip.npz`` with one such array (key ``depth``, as DepthCrafter's ``--save_npz`` writes, or
  ``disparity``, or its only array);
- **a folder, one file per frame**: ``0000.png`` ... (16-bit or 8-bit single-channel PNG),
  ``.exr`` (one float channel: ``Z``, ``depth``, ``Y``, ``R``, or the only one), ``.npy`` or
  ``.npz`` with (H, W) each; frames are ordered by the numbers in their names (``f2`` before
  ``f10``), and every frame file must have the same suffix;
- a single ``.png`` / ``.exr`` file is a one-frame video.

``kind`` declares what the values are: ``"disparity"`` (relative inverse depth or disparity,
larger = nearer; used as it is) or ``"depth"`` (distance, larger = farther; turned into
``1 / depth``, with depth <= 0 invalid). Either way the result is relative inverse depth, float32
(T, H, W), NaN where invalid: any positive scale of it gives the same normalised depth.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from benchmark.depth.base import DepthModel
from benchmark.errors import StereobenchError, did_you_mean

DEPTH_KINDS = ("disparity", "depth")
FRAME_SUFFIXES = (".png", ".exr", ".npy", ".npz")
VIDEO_SUFFIXES = (".npy", ".npz")
NPZ_KEYS = ("depth", "disparity")
EXR_CHANNELS = ("Z", "depth", "Y", "R")
WRITE_FORMATS = ("png16", "exr", "npy", "npz")


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def depth_file_list(path: str | os.PathLike) -> tuple[list[Path], bool]:
    """The files that make up a depth video and whether they are per frame.

    Returns:
        (files, per_frame): a folder's frame files in natural order (``per_frame=True``), or
        ``[path]`` for one file (``per_frame`` False for NPY/NPZ, True for a PNG/EXR image).

    Raises:
        StereobenchError: missing path, unsupported suffix, a folder without frame files or with
            mixed suffixes.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise StereobenchError(f"depth files {str(p)!r} do not exist; give a .npy/.npz file or a folder of "
                               f"per-frame .png (16-bit) / .exr / .npy files")
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix not in FRAME_SUFFIXES:
            raise StereobenchError(f"depth file {str(p)!r}: unsupported suffix {suffix or '(none)'}; use "
                                   f"{', '.join(FRAME_SUFFIXES)}")
        return [p], suffix not in VIDEO_SUFFIXES
    try:
        files = [f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                 and f.suffix.lower() in FRAME_SUFFIXES]
    except OSError as exc:
        raise StereobenchError(f"cannot read depth folder {str(p)!r} ({exc.strerror}); check its permissions") from None
    if not files:
        raise StereobenchError(f"depth folder {str(p)!r} holds no depth frames; put one "
                               f"{'/'.join(FRAME_SUFFIXES)} file per frame in it (0000.png, 0001.png, ...)")
    suffixes = sorted({f.suffix.lower() for f in files})
    if len(suffixes) > 1:
        raise StereobenchError(f"depth folder {str(p)!r} mixes {', '.join(suffixes)} files; keep one format per folder")
    return sorted(files, key=_natural_key), True


def _read_png(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise StereobenchError(f"cannot read depth image {str(path)!r}; it is not a PNG OpenCV can decode")
    if image.ndim == 3:
        if image.shape[2] == 1 or (image.shape[2] >= 3 and np.array_equal(image[..., 0], image[..., 1])
                                   and np.array_equal(image[..., 1], image[..., 2])):
            image = image[..., 0]
        else:
            raise StereobenchError(f"depth image {str(path)!r} has {image.shape[2]} different colour channels; "
                                   f"save depth as a single-channel (grey) 16-bit PNG")
    if image.dtype not in (np.uint8, np.uint16):
        raise StereobenchError(f"depth image {str(path)!r} is {image.dtype}; use an 8- or 16-bit grey PNG")
    return image.astype(np.float32)


def _read_exr(path: Path) -> np.ndarray:
    import OpenEXR

    try:
        with OpenEXR.File(str(path)) as handle:
            channels = {name: np.asarray(ch.pixels) for name, ch in handle.channels().items()}
    except Exception as exc:  # noqa: BLE001 - OpenEXR raises plain Exceptions for damaged files
        raise StereobenchError(f"cannot read depth image {str(path)!r} ({exc}); save one float channel in an "
                               f"OpenEXR file") from None
    if len(channels) == 1:
        array = next(iter(channels.values()))
    else:
        name = next((n for n in EXR_CHANNELS if n in channels), None)
        if name is None:
            name = next((n for n in ("RGB", "RGBA") if n in channels), None)
        if name is None:
            raise StereobenchError(f"depth image {str(path)!r} has channels {sorted(channels)}; name the depth "
                                   f"channel one of {', '.join(EXR_CHANNELS)}")
        array = channels[name]
    if array.ndim == 3:
        array = array[..., 0]
    return array.astype(np.float32)


def _read_array(path: Path) -> np.ndarray:
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.files)
                key = next((k for k in NPZ_KEYS if k in names), names[0] if len(names) == 1 else None)
                if key is None:
                    raise StereobenchError(f"depth file {str(path)!r} holds arrays {names}; name the depth array "
                                           f"'depth' (np.savez(path, depth=array))")
                array = archive[key]
    except StereobenchError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise StereobenchError(f"cannot read depth file {str(path)!r} ({type(exc).__name__}: {exc}); save a float "
                               f"array with numpy.save / numpy.savez") from None
    if array.dtype.kind not in "biuf":
        raise StereobenchError(f"depth file {str(path)!r} holds {array.dtype} values; save real numbers (float32)")
    return array


def _read_frame(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix == ".png":
        array = _read_png(path)
    elif suffix == ".exr":
        array = _read_exr(path)
    else:
        array = _read_array(path)
        if array.ndim == 3 and array.shape[0] == 1:
            array = array[0]
    if array.ndim != 2:
        raise StereobenchError(f"depth frame {str(path)!r} has shape {array.shape}; one frame is an (H, W) map")
    return array.astype(np.float32, copy=False)


def _to_inverse_depth(array: np.ndarray, kind: str) -> np.ndarray:
    array = array.astype(np.float32, copy=True)
    if kind == "depth":
        valid = np.isfinite(array) & (array > 0)
        out = np.full(array.shape, np.nan, dtype=np.float32)
        np.divide(1.0, array, out=out, where=valid)
        return out
    array[~np.isfinite(array)] = np.nan
    return array


def count_depth_frames(path: str | os.PathLike) -> int:
    """How many frames the depth files at ``path`` hold (reads only headers of NPY files)."""
    files, per_frame = depth_file_list(path)
    if per_frame:
        return len(files)
    return int(_video_array(files[0], mmap=True).shape[0])


def _video_array(path: Path, mmap: bool) -> np.ndarray:
    if path.suffix.lower() == ".npy" and mmap:
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise StereobenchError(f"cannot read depth file {str(path)!r} ({type(exc).__name__}: {exc}); save a "
                                   f"float array with numpy.save") from None
        if array.dtype.kind not in "biuf":
            raise StereobenchError(f"depth file {str(path)!r} holds {array.dtype} values; save real numbers (float32)")
    else:
        array = _read_array(path)
    if array.ndim == 2:
        array = array[None]
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3 or array.shape[0] == 0:
        raise StereobenchError(f"depth file {str(path)!r} has shape {array.shape}; expected (T, H, W) with one map "
                               f"per frame")
    return array


def read_depth_files(path: str | os.PathLike, *, kind: str = "disparity", num_frames: int | None = None,
                     size: tuple[int, int] | None = None, frames: Any = None) -> np.ndarray:
    """Relative inverse depth from depth files (see the module docstring for the layouts).

    Args:
        path: a ``.npy``/``.npz`` file (a whole video), a ``.png``/``.exr`` (one frame) or a
            folder of per-frame files.
        kind: ``"disparity"`` (larger = nearer, used as is) or ``"depth"`` (larger = farther,
            inverted).
        num_frames: the frame count the files must hold (the video's), or None not to check.
        size: (height, width) every map must have, or None not to check.
        frames: which frames to return (a slice or a sequence of indices into the files' frames),
            or None for all; only those per-frame files are read (an NPY video is memory-mapped).

    Returns:
        float32 (T, H, W) relative inverse depth, NaN where invalid.

    Raises:
        StereobenchError: one line naming the files and the fix: missing or unreadable files,
            unsupported formats, a frame count other than ``num_frames``, maps of another size
            than ``size`` or of different sizes, an unknown ``kind``.
    """
    if kind not in DEPTH_KINDS:
        raise did_you_mean(str(kind), DEPTH_KINDS, "depth file kind")
    files, per_frame = depth_file_list(path)
    where = str(Path(path).expanduser())
    total = len(files) if per_frame else None
    video = None
    if not per_frame:
        video = _video_array(files[0], mmap=frames is not None)
        total = int(video.shape[0])
    if num_frames is not None and total != int(num_frames):
        raise StereobenchError(f"depth files {where!r} hold {total} frames but the video has {num_frames}; give one "
                               f"depth map per video frame")
    if frames is None:
        indices = np.arange(total)
    elif isinstance(frames, slice):
        indices = np.arange(total)[frames]
    else:
        indices = np.asarray(list(frames), dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= total):
            raise StereobenchError(f"depth files {where!r} hold {total} frames; frame {int(indices.max())} was asked "
                                   f"for; give one depth map per video frame")
    if per_frame:
        maps = [_read_frame(files[int(i)]) for i in indices]
        shapes = sorted({m.shape for m in maps})
        if len(shapes) > 1:
            raise StereobenchError(f"depth frames in {where!r} have different sizes {shapes}; every frame must have "
                                   f"the video's size")
        array = np.stack(maps) if maps else np.zeros((0, 0, 0), np.float32)
    else:
        array = np.asarray(video[indices], dtype=np.float32)
    if size is not None and array.shape[0] and tuple(array.shape[1:]) != tuple(size):
        h, w = array.shape[1:]
        raise StereobenchError(f"depth files {where!r} are {w}x{h} (WxH) but the video is {size[1]}x{size[0]}; "
                               f"give depth maps at the video's size (upright: a phone video's display rotation is applied)")
    return _to_inverse_depth(array, kind)


def write_depth_files(path: str | os.PathLike, depth: np.ndarray | torch.Tensor, *, fmt: str = "npy",
                      per_frame: bool | None = None, png_scale: float | None = None) -> Path:
    """Write a depth video (T, H, W) in one of the formats :func:`read_depth_files` reads.

    Args:
        path: a file (``fmt`` ``npy``/``npz`` per video) or a folder (per-frame files
            ``000000.<ext>``, created).
        depth: (T, H, W) values (disparity-like or depth; written as they are).
        fmt: ``png16``, ``exr``, ``npy`` or ``npz``.
        per_frame: one file per frame in the folder ``path`` (forced for ``png16`` and ``exr``);
            default False for ``npy``/``npz``.
        png_scale: ``png16`` only: values are multiplied by it and rounded to uint16 (default:
            the largest finite value maps to 65535; NaN -> 0).

    Returns:
        The file or folder written.
    """
    from benchmark.fileio import atomic_write_bytes

    if fmt not in WRITE_FORMATS:
        raise did_you_mean(str(fmt), WRITE_FORMATS, "depth file format")
    array = depth.detach().cpu().numpy() if isinstance(depth, torch.Tensor) else np.asarray(depth)
    array = array.astype(np.float32)
    if array.ndim != 3:
        raise StereobenchError(f"depth to write must be (T, H, W), got {array.shape}")
    out = Path(path).expanduser()
    per_frame = True if fmt in ("png16", "exr") else bool(per_frame)
    import io

    def encode(frame: np.ndarray) -> bytes:
        if fmt == "npy":
            buf = io.BytesIO()
            np.save(buf, frame)
            return buf.getvalue()
        if fmt == "npz":
            buf = io.BytesIO()
            np.savez_compressed(buf, depth=frame)
            return buf.getvalue()
        if fmt == "png16":
            import cv2

            scale = png_scale
            if scale is None:
                finite = array[np.isfinite(array)]
                peak = float(finite.max()) if finite.size else 0.0
                scale = 65535.0 / peak if peak > 0 else 1.0
            values = np.nan_to_num(frame * scale, nan=0.0, posinf=65535.0, neginf=0.0)
            ok, data = cv2.imencode(".png", np.clip(np.round(values), 0, 65535).astype(np.uint16))
            if not ok:  # pragma: no cover - OpenCV always encodes uint16 PNG
                raise StereobenchError(f"cannot encode a PNG for {out}")
            return data.tobytes()
        import tempfile

        import OpenEXR

        with tempfile.TemporaryDirectory() as tmp:
            name = os.path.join(tmp, "f.exr")
            header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
            with OpenEXR.File(header, {"Z": np.ascontiguousarray(frame)}) as handle:
                handle.write(name)
            return Path(name).read_bytes()

    if not per_frame:
        atomic_write_bytes(out, encode(array))
        return out
    out.mkdir(parents=True, exist_ok=True)
    ext = {"png16": ".png", "exr": ".exr", "npy": ".npy", "npz": ".npz"}[fmt]
    for i, frame in enumerate(array):
        atomic_write_bytes(out / f"{i:06d}{ext}", encode(frame))
    return out


def files_digest(path: str | os.PathLike) -> str:
    """A cheap identity of depth files: names, sizes and nanosecond mtimes (cache keys)."""
    import hashlib

    files, _ = depth_file_list(path)
    digest = hashlib.sha256()
    for f in files:
        stat = f.stat()
        digest.update(f"{f.name}:{stat.st_size}:{stat.st_mtime_ns}|".encode())
    return digest.hexdigest()[:16]


class FileDepth(DepthModel):
    """``files``: the user's own depth maps (setting ``path``; ``kind`` disparity or depth).

    :meth:`predict` returns the maps of frames ``start .. start + T - 1``; they must have the
    frames' size (a mismatch is a one-line error naming both sizes)."""

    NAME = "files"
    DESCRIPTION = "your own depth or disparity maps (PNG16, EXR, NPY/NPZ per frame or per video)"
    SETTINGS: ClassVar[dict[str, Any]] = {"path": None, "kind": "disparity"}
    LICENCE = ""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        if self._settings["path"] is None:
            raise StereobenchError("depth source 'files' needs the path of the depth maps (a .npy/.npz file or a "
                                   "folder of per-frame files): path=...")
        if self._settings["kind"] not in DEPTH_KINDS:
            raise did_you_mean(str(self._settings["kind"]), DEPTH_KINDS, "depth file kind")
        self.path = Path(self._settings["path"]).expanduser()
        self._digest = files_digest(self.path)  # fails now for missing or unreadable files
        self._settings["path"] = str(self.path)

    @property
    def spec(self) -> dict[str, Any]:
        return {"name": self.NAME, "model": str(self.path), "revision": "files:" + self._digest}

    def frame_count(self) -> int:
        """How many frames the files hold."""
        return count_depth_frames(self.path)

    def predict_source_frames(self, frames: torch.Tensor, indices: list[int]) -> torch.Tensor:
        """The maps of the source frames ``indices`` (one per frame of ``frames``): for a video read on
        another clock than its own (a capped or variable frame rate), where frame k of ``frames`` is
        source frame ``indices[k]``. Float32 (T, H, W) on the frames' device."""
        t, _, h, w = frames.shape
        if len(indices) != t:  # pragma: no cover - a caller bug
            raise RuntimeError(f"{len(indices)} source indices for {t} frames")
        total = self.frame_count()
        if indices and max(indices) >= total:
            raise StereobenchError(f"depth files {str(self.path)!r} hold {total} frames but frame {max(indices)} of "
                                   f"the video was asked for; give one depth map per video frame")
        array = read_depth_files(self.path, kind=self._settings["kind"], size=(h, w), frames=indices)
        return torch.from_numpy(array).to(frames.device)

    def _predict(self, frames: torch.Tensor, start: int) -> torch.Tensor:
        t, _, h, w = frames.shape
        total = self.frame_count()
        if start < 0 or start + t > total:
            raise StereobenchError(f"depth files {str(self.path)!r} hold {total} frames but frames {start}..{start + t - 1} "
                                   f"of the video were asked for; give one depth map per video frame")
        array = read_depth_files(self.path, kind=self._settings["kind"], size=(h, w), frames=slice(start, start + t))
        return torch.from_numpy(array)


__all__ = ["DEPTH_KINDS", "FileDepth", "count_depth_frames", "depth_file_list", "files_digest", "read_depth_files",
           "write_depth_files"]
