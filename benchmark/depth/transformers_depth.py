"""Depth Anything V2 (and any depth-estimation model ``transformers`` loads) as a depth source.

Loading goes through the weights service (:func:`benchmark.weights.resolve_weights`: a local
folder, or a Hugging Face id that is already in the local cache; nothing is downloaded), then
``AutoImageProcessor`` with the checkpoint's own ``preprocessor_config.json`` and
``AutoModelForDepthEstimation``. For Depth Anything V2 the hub config resizes the short side to
518 keeping the aspect ratio, each side a multiple of 14, bicubic, ImageNet mean/std
(DATA_DEPTH_CONVERT_STUDY_FACTS.md section 2.1); the class defaults differ (384x384, mean 0.5), so
a checkpoint without that file is refused rather than run with the wrong preprocessing.

Frames go through the processor's torch backend as float tensors in [0, 1] (``do_rescale``
off), in batches of ``batch_size``; ``predicted_depth`` is resized back to the frame size with
bicubic interpolation (``align_corners=False``, as ``post_process_depth_estimation``). Relative
models give affine-invariant inverse depth (larger = nearer), returned as is; metric models
(``depth_estimation_type: metric``, GLPN, ZoeDepth) give metres, returned as ``1 / depth``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from benchmark.depth.base import DepthModel
from benchmark.errors import StereobenchError, did_you_mean
from benchmark.weights import WeightSpec, resolve_weights, source_kind

OUTPUT_KINDS = ("auto", "inverse_depth", "depth")
#: ``model_type`` values whose relative output is metric depth, not inverse depth.
_METRIC_MODEL_TYPES = ("glpn", "zoedepth", "depth_pro")

DAV2_ENV = "STEREOBENCH_DEPTH_ANYTHING_V2"
DAV2_DEFAULT = "depth-anything/Depth-Anything-V2-Small-hf"
DAV2_IDS = {
    "small": ("depth-anything/Depth-Anything-V2-Small-hf", "Apache-2.0"),
    "base": ("depth-anything/Depth-Anything-V2-Base-hf", "CC-BY-NC-4.0 (non-commercial)"),
    "large": ("depth-anything/Depth-Anything-V2-Large-hf", "CC-BY-NC-4.0 (non-commercial)"),
}


def _folder_revision(folder: Path) -> str:
    """A hub snapshot's commit (its folder name), else a digest of the folder's files."""
    if folder.parent.name == "snapshots" and len(folder.name) == 40:
        return folder.name
    digest = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = f.stat()
        digest.update(f"{f.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}|".encode())
    return "files:" + digest.hexdigest()[:16]


class TransformersDepth(DepthModel):
    """``transformers``: any depth-estimation checkpoint (``weights=`` a folder or cached hub id).

    Settings: ``batch_size`` (frames per forward pass), ``output`` (``auto``: from the config;
    ``inverse_depth`` or ``depth`` to override)."""

    NAME = "transformers"
    DESCRIPTION = "any depth-estimation model transformers loads (a local folder or a cached hub id)"
    SETTINGS: ClassVar[dict[str, Any]] = {"batch_size": 4, "output": "auto"}
    LICENCE = "the checkpoint's own (see its model card)"
    ENV_VAR: ClassVar[str] = ""
    WEIGHTS_FROM_USER: ClassVar[bool] = True  # no default checkpoint: `stereobench weights` has no row

    @classmethod
    def check_settings(cls, settings: dict[str, Any]) -> dict[str, Any]:
        merged = super().check_settings(settings)
        if merged["output"] not in OUTPUT_KINDS:
            raise did_you_mean(str(merged["output"]), OUTPUT_KINDS, "depth model output")
        if int(merged["batch_size"]) < 1:
            raise StereobenchError(f"depth batch_size must be >= 1, got {merged['batch_size']}")
        return merged

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.source, self.path = self._resolve(self.weights, self._settings)
        self._load(self.path)

    SPEED_SETTINGS = ("batch_size",)

    @classmethod
    def default_weights(cls, settings: dict[str, Any]) -> str | None:
        """The weights used when none are given (None: weights are required)."""
        return None

    @classmethod
    def _resolve(cls, weights: Any, settings: dict[str, Any]) -> tuple[str, Path]:
        """(source as given or defaulted, local folder), offline."""
        source = weights
        if source is None and cls.ENV_VAR and os.environ.get(cls.ENV_VAR):
            source = os.environ[cls.ENV_VAR]
        if source is None:
            source = cls.default_weights(settings)
        if source is None:
            raise StereobenchError(f"depth model {cls.NAME!r} needs weights: a model folder or a Hugging Face id in "
                                   f"the local cache (e.g. --weights-depth {DAV2_DEFAULT})")
        source = str(source)
        path = resolve_weights(source, what=f"depth model {cls.NAME} weights", how_to_get=cls.how_to_get(source))
        if not path.is_dir():
            raise StereobenchError(f"depth model {cls.NAME} weights {path} is a file; give the model folder "
                                   f"(config.json, model.safetensors, preprocessor_config.json)")
        return source, path

    @classmethod
    def identify(cls, weights: Any = None, **settings: Any) -> dict[str, Any]:
        merged = cls.check_settings(settings)
        source, path = cls._resolve(weights, merged)
        model = source if source_kind(source) == "hf" else str(path)
        return {"model": model, "revision": _folder_revision(path),
                "settings": {k: v for k, v in merged.items() if k not in cls.SPEED_SETTINGS}}

    @classmethod
    def how_to_get(cls, source: str) -> str:
        if source_kind(source) == "hf":
            return f"huggingface-cli download {source}, or give a local folder with --weights-depth"
        return "give a folder saved with save_pretrained (model + preprocessor_config.json)"

    def _load(self, path: Path) -> None:
        from transformers import (
            AutoConfig,
            AutoImageProcessor,
            AutoModelForDepthEstimation,
        )

        try:
            config = AutoConfig.from_pretrained(path)
        except (OSError, ValueError, KeyError) as exc:
            raise StereobenchError(f"depth model weights {path} have no readable config.json ({str(exc).splitlines()[0]}); "
                                   f"give a transformers model folder") from None
        if not (path / "preprocessor_config.json").is_file():
            raise StereobenchError(f"depth model weights {path} have no preprocessor_config.json; the model's own "
                                   f"preprocessing is needed (save the image processor with save_pretrained too)")
        try:
            self.model = AutoModelForDepthEstimation.from_pretrained(path, dtype=self.dtype)
        except ValueError as exc:
            raise StereobenchError(f"{path} holds a {config.model_type!r} model, which is not a depth-estimation "
                                   f"model transformers knows ({str(exc).splitlines()[0][:120]})") from None
        except OSError as exc:
            raise StereobenchError(f"cannot load the depth model from {path} ({str(exc).splitlines()[0]}); check that "
                                   f"the weights file is complete") from None
        self.model.to(self.device).eval()
        self.processor = AutoImageProcessor.from_pretrained(path)
        self.config = config
        output = self._settings["output"]
        if output == "auto":
            metric = (getattr(config, "depth_estimation_type", "relative") == "metric"
                      or config.model_type in _METRIC_MODEL_TYPES)
            output = "depth" if metric else "inverse_depth"
        self.output_kind = output
        self._revision = _folder_revision(path)

    @property
    def spec(self) -> dict[str, Any]:
        model = self.source if source_kind(self.source) == "hf" else str(self.path)
        return {"name": self.NAME, "model": model, "revision": self._revision}


    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames (B, 3, H, W) in [0, 1] -> the model's ``pixel_values`` (its own config)."""
        frames = frames.float().to(self.device)
        try:  # the torch backend resizes and normalises on the model's device, in one batch
            batch = self.processor(images=frames, do_rescale=False, return_tensors="pt", device=self.device)
        except (TypeError, ValueError):  # a processor without a torch backend: per frame, on the CPU
            batch = self.processor(images=list(frames.cpu()), do_rescale=False, return_tensors="pt")
        return batch["pixel_values"]

    def _predict(self, frames: torch.Tensor, start: int) -> torch.Tensor:
        t, _, h, w = frames.shape
        out = []
        size = int(self._settings["batch_size"])
        for i in range(0, t, size):
            pixels = self.preprocess(frames[i:i + size]).to(self.device, self.dtype)
            depth = self.model(pixel_values=pixels).predicted_depth
            if depth.dim() == 4:
                depth = depth[:, 0]
            depth = F.interpolate(depth[:, None].float(), size=(h, w), mode="bicubic", align_corners=False)[:, 0]
            out.append(depth)
        raw = torch.cat(out)
        if self.output_kind == "depth":
            valid = torch.isfinite(raw) & (raw > 0)
            raw = torch.where(valid, 1.0 / raw.clamp(min=1e-12), torch.full_like(raw, float("nan")))
        return raw


class DepthAnythingV2(TransformersDepth):
    """``depth-anything-v2``: Depth Anything V2 (Small by default, ``variant`` small/base/large),
    relative inverse depth, one frame at a time (use the temporal normalisation)."""

    NAME = "depth-anything-v2"
    DESCRIPTION = "Depth Anything V2 through transformers (per frame; Small Apache-2.0, Base/Large CC-BY-NC-4.0)"
    SETTINGS: ClassVar[dict[str, Any]] = {"batch_size": 4, "output": "auto", "variant": "small"}
    ENV_VAR = DAV2_ENV
    WEIGHTS_FROM_USER = False

    @classmethod
    def check_settings(cls, settings: dict[str, Any]) -> dict[str, Any]:
        merged = super().check_settings(settings)
        if merged["variant"] not in DAV2_IDS:
            raise did_you_mean(str(merged["variant"]), DAV2_IDS, "Depth Anything V2 variant")
        return merged

    @classmethod
    def default_weights(cls, settings: dict[str, Any]) -> str:
        return DAV2_IDS[settings["variant"]][0]

    @property
    def licence(self) -> str:
        text = self.source.lower()
        for variant, (_, licence) in DAV2_IDS.items():
            if variant in text:
                return licence
        return "see the checkpoint's model card (Small: Apache-2.0; Base/Large: CC-BY-NC-4.0)"


    @classmethod
    def weight_specs(cls) -> tuple[WeightSpec, ...]:
        return tuple(
            WeightSpec(name=f"depth-anything-v2-{variant}", source=repo, env_var=DAV2_ENV if variant == "small" else "",
                       how_to_get=f"huggingface-cli download {repo} (where the hub is reachable), or point "
                                  f"--weights-depth / ${DAV2_ENV} at a saved folder",
                       licence=licence)
            for variant, (repo, licence) in DAV2_IDS.items())


__all__ = ["DAV2_DEFAULT", "DAV2_ENV", "DAV2_IDS", "DepthAnythingV2", "TransformersDepth"]
