"""Building :class:`StereoInput` objects and caching them on disk by content hash.

:func:`load_input` is the one way to get a clip's input: give it the dataset, an
:class:`~benchmark.stereo.recipe.InputRecipe` from :func:`~benchmark.stereo.recipe.make_recipe`
and a :class:`StereoInputCache` (or None to build without caching); it returns the
StereoInput and the ground-truth right view (None without one). On a miss it loads the clip at its
native size, applies the recipe's protocol, takes disparity from the recipe's depth source,
forward-warps (``shared`` or a method's native warp), closes the hole mask with the protocol's
closing and sets warped pixels under the closed mask to 0 (:func:`build_input`).

:class:`StereoInputCache` stores one entry per recipe key in ``<root>/<key[:2]>/<key>/``:
``tensors.safetensors`` (left, warped, mask, disparity and, when the clip has one, the
ground-truth right view ``gt_right``) and ``meta.json`` (clip id, fps, the recipe's params, the
BLAKE2b checksum of the tensor file), written last. An entry is built in a temporary folder
next to it, ``.<key>.tmp-<host>-<pid>-<random>``, and moved into place with ``os.replace``, so
readers never see a half-written entry and two processes building the same key at once are both
safe (the second finds the first's entry). An entry with a missing or unreadable ``meta.json``,
a checksum mismatch, or tensors that fail to load or validate is treated as absent and rebuilt.

Debris: a process killed while writing leaves its temporary folder behind. The folder's name
carries the writer's host and pid, so the next :class:`StereoInputCache` opened on the same root
(once per process) removes those whose writer is dead on this host; a live writer's folder, and
one from another host (whose pids we cannot check), are kept.

A failed write (disk full, no permission) raises :class:`CacheWriteError`, a
:class:`~benchmark.errors.StereobenchError` that is also an :class:`OSError`, naming the cache
folder and the cause; the temporary folder is removed first and no partial entry is left. It is
never swallowed: callers stop on it (the same command resumes once space is freed).
"""

from __future__ import annotations

import dataclasses
import errno as errno_codes
import hashlib
import json
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmark.errors import StereobenchError
from benchmark.fileio import pid_alive
from benchmark.stereo.protocol import apply_protocol, load_windowed_clip
from benchmark.stereo.recipe import STAGE_VERSION, InputRecipe
from benchmark.stereo.warp import close_hole_mask
from benchmark.types import Clip, StereoInput

TENSORS_FILE = "tensors.safetensors"
META_FILE = "meta.json"

#: Temporary folders (``tmp``: an entry being written; ``old``: a replaced entry being removed).
#: The host has no ``-`` (see :func:`_owner_tag`), so the name parses unambiguously.
_DEBRIS = re.compile(r"^\.(?P<key>[0-9a-f]+)\.(?P<kind>tmp|old)-(?P<host>[^-]+)-(?P<pid>\d+)-[0-9a-f]{8}$")
#: Names written before temp folders carried the host (``.<key>.tmp-<pid>-<random>``): their
#: owner cannot be told apart from another host's, so they are only removed once a day old.
_LEGACY_DEBRIS = re.compile(r"^\.[0-9a-f]+\.(tmp|old)-\d+-[0-9a-f]{8}$")
_LEGACY_MAX_AGE_S = 24 * 3600.0


class CacheWriteError(StereobenchError, OSError):
    """Storing a cache entry failed (disk full, permissions, the root is a file).

    Both a :class:`StereobenchError` (the CLI prints it as one ``error:`` line, exit 2) and an
    :class:`OSError` (``errno``, ``strerror`` and ``filename`` of the cause are kept), so a caller
    can stop on either. ``str()`` is the one-line message naming the cache folder and the cause.
    """

    def __init__(self, message: str, cause: OSError | None = None, root: Path | None = None):
        super().__init__(message)
        self.message = message
        self.root = root
        if cause is not None:
            self.errno, self.strerror, self.filename = cause.errno, cause.strerror, cause.filename

    def __str__(self) -> str:
        return self.message


class MissingDepthError(StereobenchError):
    """The clip has no disparity for the recipe's depth source (e.g. ``gt`` without ground truth).

    Training catches it to skip such clips; everyone else shows it to the user."""


def default_cache_root() -> Path:
    """``$STEREOBENCH_CACHE`` or ``<repo>/cache/stereo_inputs``."""
    env = os.environ.get("STEREOBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "cache" / "stereo_inputs"


def _check_clip(clip: Clip) -> None:
    left, disparity = clip.left, clip.disparity
    if not isinstance(left, torch.Tensor) or left.dim() != 4 or left.shape[1] != 3 or left.shape[0] == 0:
        raise StereobenchError(
            f"clip {clip.clip_id!r}: left video must be (T, 3, H, W) with T > 0, got {tuple(getattr(left, 'shape', ()))}")
    if disparity is None:
        raise MissingDepthError(
            f"clip {clip.clip_id!r} has no disparity; name a depth source (--depth depth-anything-v2, or --depth "
            f"files with <name>_depth.npy beside the video) or give ground-truth disparity (a folder dataset's "
            f"<name>_disparity.npy, (T, H, W) pixels of the left view)")
    t, _, h, w = left.shape
    if disparity.dim() != 4 or disparity.shape[1] != 1:
        raise StereobenchError(f"clip {clip.clip_id!r}: disparity must be (T, 1, H, W), got {tuple(disparity.shape)}")
    if disparity.shape[0] != t:
        raise StereobenchError(
            f"clip {clip.clip_id!r}: disparity has {disparity.shape[0]} frames but the left video has {t}; "
            "give one disparity map per frame")
    if tuple(disparity.shape[-2:]) != (h, w):
        raise StereobenchError(
            f"clip {clip.clip_id!r}: disparity is {disparity.shape[-2]}x{disparity.shape[-1]} but the left video is "
            f"{h}x{w}; resize the disparity to the video (scaling its values by the width ratio)")
    if not bool(torch.isfinite(disparity).any()):
        raise StereobenchError(
            f"clip {clip.clip_id!r}: disparity has no finite value (all NaN/inf); check the depth or disparity source")
    if clip.right is not None and clip.right.shape != left.shape:
        raise StereobenchError(
            f"clip {clip.clip_id!r}: right view {tuple(clip.right.shape)} does not match left {tuple(left.shape)}")
    if not bool(torch.isfinite(left).all()):
        raise StereobenchError(f"clip {clip.clip_id!r}: left video holds NaN or inf values; check the decoder")


def _depth_disparity(clip: Clip, recipe: InputRecipe, depth_cache: Any = None,
                     timings: dict[str, float] | None = None) -> torch.Tensor | None:
    """The disparity the recipe's depth source gives for a protocol-processed clip.

    ``gt``: the clip's own ground-truth disparity, unchanged (None when it has none; the clip
    check then names the problem). ``files`` and depth models:
    :func:`benchmark.stereo.depth_stage.recipe_disparity` (normalised, scaled by D_max).
    """
    if recipe.depth == "gt":
        return clip.disparity
    from benchmark.stereo.depth_stage import recipe_disparity

    return recipe_disparity(clip, recipe, depth_cache, timings)


def build_stereo_input(clip: Clip, recipe: InputRecipe, depth_cache: Any = None,
                       timings: dict[str, float] | None = None) -> StereoInput:
    """Warp a protocol-processed clip into the :class:`StereoInput` every method consumes.

    Args:
        clip: clip after :func:`apply_protocol` (the recipe's protocol), with disparity when the
            recipe's depth source is ``gt`` (``files``: the depth files' carrier from
            :func:`~benchmark.stereo.depth_stage.attach_depth_files`).
        recipe: the input recipe (its protocol's ``hole_mask_closing`` is applied here, its
            ``params()`` become the input's params).
        depth_cache: a :class:`~benchmark.stereo.depth_stage.DepthCache` for depth models' raw
            output, or None to compute it.
        timings: ``"depth"`` accumulates the seconds spent on depth.

    Returns:
        StereoInput: left and warped float32 (T, 3, H, W) in [0, 1] (warped 0 under the mask),
        mask bool (T, 1, H, W) after the closing, disparity float32 (T, 1, H, W) pixels.

    Raises:
        StereobenchError: missing disparity (:class:`MissingDepthError`), mismatched frame counts
            or sizes, all-invalid disparity, unknown warp name.
    """
    from benchmark.stereo import get_warp

    warp_fn = get_warp(recipe.warp)  # an unknown name fails before any work
    disparity = _depth_disparity(clip, recipe, depth_cache, timings)
    if disparity is not clip.disparity:
        clip = dataclasses.replace(clip, disparity=disparity)
    _check_clip(clip)
    left = clip.left.to(torch.float32).contiguous()
    disparity = clip.disparity.to(torch.float32).contiguous()
    warped, hole = warp_fn(left, disparity)
    mask = close_hole_mask(hole, recipe.hole_mask_closing)
    warped = warped.to(torch.float32).masked_fill(mask, 0.0).clamp_(0.0, 1.0)
    filled = clip.disparity_filled.bool().contiguous() if clip.disparity_filled is not None else None
    inp = StereoInput(left=left, warped=warped.contiguous(), mask=mask.contiguous(), disparity=disparity,
                      clip_id=clip.clip_id, fps=float(clip.fps), params=recipe.params(), disparity_filled=filled)
    inp.validate()
    return inp


def build_input(recipe: InputRecipe, clip: Clip, depth_cache: Any = None,
                timings: dict[str, float] | None = None) -> tuple[StereoInput, torch.Tensor | None]:
    """(StereoInput, ground-truth right view or None) for a clip at its native size.

    The recipe's protocol is applied first, unless ``clip.metadata["protocol"]`` says it already
    went through exactly that protocol (for the ``files`` depth source the clip's depth files are
    read at native size first and go through the protocol with the video). The ground truth is
    kept beside the input, never inside it: methods only ever see the StereoInput.
    ``depth_cache`` / ``timings``: see :func:`build_stereo_input`.
    """
    if clip.metadata.get("protocol") != recipe.protocol.to_dict():
        if recipe.depth == "files":
            from benchmark.stereo.depth_stage import attach_depth_files

            t0 = time.perf_counter()
            clip = attach_depth_files(clip, recipe)
            if timings is not None:
                timings["depth"] = timings.get("depth", 0.0) + time.perf_counter() - t0
        clip = apply_protocol(clip, recipe.protocol)
    inp = build_stereo_input(clip, recipe, depth_cache, timings)
    gt_right = clip.right.to(torch.float32).contiguous() if clip.right is not None else None
    return inp, gt_right


def _checksum(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file (inside an entry's private temporary folder).

    The one place entry files hit the disk, so a full disk surfaces here as an OSError (tests
    patch it to simulate one). No fsync: a torn file fails the checksum and is rebuilt.
    """
    with open(path, "xb") as handle:
        handle.write(data)


def _owner_tag() -> str:
    """``<host>-<pid>`` of this process, for temporary names (host without ``-`` so names parse)."""
    host = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname() or "host")[:64] or "host"
    return f"{host}-{os.getpid()}"


class StereoInputCache:
    """On-disk cache of StereoInputs (plus the ground-truth right view), keyed by recipe.

    Args:
        root: cache folder; default ``$STEREOBENCH_CACHE`` or ``<repo>/cache/stereo_inputs``.
        sweep: remove debris of dead writers (see the module docstring) the first time this
            process opens ``root``.
        depth_device: device depth models run on when a depth entry is built (the run's
            ``--device``; ``$STEREOBENCH_DEPTH_DEVICE`` overrides it; None = cuda when available).

    Attributes:
        hits: entries served from disk by :meth:`get_or_build` on this object.
        builds: entries built (and stored) by :meth:`get_or_build` on this object.
        timings: seconds spent by builds on this object, by phase (``"depth"``: depth files or a
            depth model, cached or not).
        depth_cache: the raw depth-model cache below this one (``<root>/depth``).
    """

    _swept: set[str] = set()  # roots this process already swept

    def __init__(self, root: str | os.PathLike | None = None, sweep: bool = True, depth_device: Any = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_root()
        self.hits = 0
        self.builds = 0
        self.timings: dict[str, float] = {}
        from benchmark.stereo.depth_stage import DepthCache

        self.depth_cache = DepthCache(self.root / "depth", device=depth_device)
        if sweep and str(self.root) not in StereoInputCache._swept:
            StereoInputCache._swept.add(str(self.root))
            self.sweep_orphans()

    # -- keys and paths -------------------------------------------------------------------
    @staticmethod
    def key(recipe: InputRecipe) -> str:
        """Cache key of a recipe (:meth:`InputRecipe.key`)."""
        return recipe.key()

    def entry_dir(self, key: str) -> Path:
        return self.root / key[:2] / key

    # -- debris -----------------------------------------------------------------------------
    def sweep_orphans(self) -> list[Path]:
        """Remove temporary folders whose writer is dead; returns what was removed.

        A folder named for this host and a pid that no longer exists is debris of a killed
        writer. Folders of live pids (a writer at work) and of other hosts are kept; old-style
        names without a host are removed only when older than a day. Best effort: errors while
        sweeping (a read-only cache) are ignored.
        """
        removed: list[Path] = []
        host = _owner_tag().rsplit("-", 1)[0]
        now = time.time()
        try:
            shards = [p for p in self.root.iterdir() if len(p.name) == 2 and p.is_dir()]
        except OSError:
            return removed
        for shard in shards:
            try:
                names = [p for p in shard.iterdir() if p.name.startswith(".")]
            except OSError:
                continue
            for path in names:
                match = _DEBRIS.match(path.name)
                if match:
                    pid = int(match["pid"])
                    dead = match["host"] == host and 0 < pid != os.getpid() and not pid_alive(pid)
                elif _LEGACY_DEBRIS.match(path.name):
                    try:
                        dead = now - path.stat().st_mtime > _LEGACY_MAX_AGE_S
                    except OSError:
                        dead = False
                else:
                    dead = False
                if dead:
                    shutil.rmtree(path, ignore_errors=True)
                    if not path.exists():
                        removed.append(path)
        return removed

    def ensure_writable(self) -> None:
        """Fail now, before any work, if entries cannot be written under the root.

        Raises:
            CacheWriteError: the root is a file, or cannot be created or written.
        """
        if self.root.exists() and not self.root.is_dir():
            raise CacheWriteError(f"cache folder {self.root} is a file, not a folder; give a folder with --cache "
                                  f"(or $STEREOBENCH_CACHE)", root=self.root)
        probe = self.root / f".write-test-{_owner_tag()}-{uuid.uuid4().hex[:8]}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            _write_file(probe, b"ok")
        except OSError as exc:
            raise self._write_error(exc) from None
        finally:
            try:
                probe.unlink()
            except OSError:
                pass

    def _write_error(self, exc: OSError) -> CacheWriteError:
        cause = exc.strerror or str(exc)
        if exc.errno in (errno_codes.ENOSPC, errno_codes.EDQUOT):
            fix = ("free space there or point --cache / $STEREOBENCH_CACHE at another disk, then rerun the same "
                   "command (completed results are kept)")
        elif exc.errno in (errno_codes.EACCES, errno_codes.EPERM, errno_codes.EROFS):
            fix = "fix its permissions or choose a writable folder with --cache / $STEREOBENCH_CACHE"
        elif exc.errno in (errno_codes.ENOTDIR, errno_codes.EEXIST):
            fix = "a file is in the way of the cache folder; give a folder with --cache / $STEREOBENCH_CACHE"
        else:
            fix = "check the disk and the folder, or choose another one with --cache / $STEREOBENCH_CACHE"
        return CacheWriteError(f"cannot write the stereo-input cache {self.root}: {cause}; {fix}", cause=exc,
                               root=self.root)

    # -- reading ----------------------------------------------------------------------------
    def load(self, key: str) -> tuple[StereoInput, torch.Tensor | None] | None:
        """The entry for ``key``, or None if it is absent, partial or corrupt."""
        entry = self.entry_dir(key)
        meta_path, tensors_path = entry / META_FILE, entry / TENSORS_FILE
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("stage_version") != STAGE_VERSION or meta.get("key") != key:
                return None
            if _checksum(tensors_path) != meta["checksum"]:
                return None
            from safetensors.torch import load_file

            tensors = load_file(str(tensors_path))
            inp = StereoInput(left=tensors["left"], warped=tensors["warped"], mask=tensors["mask"],
                              disparity=tensors["disparity"], clip_id=meta["clip_id"], fps=float(meta["fps"]),
                              params=meta["params"], disparity_filled=tensors.get("disparity_filled"))
            inp.validate()
            gt_right = tensors.get("gt_right")
            if gt_right is not None and gt_right.shape != inp.left.shape:
                return None
            return inp, gt_right
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, json.JSONDecodeError):
            return None
        except Exception:  # safetensors raises its own error types on damaged files
            return None

    def __contains__(self, key: str) -> bool:
        return self.load(key) is not None

    # -- writing ----------------------------------------------------------------------------
    def store(self, key: str, inp: StereoInput, gt_right: torch.Tensor | None = None) -> Path:
        """Write an entry atomically (private temporary folder, then ``os.replace``).

        Raises:
            CacheWriteError: the disk is full or the folder not writable; nothing is left behind
                (no temporary folder, no partial entry; an existing valid entry is untouched).
        """
        from safetensors.torch import save

        inp.validate()
        entry = self.entry_dir(key)
        tmp: Path | None = None
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            tmp = entry.parent / f".{key}.tmp-{_owner_tag()}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
            tensors = {"left": inp.left, "warped": inp.warped, "mask": inp.mask, "disparity": inp.disparity}
            if inp.disparity_filled is not None:
                tensors["disparity_filled"] = inp.disparity_filled
            if gt_right is not None:
                tensors["gt_right"] = gt_right.to(torch.float32)
            tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
            # Serialise in memory and write with Python I/O: safetensors' own file writer
            # reports a full disk as its own error type, which would hide the OSError.
            blob = save(tensors)
            _write_file(tmp / TENSORS_FILE, blob)
            meta = {"key": key, "stage_version": STAGE_VERSION, "clip_id": inp.clip_id, "fps": inp.fps,
                    "params": inp.params, "has_gt_right": gt_right is not None,
                    "checksum": hashlib.blake2b(blob, digest_size=20).hexdigest()}
            del blob
            meta_tmp = tmp / (META_FILE + ".tmp")
            _write_file(meta_tmp, json.dumps(meta, indent=1, sort_keys=True, default=str).encode())
            os.replace(meta_tmp, tmp / META_FILE)  # the metadata file appears last
            if entry.exists() and self.load(key) is not None:
                return entry  # another process stored a valid entry meanwhile: keep it
            if entry.exists():
                # A corrupt or stale entry: move it aside first (os.replace cannot replace a
                # non-empty directory), then remove it.
                trash = entry.parent / f".{key}.old-{_owner_tag()}-{uuid.uuid4().hex[:8]}"
                try:
                    os.replace(entry, trash)
                    shutil.rmtree(trash, ignore_errors=True)
                except OSError:
                    pass
            try:
                os.replace(tmp, entry)
            except OSError:
                # Another process put a (valid) entry there first; keep theirs.
                if self.load(key) is None:
                    raise
        except CacheWriteError:
            raise
        except OSError as exc:
            raise self._write_error(exc) from exc
        finally:
            if tmp is not None and tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return entry

    def get_or_build(self, recipe: InputRecipe,
                     clip_loader: Callable[[], Clip]) -> tuple[StereoInput, torch.Tensor | None]:
        """The cached StereoInput and ground-truth right view for a recipe, building them if needed.

        Args:
            recipe: from :func:`~benchmark.stereo.recipe.make_recipe`.
            clip_loader: returns the clip at its native size (called only on a miss). A clip
                whose ``metadata["protocol"]`` already equals the recipe's protocol is not
                processed twice.

        Returns:
            (StereoInput, gt_right or None); counts :attr:`hits` and :attr:`builds`.

        Raises:
            StereobenchError: a bad clip (see :func:`build_stereo_input`); CacheWriteError when the
            entry cannot be stored.
        """
        from benchmark.stereo import get_warp

        get_warp(recipe.warp)  # unknown names fail before any work
        key = recipe.key()
        hit = self.load(key)
        if hit is not None:
            self.hits += 1
            return hit
        inp, gt_right = build_input(recipe, clip_loader(), self.depth_cache, self.timings)
        self.store(key, inp, gt_right)
        self.builds += 1
        return inp, gt_right


def load_input(dataset: Any, recipe: InputRecipe,
               cache: StereoInputCache | None = None) -> tuple[StereoInput, torch.Tensor | None]:
    """A clip's StereoInput and ground-truth right view, through the cache.

    Args:
        dataset: the dataset object the recipe was made from (its ``load_clip`` is called on a
            miss).
        recipe: from :func:`~benchmark.stereo.recipe.make_recipe` with this dataset.
        cache: the on-disk cache; None builds without reading or writing any cache.

    Returns:
        (StereoInput, gt_right): the input (left, warped, mask float32/bool at the protocol's size,
        params = ``recipe.params()``) and the ground-truth right view float32 (T, 3, H, W) in
        [0, 1], or None when the dataset has none.

    Raises:
        StereobenchError: the recipe belongs to another dataset or revision, or the clip is bad;
        :class:`MissingDepthError` when the depth source gives no disparity; CacheWriteError
        when the entry cannot be stored.
    """
    spec = dataset.spec
    if recipe.dataset != spec.name or recipe.dataset_revision != (spec.revision or ""):
        raise StereobenchError(
            f"input recipe for dataset {recipe.dataset!r} (revision {recipe.dataset_revision!r}) was given dataset "
            f"{spec.name!r} (revision {spec.revision!r}); make the recipe from this dataset with make_recipe")

    def load_clip() -> Clip:
        # Only the protocol's time window is decoded where the dataset supports it (folder).
        return load_windowed_clip(dataset, recipe.clip, recipe.protocol)

    if cache is None:
        return build_input(recipe, load_clip())
    return cache.get_or_build(recipe, load_clip)


__all__ = ["CacheWriteError", "MissingDepthError", "STAGE_VERSION", "StereoInputCache", "build_input",
           "build_stereo_input", "default_cache_root", "load_input"]
