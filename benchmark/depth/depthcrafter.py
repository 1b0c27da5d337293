"""DepthCrafter (Tencent, research-only licence) on diffusers components, as a depth source.

What the official code does (Tencent/DepthCrafter ``depthcrafter/depth_crafter_ppl.py``,
``depthcrafter/unet.py``, ``run.py``; DATA_DEPTH_CONVERT_STUDY_FACTS.md section 2.3), which this
module re-implements in its own code:

- components: a U-Net in diffusers' ``UNetSpatioTemporalConditionModel`` layout (8 input
  channels: noisy latent + video latent) from ``tencent/DepthCrafter``, and the VAE
  (``AutoencoderKLTemporalDecoder``), CLIP image encoder, feature extractor and Euler scheduler of
  ``stabilityai/stable-video-diffusion-img2vid-xt``;
- conditioning: a CLIP image embedding **per frame** (frames antialias-resized to 224x224,
  normalised by the feature extractor), VAE latents (``latent_dist.mode()``) of the frames with
  ``noise_aug_strength`` 0.02 noise added, added time ids (fps 7, motion bucket 127, 0.02); the
  stock U-Net forward repeats one embedding for every frame, so :class:`PerFrameEmbeddingUNet`
  (a small subclass; weights load unchanged) gives each frame its own;
- sampling: Euler, ``steps`` (5 by default, as ``run.py``), no classifier-free guidance; windows of
  ``window`` frames (110) with ``overlap`` (25): each next window starts its overlapping frames from
  the previous result plus its own noise scaled by the first sigma, and the overlap is blended in
  latent space with ``linspace(0, 1, overlap)`` weights;
- size: each side rounded to a multiple of 64; if the larger side exceeds ``max_res`` (1024) it is
  scaled to ``max_res`` first; decoding in chunks of 8 frames; the output is the mean of the
  decoded channels (relative inverse depth, near = large), resized back to the frame size
  (bilinear). The official script then min-max normalises over the whole video: the recipe's
  default normalisation for this source (``stability: video`` with percentiles 0 and 100) does
  the same.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from benchmark.depth.base import DepthModel
from benchmark.depth.transformers_depth import _folder_revision
from benchmark.errors import StereobenchError
from benchmark.weights import WeightSpec, resolve_weights, source_kind

DEPTHCRAFTER_ID = "tencent/DepthCrafter"
SVD_ID = "stabilityai/stable-video-diffusion-img2vid-xt"
DEPTHCRAFTER_ENV = "STEREOBENCH_DEPTHCRAFTER"
SVD_ENV = "STEREOBENCH_SVD_XT"
LICENCE = "DepthCrafter: Tencent research-only licence (no commercial use); SVD components: Stability AI community licence"
SVD_PARTS = ("vae", "image_encoder", "feature_extractor", "scheduler")


def _unet_class():
    from diffusers import UNetSpatioTemporalConditionModel
    from diffusers.models.unets.unet_spatio_temporal_condition import (
        UNetSpatioTemporalConditionOutput,
    )

    class PerFrameEmbeddingUNet(UNetSpatioTemporalConditionModel):
        """The SVD U-Net with one image embedding per frame: ``encoder_hidden_states`` is
        (batch, frames, channels) and frame ``f`` cross-attends to embedding ``f`` only (the stock
        forward repeats a (batch, 1, channels) embedding for every frame). Everything else is the
        stock computation; the weights are the stock layout."""

        def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float,
                    encoder_hidden_states: torch.Tensor, added_time_ids: torch.Tensor,
                    return_dict: bool = True):
            batch, frames = sample.shape[:2]
            if encoder_hidden_states.shape[:2] != (batch, frames):
                raise ValueError(f"per-frame embeddings must be (batch, frames, channels) = ({batch}, {frames}, C), "
                                 f"got {tuple(encoder_hidden_states.shape)}")
            t = timestep if torch.is_tensor(timestep) else torch.tensor([timestep], device=sample.device)
            t = t.reshape(-1)[:1].to(sample.device).expand(batch)
            emb = self.time_embedding(self.time_proj(t).to(self.conv_in.weight.dtype))
            extra = self.add_time_proj(added_time_ids.flatten()).reshape(batch, -1).to(emb.dtype)
            emb = (emb + self.add_embedding(extra)).repeat_interleave(frames, dim=0)
            context = encoder_hidden_states.flatten(0, 1).unsqueeze(1)  # (batch * frames, 1, C)
            hidden = self.conv_in(sample.flatten(0, 1).to(self.conv_in.weight.dtype))
            indicator = torch.zeros(batch, frames, dtype=hidden.dtype, device=hidden.device)
            skips = (hidden,)
            for block in self.down_blocks:
                kwargs = {"encoder_hidden_states": context} if getattr(block, "has_cross_attention", False) else {}
                hidden, res = block(hidden_states=hidden, temb=emb, image_only_indicator=indicator, **kwargs)
                skips += res
            hidden = self.mid_block(hidden_states=hidden, temb=emb, encoder_hidden_states=context,
                                    image_only_indicator=indicator)
            for block in self.up_blocks:
                res, skips = skips[-len(block.resnets):], skips[:-len(block.resnets)]
                kwargs = {"encoder_hidden_states": context} if getattr(block, "has_cross_attention", False) else {}
                hidden = block(hidden_states=hidden, res_hidden_states_tuple=res, temb=emb,
                               image_only_indicator=indicator, **kwargs)
            out = self.conv_out(self.conv_act(self.conv_norm_out(hidden)))
            out = out.reshape(batch, frames, *out.shape[1:])
            return UNetSpatioTemporalConditionOutput(sample=out) if return_dict else (out,)

    return PerFrameEmbeddingUNet


def processing_size(height: int, width: int, max_res: int) -> tuple[int, int]:
    """DepthCrafter's working size: the larger side capped at ``max_res`` (aspect kept), then each
    side rounded to a multiple of 64 (at least 64)."""
    h, w = float(height), float(width)
    if max(h, w) > max_res:
        scale = max_res / max(h, w)
        h, w = h * scale, w * scale
    return max(64, round(h / 64) * 64), max(64, round(w / 64) * 64)


def _has_model(folder: Path) -> bool:
    return (folder / "config.json").is_file()


class DepthCrafter(DepthModel):
    """``depthcrafter``: video depth by diffusion (windows of 110 frames, overlap 25, 5 steps).

    ``weights``: a folder with the DepthCrafter U-Net (``unet/`` or at its top level), optionally
    with the SVD parts too (``vae/``, ``image_encoder/``, ``feature_extractor/``, ``scheduler/``),
    or a cached hub id (default ``tencent/DepthCrafter``, or ``$STEREOBENCH_DEPTHCRAFTER``).
    Setting ``svd``: where the SVD parts come from when the folder lacks them (default
    ``stabilityai/stable-video-diffusion-img2vid-xt`` from the HF cache, or ``$STEREOBENCH_SVD_XT``).
    """

    NAME = "depthcrafter"
    DESCRIPTION = "DepthCrafter: video diffusion depth on diffusers (5 steps, windows 110/25; research-only licence)"
    SETTINGS: ClassVar[dict[str, Any]] = {"steps": 5, "window": 110, "overlap": 25, "max_res": 1024, "seed": 42,
                                          "noise_aug_strength": 0.02, "decode_chunk": 8, "svd": None}
    SPEED_SETTINGS = ("decode_chunk",)
    LICENCE = LICENCE
    VIDEO = True
    ALL_WEIGHTS_REQUIRED = True  # the U-Net and the SVD parts (listing: present only with both)

    @classmethod
    def check_settings(cls, settings: dict[str, Any]) -> dict[str, Any]:
        merged = super().check_settings(settings)
        for name in ("steps", "window", "max_res", "decode_chunk"):
            if int(merged[name]) < 1:
                raise StereobenchError(f"depthcrafter {name} must be >= 1, got {merged[name]}")
        if not (0 <= int(merged["overlap"]) < int(merged["window"])):
            raise StereobenchError(f"depthcrafter overlap must be in [0, window), got {merged['overlap']} with window "
                                   f"{merged['window']}")
        return merged

    @classmethod
    def _resolve(cls, weights: Any, settings: dict[str, Any]) -> tuple[str, Path, Path, str, Path]:
        """(source, folder, U-Net folder, svd source, folder with the SVD parts), offline."""
        source = str(weights or os.environ.get(DEPTHCRAFTER_ENV) or DEPTHCRAFTER_ID)
        how = (f"huggingface-cli download {DEPTHCRAFTER_ID} (research-only licence), or point --weights-depth / "
               f"${DEPTHCRAFTER_ENV} at a folder")
        folder = resolve_weights(source, what="DepthCrafter weights", how_to_get=how)
        unet = folder / "unet" if _has_model(folder / "unet") else folder
        if not _has_model(unet):
            raise StereobenchError(f"DepthCrafter weights {folder} hold no U-Net (unet/config.json or config.json); "
                                   f"{how}")
        if all((folder / part).is_dir() for part in SVD_PARTS):
            return source, folder, unet, source, folder
        svd = str(settings.get("svd") or os.environ.get(SVD_ENV) or SVD_ID)
        svd_folder = resolve_weights(svd, what="SVD img2vid-xt components of DepthCrafter",
                                     how_to_get=f"huggingface-cli download {SVD_ID}, or set svd=FOLDER / ${SVD_ENV}")
        missing = [part for part in SVD_PARTS if not (svd_folder / part).is_dir()]
        if missing:
            raise StereobenchError(f"{svd_folder} lacks {', '.join(missing)}; give an SVD img2vid-xt folder (svd=...)")
        return source, folder, unet, svd, svd_folder

    @classmethod
    def identify(cls, weights: Any = None, **settings: Any) -> dict[str, Any]:
        merged = cls.check_settings(settings)
        source, folder, _, svd, svd_folder = cls._resolve(weights, merged)
        model = source if source_kind(source) == "hf" else str(folder)
        revision = _folder_revision(folder)
        if svd_folder != folder:
            revision += "+svd:" + _folder_revision(svd_folder)
        out = {k: v for k, v in merged.items() if k not in cls.SPEED_SETTINGS}
        out["svd"] = None if svd_folder == folder else (svd if source_kind(svd) == "hf" else str(svd_folder))
        return {"model": model, "revision": revision, "settings": out}

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        identity = self.identify(self.weights, **{k: v for k, v in self._settings.items()})
        self._identity = identity
        source, folder, unet_dir, _, svd_folder = self._resolve(self.weights, self._settings)
        self.source = source
        try:
            self.unet = _unet_class().from_pretrained(unet_dir, torch_dtype=self.dtype)
            self.vae = AutoencoderKLTemporalDecoder.from_pretrained(svd_folder, subfolder="vae", torch_dtype=self.dtype)
            self.image_encoder = CLIPVisionModelWithProjection.from_pretrained(svd_folder, subfolder="image_encoder",
                                                                               dtype=self.dtype)
            self.feature_extractor = CLIPImageProcessor.from_pretrained(svd_folder, subfolder="feature_extractor")
            self.scheduler = EulerDiscreteScheduler.from_pretrained(svd_folder, subfolder="scheduler")
        except (OSError, ValueError) as exc:
            raise StereobenchError(f"cannot load DepthCrafter from {folder} / {svd_folder} "
                                   f"({str(exc).splitlines()[0][:160]}); check that the folders are complete") from None
        if self.unet.config.in_channels != 2 * self.vae.config.latent_channels:
            raise StereobenchError(f"{unet_dir} is not a DepthCrafter U-Net: it takes {self.unet.config.in_channels} "
                                   f"input channels, DepthCrafter takes {2 * self.vae.config.latent_channels} "
                                   f"(noisy latent + video latent)")
        for module in (self.unet, self.vae, self.image_encoder):
            module.to(self.device).eval()

    @property
    def spec(self) -> dict[str, Any]:
        return {"name": self.NAME, "model": self._identity["model"], "revision": self._identity["revision"]}

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self._identity["settings"])

    # -- the pipeline ---------------------------------------------------------------------------
    def _embed(self, video: torch.Tensor) -> torch.Tensor:
        """Per-frame CLIP image embeddings (T, C) of frames in [-1, 1]."""
        chunk = int(self._settings["decode_chunk"])
        small = F.interpolate(video.float(), size=(224, 224), mode="bilinear", align_corners=False, antialias=True)
        small = ((small + 1.0) / 2.0).clamp(0, 1)
        out = []
        for i in range(0, small.shape[0], chunk):
            pixels = self.feature_extractor(images=list(small[i:i + chunk].cpu()), do_normalize=True,
                                            do_center_crop=False, do_resize=False, do_rescale=False,
                                            return_tensors="pt").pixel_values
            out.append(self.image_encoder(pixels.to(self.device, self.dtype)).image_embeds)
        return torch.cat(out)

    def _encode(self, video: torch.Tensor) -> torch.Tensor:
        chunk = int(self._settings["decode_chunk"])
        return torch.cat([self.vae.encode(video[i:i + chunk].to(self.dtype)).latent_dist.mode()
                          for i in range(0, video.shape[0], chunk)])

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        chunk = int(self._settings["decode_chunk"])
        latents = latents / self.vae.config.scaling_factor
        out = [self.vae.decode(latents[i:i + chunk], num_frames=latents[i:i + chunk].shape[0]).sample
               for i in range(0, latents.shape[0], chunk)]
        return torch.cat(out)

    def denoise(self, video_latents: torch.Tensor, embeddings: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Latents (T, C, h, w) of the depth video, window by window (see the module docstring)."""
        steps, t_all = int(self._settings["steps"]), video_latents.shape[0]
        window, overlap = int(self._settings["window"]), int(self._settings["overlap"])
        if t_all <= window:
            window, overlap = t_all, 0
        stride = window - overlap
        aug = float(self._settings["noise_aug_strength"])
        time_ids = torch.tensor([[7.0, 127.0, aug]], device=self.device, dtype=self.dtype)
        self.scheduler.set_timesteps(steps, device=self.device)
        shape = (window, self.vae.config.latent_channels, *video_latents.shape[-2:])
        noise_init = torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)
        noise_init = (noise_init.to(self.device, self.dtype) * self.scheduler.init_noise_sigma)
        weights = torch.linspace(0, 1, overlap, device=self.device).view(overlap, 1, 1, 1) if overlap else None
        result: torch.Tensor | None = None
        start = 0
        while start < t_all - overlap:
            end = min(start + window, t_all)
            self.scheduler.set_timesteps(steps, device=self.device)
            latents = noise_init[: end - start].clone()
            noise_init = torch.cat([noise_init[window - overlap:] if overlap else noise_init[:0], noise_init[:stride]])
            cond = video_latents[start:end]
            for i, t in enumerate(self.scheduler.timesteps):
                if result is not None and i == 0:
                    sigma0 = self.scheduler.sigmas[0].to(self.device)
                    latents[:overlap] = result[-overlap:] + latents[:overlap] / self.scheduler.init_noise_sigma * sigma0
                model_in = torch.cat([self.scheduler.scale_model_input(latents, t), cond], dim=1)
                pred = self.unet(model_in[None], t, encoder_hidden_states=embeddings[None, start:end],
                                 added_time_ids=time_ids, return_dict=False)[0][0]
                latents = self.scheduler.step(pred, t, latents).prev_sample
            if result is None:
                result = latents
            else:
                blended = latents[:overlap] * weights + result[-overlap:] * (1 - weights)
                result = torch.cat([result[:-overlap], blended, latents[overlap:]])
            start += stride
        return result

    def _predict(self, frames: torch.Tensor, start: int) -> torch.Tensor:
        h, w = frames.shape[-2:]
        ph, pw = processing_size(h, w, int(self._settings["max_res"]))
        video = F.interpolate(frames.float().to(self.device), size=(ph, pw), mode="bilinear", align_corners=False,
                              antialias=True).clamp(0, 1) * 2.0 - 1.0
        generator = torch.Generator(device="cpu").manual_seed(int(self._settings["seed"]))
        embeddings = self._embed(video)
        noise = torch.randn(video.shape, generator=generator).to(self.device)
        latents = self._encode(video + float(self._settings["noise_aug_strength"]) * noise)
        depth_latents = self.denoise(latents, embeddings.to(self.dtype), generator)
        decoded = self._decode(depth_latents).float()
        depth = ((decoded.clamp(-1, 1) + 1.0) / 2.0).mean(dim=1, keepdim=True)  # channel mean, near = large
        return F.interpolate(depth, size=(h, w), mode="bilinear", align_corners=False)[:, 0]

    @classmethod
    def weight_specs(cls) -> tuple[WeightSpec, ...]:
        return (
            WeightSpec(name="depthcrafter-unet", source=DEPTHCRAFTER_ID, env_var=DEPTHCRAFTER_ENV,
                       how_to_get=f"huggingface-cli download {DEPTHCRAFTER_ID} (academic/research use only), or point "
                                  f"--weights-depth / ${DEPTHCRAFTER_ENV} at a folder",
                       licence="Tencent DepthCrafter licence: research only, no commercial use"),
            WeightSpec(name="svd-img2vid-xt (vae, image encoder, scheduler)", source=SVD_ID, env_var=SVD_ENV,
                       how_to_get=f"huggingface-cli download {SVD_ID} (gated: accept its licence on the hub first)",
                       licence="Stability AI community licence"),
        )


__all__ = ["DEPTHCRAFTER_ID", "SVD_ID", "DepthCrafter", "processing_size"]
