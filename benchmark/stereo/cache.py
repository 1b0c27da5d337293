"""Building :class:`StereoInput` objects and caching them on disk by content hash.

:func:`build_stereo_input` runs the shared stage on a clip that already went through its
protocol (:func:`benchmark.stereo.protocol.apply_protocol`) and carries disparity: forward warp
(``shared`` or a method's native warp), then the protocol's hole-mask closing
(``protocol.hole_mask_closing``), then warped pixels under the closed mask are set to 0.

:class:`StereoInputCache` stores one entry per key in ``<root>/<key[:2]>/<key>/``:
``tensors.safetensors`` (left, warped, mask, disparity and, when the clip has one, the
ground-truth right view ``gt_right``) and ``meta.json`` (clip id, fps, parameters, the
BLAKE2b checksum of the tensor file), written last. An entry is built in a temporary directory
next to it and moved into place with ``os.replace``, so readers never see a half-written entry and
two processes building the same key at once are both safe (the second finds the first's entry).
An entry with a missing or unreadable ``meta.json``, a checksum mismatch, or tensors that fail to
load or validate is treated as absent and rebuilt.

The key is a hash of the clip identity (dataset name, clip id, dataset revision, ...), every
protocol field, the warp name and :data:`STAGE_VERSION` (bump it whenever the stage's output
changes, so stale entries are never reused).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmark.datasets.base import Clip
from benchmark.errors import StereobenchError
from benchmark.stereo.input import StereoInput, params_hash
from benchmark.stereo.protocol import ClipProtocol, apply_protocol, get_protocol
from benchmark.stereo.warp import close_hole_mask

#: Version of the shared stage's output; part of every cache key.
STAGE_VERSION = "stereo-stage-2"  # 2: shared warp holes = front-surface coverage < 0.5

TENSORS_FILE = "tensors.safetensors"
META_FILE = "meta.json"


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
        raise StereobenchError(
            f"clip {clip.clip_id!r} has no disparity; give a dataset with ground-truth disparity (for a folder "
            f"dataset: <name>_disparity.npy, (T, H, W) pixels of the left view, beside the video)")
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


def build_stereo_input(clip: Clip, protocol: ClipProtocol | str, warp: str = "shared",
                       extra_params: dict[str, Any] | None = None) -> StereoInput:
    """Warp a protocol-processed clip into the :class:`StereoInput` every method consumes.

    Args:
        clip: clip after :func:`apply_protocol`, with ``disparity`` (T, 1, H, W) pixels.
        protocol: the protocol it went through (its ``hole_mask_closing`` is applied here).
        warp: ``"shared"`` (default) or a native warp name (``"m2svid"``, ``"stereocrafter"``,
            ``"svg"``), see :data:`benchmark.stereo.WARPS`.
        extra_params: more parameters to record (depth source, D_max, ...).

    Raises:
        StereobenchError: missing disparity, mismatched frame counts or sizes, all-invalid
            disparity, unknown warp name.
    """
    from benchmark.stereo import get_warp

    protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
    _check_clip(clip)
    warp_fn = get_warp(warp)
    left = clip.left.to(torch.float32).contiguous()
    disparity = clip.disparity.to(torch.float32).contiguous()
    warped, hole = warp_fn(left, disparity)
    mask = close_hole_mask(hole, protocol.hole_mask_closing)
    warped = warped.to(torch.float32).masked_fill(mask, 0.0).clamp_(0.0, 1.0)
    params: dict[str, Any] = {
        "protocol": protocol.to_dict(),
        "warp": warp,
        "warp_mode": "shared" if warp == "shared" else "native",
        "hole_mask_closing": protocol.hole_mask_closing,
        "depth_source": clip.metadata.get("depth_source", "ground-truth disparity"),
        "stage_version": STAGE_VERSION,
    }
    if extra_params:
        params.update(extra_params)
    inp = StereoInput(left=left, warped=warped.contiguous(), mask=mask.contiguous(), disparity=disparity,
                      clip_id=clip.clip_id, fps=float(clip.fps), params=params)
    inp.validate()
    return inp


def _checksum(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


class StereoInputCache:
    """On-disk cache of StereoInputs (plus the ground-truth right view), keyed by content hash.

    Args:
        root: cache directory; default ``$STEREOBENCH_CACHE`` or ``<repo>/cache/stereo_inputs``.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_cache_root()

    # -- keys and paths -------------------------------------------------------------------
    @staticmethod
    def key(identity: dict[str, Any], protocol: ClipProtocol | str, warp: str = "shared") -> str:
        """Cache key: hash of the clip identity, every protocol field, the warp and the stage version."""
        protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
        return params_hash({"identity": identity, "protocol": protocol.to_dict(), "warp": warp,
                            "stage_version": STAGE_VERSION})

    def entry_dir(self, key: str) -> Path:
        return self.root / key[:2] / key

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
                              params=meta["params"])
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
        """Write an entry atomically (temporary directory, then ``os.replace``)."""
        from safetensors.torch import save_file

        inp.validate()
        entry = self.entry_dir(key)
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.parent / f".{key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            tensors = {"left": inp.left, "warped": inp.warped, "mask": inp.mask, "disparity": inp.disparity}
            if gt_right is not None:
                tensors["gt_right"] = gt_right.to(torch.float32)
            tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
            save_file(tensors, str(tmp / TENSORS_FILE))
            meta = {"key": key, "stage_version": STAGE_VERSION, "clip_id": inp.clip_id, "fps": inp.fps,
                    "params": inp.params, "has_gt_right": gt_right is not None,
                    "checksum": _checksum(tmp / TENSORS_FILE)}
            meta_tmp = tmp / (META_FILE + ".tmp")
            meta_tmp.write_text(json.dumps(meta, indent=1, sort_keys=True, default=str))
            os.replace(meta_tmp, tmp / META_FILE)  # the metadata file appears last
            if entry.exists() and self.load(key) is not None:
                return entry  # another process stored a valid entry meanwhile: keep it
            if entry.exists():
                # A corrupt or stale entry: move it aside first (os.replace cannot replace a
                # non-empty directory), then remove it.
                trash = entry.parent / f".{key}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
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
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return entry

    def get_or_build(self, clip_loader: Callable[[], Clip], identity: dict[str, Any],
                     protocol: ClipProtocol | str, warp: str = "shared",
                     extra_params: dict[str, Any] | None = None) -> tuple[StereoInput, torch.Tensor | None]:
        """The cached StereoInput and ground-truth right view for a clip, building them if needed.

        Args:
            clip_loader: returns the clip at its native size (called only on a miss). A clip
                whose ``metadata["protocol"]`` already equals the protocol is not processed twice.
            identity: what identifies the clip's content: dataset name, clip id, dataset
                revision, depth source, ... (JSON-serialisable).
            protocol: protocol name or object.
            warp: warp name (``"shared"`` or a native warp).

        Returns:
            (StereoInput, gt_right or None). The ground truth is kept beside the input, never
            inside it: methods only ever see the StereoInput.
        """
        protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
        from benchmark.stereo import get_warp

        get_warp(warp)  # unknown names fail before any work
        full_identity = dict(identity)
        if extra_params:
            full_identity["extra_params"] = extra_params
        key = self.key(full_identity, protocol, warp)
        hit = self.load(key)
        if hit is not None:
            return hit
        clip = clip_loader()
        if clip.metadata.get("protocol") != protocol.to_dict():
            clip = apply_protocol(clip, protocol)
        params = {"identity": identity, "cache_key": key}
        if extra_params:
            params.update(extra_params)
        inp = build_stereo_input(clip, protocol, warp=warp, extra_params=params)
        gt_right = clip.right.to(torch.float32).contiguous() if clip.right is not None else None
        self.store(key, inp, gt_right)
        return inp, gt_right
