"""The StereoCrafter method adapter, shared by every variant.

The variants (``stereocrafter``, ``stereocrafter-8``, ``stereocrafter-1``,
``stereocrafter-nocfg``) are registry entries declared as data in :mod:`methods.stereocrafter`
(metadata + ``loader_kwargs``); this module holds the one class that runs them::

    METHODS["stereocrafter-8"](seed=0, weights=UNET, svd=SVD, **options).load("cuda", torch.float16)
"""

from __future__ import annotations

import os
import typing
import warnings
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, create_model

from benchmark.errors import StereobenchError
from benchmark.types import StereoInput
from benchmark.weights import WeightsStatus
from methods.base import Method, MethodOptions
from methods.stereocrafter import (
    HOW_TO_GET,
    STEREOCRAFTER,
    SVD_ENV,
    SVD_HUB_ID,
    UNET_ENV,
    UNET_HUB_ID,
)

# One-line help and limits of each PipelineOptions field (the pipeline owns the defaults).
_HELP: dict[str, tuple[str, dict[str, Any]]] = {
    "num_inference_steps": ("Euler steps (paper 25, official script 8)", {"ge": 1}),
    "guidance_scale": ("CFG scale on the doubled batch (official 1.01; exactly 1.0 drops the batch, not official)",
                       {"ge": 1.0}),
    "chunking": (("long clips: 'blend' (latent cross-fade of overlapping windows every step) or 'official' "
                 "(23-frame chunks re-conditioned on generated frames, official tiles)"), {}),
    "chunk_frames": ("frames per U-Net window (official 23)", {"ge": 1}),
    "temporal_overlap": ("frames shared by consecutive windows (None: official 3, blend 6)", {"ge": 0}),
    "tile_size": ("blend mode: spatial tile side in pixels (tiles only above it)", {"ge": 1}),
    "tile_overlap": ("blend mode: pixels cross-faded between neighbouring tiles", {"ge": 0}),
    "tile_num": ("official mode: tiles per side with 128 px overlap (official script 1, shell script 2)", {"ge": 1}),
    "fps": ("frame-rate conditioning; the time id is fps - 1 (official 7; the clip's own rate is not used)", {"ge": 1}),
    "motion_bucket_id": ("SVD motion bucket id (official 127)", {"ge": 0}),
    "noise_aug_strength": ("noise augmentation of the warped frames (official 0; the noise is drawn anyway)", {"ge": 0}),
    "encode_chunk_size": ("frames per VAE-encoder call (official 5; per-frame encoder: exact)", {"ge": 1}),
    "decode_chunk_size": ("frames per temporal-decoder call (official 2; changes the output)", {"ge": 1}),
    "round_output": ("round the output to 1/255 steps as the official PIL round trip", {}),
    "cpu_offload": ("keep idle components on the CPU (lower GPU memory, slower)", {}),
    "channels_last": ("channels-last U-Net memory format on CUDA", {}),
    "progress": ("show a progress bar over denoising steps", {}),
}


def _options_model() -> type[MethodOptions]:
    """StereoCrafter's options: weights, svd, plus every field of
    :class:`methods.stereocrafter.pipeline.PipelineOptions`, typed from the dataclass."""
    from methods.stereocrafter.pipeline import PipelineOptions

    hints = typing.get_type_hints(PipelineOptions)
    hints["chunking"] = Literal["blend", "official"]
    extra = {}
    for f in fields(PipelineOptions):
        help_text, limits = _HELP.get(f.name, ("see methods.stereocrafter.pipeline.PipelineOptions", {}))
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        extra[f.name] = (hints[f.name], Field(default, description=help_text, **limits))
    return create_model(
        "StereoCrafterOptions", __base__=MethodOptions, __module__=__name__,
        weights=(str | Path | None, Field(None, description=f"the 9-channel U-Net: a folder or the cached hub id "
                                          f"{UNET_HUB_ID} (default ${UNET_ENV}, then the cache)")),
        svd=(str | Path | None, Field(None, description=f"SVD-xt-1.1 folder or cached hub id {SVD_HUB_ID} "
                                      f"(default ${SVD_ENV}, then the cache)")),
        **extra,
    )


class StereoCrafter(Method):
    """StereoCrafter's inpainting stage on diffusers (see :mod:`methods.stereocrafter.pipeline`).

    Options: ``weights`` (U-Net folder or cached hub id), ``svd`` (SVD-xt-1.1 folder or cached
    hub id) and every field of :class:`~methods.stereocrafter.pipeline.PipelineOptions`
    (``num_inference_steps``, ``guidance_scale``, ``chunking``, ``chunk_frames``, ...).
    The output is the whole decoded right view: no known pixels are pasted back (official).
    """

    meta = STEREOCRAFTER.meta
    Options = _options_model()
    option_label = "StereoCrafter"

    def __init__(self, seed: int = 0, **options):
        super().__init__(seed=seed, **options)
        from methods.stereocrafter.pipeline import PipelineOptions

        names = {f.name for f in fields(PipelineOptions)}
        self.pipeline_options = PipelineOptions(**{k: getattr(self.config, k) for k in names})
        self.pipeline = None

    # -- weights ---------------------------------------------------------------------------
    def unet_source(self) -> str:
        """Where ``load`` reads the U-Net: the option, ``$STEREOCRAFTER_WEIGHTS``, then the hub id."""
        return str(self.config.weights or os.environ.get(UNET_ENV) or UNET_HUB_ID)

    def svd_source(self) -> str:
        """Where ``load`` reads the SVD components: the option, ``$SVD_XT_1_1_WEIGHTS``, then the hub id."""
        return str(self.config.svd or os.environ.get(SVD_ENV) or SVD_HUB_ID)

    def weights_status(self) -> WeightsStatus:
        from methods.stereocrafter.pipeline import (
            check_unet_config,
            resolve_svd_folder,
            resolve_unet_folder,
        )

        details, found = [], []
        for label, resolve in (("U-Net", lambda: resolve_unet_folder(self.unet_source())),
                               ("SVD-xt-1.1", lambda: resolve_svd_folder(self.svd_source()))):
            try:
                folder = resolve()
                if label == "U-Net":
                    check_unet_config(folder)
                found.append(f"{label}: {folder}")
            except StereobenchError as exc:  # the reason only: how to get them is said once, below
                details.append(str(exc).split("; ")[0])
        location = f"U-Net {self.unet_source()}, SVD {self.svd_source()}"
        if details:
            return WeightsStatus(present=False, location=location, how_to_get=HOW_TO_GET, details=details)
        return WeightsStatus(present=True, location="; ".join(found))

    def weights_warning(self) -> str | None:
        """Why the U-Net is not the published StereoCrafter one (e.g. tiny random test weights), or None."""
        from methods._svd.folders import unet_width_warning
        from methods.stereocrafter.pipeline import resolve_unet_folder

        return unet_width_warning(resolve_unet_folder(self.unet_source()) / "config.json", "StereoCrafter U-Net")

    def load(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> StereoCrafter:
        from methods.stereocrafter.pipeline import load_pipeline

        device = torch.device(device)
        if device.type == "cpu" and dtype in (torch.float16, torch.bfloat16):
            warnings.warn(f"StereoCrafter: {dtype} is slow or unsupported on CPU; falling back to float32",
                          RuntimeWarning, stacklevel=2)
            dtype = torch.float32
        self.pipeline = load_pipeline(self.unet_source(), self.svd_source(), device, dtype, self.pipeline_options)
        self.device, self.dtype = device, dtype
        return self

    def refine(self, inp: StereoInput) -> torch.Tensor:
        """Right video float32 (T, 3, H, W) in [0, 1] on the input's device (the clip's fps is not
        used: the official conditioning is ``fps`` = 7)."""
        if self.pipeline is None:
            raise StereobenchError("StereoCrafter.refine() called before load(); call method.load(device) first")
        inp.validate()
        out = self.pipeline(inp.warped, inp.mask, seed=self.seed)
        return out.to(inp.left.device, torch.float32)
