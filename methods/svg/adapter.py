"""The SVG method adapter (``svg`` and the quick-look ``svg-10``; registry data in
:mod:`methods.svg`)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from benchmark.errors import StereobenchError
from benchmark.types import StereoInput
from benchmark.weights import WeightsStatus
from methods.base import Method, MethodOptions
from methods.svg import DEFAULT_PROMPT, NEGATIVE_PROMPT, SVD_HOW, ZEROSCOPE_HOW
from methods.svg import SVG as SVG_SPEC
from methods.svg.frame_matrix import LATENT_FACTOR

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class SVGOptions(MethodOptions):
    """SVG's options (official defaults). The options a run gives are recorded in its manifest (the
    run config); the default prompts are in the method's description, which the manifest records."""

    steps: int = Field(50, ge=1, le=1000, description="DDPM steps (official 50; svg-10 is the 10-step quick look)")
    guidance: float = Field(7.5, ge=0.0, description="classifier-free guidance scale on the doubled batch (official 7.5)")
    views: int = Field(8, ge=2, le=64, description="views of the frame matrix; the last one is the right view (official 8)")
    prompt: str = Field(DEFAULT_PROMPT, description="text prompt describing the clip (default: a neutral prompt)")
    negative_prompt: str = Field(NEGATIVE_PROMPT, description="the unconditional branch's prompt (official default)")
    zeroscope: str | Path | None = Field(None, description="zeroscope_v2_576w folder or cached hub id (default: "
                                         "$SVG_ZEROSCOPE_WEIGHTS, then cerspense/zeroscope_v2_576w in the HF cache)")
    svd_vae: str | Path | None = Field(None, description="SVD img2vid-xt folder (or its vae/) or cached hub id (default: "
                                       "$SVG_SVD_WEIGHTS, then stabilityai/stable-video-diffusion-img2vid-xt)")
    resample: int = Field(6, ge=0, description="RePaint passes per step while t >= 500 (official 6)")
    last_view_resample: int = Field(2, ge=0, description="RePaint passes per step once only the last view is left (official 2)")
    frame_matrix_end: int = Field(500, description="timestep after which only the last view is denoised (official 500)")
    unet_batch: int | None = Field(None, ge=1, description="videos per U-Net call (doubled for guidance); None = a whole pass")
    vae_batch: int = Field(4, ge=1, description="views (videos of T frames) per VAE call")
    precision: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="model dtype; auto = bfloat16 on CUDA unless the run asks for float16/bfloat16, "
        "the run's dtype on CPU")
    noise_on_device: bool = Field(False, description="draw the noise on the model's device (faster on GPU; the default "
                                  "CPU draws give the same noise on every device)")
    progress: bool = Field(False, description="show a progress bar over the DDPM steps")


class SVG(Method):
    """SVG on diffusers: frame matrix -> frozen zeroscope denoising -> decode of the last view."""

    meta = SVG_SPEC.meta
    Options = SVGOptions
    option_label = "SVG"

    def __init__(self, seed: int = 0, **options):
        super().__init__(seed=seed, **options)
        self.pipeline = None

    # -- weights ---------------------------------------------------------------------------
    def sources(self) -> tuple[str, str]:
        """(zeroscope source, SVD source) ``load`` reads: option, environment variable, hub id."""
        from methods.svg.pipeline import svd_source, zeroscope_source

        return zeroscope_source(self.config.zeroscope), svd_source(self.config.svd_vae)

    def weights_status(self) -> WeightsStatus:
        from methods.svg.pipeline import resolve_svd_vae, resolve_zeroscope

        zs, svd = self.sources()
        found, problems = [], []
        for source, resolve in ((zs, resolve_zeroscope), (svd, resolve_svd_vae)):
            try:
                found.append(str(resolve(source)))
            except StereobenchError as exc:
                problems.append(str(exc))
        if problems:
            return WeightsStatus(present=False, location=f"{zs} + {svd}", how_to_get=f"{ZEROSCOPE_HOW}; {SVD_HOW}",
                                 details=problems)
        return WeightsStatus(present=True, location=" + ".join(found))

    def weights_warning(self) -> str | None:
        """Why the zeroscope U-Net is not the published one (e.g. tiny random test weights), or None."""
        from methods._svd.folders import unet_width_warning
        from methods.svg.pipeline import resolve_zeroscope

        return unet_width_warning(resolve_zeroscope(self.sources()[0]) / "unet" / "config.json", "zeroscope U-Net")

    def _dtype(self, device: torch.device, dtype: torch.dtype) -> torch.dtype:
        choice = self.config.precision
        if choice != "auto":
            chosen = _DTYPES[choice]
        elif device.type == "cuda":
            chosen = dtype if dtype != torch.float32 else torch.bfloat16
        else:
            chosen = dtype
        if device.type == "cpu" and chosen == torch.float16:
            warnings.warn("SVG: float16 is not supported well on CPU; using float32", RuntimeWarning, stacklevel=3)
            chosen = torch.float32
        return chosen

    def load(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> SVG:
        from methods.svg.pipeline import Settings, SVGPipeline, load_components

        device = torch.device(device)
        dtype = self._dtype(device, dtype)
        zs, svd = self.sources()
        components = load_components(zs, svd, device, dtype)
        c = self.config
        settings = Settings(steps=c.steps, guidance=c.guidance, resample=c.resample,
                            last_view_resample=c.last_view_resample, frame_matrix_end=c.frame_matrix_end,
                            unet_batch=c.unet_batch, vae_batch=c.vae_batch, noise_on_device=c.noise_on_device,
                            progress=c.progress)
        self.pipeline = SVGPipeline(components, settings)
        self.device, self.dtype = device, dtype
        return self

    def refine(self, inp: StereoInput) -> torch.Tensor:
        """Right video float32 (T, 3, H, W) in [0, 1] on the input's device (the decode of the
        last view of the frame matrix; known pixels are reconstructed by the VAE, not pasted)."""
        from methods.svg.frame_matrix import build_frame_matrix

        if self.pipeline is None:
            raise StereobenchError("SVG.refine() called before load(); call method.load(device) first")
        inp.validate()
        if inp.num_frames < 2:
            raise StereobenchError(f"SVG needs a video of at least 2 frames (a text-to-video U-Net denoises along time), "
                                   f"got {inp.num_frames} in {inp.clip_id}; use a clip protocol with more frames")
        images, holes = build_frame_matrix(inp.to(self.device), self.config.views)
        images, holes, (h, w) = pad_to_multiple(images, holes, LATENT_FACTOR)
        out = self.pipeline(images, holes, self.config.prompt, self.config.negative_prompt, seed=self.seed)
        return out[..., :h, :w].to(inp.left.device, torch.float32).contiguous()


def pad_to_multiple(images: torch.Tensor, holes: torch.Tensor, multiple: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Pad (V, T, C, H, W) frames and masks at the bottom and right (edge pixels repeated) to
    multiples of ``multiple``; returns them and the original (H, W) to crop back to."""
    h, w = images.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if not (pad_h or pad_w):
        return images, holes, (h, w)

    def pad(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, *x.shape[-3:]).to(torch.float32)
        return F.pad(flat, (0, pad_w, 0, pad_h), mode="replicate").reshape(*x.shape[:-2], h + pad_h, w + pad_w)

    return pad(images), pad(holes) > 0.5, (h, w)


__all__ = ["SVG", "SVGOptions", "pad_to_multiple"]
