"""The on-disk store of prepared stereo clips, one layout for Stereo4D, Ego4D and M2SVid-layout
imports, and :class:`PreparedDataset`, the generic loader of such a store.

Layout of a prepared root (everything below is written by :func:`write_prepared_clip`,
:func:`update_manifest` and :func:`write_split`)::

    <root>/
      manifest.json                 {"format": "stereobench-prepared", "version": 1,
                                     "clips": {<clip_id>: <entry>, ...}}   (sorted keys)
      splits/<split>.txt            one clip id per line, in order (e.g. train.txt, test.txt)
      clips/<clip_id>/
        left.mp4                    left view, RGB, libx264rgb crf 0 (bit-exact lossless, see below)
        right.mp4                   right view, same encoding
        disparity.npy               float32 (T, H, W): disparity of the LEFT view in pixels,
                                    x_R = x_L - d (the project convention), NaN = invalid
        meta.json                   the clip's manifest entry (below), written last

A manifest entry (also ``meta.json`` of the clip) is::

    {"clip_id": str, "num_frames": T, "height": H, "width": W, "fps": float,
     "files": {"left.mp4": {"sha256": hex, "bytes": n}, "right.mp4": ..., "disparity.npy": ...},
     "source": {... free JSON: where the clip came from, e.g. the npz, the video, the split ...}}

Why libx264rgb crf 0: H.264 in its RGB, 4:4:4, ``qp 0`` mode is bit-exact lossless (a round
trip through :func:`benchmark.video_io.read_video` returns the same uint8 frames, tested), so a
prepared view is exactly the rendered one; it is about half the size of PNG frames on natural
images and decodes with every FFmpeg (PyAV's wheel included), though some browsers and phone
players refuse the High 4:4:4 profile (these files are data, not previews). The yuv420p
``crf 0`` of :class:`benchmark.video_io.VideoWriter` is not lossless for RGB (chroma is
subsampled), so it is not used here.

Atomicity and resumption: a clip is built in a hidden sibling folder
``clips/.<clip_id>.tmp-<pid>-<token>/`` and renamed into place only when every file, its
checksum and ``meta.json`` are written, so a folder ``clips/<clip_id>/`` is always complete (a
killed preparation leaves only a hidden temporary folder, swept by the next writer once its
process is gone). :func:`clip_is_prepared` says whether a clip is in place;
:func:`update_manifest` merges entries into ``manifest.json`` under a file lock and does not
rewrite an unchanged manifest, so re-running a finished preparation changes no file.

The loader (:class:`PreparedDataset`) takes the manifest's entries and adds any complete clip
folder the manifest lacks (a preparation killed between the rename and the manifest update),
checks that every file of the chosen clips is present with its recorded size, and says exactly
what is missing and where when it is not; ``verify=True`` also checks every SHA-256. The
checksums of the chosen clips are exposed (:attr:`PreparedDataset.checksums`) and fold into
``spec.revision``, which goes into every run manifest and cache key.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import time
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.datasets.base import DatasetSpec, option_bool
from benchmark.errors import StereobenchError, did_you_mean
from benchmark.fileio import (
    atomic_write_json,
    atomic_write_text,
    file_sha256,
    pid_alive,
    sweep_orphaned_temp_files,
)
from benchmark.types import Clip, TimeWindow

__all__ = [
    "FORMAT",
    "VERSION",
    "VIEW_FILES",
    "PreparedDataset",
    "clip_dir",
    "clip_is_prepared",
    "list_splits",
    "read_manifest",
    "read_split",
    "reconcile_manifest",
    "sweep_temp_clip_folders",
    "update_manifest",
    "valid_clip_id",
    "write_lossless_rgb_video",
    "write_prepared_clip",
    "write_split",
]

FORMAT = "stereobench-prepared"
VERSION = 1
MANIFEST = "manifest.json"
CLIPS = "clips"
SPLITS = "splits"
META = "meta.json"
VIEW_FILES = ("left.mp4", "right.mp4", "disparity.npy")

_CLIP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_SPLIT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_TMP = re.compile(r"^\.(?P<clip>.+)\.(tmp|old)-(?P<pid>\d+)-(?P<host>[0-9a-f]{8})[0-9a-f]+$")
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
#: A temporary clip folder of another machine (shards sharing a filesystem) is swept only when older.
FOREIGN_TEMP_AGE_S = 3600.0


def valid_clip_id(clip_id: str) -> str:
    """``clip_id`` if it is a safe folder name (letters, digits, ``_ . -``, not starting with a dot
    or dash), else a one-line :class:`StereobenchError`."""
    if not isinstance(clip_id, str) or not _CLIP_ID.fullmatch(clip_id) or clip_id in (".", ".."):
        raise StereobenchError(f"clip id {clip_id!r} is not a safe folder name; use letters, digits, '_', '.', '-' "
                               f"(starting with a letter or digit)")
    return clip_id


def clip_dir(root: str | os.PathLike, clip_id: str) -> Path:
    """``<root>/clips/<clip_id>``."""
    return Path(root) / CLIPS / valid_clip_id(clip_id)


# ---------------------------------------------------------------------------------------- writing

def write_lossless_rgb_video(path: str | os.PathLike, frames: np.ndarray, fps: float) -> Path:
    """Write uint8 (T, H, W, 3) RGB frames as a bit-exact lossless MP4 (libx264rgb, crf 0,
    ``preset medium``, one thread so the bytes do not depend on the machine's core count).
    Not atomic by itself: callers write into a temporary folder."""
    import av

    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise StereobenchError(f"video frames must be uint8 (T, H, W, 3) with T > 0, got {frames.dtype} "
                               f"{tuple(frames.shape)}")
    container = av.open(str(path), mode="w", format="mp4")
    try:
        stream = container.add_stream("libx264rgb", rate=Fraction(float(fps)).limit_denominator(1001000))
        stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
        stream.pix_fmt = "rgb24"
        stream.thread_count = 1
        stream.options = {"crf": "0", "preset": "medium", "threads": "1"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    return Path(path)


def _check_views(clip_id: str, left, right, disparity, fps) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    left, right, disparity = np.asarray(left), np.asarray(right), np.asarray(disparity)
    for what, video in (("left", left), ("right", right)):
        if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3 or video.shape[0] == 0:
            raise StereobenchError(f"clip {clip_id}: {what} view must be uint8 (T, H, W, 3) with T > 0, got "
                                   f"{video.dtype} {tuple(video.shape)}")
    if right.shape != left.shape:
        raise StereobenchError(f"clip {clip_id}: right view {tuple(right.shape)} does not match left {tuple(left.shape)}")
    if disparity.shape != left.shape[:3] or disparity.dtype.kind != "f":
        raise StereobenchError(f"clip {clip_id}: disparity must be float (T, H, W) = {tuple(left.shape[:3])}, got "
                               f"{disparity.dtype} {tuple(disparity.shape)}")
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        fps = float("nan")
    if not (fps > 0 and np.isfinite(fps)):
        raise StereobenchError(f"clip {clip_id}: fps must be a positive number, got {fps!r}")
    disparity = disparity.astype(np.float32, copy=False)
    disparity = np.where(np.isfinite(disparity), disparity, np.float32(np.nan)).astype(np.float32)
    return left, right, disparity, fps


def _temp_name(clip_id: str, kind: str) -> str:
    return f".{clip_id}.{kind}-{os.getpid()}-{_HOST}{uuid.uuid4().hex[:8]}"


def sweep_temp_clip_folders(root: str | os.PathLike) -> list[Path]:
    """Remove hidden temporary clip folders (``clips/.<id>.tmp-<pid>-<host><token>``) of a killed
    preparation: written on this machine by a process that is gone, or (another machine's, whose
    pid means nothing here) untouched for :data:`FOREIGN_TEMP_AGE_S`. Returns what was removed."""
    folder = Path(root) / CLIPS
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for path in folder.iterdir():
        match = _TMP.match(path.name)
        if not match or not path.is_dir():
            continue
        pid = int(match.group("pid"))
        try:
            old = now - path.stat().st_mtime > FOREIGN_TEMP_AGE_S
        except OSError:
            continue
        if (match.group("host") == _HOST and pid != os.getpid() and not pid_alive(pid)) or old:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StereobenchError(f"cannot read {path} ({type(exc).__name__}: {exc}); delete it and prepare "
                               f"the data again") from None


def _entry_complete(folder: Path, entry: Any) -> bool:
    if not isinstance(entry, dict) or not isinstance(entry.get("files"), dict):
        return False
    for name, info in entry["files"].items():
        path = folder / name
        try:
            if path.stat().st_size != int(info["bytes"]):
                return False
        except (OSError, KeyError, TypeError, ValueError):
            return False
    return True


def clip_is_prepared(root: str | os.PathLike, clip_id: str) -> bool:
    """Whether ``<root>/clips/<clip_id>`` holds a complete clip: ``meta.json`` and every file it
    lists, with the recorded sizes (cheap; :meth:`PreparedDataset.verify` checks the SHA-256)."""
    folder = clip_dir(root, clip_id)
    try:
        entry = json.loads((folder / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return _entry_complete(folder, entry) and entry.get("clip_id") == clip_id


def write_prepared_clip(root: str | os.PathLike, clip_id: str, *, left: np.ndarray, right: np.ndarray,
                        disparity: np.ndarray, fps: float, source: dict, update: bool = True) -> dict:
    """Write one prepared clip atomically and return its manifest entry.

    Args:
        root: the prepared root (created if needed).
        clip_id: folder-safe clip id (see :func:`valid_clip_id`), e.g. ``CMwZrkhQ0ck_130030030``.
        left, right: uint8 (T, H, W, 3) RGB views.
        disparity: float32 (T, H, W) disparity of the left view in pixels, NaN = invalid
            (non-finite values are stored as NaN).
        fps: frame rate of the views.
        source: JSON-serialisable facts about where the clip came from (kept in the entry).
        update: also merge the entry into ``manifest.json`` (:func:`update_manifest`). Each merge
            rewrites the whole manifest, so a preparation of many thousands of clips passes
            False and calls :func:`reconcile_manifest` once after its jobs; the loader finds
            clips the manifest does not list yet through their ``meta.json`` either way.

    Idempotent: when the clip is already in place with the same entry (same bytes, checksums and
    source), nothing on disk changes (the new files are discarded, the old ones keep their
    times). A different existing clip is replaced atomically.
    """
    clip_id = valid_clip_id(clip_id)
    left, right, disparity, fps = _check_views(clip_id, left, right, disparity, fps)
    try:
        json.dumps(source)
    except (TypeError, ValueError) as exc:
        raise StereobenchError(f"clip {clip_id}: source metadata is not JSON-serialisable ({exc})") from None
    root = Path(root)
    clips = root / CLIPS
    clips.mkdir(parents=True, exist_ok=True)
    sweep_temp_clip_folders(root)
    target = clips / clip_id
    tmp = clips / _temp_name(clip_id, "tmp")
    tmp.mkdir()
    try:
        write_lossless_rgb_video(tmp / "left.mp4", left, fps)
        write_lossless_rgb_video(tmp / "right.mp4", right, fps)
        with open(tmp / "disparity.npy", "wb") as handle:
            np.save(handle, np.ascontiguousarray(disparity, dtype=np.float32))
        t, h, w = disparity.shape
        entry = {
            "clip_id": clip_id, "num_frames": int(t), "height": int(h), "width": int(w), "fps": float(fps),
            "files": {name: {"sha256": file_sha256(tmp / name), "bytes": (tmp / name).stat().st_size}
                      for name in VIEW_FILES},
            "source": json.loads(json.dumps(source)),
        }
        old = _read_json(target / META) if target.is_dir() else None
        if old == entry and _entry_complete(target, old):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            for name in VIEW_FILES:
                with open(tmp / name, "rb") as handle:
                    os.fsync(handle.fileno())
            atomic_write_json(tmp / META, entry, indent=1, sort_keys=True)
            if target.exists():
                trash = clips / _temp_name(clip_id, "old")
                os.replace(target, trash)
                os.replace(tmp, target)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if update:
        update_manifest(root, {clip_id: entry})
    return entry


@contextlib.contextmanager
def _manifest_lock(root: Path):
    """An exclusive ``flock`` on ``<root>/.manifest.lock`` (filesystems without flock: no lock;
    the loader then still finds every clip through its ``meta.json``)."""
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".manifest.lock", "a+") as handle:
        locked = False
        try:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                locked = True
            except OSError as exc:
                if exc.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
            yield
        finally:
            if locked:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def read_manifest(root: str | os.PathLike) -> dict | None:
    """The parsed ``manifest.json`` of ``root`` (None when there is none)."""
    data = _read_json(Path(root) / MANIFEST)
    if data is not None and (not isinstance(data, dict) or data.get("format") != FORMAT
                             or not isinstance(data.get("clips"), dict)):
        raise StereobenchError(f"{Path(root) / MANIFEST} is not a stereobench prepared-data manifest; point at a "
                               f"folder made by `stereobench prepare-data`")
    return data


def update_manifest(root: str | os.PathLike, entries: dict[str, dict]) -> None:
    """Merge ``entries`` (clip id -> entry) into ``<root>/manifest.json`` atomically, under a
    file lock (parallel writers and shards on one filesystem). An unchanged manifest is not
    rewritten."""
    root = Path(root)
    for clip_id in entries:
        valid_clip_id(clip_id)
    with _manifest_lock(root):
        data = read_manifest(root) or {"format": FORMAT, "version": VERSION, "clips": {}}
        merged = dict(data["clips"])
        merged.update({k: json.loads(json.dumps(v)) for k, v in entries.items()})
        new = {**data, "format": FORMAT, "version": VERSION, "clips": dict(sorted(merged.items()))}
        if new != data or not (root / MANIFEST).is_file():
            atomic_write_json(root / MANIFEST, new, indent=1, sort_keys=True)


def reconcile_manifest(root: str | os.PathLike, clip_ids: list[str]) -> None:
    """Merge the ``meta.json`` entry of every prepared clip among ``clip_ids`` into the manifest
    (a preparation killed between a clip's rename and its manifest update left it out; a
    re-run skips that clip, so this puts it back). No rewrite when nothing is missing."""
    root = Path(root)
    manifest = read_manifest(root) or {"clips": {}}
    entries = {}
    for clip_id in clip_ids:
        if clip_is_prepared(root, clip_id):
            entry = _read_json(clip_dir(root, clip_id) / META)
            if manifest["clips"].get(clip_id) != entry:
                entries[clip_id] = entry
    if entries:
        update_manifest(root, entries)
    sweep_orphaned_temp_files(root)


def write_split(root: str | os.PathLike, split: str, clip_ids: list[str]) -> None:
    """Write ``<root>/splits/<split>.txt`` (one clip id per line, order kept, duplicates dropped),
    atomically; an unchanged file is not rewritten."""
    if not isinstance(split, str) or not _SPLIT.fullmatch(split):
        raise StereobenchError(f"split name {split!r} must be letters, digits, '_', '.', '-'")
    ids = list(dict.fromkeys(valid_clip_id(c) for c in clip_ids))
    path = Path(root) / SPLITS / f"{split}.txt"
    text = "".join(f"{c}\n" for c in ids)
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except OSError:
        pass
    atomic_write_text(path, text)


def list_splits(root: str | os.PathLike) -> list[str]:
    folder = Path(root) / SPLITS
    return sorted(p.stem for p in folder.glob("*.txt")) if folder.is_dir() else []


def read_split(root: str | os.PathLike, split: str) -> list[str]:
    """The clip ids of ``<root>/splits/<split>.txt`` (blank lines and ``#`` comments skipped)."""
    path = Path(root) / SPLITS / f"{split}.txt"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        available = list_splits(root)
        raise StereobenchError(f"split {split!r} not found: {path} is missing; "
                               + (f"available splits: {', '.join(available)}" if available
                                  else "this folder has no splits (prepare the data again)")) from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


# ---------------------------------------------------------------------------------------- loading

def _shorten(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


class PreparedDataset:
    """A prepared root (layout in the module docstring) as a dataset.

    Options:
        root: the prepared folder.
        split: a split name (``<root>/splits/<split>.txt``), or None for every clip.
        allow_missing: with a split, run the clips that are present and only warn about the
            others (default False: missing clips are an error that lists them).
        verify: check every file's SHA-256 against the manifest when opening (default False:
            presence and size only).

    Subclasses set :attr:`DATASET`, :attr:`DESCRIPTION`, :attr:`LICENCE`, :attr:`URL` and
    :attr:`PREPARE_HINT` (the command that prepares the data, shown when it is missing).
    """

    DATASET = "prepared"
    DESCRIPTION = "prepared stereo clips"
    LICENCE = ""
    URL = ""
    CITATION = ""
    PREPARE_HINT = "stereobench prepare-data <stereo4d|ego4d|m2svid> ... --out <root>"
    ENV_ROOT = ""
    #: `stereobench run --dataset <this>` without --protocol or a config uses this clip protocol.
    DEFAULT_RUN_PROTOCOL = "paper"

    def __init__(self, root: str | os.PathLike | None = None, split: str | None = None,
                 allow_missing: bool = False, verify: bool = False, name: str | None = None):
        if root is None and self.ENV_ROOT and os.environ.get(self.ENV_ROOT):
            root = os.environ[self.ENV_ROOT]
        if root is None:
            env = f" or set {self.ENV_ROOT}" if self.ENV_ROOT else ""
            raise StereobenchError(f"the {self.DATASET} dataset needs its prepared folder: --option root=DIR{env} "
                                   f"(make it with: {self.PREPARE_HINT})")
        self.root = Path(root).expanduser()
        self.split = None if split in (None, "", "all") else str(split)
        self.allow_missing = option_bool(self.DATASET, "allow_missing", allow_missing)
        self.missing: list[str] = []
        self.name = str(name) if name else self.DATASET
        manifest_path = self.root / MANIFEST
        if not self.root.is_dir():
            env = f" or set ${self.ENV_ROOT}" if self.ENV_ROOT else ""
            raise StereobenchError(f"no prepared {self.DATASET} data: folder {self.root} does not exist; prepare it "
                                   f"with: {self.PREPARE_HINT} (prepared elsewhere: pass --option root=DIR{env})")
        manifest = read_manifest(self.root)
        entries: dict[str, dict] = dict(manifest["clips"]) if manifest else {}
        # Complete clip folders the manifest lacks (a preparation killed before its manifest update).
        clips_folder = self.root / CLIPS
        if clips_folder.is_dir():
            for folder in sorted(clips_folder.iterdir()):
                if folder.name.startswith(".") or folder.name in entries or not folder.is_dir():
                    continue
                entry = _read_json(folder / META) if (folder / META).is_file() else None
                if isinstance(entry, dict) and entry.get("clip_id") == folder.name:
                    entries[folder.name] = entry
        if not entries and self.split is None:
            raise StereobenchError(f"no prepared {self.DATASET} clips in {self.root} ({manifest_path} "
                                   f"{'lists none' if manifest else 'is missing'}, {clips_folder} holds no clip); "
                                   f"prepare them with: {self.PREPARE_HINT}")
        wanted = self._split_ids(self.split) if self.split is not None else sorted(entries)
        present, missing, broken = [], [], []
        for clip_id in wanted:
            entry = entries.get(clip_id)
            folder = clips_folder / clip_id
            if entry is None or not folder.is_dir():
                missing.append(clip_id)
            elif not _entry_complete(folder, entry):
                broken.append(clip_id)
            else:
                present.append(clip_id)
        if broken:
            raise StereobenchError(
                f"{len(broken)} prepared {self.DATASET} clip(s) in {clips_folder} have missing or truncated files: "
                f"{_shorten(broken)}; delete those folders and prepare them again ({self.PREPARE_HINT})")
        if missing and not (self.allow_missing and present):
            where = f"split {self.split!r} ({self.root / SPLITS / (self.split or '')}.txt)" if self.split else "the manifest"
            raise StereobenchError(
                f"{len(missing)} of {len(wanted)} clips of {where} are not prepared (expected under {clips_folder}/"
                f"<clip id>/ with {', '.join(VIEW_FILES)}): {_shorten(missing)}; prepare them with: "
                f"{self.PREPARE_HINT}" + (f", or pass --option allow_missing=true to use the {len(present)} present"
                                           if present else ""))
        self.missing = missing
        self._entries = {clip_id: entries[clip_id] for clip_id in present}
        if verify and option_bool(self.DATASET, "verify", verify):
            self.verify()
        digest = hashlib.sha256()
        for clip_id in present:
            for file_name, info in sorted(self._entries[clip_id]["files"].items()):
                digest.update(f"{clip_id}/{file_name}:{info['sha256']}\n".encode())
        self.spec = DatasetSpec(
            name=self.name, description=self.DESCRIPTION + (f" (split {self.split})" if self.split else ""),
            licence=self.LICENCE, revision="sha256:" + digest.hexdigest()[:16], url=self.URL, citation=self.CITATION,
            has_ground_truth=True, default_protocol="paper")

    # -- splits --------------------------------------------------------------------------------
    def _split_ids(self, split: str) -> list[str]:
        """Clip ids of ``split``; subclasses may compute splits (e.g. from a shipped id list)."""
        return read_split(self.root, split)

    @property
    def splits(self) -> list[str]:
        """Split names available under ``<root>/splits``."""
        return list_splits(self.root)

    # -- checksums -----------------------------------------------------------------------------
    @property
    def checksums(self) -> dict[str, dict[str, str]]:
        """clip id -> file name -> SHA-256 of the chosen clips (for the run manifest)."""
        return {clip_id: {name: info["sha256"] for name, info in sorted(entry["files"].items())}
                for clip_id, entry in self._entries.items()}

    def provenance(self) -> dict[str, Any]:
        """What a run manifest records about this dataset: root, split, revision, per-clip checksums
        and source facts (e.g. which npz a Stereo4D clip came from), and missing clips."""
        return {"root": str(self.root), "split": self.split, "revision": self.spec.revision,
                "checksums": self.checksums, "missing": list(self.missing),
                "sources": {c: self._source_summary(e.get("source", {})) for c, e in self._entries.items()}}

    @staticmethod
    def _source_summary(source: dict) -> dict:
        """The source facts small enough for a run manifest (scalars and short lists; camera
        poses and other per-frame arrays stay in the clip's meta.json)."""
        return {k: v for k, v in source.items()
                if not isinstance(v, (list, dict)) or (isinstance(v, list) and len(v) <= 8
                                                       and all(not isinstance(x, (list, dict)) for x in v))}

    def verify(self) -> None:
        """Check the SHA-256 of every file of the chosen clips; raise naming the first mismatch."""
        for clip_id, entry in self._entries.items():
            for file_name, info in entry["files"].items():
                path = self.root / CLIPS / clip_id / file_name
                if file_sha256(path) != info["sha256"]:
                    raise StereobenchError(f"{path} does not match its checksum in {self.root / MANIFEST}; the file "
                                           f"changed or is corrupt: prepare clip {clip_id} again")

    def entry(self, name: str) -> dict:
        if name not in self._entries:
            raise did_you_mean(name, self._entries, f"clip of {self.root}")
        return self._entries[name]

    # -- the dataset API -----------------------------------------------------------------------
    def clip_names(self) -> list[str]:
        return list(self._entries)

    def load_clip(self, name: str, window: TimeWindow | None = None) -> Clip:
        """Clip ``name`` at its prepared size and frame rate; with a protocol's ``window`` only the
        frames it keeps are decoded (and only those disparity frames read, memory-mapped)."""
        import torch

        from benchmark.video_io import read_video

        entry = self.entry(name)
        folder = self.root / CLIPS / name
        if window is None:
            read = {"fps": None, "max_frames": None, "start_time": 0.0}
        else:
            read = {"fps": window.fps, "max_frames": window.num_frames, "start_time": window.start_time}
        left = read_video(folder / "left.mp4", **read)
        right = read_video(folder / "right.mp4", **read)
        if right.frames.shape != left.frames.shape:
            raise StereobenchError(f"{folder / 'right.mp4'} has shape {tuple(right.frames.shape)} but left.mp4 has "
                                   f"{tuple(left.frames.shape)}; prepare clip {name} again")
        try:
            array = np.load(folder / "disparity.npy", mmap_mode="r")
        except (OSError, ValueError, EOFError) as exc:
            raise StereobenchError(f"cannot read {folder / 'disparity.npy'} ({type(exc).__name__}: {exc}); "
                                   f"prepare clip {name} again") from None
        if left.source_indices is not None:
            indices = left.source_indices.numpy()
        else:  # pragma: no cover - MP4 frames always carry indices when read without a seek
            indices = np.arange(left.frames.shape[0])
        if array.ndim != 3 or array.shape[1:] != tuple(left.frames.shape[-2:]) or indices.max() >= array.shape[0]:
            raise StereobenchError(f"{folder / 'disparity.npy'} has shape {array.shape}, which does not match the "
                                   f"views ({int(entry['num_frames'])} frames of {tuple(left.frames.shape[-2:])}); "
                                   f"prepare clip {name} again")
        disparity = torch.from_numpy(np.ascontiguousarray(array[indices], dtype=np.float32))[:, None]
        metadata = {"root": str(self.root), "source": entry.get("source", {}),
                    "files": {k: v["sha256"] for k, v in entry["files"].items()}}
        if window is not None:
            metadata["source_frame_indices"] = indices.tolist()
        return Clip(clip_id=f"{self.name}/{name}", left=left.frames, fps=left.fps, right=right.frames,
                    disparity=disparity, timestamps=left.timestamps, metadata=metadata)
