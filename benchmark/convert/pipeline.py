"""``convert``: a 2-D video in, a headset-ready stereo video out, streamed and resumable mid-file.

Two passes over the source, both streamed (memory bounded by a window of frames, not by the
video's length):

1. **depth**: decode in batches, run the depth source (a model of :mod:`benchmark.depth`, the
   user's depth files, or any object with ``predict(frames, start=)``), store each batch's raw
   inverse depth (float16, at most ``depth_side`` px on the long side) as a chunk file under
   ``<output>.parts/``; then stream every chunk through the temporal normaliser
   (:class:`benchmark.depth.TemporalNormalizer`: robust percentiles + EMA over a look-ahead
   window, iw3's anti-flicker) into one file of normalised depth. A chunk file is written
   atomically, so an interrupted depth pass keeps its finished chunks and the model never runs
   twice on a frame.
2. **stereo**: the output frames are split into overlapping temporal windows
   (:func:`benchmark.windows.windows_1d`, linear cross-fades); each window is decoded, its depth
   read back, turned into pixels of disparity (``d = D_max (n - convergence)``), forward-warped
   (:func:`benchmark.stereo.warp.forward_warp`) and refined by the method; the blended right
   frames are packed with the left ones into the layout (:mod:`benchmark.layouts`) and encoded
   in fixed-length **segments** (``<output>.parts/seg_NNNNN.mp4``, each a fresh encoder:
   a key frame at its start, written atomically, then recorded in ``journal.json``).

**Resume.** Every window's result is a pure function of its frames and their stored depth, and
the cross-fade of a frame only involves the windows covering it, added in a fixed order. So a
conversion restarted after its last finished segment ``k`` starts at the first window that
covers segment ``k + 1``'s first frame and computes bit-identical frames; the segments are then
joined by remuxing (no re-encoding) with the source's audio. The interrupted and the
uninterrupted conversion produce the same file. The journal holds a key of every setting that
changes the output: parts made with other settings are discarded, never mixed in.

Conventions: the source is the LEFT eye; the right eye is synthesised (``x_R = x_L - d``,
larger = nearer). ``max_disparity`` is the total parallax between the eyes at the nearest point
relative to the zero-parallax plane, in pixels or percent of the width (iw3's ``--divergence``,
default 2 %, which iw3 splits over both eyes; here all of it goes to the right eye).
``convergence`` is the normalised depth placed on the screen (0 = everything in front of it,
1 = everything behind; iw3's default 0.5).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.convert.encode import (
    SegmentWriter,
    SourceInfo,
    check_codec,
    fps_to_float,
    join_segments,
    probe,
    rotate,
)
from benchmark.errors import StereobenchError, did_you_mean
from benchmark.fileio import atomic_write_bytes, atomic_write_json
from benchmark.layouts import NAMINGS, get_layout, layout_size, output_name, pack
from benchmark.timing import PhaseTimer
from benchmark.types import StereoInput, params_hash
from benchmark.windows import ramp_weights, windows_1d

#: Bumped when a change makes old parts unusable (part of the journal key).
PIPELINE_VERSION = 1
AUDIO_MODES = ("auto", "aac", "none")
PHASES = ("decode", "depth", "normalise", "warp", "method", "layout", "encode", "join")


@dataclass
class ConvertOptions:
    """Every setting of a conversion (the CLI's flags; defaults are iw3's where it has one).

    Attributes:
        method: a name of ``methods.registry.METHODS`` (``background-fill`` runs anywhere).
        method_options: the method's options (validated by its ``Options`` model).
        depth: ``files:PATH``, a depth model name of ``benchmark.depth.DEPTH_MODELS``, or an object
            with ``predict(frames (T, 3, H, W), start=) -> (T, H, W)`` relative inverse depth.
        depth_weights: weights of a depth model (local folder or cached hub id).
        depth_kind: what ``files:`` hold, ``disparity`` (larger = nearer) or ``depth``.
        max_disparity: total parallax at the nearest point: ``"2%"`` of the width or ``"24"`` / ``24``
            pixels (iw3's divergence 2.0 = 2 %).
        convergence: normalised depth of the screen plane, 0..1 (iw3's 0.5).
        layout, naming: :mod:`benchmark.layouts` layout and file naming (``iw3``, ``skybox``, ``commedia``).
        codec, crf, preset: ``h264`` (default) or ``h265``, yuv420p; iw3's crf 20 and preset medium.
        frame_packing_sei: write an H.264 frame-packing SEI for SBS/TB layouts (off: some players
            then show the file flat).
        max_fps: cap on the output frame rate (None keeps the source's).
        window, overlap: temporal window of the method and the cross-fade between windows (frames).
        segment_frames: frames per resumable segment.
        depth_batch: frames per depth-model call.
        depth_side: long side (px) at which depth is stored between the passes.
        mask_closing: closing of the hole mask before the method (0 = the warp's own mask;
            M2SVid's protocol uses 11).
        audio: ``auto`` (copy, else AAC), ``aac`` (always re-encode), ``none``.
        device: torch device of the depth model and the method.
        seed: the method's seed.
        normalizer: factory of the temporal normaliser (default
            :class:`benchmark.depth.TemporalNormalizer`); an object with ``push`` / ``flush``.
        normalizer_key: identity of a custom normaliser in the journal key.
    """

    method: str = "background-fill"
    method_options: dict[str, Any] = field(default_factory=dict)
    depth: Any = "depth-anything-v2"
    depth_weights: str | None = None
    depth_kind: str = "disparity"
    max_disparity: str | float = "2%"
    convergence: float = 0.5
    layout: str = "full-sbs"
    naming: str = "iw3"
    codec: str = "h264"
    crf: int = 20
    preset: str = "medium"
    frame_packing_sei: bool = False
    max_fps: float | None = None
    window: int = 16
    overlap: int = 4
    segment_frames: int = 48
    depth_batch: int = 8
    depth_side: int = 768
    mask_closing: int = 0
    audio: str = "auto"
    device: str = "cpu"
    seed: int = 0
    normalizer: Callable[[], Any] | None = None
    normalizer_key: str | None = None


@dataclass
class ConvertResult:
    """What :func:`convert_video` did."""

    output: Path
    frames: int
    fps: Fraction
    size: tuple[int, int]  # (height, width) of the packed output
    audio: str  # "copied", "aac" or "none"
    resumed_segments: int  # segments found finished at the start
    seconds: dict[str, float]

    def fps_by_phase(self) -> dict[str, float]:
        return {k: self.frames / v for k, v in self.seconds.items() if v > 0}


# ----------------------------------------------------------------------------- options

def parse_max_disparity(value: str | float, width: int) -> float:
    """``"2%"`` -> 2 % of ``width`` in pixels; ``"24"``, ``"24px"`` or ``24`` -> 24 pixels."""
    text = str(value).strip().lower()
    try:
        if text.endswith("%"):
            pixels = float(text[:-1]) / 100.0 * width
        else:
            pixels = float(text.removesuffix("px"))
    except ValueError:
        raise StereobenchError(f"--max-disparity {value!r} is not a number; give pixels (24 or 24px) or percent of "
                               "the width (2%)") from None
    if not (math.isfinite(pixels) and pixels >= 0):
        raise StereobenchError(f"--max-disparity must be a finite number >= 0, got {value!r}")
    return pixels


def validate(options: ConvertOptions) -> None:
    """Raise one-line errors for bad settings before any decoding."""
    get_layout(options.layout)
    if options.naming not in NAMINGS:
        raise did_you_mean(str(options.naming), NAMINGS, "file naming")
    check_codec(options.codec, options.preset, options.crf)
    parse_max_disparity(options.max_disparity, 100)
    if not (isinstance(options.convergence, (int, float)) and math.isfinite(options.convergence)):
        raise StereobenchError(f"--convergence must be a number (0..1; 0.5 = mid depth on the screen), got "
                               f"{options.convergence!r}")
    if options.max_fps is not None and not (options.max_fps > 0 and math.isfinite(options.max_fps)):
        raise StereobenchError(f"--max-fps must be a positive number, got {options.max_fps}")
    if options.audio not in AUDIO_MODES:
        raise did_you_mean(str(options.audio), AUDIO_MODES, "audio mode")
    windows_1d(max(options.window, 1), options.window, options.overlap, what="temporal window")
    for name in ("segment_frames", "depth_batch", "depth_side"):
        if int(getattr(options, name)) < 1:
            raise StereobenchError(f"{name.replace('_', '-')} must be at least 1, got {getattr(options, name)}")
    if options.mask_closing < 0:
        raise StereobenchError(f"--mask-closing must be >= 0, got {options.mask_closing}")


def resolve_output(input_path: Path, output: str | os.PathLike, options: ConvertOptions, overwrite: bool) -> Path:
    """The output file: ``output`` itself, or inside a folder the name players recognise."""
    out = Path(output)
    if out.is_dir() or str(output).endswith(os.sep):
        out = out / output_name(input_path, options.layout, options.naming)
    if out.suffix.lower() not in (".mp4", ".m4v", ".mov"):
        raise StereobenchError(f"output {str(out)!r} must end in .mp4 (or .mov/.m4v), or be a folder; e.g. "
                               f"-o {output_name(input_path, options.layout, options.naming)}")
    if out.resolve() == input_path.resolve():
        raise StereobenchError("the output would overwrite the input video; choose another output path")
    if out.exists() and not overwrite:
        raise StereobenchError(f"output {str(out)!r} exists; pass --overwrite to replace it or choose another path")
    return out


def _depth_model(options: ConvertOptions) -> Any:
    depth = options.depth
    if hasattr(depth, "predict"):
        return depth
    from benchmark.depth import load_depth_model

    text = str(depth)
    if text.startswith("files:"):
        path = text[len("files:"):]
        if not path:
            raise StereobenchError("--depth files: needs a path, e.g. --depth files:depth.npy")
        return load_depth_model("files", path=path, kind=options.depth_kind)
    return load_depth_model(text, weights=options.depth_weights, device=options.device)


def _depth_identity(model: Any) -> Any:
    """What identifies the depth source in the journal key: ``identity()`` of a depth model (name,
    weights revision, settings), else the class of an injected object (its output must then not
    change between runs of the same class)."""
    if callable(getattr(model, "identity", None)):
        return model.identity()
    return f"{type(model).__module__}.{type(model).__qualname__}"


def _normalizer(options: ConvertOptions) -> tuple[Any, Any]:
    if options.normalizer is not None:
        return options.normalizer(), options.normalizer_key or "custom"
    from benchmark.depth import TemporalNormalizer

    normalizer = TemporalNormalizer()
    return normalizer, normalizer.settings()


def _load_method(options: ConvertOptions):
    from methods.registry import METHODS

    if options.method not in METHODS:
        raise did_you_mean(options.method, METHODS.names(), "method")
    meta = METHODS.meta(options.method)
    device = torch.device(options.device)
    if getattr(meta, "needs_gpu", False) and device.type == "cpu":
        raise StereobenchError(f"method {options.method!r} needs a GPU; pass --device cuda on a machine with one, "
                               "or choose a baseline such as background-fill")
    method = METHODS[options.method](seed=options.seed, **options.method_options)
    status = method.weights_status()
    if not status.present:
        raise StereobenchError(f"weights of method {options.method!r} are missing; `stereobench weights "
                               f"{options.method}` says how to get them")
    return method.load(device, torch.float32)


# ----------------------------------------------------------------------------- decoding

def _frames(info: SourceInfo, fps: Fraction, timer: PhaseTimer, batch: int,
            sources: list[list[int] | None] | None = None) -> Iterator[torch.Tensor]:
    """Upright float (t, 3, H, W) batches on the output clock (nearest source frame per tick);
    ``sources`` (a list) receives each batch's source frame indices (None when unknown)."""
    from benchmark.video_io import iter_video

    chunks = iter_video(info.path, chunk_frames=batch, fps=fps_to_float(fps), start_time=None)
    while True:
        start = time.perf_counter()
        try:
            chunk = next(chunks)
        except StopIteration:
            return
        frames = rotate(chunk.frames, info.rotation)
        timer.record("decode", time.perf_counter() - start)
        if sources is not None:
            sources.append(None if chunk.source_indices is None else [int(i) for i in chunk.source_indices])
        yield frames


def _store_size(height: int, width: int, side: int) -> tuple[int, int]:
    scale = min(1.0, side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


# ----------------------------------------------------------------------------- the job folder

class Parts:
    """``<output>.parts/``: depth chunks, normalised depth, segments and the journal."""

    def __init__(self, output: Path):
        self.root = output.with_name(output.name + ".parts")
        self.journal_path = self.root / "journal.json"

    def load(self, key: str) -> dict[str, Any] | None:
        try:
            journal = json.loads(self.journal_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        return journal if journal.get("key") == key else None

    def save(self, journal: dict[str, Any]) -> None:
        atomic_write_json(self.journal_path, journal, indent=1)

    def reset(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)

    def raw(self, index: int) -> Path:
        return self.root / f"raw_{index:06d}.npy"

    @property
    def depth(self) -> Path:
        return self.root / "depth.f16"

    def segment(self, index: int) -> Path:
        return self.root / f"seg_{index:05d}.mp4"


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


class _OutputLock:
    """One conversion per output at a time: an exclusive flock on ``.<output name>.lock`` beside it
    (a second `convert` to the same file is refused instead of deleting the first one's parts)."""

    def __init__(self, output: Path):
        self.path = output.with_name(f".{output.name}.lock")
        self.fd: int | None = None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - no flock on this platform: no lock
            return
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:  # a folder we cannot write: the output's own write will say so
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                try:
                    owner = self.path.read_text(encoding="utf-8").strip() or "?"
                except OSError:
                    owner = "?"
                raise StereobenchError(f"{str(output)!r} is being converted by another process (pid {owner}); wait "
                                       f"for it to finish or choose another -o") from None
            except OSError:  # a filesystem without locks: go on unlocked
                os.close(fd)
                return
            try:  # the previous owner may have removed the file between our open and our flock
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.pwrite(fd, str(os.getpid()).encode(), 0)
                self.fd = fd
                return
            os.close(fd)

    def release(self) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = None


# ----------------------------------------------------------------------------- pass 1: depth

def _depth_pass(info: SourceInfo, fps: Fraction, options: ConvertOptions, model: Any, parts: Parts,
                journal: dict[str, Any], timer: PhaseTimer, progress: bool) -> tuple[int, tuple[int, int]]:
    """Raw depth chunks, then normalised depth; returns (frames, stored depth size)."""
    from tqdm.auto import tqdm

    if journal.get("depth_frames") and parts.depth.exists():
        return int(journal["depth_frames"]), tuple(journal["depth_size"])
    size = _store_size(info.height, info.width, options.depth_side)
    estimate = None
    if info.duration_s:
        estimate = max(1, round(info.duration_s * float(fps)))
    bar = tqdm(total=estimate, desc="depth", unit="frame", disable=not progress)
    frames_seen = 0
    chunks = 0
    # Depth files hold one map per SOURCE frame: on a resampled clock (--max-fps, a variable frame
    # rate) each output frame takes the map of the source frame it was decoded from.
    by_source = callable(getattr(model, "predict_source_frames", None))
    sources: list[list[int] | None] = []
    last_source = -1
    try:
        for index, frames in enumerate(_frames(info, fps, timer, options.depth_batch, sources)):
            path = parts.raw(index)
            indices = sources[-1]
            if indices:
                last_source = max(last_source, indices[-1])
            if not path.exists():
                with timer.phase("depth"):
                    if by_source and indices is not None:
                        raw = model.predict_source_frames(frames.to(options.device), indices)
                    else:
                        raw = model.predict(frames.to(options.device), start=frames_seen)
                    raw = raw.to("cpu", torch.float32).reshape(frames.shape[0], 1, *raw.shape[-2:])
                    if tuple(raw.shape[-2:]) != size:
                        raw = F.interpolate(raw.nan_to_num(0.0), size=size, mode="bilinear", align_corners=False,
                                            antialias=True)
                    atomic_write_bytes(path, _npy_bytes(raw[:, 0].to(torch.float16).numpy()))
            frames_seen += frames.shape[0]
            chunks = index + 1
            bar.update(frames.shape[0])
    finally:
        bar.close()
    count = getattr(model, "frame_count", None)
    if by_source and last_source >= 0:
        source_frames = info.frame_count or last_source + 1
        if count() < source_frames or (info.frame_count and count() != info.frame_count):
            raise StereobenchError(f"depth files hold {count()} frames but the video has {source_frames}; give one "
                                   f"depth map per frame of the video")
    elif callable(count) and count() != frames_seen:
        raise StereobenchError(f"depth files hold {count()} frames but the video has {frames_seen} (at "
                               f"{float(fps):g} fps); give one depth map per video frame")
    # Normalise every chunk in order (cheap next to the model), into one float16 file.
    normalizer, _ = _normalizer(options)
    tmp = parts.depth.with_name(parts.depth.name + ".tmp")
    with timer.phase("normalise"), open(tmp, "wb") as handle:
        for index in range(chunks):
            raw = torch.from_numpy(np.load(parts.raw(index)).astype(np.float32))
            ready = normalizer.push(raw)
            handle.write(np.nan_to_num(ready.numpy(), nan=0.0).astype(np.float16).tobytes())
        handle.write(np.nan_to_num(normalizer.flush().numpy(), nan=0.0).astype(np.float16).tobytes())
    written = tmp.stat().st_size // (2 * size[0] * size[1])
    if written != frames_seen:  # pragma: no cover - a normaliser that loses frames is a bug
        raise RuntimeError(f"the normaliser returned {written} frames for {frames_seen}")
    os.replace(tmp, parts.depth)
    journal.update(depth_frames=frames_seen, depth_size=list(size))
    parts.save(journal)
    for index in range(chunks):
        parts.raw(index).unlink(missing_ok=True)
    return frames_seen, size


def _read_depth(parts: Parts, size: tuple[int, int], start: int, stop: int) -> torch.Tensor:
    """Normalised depth of frames [start, stop) as float32 (t, 1, h, w) (plain reads: no mmap in RSS)."""
    plane = size[0] * size[1]
    with open(parts.depth, "rb") as handle:
        handle.seek(start * plane * 2)
        data = np.fromfile(handle, dtype=np.float16, count=(stop - start) * plane)
    return torch.from_numpy(data.astype(np.float32)).reshape(stop - start, 1, *size)


# ----------------------------------------------------------------------------- pass 2: stereo

def _refine_window(left: torch.Tensor, depth: torch.Tensor, method: Any, d_max: float, options: ConvertOptions,
                   fps: Fraction, start: int, timer: PhaseTimer) -> torch.Tensor:
    from benchmark.stereo.disparity import disparity_from_disparity
    from benchmark.stereo.warp import close_hole_mask, forward_warp

    h, w = left.shape[-2:]
    device = torch.device(options.device)
    with timer.phase("warp"):  # on the method's device (a GPU warps there too)
        left, depth = left.to(device), depth.to(device)
        if tuple(depth.shape[-2:]) != (h, w):
            depth = F.interpolate(depth, size=(h, w), mode="bilinear", align_corners=False)
        disparity = disparity_from_disparity(depth, scale=d_max, convergence_px=float(options.convergence) * d_max)
        warped, mask = forward_warp(left, disparity)
        if options.mask_closing > 1:
            mask = close_hole_mask(mask, options.mask_closing)
    inp = StereoInput(left=left, warped=warped, mask=mask, disparity=disparity, clip_id=f"convert/{start}",
                      fps=float(fps), params={"start": start})
    with timer.phase("method"):
        right = method.refine(inp)
    return right.to("cpu", torch.float32)


def convert_video(input_path: str | os.PathLike, output: str | os.PathLike, options: ConvertOptions | None = None,
                  *, overwrite: bool = False, resume: bool = True, keep_parts: bool = False, progress: bool = False,
                  on_segment: Callable[[int, int], None] | None = None, log: Callable[[str], None] | None = None
                  ) -> ConvertResult:
    """Convert a 2-D video into a stereo video (see the module docstring).

    Args:
        input_path: the source video (the left eye).
        output: an ``.mp4`` path, or a folder (the file is named for VR players, e.g.
            ``clip_LRF_Full_SBS.mp4``).
        options: :class:`ConvertOptions` (defaults: background-fill, Depth Anything V2, full SBS).
        overwrite: replace an existing output (otherwise refused).
        resume: continue an interrupted conversion from its parts (False: start over).
        keep_parts: keep ``<output>.parts/`` after a successful join.
        progress: tqdm bars with ETA on stderr.
        on_segment: called as ``on_segment(segment_index, segments_total)`` after each segment.
        log: where notes go (default stderr).

    Returns:
        :class:`ConvertResult`.

    Raises:
        StereobenchError: bad settings or input (one line naming the problem and the fix).
    """
    from tqdm.auto import tqdm

    options = options or ConvertOptions()
    log = log or (lambda message: print(message, file=sys.stderr))
    validate(options)
    info = probe(input_path)
    output = resolve_output(info.path, output, options, overwrite)
    layout = get_layout(options.layout)
    fps = info.fps if options.max_fps is None or info.fps <= options.max_fps else \
        Fraction(options.max_fps).limit_denominator(1001)
    method = _load_method(options)
    model = _depth_model(options)
    licence = getattr(model, "licence", "")
    if isinstance(licence, str) and licence:
        log(f"note: depth source {getattr(model, 'NAME', '') or type(model).__name__}: weights licence {licence}")
    _, normalizer_key = _normalizer(options)
    d_max = parse_max_disparity(options.max_disparity, info.width)
    stat = info.path.stat()
    key = params_hash({
        "version": PIPELINE_VERSION, "input": [str(info.path.resolve()), stat.st_size, stat.st_mtime_ns],
        "fps": str(fps), "depth": _depth_identity(model), "normalizer": normalizer_key,
        "method": options.method, "method_options": options.method_options, "seed": options.seed,
        "options": {f.name: getattr(options, f.name) for f in fields(options)  # (asdict would deep-copy a model)
                    if f.name not in ("method", "method_options", "depth", "normalizer", "normalizer_key", "device",
                                 "depth_weights", "seed", "audio", "naming")},
    })
    parts = Parts(output)
    lock = _OutputLock(output)
    try:
        journal = parts.load(key) if resume else None
        if journal is None:
            if parts.root.exists():
                log(f"note: discarding {str(parts.root)!r} (parts of a conversion with other settings)")
            parts.reset()
            journal = {"key": key, "segments": {}}
            parts.save(journal)
        timer = PhaseTimer(device=options.device)
        total_frames, depth_size = _depth_pass(info, fps, options, model, parts, journal, timer, progress)

        # ---- pass 2: windows -> blended right frames -> layout -> segments
        seg_len = options.segment_frames
        n_segments = math.ceil(total_frames / seg_len)
        done = {int(k) for k, v in journal["segments"].items() if parts.segment(int(k)).exists()}
        first = next((k for k in range(n_segments) if k not in done), n_segments)
        resumed = first
        if first < n_segments:
            if first:
                log(f"resuming {str(output)!r} at segment {first + 1} of {n_segments} (frame {first * seg_len})")
            spans = windows_1d(total_frames, options.window, options.overlap, what="temporal window")
            weights = ramp_weights(spans)
            f0 = first * seg_len
            j = next(i for i, (_, t1) in enumerate(spans) if t1 > f0)
            bar = tqdm(total=total_frames, initial=f0, desc="convert", unit="frame", disable=not progress)
            frames_iter = _frames(info, fps, timer, 8)
            buffer = torch.zeros((0, 3, info.height, info.width))
            buffer_start = 0  # frame index of buffer[0]
            acc_start = spans[j][0]
            acc = torch.zeros((0, 3, info.height, info.width))
            total = torch.zeros((0, 1, 1, 1))
            writer: SegmentWriter | None = None
            packing = layout.packing if options.frame_packing_sei else None
            try:
                for ti in range(j, len(spans)):
                    t0, t1 = spans[ti]
                    # Left frames [t0, t1): drop what is behind, decode what is ahead.
                    if buffer_start < t0:
                        drop = min(t0 - buffer_start, buffer.shape[0])
                        buffer, buffer_start = buffer[drop:], buffer_start + drop
                    while buffer_start + buffer.shape[0] < t1:
                        chunk = next(frames_iter)
                        skip = max(0, t0 - (buffer_start + buffer.shape[0]))
                        if skip and buffer.shape[0] == 0:
                            buffer_start += min(skip, chunk.shape[0])
                            chunk = chunk[skip:]
                        buffer = torch.cat([buffer, chunk])
                    left = buffer[t0 - buffer_start:t1 - buffer_start]
                    depth = _read_depth(parts, depth_size, t0, t1)
                    right = _refine_window(left, depth, method, d_max, options, fps, t0, timer)
                    grow = t1 - (acc_start + acc.shape[0])
                    if grow > 0:
                        acc = torch.cat([acc, acc.new_zeros((grow, *acc.shape[1:]))])
                        total = torch.cat([total, total.new_zeros((grow, 1, 1, 1))])
                    weight = weights[ti].to(torch.float32)[:, None, None, None]
                    acc[t0 - acc_start:t1 - acc_start] += right * weight
                    total[t0 - acc_start:t1 - acc_start] += weight
                    final_end = spans[ti + 1][0] if ti + 1 < len(spans) else total_frames
                    n_final = final_end - acc_start
                    if n_final <= 0:
                        continue
                    blended = acc[:n_final] / total[:n_final]
                    ready_start = acc_start
                    acc, total, acc_start = acc[n_final:], total[n_final:], final_end
                    # Emit frames >= f0, segment by segment.
                    lo = max(f0, ready_start)
                    while lo < final_end:
                        k = lo // seg_len
                        hi = min(final_end, (k + 1) * seg_len)
                        with timer.phase("layout"):
                            packed = pack(layout, buffer[lo - buffer_start:hi - buffer_start],
                                          blended[lo - ready_start:hi - ready_start])
                        with timer.phase("encode"):
                            if writer is None:
                                writer = SegmentWriter(parts.segment(k), fps, options.codec, options.crf, options.preset,
                                                       packing)
                            writer.append(packed)
                            if hi == min(total_frames, (k + 1) * seg_len):
                                writer.close()
                                writer = None
                                journal["segments"][str(k)] = hi - k * seg_len
                                parts.save(journal)
                                if on_segment is not None:
                                    on_segment(k, n_segments)
                        bar.update(hi - lo)
                        lo = hi
            except BaseException:
                if writer is not None:
                    writer.abort()
                raise
            finally:
                bar.close()
                frames_iter.close()
        with timer.phase("join"):
            audio = join_segments([parts.segment(k) for k in range(n_segments)], output, fps,
                                  info.path, options.audio)
        if not keep_parts:
            shutil.rmtree(parts.root, ignore_errors=True)
        return ConvertResult(output=output, frames=total_frames, fps=fps,
                             size=layout_size(layout, info.height, info.width), audio=audio,
                             resumed_segments=resumed, seconds=dict(timer.seconds))
    finally:
        lock.release()
