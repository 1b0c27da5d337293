"""SVG inference: loading the frozen components and denoising the frame matrix.

Components (svg.py:70-99 @ 9466625): zeroscope's ``UNet3DConditionModel``, ``CLIPTextModel``,
``CLIPTokenizer`` and scheduler config read into a ``DDPMScheduler``; the SVD img2vid-xt
``AutoencoderKLTemporalDecoder`` (encoder and temporal decoder) instead of zeroscope's VAE.
:func:`load_components` reads them from two diffusers-format folders (local paths or hub ids
already in the Hugging Face cache, through the suite's one resolver), never downloading.

:class:`SVGPipeline` runs the plan of :mod:`methods.svg.schedule` on a frame matrix. Per DDPM step
``t`` (next level ``t_prev``):

1. main pass: DDPM step of the active views along time (``x0`` kept);
2. boundary re-injection (every step): decode ``x0`` of those views (temporal decoder, all T
   frames of a view in one video), paste the known (eroded) pixels, re-encode with a posterior
   sample: the new source latents ``S_v``;
3. resampling (not after the last step): re-noise the latents from ``t_prev`` back to ``t``
   (:func:`~methods.svg.schedule.renoise_factor`), paste ``add_noise(S, t)`` under the soft
   latent mask, denoise along the pass's axis;
4. paste ``add_noise(S, t_prev)`` (``S`` itself after the last step) under the soft mask.

Views that a pass does not denoise are set to 0 in the official code and never feed the views
that are still denoised (after ``t <= 500`` only the last view), so they are simply left out.

Speed: every pass is batched (a time pass puts all its views, a view pass all T frame-"videos",
into U-Net calls of up to ``unet_batch`` videos, each doubled for classifier-free guidance), the
text embeddings are computed once per prompt, VAE calls take ``vae_batch`` views at a time.
All random draws (initial latents, DDPM variance, re-noising, posterior samples) come from one
CPU generator in a fixed order and layout, so a batched run and the one-video-at-a-time loop
(``unet_batch=1, vae_batch=1``) consume identical noise and agree to float rounding, and CPU and
CUDA runs get the same draws.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmark.errors import StereobenchError
from methods._svd.vae import VAE_SCALING_FACTOR, encode_posterior
from methods.svg import (
    NEGATIVE_PROMPT,
    SVD_HOW,
    SVD_HUB_ID,
    SVD_VAE_ENV,
    ZEROSCOPE_COMPONENTS,
    ZEROSCOPE_ENV,
    ZEROSCOPE_FILES,
    ZEROSCOPE_HOW,
    ZEROSCOPE_HUB_ID,
)
from methods.svg.frame_matrix import (
    ERODE_SIZE,
    LATENT_FACTOR,
    LATENT_THRESHOLD,
    SOFT_MASK_KERNEL,
    latent_mask,
    pixel_known_mask,
    soft_mask,
)
from methods.svg.schedule import (
    FRAME_MATRIX_END,
    LAST_VIEW_RESAMPLE,
    RESAMPLE,
    Pass,
    add_noise,
    ddpm_step,
    plan_steps,
    renoise_factor,
)

# -- weights --------------------------------------------------------------------------------------

def zeroscope_source(option: str | os.PathLike | None = None) -> str:
    """Where the zeroscope folder is read from: the option, ``$SVG_ZEROSCOPE_WEIGHTS``, the hub id."""
    return str(option) if option else os.environ.get(ZEROSCOPE_ENV) or ZEROSCOPE_HUB_ID


def svd_source(option: str | os.PathLike | None = None) -> str:
    """Where the SVD VAE is read from: the option, ``$SVG_SVD_WEIGHTS``, the hub id."""
    return str(option) if option else os.environ.get(SVD_VAE_ENV) or SVD_HUB_ID


def resolve_zeroscope(source: str) -> Path:
    """The complete zeroscope folder for ``source`` (unet/, text_encoder/, tokenizer/, scheduler/)."""
    from methods._svd.folders import require_folder, resolve_folder

    how = f"get it with: {ZEROSCOPE_HOW}"
    folder = resolve_folder(source, what=f"SVG text-to-video model ({ZEROSCOPE_HUB_ID})", how_to_get=how)
    return require_folder(folder, ZEROSCOPE_COMPONENTS, ZEROSCOPE_FILES,
                          what=f"SVG text-to-video folder ({ZEROSCOPE_HUB_ID} layout)", fix=how)


def resolve_svd_vae(source: str) -> Path:
    """The VAE folder for ``source``: its ``vae/`` subfolder (a pipeline folder) or the folder itself."""
    from methods._svd.folders import component_missing, resolve_folder

    how = f"get it with: {SVD_HOW}"
    folder = resolve_folder(source, what=f"SVG VAE ({SVD_HUB_ID}, vae/)", how_to_get=how)
    for candidate, name in ((folder, "vae"), (folder.parent, folder.name)):
        if component_missing(candidate, name) is None:
            return candidate / name
    raise StereobenchError(f"SVG VAE folder {folder} has no vae/ with config.json and weights (the {SVD_HUB_ID} "
                           f"layout); {how}")


def _variant(folder: Path) -> str | None:
    """``"fp16"`` when a component folder holds only fp16-variant weights (the hub SVD layout)."""
    plain = any(p for pattern in ("*.safetensors", "*.bin") for p in folder.glob(pattern)
                if ".fp16." not in p.name)
    return None if plain else ("fp16" if any(folder.glob("*.fp16.*")) else None)


@dataclass
class Components:
    """The frozen modules of SVG (eval mode, no gradients)."""

    unet: Any
    text_encoder: Any
    tokenizer: Any
    scheduler: Any
    vae: Any


def load_components(zeroscope: str | os.PathLike, svd: str | os.PathLike, device="cpu",
                    dtype: torch.dtype = torch.float32) -> Components:
    """Load zeroscope (U-Net, text encoder, tokenizer, scheduler as DDPM) and the SVD VAE."""
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        DDPMScheduler,
        UNet3DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTokenizer

    zs = resolve_zeroscope(str(zeroscope))
    vae_dir = resolve_svd_vae(str(svd))
    unet = UNet3DConditionModel.from_pretrained(zs / "unet", torch_dtype=dtype, variant=_variant(zs / "unet"))
    text_encoder = CLIPTextModel.from_pretrained(zs / "text_encoder", dtype=dtype,
                                                 variant=_variant(zs / "text_encoder"))
    tokenizer = CLIPTokenizer.from_pretrained(zs / "tokenizer")
    with warnings.catch_warnings():  # zeroscope's config is DDIM's: DDPM ignores set_alpha_to_one
        warnings.simplefilter("ignore")
        scheduler = DDPMScheduler.from_pretrained(zs / "scheduler")
    vae = AutoencoderKLTemporalDecoder.from_pretrained(vae_dir, torch_dtype=dtype, variant=_variant(vae_dir))
    if unet.config.in_channels != 4 or unet.config.out_channels != 4:
        raise StereobenchError(f"{zs / 'unet'} has in/out channels {unet.config.in_channels}/{unet.config.out_channels}, "
                               f"zeroscope's U-Net has 4/4: is this {ZEROSCOPE_HUB_ID}?")
    if text_encoder.config.hidden_size != unet.config.cross_attention_dim:
        raise StereobenchError(f"text encoder width {text_encoder.config.hidden_size} != U-Net cross-attention width "
                               f"{unet.config.cross_attention_dim}: the folders do not belong together")
    if vae.config.latent_channels != unet.config.in_channels:
        raise StereobenchError(f"{vae_dir} has {vae.config.latent_channels} latent channels, the U-Net takes "
                               f"{unet.config.in_channels}: is this the {SVD_HUB_ID} VAE?")
    config = scheduler.config
    if (config.prediction_type, config.variance_type, config.clip_sample, config.thresholding) != (
            "epsilon", "fixed_small", False, False):
        raise StereobenchError(f"{zs / 'scheduler'} is not zeroscope's scheduler (prediction {config.prediction_type!r}, "
                               f"variance {config.variance_type!r}, clip_sample {config.clip_sample}, thresholding "
                               f"{config.thresholding}); SVG runs epsilon-prediction DDPM, fixed_small, no clipping")
    from diffusers.models.attention_processor import AttnProcessor2_0

    unet.set_attn_processor(AttnProcessor2_0())  # SDPA (flash / memory-efficient kernels on GPU)
    modules = [m.to(device).eval().requires_grad_(False) for m in (unet, text_encoder, vae)]
    return Components(modules[0], modules[1], tokenizer, scheduler, modules[2])


# -- text ----------------------------------------------------------------------------------------

def encode_prompts(components: Components, prompt: str, negative_prompt: str = NEGATIVE_PROMPT) -> torch.Tensor:
    """CLIP text embeddings ``[negative; prompt]``, (2, L, D) float32 (``last_hidden_state``,
    zeroscope's tokenizer padded to its ``model_max_length``). A prompt longer than the text
    encoder takes is truncated with a warning naming its token count."""
    tokenizer, encoder = components.tokenizer, components.text_encoder
    limit = int(tokenizer.model_max_length)
    for name, text in (("prompt", prompt), ("negative prompt", negative_prompt)):
        count = len(tokenizer.tokenize(text)) + 2  # + start and end tokens
        if count > limit:
            warnings.warn(f"SVG {name} has {count} tokens (start and end included) but the text encoder takes {limit}; "
                          f"it was truncated to the first {limit - 2} tokens", UserWarning, stacklevel=3)
    ids = tokenizer([negative_prompt, prompt], padding="max_length", max_length=limit, truncation=True,
                    return_tensors="pt").input_ids
    device = next(encoder.parameters()).device
    with torch.no_grad():
        return encoder(ids.to(device))[0].to(torch.float32)


# -- the denoiser ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    """SVG's inference settings (official defaults) and the batching knobs (no effect on results
    beyond float rounding)."""

    steps: int = 50
    guidance: float = 7.5
    resample: int = RESAMPLE
    last_view_resample: int = LAST_VIEW_RESAMPLE
    frame_matrix_end: int = FRAME_MATRIX_END
    erode_size: int = ERODE_SIZE
    latent_threshold: float = LATENT_THRESHOLD
    soft_mask_kernel: int = SOFT_MASK_KERNEL
    unet_batch: int | None = None
    vae_batch: int = 4
    noise_on_device: bool = False
    progress: bool = False


class SVGPipeline:
    """Denoise a frame matrix into the last view; see the module docstring.

    Counters (reset per call) record the work done: ``unet_calls`` (batched U-Net forward calls),
    ``unet_videos`` (doubled videos through the U-Net, = the official loop's calls),
    ``vae_decodes`` / ``vae_encodes`` (videos of T frames).
    """

    def __init__(self, components: Components, settings: Settings | None = None):
        self.c = components
        self.settings = settings or Settings()
        self._text_cache: dict[tuple[str, str], torch.Tensor] = {}
        self.counters: dict[str, int] = {}

    @property
    def device(self) -> torch.device:
        return next(self.c.unet.parameters()).device

    def text_embeddings(self, prompt: str, negative_prompt: str) -> torch.Tensor:
        """(2, L, D) ``[negative; prompt]``, computed once per pair of prompts."""
        key = (prompt, negative_prompt)
        if key not in self._text_cache:
            self._text_cache[key] = encode_prompts(self.c, prompt, negative_prompt)
        return self._text_cache[key]

    # -- model calls -------------------------------------------------------------------------
    def _eps(self, videos: torch.Tensor, t: int, text: torch.Tensor) -> torch.Tensor:
        """Guided noise prediction of (B, C, F, h, w) videos, in U-Net calls of <= unet_batch videos."""
        unet = self.c.unet
        dtype = next(unet.parameters()).dtype
        per_call = self.settings.unet_batch or videos.shape[0]
        g = self.settings.guidance
        out = []
        for part in videos.split(per_call):
            b = part.shape[0]
            sample = torch.cat([part, part]).to(dtype)
            context = torch.cat([text[0:1].expand(b, -1, -1), text[1:2].expand(b, -1, -1)]).to(dtype)
            timestep = torch.tensor(t, device=part.device)
            pred = unet(sample, timestep, encoder_hidden_states=context).sample.to(torch.float32)
            uncond, cond = pred.chunk(2)
            out.append(uncond + g * (cond - uncond))
            self.counters["unet_calls"] += 1
            self.counters["unet_videos"] += b
        return torch.cat(out)

    def _encode(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Source latents (V, C, T, h, w) = 0.18215 x posterior sample of (V, T, 3, H, W) in [0, 1]."""
        v, t = images.shape[:2]
        means, stds = [], []
        for part in images.split(self.settings.vae_batch):
            flat = part.reshape(-1, *part.shape[2:]) * 2.0 - 1.0
            posterior = encode_posterior(self.c.vae, flat, chunk_size=flat.shape[0])
            means.append(posterior.mean.to(torch.float32))
            stds.append(posterior.std.to(torch.float32))
            self.counters["vae_encodes"] += part.shape[0]
        # One draw for all views, whatever the batching (the same noise for the same seed).
        mean, std = torch.cat(means), torch.cat(stds)
        z = (mean + std * self._noise(mean.shape, gen)) * VAE_SCALING_FACTOR
        return z.reshape(v, t, *z.shape[1:]).permute(0, 2, 1, 3, 4).contiguous()

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(V, T, 3, H, W) in [0, 1] of scaled latents (V, C, T, h, w), each view one video of T frames."""
        v, _, t = latents.shape[:3]
        dtype = next(self.c.vae.parameters()).dtype
        frames = []
        for part in latents.split(self.settings.vae_batch):
            z = (part.permute(0, 2, 1, 3, 4).reshape(-1, *part.shape[1:2], *part.shape[3:]) / VAE_SCALING_FACTOR)
            image = self.c.vae.decode(z.to(dtype), num_frames=t).sample.to(torch.float32)
            frames.append((image / 2 + 0.5).clamp(0, 1))
            self.counters["vae_decodes"] += part.shape[0]
        x = torch.cat(frames)
        return x.reshape(v, t, *x.shape[1:])

    def _noise(self, shape, gen: torch.Generator) -> torch.Tensor:
        return torch.randn(tuple(shape), generator=gen, device=gen.device).to(self.device)

    def _denoise_pass(self, p: Pass, latents: torch.Tensor, text: torch.Tensor,
                      gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass over (V', C, T, h, w) latents of the pass's views: (prev_sample, x0)."""
        noise = self._noise(latents.shape, gen)
        if p.axis == "time":
            eps = self._eps(latents, p.timestep, text)
            return ddpm_step(self.c.scheduler, eps, p.timestep, latents, noise)
        videos = latents.permute(2, 1, 0, 3, 4)  # (T, C, V, h, w): each frame index a video of the views
        if p.direction == "reverse":
            eps = self._eps(videos.flip(2), p.timestep, text).flip(2)
        else:
            eps = self._eps(videos, p.timestep, text)
        prev, x0 = ddpm_step(self.c.scheduler, eps, p.timestep, videos, noise.permute(2, 1, 0, 3, 4))
        return prev.permute(2, 1, 0, 3, 4), x0.permute(2, 1, 0, 3, 4)

    # -- the run -----------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, images: torch.Tensor, holes: torch.Tensor, prompt: str, negative_prompt: str = NEGATIVE_PROMPT,
                 seed: int = 0, return_latents: bool = False):
        """Denoise the frame matrix; the decode of its last view.

        Args:
            images: float (V, T, 3, H, W) in [0, 1], H and W multiples of 8.
            holes: bool (V, T, 1, H, W), True where a view's pixel is unknown.

        Returns:
            (T, 3, H, W) float32 in [0, 1] on the pipeline's device, or with ``return_latents``
            the final latents (1, C, T, h, w) of the last view as well.
        """
        s = self.settings
        v, _, _, h, w = images.shape
        if h % LATENT_FACTOR or w % LATENT_FACTOR:
            raise StereobenchError(f"SVG frames must be multiples of {LATENT_FACTOR} pixels, got {h}x{w}")
        self.counters = {"unet_calls": 0, "unet_videos": 0, "vae_decodes": 0, "vae_encodes": 0}
        device = self.device
        sched = self.c.scheduler
        # CPU draws: the same noise on every device; noise_on_device: faster, device-specific.
        gen = torch.Generator(device=device if s.noise_on_device else "cpu").manual_seed(int(seed))
        images = images.to(device, torch.float32)
        known = pixel_known_mask(holes.to(device), s.erode_size)  # (V, T, 1, H, W)
        images = images * known
        mask = soft_mask(latent_mask(known, s.latent_threshold), s.soft_mask_kernel).permute(0, 2, 1, 3, 4)
        text = self.text_embeddings(prompt, negative_prompt).to(device)
        sources = self._encode(images, gen)  # (V, C, T, h, w)
        sched.set_timesteps(s.steps)
        timesteps = [int(x) for x in sched.timesteps]
        plan = plan_steps(timesteps, v, s.frame_matrix_end, s.resample, s.last_view_resample)
        latents = self._noise(sources.shape, gen)
        steps = range(len(timesteps))
        if s.progress:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc="SVG denoising", unit="step")
        by_step: dict[int, list[Pass]] = {}
        for p in plan:
            by_step.setdefault(p.step, []).append(p)
        for i in steps:
            t_now = timesteps[i]
            t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else None
            main, *resamples = by_step[i]
            idx = list(main.views)
            prev, x0 = self._denoise_pass(main, latents[idx], text, gen)
            latents = torch.zeros_like(latents)  # views not denoised: 0, as the official code
            latents[idx] = prev
            if t_now > 0:  # disocclusion-boundary re-injection (official update_source_latent_end = 0)
                pasted = torch.lerp(self._decode(x0), images[idx], known[idx])
                sources[idx] = self._encode(pasted, gen)
            if t_prev is not None:
                factor = renoise_factor(sched, t_now, t_prev)
                for p in resamples:
                    ridx = list(p.views)
                    current = latents[ridx]
                    noisy = factor ** 0.5 * current + (1 - factor) ** 0.5 * self._noise(current.shape, gen)
                    known_now = add_noise(sched, sources[ridx], self._noise(current.shape, gen), t_now)
                    noisy = torch.lerp(noisy, known_now, mask[ridx])
                    stepped, _ = self._denoise_pass(p, noisy, text, gen)
                    latents = torch.zeros_like(latents)
                    latents[ridx] = stepped
            clean = sources[idx] if t_prev is None else add_noise(sched, sources[idx], self._noise(prev.shape, gen), t_prev)
            latents[idx] = torch.lerp(latents[idx], clean, mask[idx])
        last = latents[v - 1:v]
        video = self._decode(last)[0]
        return (video, last) if return_latents else video
