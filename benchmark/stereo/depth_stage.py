"""Depth sources inside the stereo stage: files or a depth model -> normalised depth -> disparity.

:func:`recipe_disparity` gives the disparity (T, 1, H, W) pixels a recipe's depth source yields
for a protocol-processed clip:

- ``files``: the clip's own depth maps, read by :func:`attach_depth_files` at the clip's NATIVE
  size before the protocol runs (they then go through the same resampling, resize and crop as
  the video; a positive rescale does not change normalised depth);
- a depth model (``depth-anything-v2``, ``transformers``, ``depthcrafter``): run on the
  protocol-processed left video (padding frames left out), its raw output cached in a
  :class:`DepthCache` by the video's content and the model's identity, so changing D_max,
  convergence or the normalisation reuses the depth and only re-warps;

then normalised to [0, 1] over the clip (:func:`benchmark.depth.normalize_video`, the recipe's
``stability`` settings) and mapped to pixels with D_max (``d_max`` pixels or ``d_max_percent`` of
the width) and convergence (:func:`benchmark.stereo.disparity.disparity_from_normalized_depth`).

The depth cache lives in ``<input cache root>/depth/<key[:2]>/<key>.safetensors`` (below the input
cache; the input cache's sweep ignores that folder). Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from benchmark.stereo.cache import MissingDepthError
from benchmark.stereo.disparity import disparity_from_normalized_depth
from benchmark.stereo.recipe import DEPTH_SOURCES, MODEL_OPTION_KEYS, InputRecipe
from benchmark.types import Clip, params_hash

#: Environment variable choosing the device depth models run on; it overrides the run's ``--device``.
DEPTH_DEVICE_ENV = "STEREOBENCH_DEPTH_DEVICE"
#: Version of the raw-depth cache entries (bump when a model's output changes).
DEPTH_CACHE_VERSION = 1
_NORMALISE_KEYS = ("lookahead", "decay", "low_percentile", "high_percentile")


class MissingDepthFilesError(MissingDepthError):
    """The recipe asks for ``files`` but the clip has none (training skips such clips)."""


def depth_device(default: str | torch.device | None = None) -> str:
    """The device depth models run on: ``$STEREOBENCH_DEPTH_DEVICE`` when set, else ``default``
    (the run's resolved ``--device``; the runner passes it through :attr:`DepthCache.device`),
    else ``cuda`` when available, else ``cpu``."""
    env = os.environ.get(DEPTH_DEVICE_ENV)
    if env:
        return env
    if default is not None and str(default) not in ("", "auto"):
        return str(default)
    return "cuda" if torch.cuda.is_available() else "cpu"


def attach_depth_files(clip: Clip, recipe: InputRecipe) -> Clip:
    """For ``files``: the clip with its depth files' relative inverse depth in ``disparity``
    (a carrier (T, 1, H, W) at native size, frames as the clip's ``source_frame_indices``), so
    :func:`~benchmark.stereo.protocol.apply_protocol` resamples it with the video. Other sources:
    the clip unchanged.

    Raises:
        MissingDepthFilesError: the clip has no ``metadata["depth"]`` path.
        StereobenchError: files whose frame count or size does not match the video (named).
    """
    if recipe.depth != "files":
        return clip
    from benchmark.depth.files import read_depth_files

    path = clip.metadata.get("depth")
    if not path:
        raise MissingDepthFilesError(
            f"clip {clip.clip_id!r} has no depth files; put <name>_depth.npy (or .npz, or a <name>_depth/ folder of "
            f"PNG16/EXR/NPY frames) beside its video, or choose a depth model (--depth depth-anything-v2)")
    t, _, h, w = clip.left.shape
    indices = clip.metadata.get("source_frame_indices")
    settings = dict(recipe.depth_settings)
    if indices is not None and len(indices) == t:
        frames = [int(i) for i in indices]
        total = clip.metadata.get("source_frame_count")
        array = read_depth_files(path, kind=settings.get("kind", "disparity"), size=(h, w), frames=frames,
                                 num_frames=int(total) if total is not None else None)
    else:
        array = read_depth_files(path, kind=settings.get("kind", "disparity"), size=(h, w), num_frames=t)
    carrier = torch.from_numpy(array)[:, None].to(clip.left.device)
    return dataclasses.replace(clip, disparity=carrier, disparity_filled=None)


def video_digest(frames: torch.Tensor) -> str:
    """BLAKE2b of a video's float32 bytes and shape (the depth cache's content key)."""
    data = frames.detach().to("cpu", torch.float32).contiguous()
    digest = hashlib.blake2b(digest_size=20)
    digest.update(json.dumps(list(data.shape)).encode())
    digest.update(data.numpy().tobytes())
    return digest.hexdigest()


class DepthCache:
    """Raw depth-model output cached by video content + model identity (one file per entry).

    ``device``: where depth models run when an entry is built (:func:`depth_device`'s default;
    None = cuda when available). It is not part of the key: a cache warmed on one device serves
    another.
    """

    def __init__(self, root: str | os.PathLike, device: str | torch.device | None = None):
        self.root = Path(root).expanduser()
        self.device = device
        self.hits = 0
        self.builds = 0

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def load(self, key: str) -> torch.Tensor | None:
        from safetensors.torch import load_file

        path = self.path(key)
        try:
            return load_file(str(path))["depth"]
        except Exception:  # noqa: BLE001 - absent, partial or corrupt: recompute
            return None

    def store(self, key: str, depth: torch.Tensor) -> None:
        from safetensors.torch import save

        from benchmark.fileio import atomic_write_bytes

        atomic_write_bytes(self.path(key), save({"depth": depth.detach().to("cpu", torch.float32).contiguous()}))


_MODEL_SLOT: dict[str, Any] = {}  # one loaded model kept between clips (key -> model)


def _model_for(recipe: InputRecipe, device: str):
    from benchmark.depth import load_depth_model

    source = DEPTH_SOURCES[recipe.depth]
    settings = dict(recipe.depth_settings)
    model_settings = {k: settings[k] for k in MODEL_OPTION_KEYS if k in settings and settings[k] is not None}
    slot_key = params_hash({"model": source.model, "weights": settings.get("model"), "device": device,
                            **model_settings})
    if slot_key not in _MODEL_SLOT:
        _MODEL_SLOT.clear()  # free the previous model first
        _MODEL_SLOT[slot_key] = load_depth_model(source.model, weights=settings.get("model") or None, device=device,
                                                 **model_settings)
    return _MODEL_SLOT[slot_key]


def model_depth(clip: Clip, recipe: InputRecipe, cache: DepthCache | None) -> torch.Tensor:
    """Raw relative inverse depth (T, H, W) of a protocol-processed clip's real frames (padding
    frames, ``source_frame_indices == -1``, get NaN), through the depth cache."""
    settings = dict(recipe.depth_settings)
    source = DEPTH_SOURCES[recipe.depth]
    indices = clip.metadata.get("source_frame_indices")
    t = clip.left.shape[0]
    real = torch.tensor([i >= 0 for i in indices], dtype=torch.bool) if indices is not None and len(indices) == t \
        else torch.ones(t, dtype=torch.bool)
    frames = clip.left[real.to(clip.left.device)]
    identity = {k: settings.get(k) for k in ("model", "revision", *MODEL_OPTION_KEYS) if k in settings}
    key = params_hash({"version": DEPTH_CACHE_VERSION, "source": source.model, "identity": identity,
                       "video": video_digest(frames)})
    raw = cache.load(key) if cache is not None else None
    if raw is not None and tuple(raw.shape) == (frames.shape[0], *frames.shape[-2:]):
        cache.hits += 1
    else:
        model = _model_for(recipe, depth_device(cache.device if cache is not None else None))
        raw = model.predict(frames.to(model.device)).cpu()
        if cache is not None:
            cache.store(key, raw)
            cache.builds += 1
    out = torch.full((t, *frames.shape[-2:]), float("nan"))
    out[real] = raw.to(torch.float32)
    return out


def recipe_disparity(clip: Clip, recipe: InputRecipe, cache: DepthCache | None = None,
                     timings: dict[str, float] | None = None) -> torch.Tensor:
    """Disparity (T, 1, H, W) pixels for a protocol-processed clip from the recipe's depth source
    (not ``gt``); ``timings["depth"]`` accumulates the seconds spent on depth (model or files)."""
    from benchmark.depth import normalize_video

    t0 = time.perf_counter()
    settings = dict(recipe.depth_settings)
    if recipe.depth == "files":
        if clip.disparity is None:
            raise MissingDepthFilesError(f"clip {clip.clip_id!r} has no depth files attached; load it through "
                                         f"load_input / build_input")
        raw = clip.disparity[:, 0]
    else:
        raw = model_depth(clip, recipe, cache)
    indices = clip.metadata.get("source_frame_indices")
    if indices is not None and len(indices) == raw.shape[0]:
        real = [i for i, source in enumerate(indices) if source >= 0]  # padding frames stay NaN
    else:
        real = list(range(raw.shape[0]))
    params = {k: settings[k] for k in _NORMALISE_KEYS if k in settings}
    if settings.get("stability") == "frame":
        params = {}
    elif settings.get("stability") == "video":
        params.pop("lookahead", None)
        params.pop("decay", None)
    if "lookahead" in params:
        params["lookahead"] = int(params["lookahead"])
    normalised = torch.full_like(raw, float("nan"))
    normalised[real] = normalize_video(raw[real], mode=settings.get("stability", "ema"), **params)
    if recipe.d_max is not None:
        disparity = disparity_from_normalized_depth(normalised, d_max_px=recipe.d_max,
                                                    convergence=recipe.convergence or 0.0)
    else:
        disparity = disparity_from_normalized_depth(normalised, d_max_percent=float(settings["d_max_percent"]),
                                                    convergence=recipe.convergence or 0.0)
    if timings is not None:
        timings["depth"] = timings.get("depth", 0.0) + time.perf_counter() - t0
    return disparity


__all__ = ["DEPTH_DEVICE_ENV", "DepthCache", "MissingDepthFilesError", "attach_depth_files", "depth_device",
           "model_depth", "recipe_disparity", "video_digest"]
