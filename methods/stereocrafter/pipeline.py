"""StereoCrafter's inpainting pipeline on diffusers modules: the official computation, the
official long-video scheme, and a blended default.

One window (a clip that fits one chunk and one tile) follows the official
``StableVideoDiffusionInpaintingPipeline.__call__`` (STEREOCRAFTER_SVG_FACTS.md 1.3,
OFFICIAL_CODE_FACTS.md F), exactly:

1. the warped right view (holes black) maps to [-1, 1]; the hole mask is binarised at 0.5
   (1 = hole) and downsampled by nearest, i.e. the top-left pixel of each 8x8 block;
2. random draws from ONE generator, in the official order (diffusers' ``randn_tensor``, which for
   a CPU generator is ``torch.randn`` on the CPU): first the noise-augmentation tensor of the
   frames' shape in float32 (multiplied by ``noise_aug_strength`` = 0, but drawn), then the
   initial latents (1, T, 4, H/8, W/8) in the U-Net's dtype, times the scheduler's
   ``init_noise_sigma`` (sqrt(700^2 + 1));
3. conditioning latents: VAE posterior *mode*, unscaled, VAE in float32, 5 frames per call;
4. CLIP embedding of the first warped frame (holes included) through the antialiased 224 resize;
5. added time ids [fps - 1 = 6, motion bucket 127, noise_aug 0];
6. Euler (the SVD-xt-1.1 ``EulerDiscreteScheduler`` of the SVD folder: Karras sigmas 700 ->
   0.002, v-prediction, continuous timesteps 0.25 ln sigma); the U-Net input is
   [scaled noisy 4 | warped latent 4 | mask 1]; guidance 1.01 on a doubled batch [uncond; cond]
   whose unconditional half has zero CLIP embedding, zero warped latents and zero mask:
   pred = u + 1.01 (c - u);
7. latents / 0.18215 decoded by the temporal decoder 2 frames per call (its temporal layers
   make the output depend on that chunking), then the official PIL round trip: clamp, x 255,
   round, / 255.

Long and large clips:

* ``chunking="official"``: the official script (inpainting_inference.py:217-273): 23-frame
  chunks, stride 20, the last chunk shifted back; the first ``overlap`` warped frames of a later
  chunk are replaced by the last generated (uint8-rounded) frames and those outputs dropped;
  ``tile_num`` x ``tile_num`` tiles with a 128 px overlap, each a full pipeline run, blended in
  latent space sequentially with weights k/16. One generator continues through every chunk and
  tile (the official script uses the global RNG the same way, unseeded). Clips of 1-3 frames,
  which crash the official loop, run as one chunk.
* ``chunking="blend"`` (default): every denoising step runs the U-Net on overlapping temporal
  windows (and spatial tiles) of ONE latent video and cross-fades their guided predictions with
  :func:`benchmark.windows.blend_windows` (linear ramps normalised to sum to one) before one Euler
  step on the whole latent. All windows share the latent trajectory, so there is no border at
  which two independent generations meet (the official scheme's brightness and colour flashes at
  every chunk border); a clip that fits one window gives exactly the official computation.

Memory stays bounded on long clips: the noise-augmentation draws are made (and, at strength 0,
dropped) one encoder batch at a time, encoding runs ``encode_chunk_size`` frames per call and
decoding ``decode_chunk_size`` frames per call straight into the output, and ``cpu_offload``
keeps idle components on the CPU. Sides are padded (replicate; padding is not a hole) to the
model's size multiple and cropped back: never resized.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmark.errors import StereobenchError
from benchmark.windows import WindowPlan, blend_windows
from methods._svd.clip import CLIP_MEAN, CLIP_STD, clip_image_embeds
from methods._svd.vae import VAE_SCALING_FACTOR, decode_latents
from methods.stereocrafter import (
    HOW_TO_GET_SVD,
    HOW_TO_GET_UNET,
    SVD_HUB_ID,
    SVD_SUBFOLDERS,
    UNET_HUB_ID,
    UNET_SUBFOLDER,
)

IN_CHANNELS = 9
LATENT_CHANNELS = 4
#: The official script's constants (inpainting_inference.py:142-261).
OFFICIAL_CHUNK = 23
OFFICIAL_OVERLAP = 3
OFFICIAL_TILE_OVERLAP = 128
OFFICIAL_TILE_BLEND = 16  # latent rows/cols blended between official tiles (128 px / 8)
GUIDANCE = 1.01
#: Pixels per VAE-encoder call beyond which the encoder batch shrinks (5 frames of 512x512).
ENCODE_PIXELS_PER_CALL = 5 * 512 * 512
FPS = 7
MOTION_BUCKET_ID = 127

#: scheduler/scheduler_config.json of stabilityai/stable-video-diffusion-img2vid-xt-1-1 (third-party
#: copies of the hub file; STEREOCRAFTER_SVG_FACTS.md 1.2). Used to write test folders.
SVD_XT_1_1_SCHEDULER = {
    "_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "beta_start": 0.00085, "clip_sample": False, "interpolation_type": "linear", "num_train_timesteps": 1000,
    "prediction_type": "v_prediction", "set_alpha_to_one": False, "sigma_max": 700.0, "sigma_min": 0.002,
    "skip_prk_steps": True, "steps_offset": 1, "timestep_spacing": "leading", "timestep_type": "continuous",
    "trained_betas": None, "use_karras_sigmas": True,
}

#: Error text of a U-Net with the wrong input width (issue #8 of the official repository).
PLAIN_SVD_HINT = "this is the plain SVD U-Net; point `weights` at TencentARC/StereoCrafter's unet_diffusers"


@dataclass
class PipelineOptions:
    """Knobs of :class:`StereoCrafterPipeline` (defaults: the official computation, blended chunks).

    num_inference_steps: Euler steps (paper 25, script 8). guidance_scale: CFG scale on the
    doubled batch (official 1.01); exactly 1.0 drops the unconditional half (not official).
    chunking: ``"blend"`` (latent cross-fade every step) or ``"official"`` (re-conditioning).
    chunk_frames: frames per U-Net window (official 23). temporal_overlap: frames shared by
    consecutive windows (None: 3 for official, 6 for blend). tile_size / tile_overlap: blended
    spatial tiles in pixels (blend mode; tiles only above tile_size). tile_num: official tiles per
    side (official mode; the official script's default 1, its shell script 2). fps,
    motion_bucket_id, noise_aug_strength: the time ids (official 7 -> 6, 127, 0).
    encode_chunk_size: frames per VAE-encoder call (official 5). decode_chunk_size: frames per
    temporal-decoder call (official 2; another value is another variant, not a speed-up).
    round_output: the official PIL round trip (round to 1/255 steps). cpu_offload: keep idle
    components on the CPU. channels_last: channels-last U-Net on CUDA. progress: a progress bar.
    """

    num_inference_steps: int = 25
    guidance_scale: float = GUIDANCE
    chunking: str = "blend"
    chunk_frames: int = OFFICIAL_CHUNK
    temporal_overlap: int | None = None
    tile_size: int = 1024
    tile_overlap: int = 128
    tile_num: int = 1
    fps: int = FPS
    motion_bucket_id: int = MOTION_BUCKET_ID
    noise_aug_strength: float = 0.0
    encode_chunk_size: int = 5
    decode_chunk_size: int = 2
    round_output: bool = True
    cpu_offload: bool = False
    channels_last: bool = True
    progress: bool = False

    def __post_init__(self) -> None:
        label = "StereoCrafter"
        if self.chunking not in ("blend", "official"):
            raise StereobenchError(f"{label} chunking must be 'blend' or 'official', got {self.chunking!r}")
        if self.num_inference_steps < 1:
            raise StereobenchError(f"{label} num_inference_steps must be >= 1, got {self.num_inference_steps}")
        if self.guidance_scale < 1.0:
            raise StereobenchError(f"{label} guidance_scale must be >= 1.0 (1.0 = no CFG batch), got {self.guidance_scale}")
        if self.chunk_frames < 1:
            raise StereobenchError(f"{label} chunk_frames must be >= 1, got {self.chunk_frames}")
        if not 0 <= self.overlap < self.chunk_frames:
            raise StereobenchError(f"{label} temporal_overlap must be in [0, chunk_frames={self.chunk_frames}), got "
                                   f"{self.overlap}: choose an overlap smaller than the chunk")
        if self.tile_size < 1 or not 0 <= self.tile_overlap < self.tile_size:
            raise StereobenchError(f"{label} tiles need tile_size >= 1 and 0 <= tile_overlap < tile_size, got "
                                   f"tile_size={self.tile_size}, tile_overlap={self.tile_overlap}")
        if self.tile_num < 1:
            raise StereobenchError(f"{label} tile_num must be >= 1 (official tiles per side), got {self.tile_num}")
        if self.encode_chunk_size < 1 or self.decode_chunk_size < 1:
            raise StereobenchError(f"{label} encode_chunk_size and decode_chunk_size must be >= 1, got "
                                   f"{self.encode_chunk_size} and {self.decode_chunk_size}")

    @property
    def overlap(self) -> int:
        """The temporal overlap in frames (the mode's default when ``temporal_overlap`` is None)."""
        if self.temporal_overlap is not None:
            return self.temporal_overlap
        return OFFICIAL_OVERLAP if self.chunking == "official" else 6

    @property
    def cfg(self) -> bool:
        """Whether the doubled batch runs (any scale other than exactly 1.0, as officially)."""
        return self.guidance_scale != 1.0


def official_chunks(frames: int, chunk: int = OFFICIAL_CHUNK, overlap: int = OFFICIAL_OVERLAP) -> list[tuple[int, int, int]]:
    """(start, end, overlap) of each chunk of the official loop (inpainting_inference.py:217-273).

    The first ``overlap`` frames of a later chunk are re-conditioned on the previous chunk's
    generated frames and dropped from its output (the first chunk's overlap is 0 here: nothing
    is replaced or dropped). The last chunk is shifted back to end at the clip's end, with a
    larger overlap. Unlike the official loop, a clip of at most ``overlap`` frames gives one
    chunk (the official loop gives none and crashes on ``torch.cat([])``).
    """
    if frames <= overlap:
        return [(0, frames, 0)]
    result: list[tuple[int, int, int]] = []
    for i in range(0, frames, chunk - overlap):
        if i + overlap >= frames:
            break
        if result and i + chunk > frames:
            start = max(frames + overlap - chunk, 0)
            cur_overlap = i - start + overlap
        else:
            start, cur_overlap = i, overlap
        result.append((start, min(start + chunk, frames), cur_overlap if result else 0))
    return result


def official_tiles(size: int, tile_num: int, overlap: int = OFFICIAL_TILE_OVERLAP) -> tuple[int, int]:
    """(tile size, stride) in pixels of the official tiling of one axis (inpainting_inference.py:38-60)."""
    tile = int((size + overlap * (tile_num - 1)) / tile_num)
    return tile, tile - overlap


def blend_official_tiles(tiles: list[list[torch.Tensor]], stride: tuple[int, int], blend: int = OFFICIAL_TILE_BLEND) -> torch.Tensor:
    """The official latent tile merge: sequential in-place linear blends, then crop and concatenate.

    tiles[i][j]: (T, C, h, w) latents of tile row i, column j; ``stride``: latent stride (rows,
    cols); ``blend``: latent rows/cols blended with weights k/blend, k = 0..blend-1
    (b = (1 - w) a_tail + w b_head; vertical neighbour first, then horizontal; a blended tile is
    the "a" of the next, as in the official ``blend_v``/``blend_h``, which modify in place).
    """
    rows = [[tile.clone() for tile in row] for row in tiles]
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            if i > 0:
                w = (torch.arange(blend, device=tile.device) / blend).view(1, 1, -1, 1).to(tile.dtype)
                tile[:, :, :blend] = (1 - w) * rows[i - 1][j][:, :, -blend:] + w * tile[:, :, :blend]
            if j > 0:
                w = (torch.arange(blend, device=tile.device) / blend).view(1, 1, 1, -1).to(tile.dtype)
                tile[:, :, :, :blend] = (1 - w) * row[j - 1][:, :, :, -blend:] + w * tile[:, :, :, :blend]
    out_rows = []
    for i, row in enumerate(rows):
        cropped = []
        for j, tile in enumerate(row):
            if i < len(rows) - 1:
                tile = tile[:, :, :stride[0]]
            if j < len(row) - 1:
                tile = tile[:, :, :, :stride[1]]
            cropped.append(tile)
        out_rows.append(torch.cat(cropped, dim=3))
    return torch.cat(out_rows, dim=2)


def nearest_latent_mask(hole_mask: torch.Tensor, factor: int) -> torch.Tensor:
    """(T, 1, H, W) mask in [0, 1] -> (T, 1, H/f, W/f) float in {0, 1}: binarised at 0.5 (>= 0.5 is a
    hole), then the top-left pixel of each f x f block (``F.interpolate(scale_factor=1/f)``,
    nearest: source index floor(f i))."""
    binary = (hole_mask.float() >= 0.5).float()
    return binary[..., ::factor, ::factor].contiguous()


def quantize_uint8(video01: torch.Tensor) -> torch.Tensor:
    """The official PIL round trip of decoded frames: clamp to [0, 1], x 255, round, / 255."""
    return torch.round(video01.clamp(0, 1) * 255) / 255


class StereoCrafterPipeline:
    """U-Net (9 input channels), temporal VAE, CLIP image encoder and Euler scheduler.

    ``unet`` and ``image_encoder`` run in the pipeline's dtype; the VAE is kept in that dtype and
    upcast to float32 for encoding under half precision (the official ``force_upcast``).
    """

    def __init__(self, unet, vae, image_encoder, scheduler, image_mean=CLIP_MEAN, image_std=CLIP_STD,
                 options: PipelineOptions | None = None, device: torch.device | str | None = None):
        if unet.config.in_channels != IN_CHANNELS:
            raise StereobenchError(f"StereoCrafter U-Net: expected {IN_CHANNELS} input channels, got "
                                   f"{unet.config.in_channels}: {PLAIN_SVD_HINT}")
        self.unet, self.vae, self.image_encoder, self.scheduler = unet, vae, image_encoder, scheduler
        self.image_mean, self.image_std = tuple(image_mean), tuple(image_std)
        self.options = options or PipelineOptions()
        self.vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        self.unet_multiple = 2 ** (len(unet.config.block_out_channels) - 1)  # in latent pixels
        self.execution_device = torch.device(device) if device is not None else next(unet.parameters()).device
        for module in (unet, vae, image_encoder):
            module.eval().requires_grad_(False)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def size_multiple(self) -> int:
        """Pixel multiple every padded side must have (blend mode; the U-Net's, 64 for SVD)."""
        return self.vae_scale * self.unet_multiple

    # -- device handling -------------------------------------------------------------------
    @contextlib.contextmanager
    def on_device(self, module):
        """``module`` on the execution device for the block; back to the CPU after it under
        ``cpu_offload`` (only one large component sits on the accelerator at a time)."""
        if self.options.cpu_offload:
            module.to(self.execution_device)
        try:
            yield module
        finally:
            if self.options.cpu_offload and self.execution_device.type != "cpu":
                module.to("cpu")
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()

    # -- conditioning ----------------------------------------------------------------------
    def clip_embedding(self, first_frame01: torch.Tensor) -> torch.Tensor:
        """(1, 1, D) CLIP embedding of one warped frame (1, 3, H, W) in [0, 1] (official: x*2-1,
        antialiased resize to the encoder's size, back to [0, 1], CLIP normalisation)."""
        with self.on_device(self.image_encoder):
            frame = first_frame01.to(self.execution_device, torch.float32) * 2 - 1
            return clip_image_embeds(self.image_encoder, frame, self.image_mean, self.image_std)[:, None]

    def encode_conditioning(self, warped_m11: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Draw the noise-augmentation tensor (official order: first) and encode the warped frames.

        warped_m11: (T, 3, H, W) float32 in [-1, 1] on any device. The draws are made
        :meth:`encode_batch` frames at a time (the CPU generator's stream does not depend on
        how a draw of a multiple of 16 values is split: tested), added with
        ``noise_aug_strength`` (0: drawn and dropped), and each batch is encoded by the VAE in
        float32, posterior mode, unscaled. Returns (T, 4, H/8, W/8) float32 on the device.
        """
        strength = self.options.noise_aug_strength
        latents = []
        with self.on_device(self.vae) as vae:
            upcast = next(vae.parameters()).dtype != torch.float32
            if upcast:
                vae.to(torch.float32)
            try:
                for batch in warped_m11.split(self.encode_batch(warped_m11.shape[-2:])):
                    noise = torch.randn(batch.shape, generator=generator, dtype=torch.float32)
                    batch = batch.to(self.execution_device, torch.float32)
                    if strength:
                        batch = batch + strength * noise.to(batch.device)
                    latents.append(vae.encode(batch).latent_dist.mode().float())
            finally:
                if upcast:
                    vae.to(self.dtype)
        return torch.cat(latents)

    def encode_batch(self, size) -> int:
        """Frames per VAE-encoder call: ``encode_chunk_size`` (official 5) up to 512x512, fewer on
        larger frames so the float32 encoder's activations stay bounded (the encoder is per
        frame: the batch changes only the float summation order, ~1e-6)."""
        return max(1, min(self.options.encode_chunk_size, ENCODE_PIXELS_PER_CALL // (int(size[0]) * int(size[1]))))

    def draw_latents(self, frames: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
        """Initial latents (1, T, 4, h, w): ``randn`` in the U-Net's dtype on the CPU generator (as
        diffusers' ``randn_tensor``), times ``init_noise_sigma``; float32 on the device. Call
        after ``scheduler.set_timesteps`` (the official order): before it the scheduler reports
        the training schedule's sigma, not sqrt(700^2 + 1)."""
        shape = (1, frames, LATENT_CHANNELS, height, width)
        noise = torch.randn(shape, generator=generator, dtype=self.dtype)
        return noise.to(self.execution_device, torch.float32) * float(self.scheduler.init_noise_sigma)

    def time_ids(self, batch: int) -> torch.Tensor:
        """(batch, 3) added time ids [fps - 1, motion bucket, noise_aug] in the U-Net's dtype."""
        opts = self.options
        ids = torch.tensor([[opts.fps - 1, opts.motion_bucket_id, opts.noise_aug_strength]], dtype=self.dtype)
        return ids.repeat(batch, 1).to(self.execution_device)

    # -- model -----------------------------------------------------------------------------
    def guided_prediction(self, scaled: torch.Tensor, timestep, cond: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """Guided v-prediction (1, t, 4, h, w) in float32.

        scaled: (1, t, 4, h, w) scheduler-scaled latents; cond: (1, t, 5, h, w) [warped latent 4 |
        mask 1] in the U-Net's dtype; embedding (1, 1, D). With CFG the batch is [uncond; cond],
        the unconditional half with zero embedding, warped latents and mask; pred = u + g (c - u).
        """
        dtype = self.dtype
        sample = torch.cat([scaled.to(dtype), cond], dim=2)
        context = embedding.to(dtype)
        if self.options.cfg:
            uncond = torch.cat([scaled.to(dtype), torch.zeros_like(cond)], dim=2)
            sample = torch.cat([uncond, sample])
            context = torch.cat([torch.zeros_like(context), context])
        out = self.unet(sample, timestep, encoder_hidden_states=context, added_time_ids=self.time_ids(sample.shape[0]),
                        return_dict=False)[0].float()
        if not self.options.cfg:
            return out
        uncond_out, cond_out = out.chunk(2)
        return uncond_out + self.options.guidance_scale * (cond_out - uncond_out)

    def denoise(self, warped01: torch.Tensor, hole_mask: torch.Tensor, generator: torch.Generator,
                temporal: tuple[int, int] | None = None, spatial: tuple[int, int] | None = None) -> torch.Tensor:
        """Latents (T, 4, h, w) float32 of one pipeline run over windows of one latent video.

        warped01 (T, 3, H, W) in [0, 1] and hole_mask (T, 1, H, W) (sides multiples of
        :attr:`size_multiple`); temporal (window, overlap) frames and spatial (tile, overlap)
        latent pixels of the blended windows (None: one window, the official pipeline call).
        Draws (noise augmentation, then latents) come from ``generator`` in the official order.
        """
        frames, _, height, width = warped01.shape
        h, w = height // self.vae_scale, width // self.vae_scale
        warped_latent = self.encode_conditioning(warped01 * 2 - 1, generator)
        mask_latent = nearest_latent_mask(hole_mask, self.vae_scale).to(self.execution_device)
        # The conditioning channels, once per clip in the U-Net's dtype (sliced per window).
        cond = torch.cat([warped_latent, mask_latent], dim=1)[None].to(self.dtype)
        del warped_latent, mask_latent
        # Official order: set the timesteps first (init_noise_sigma depends on them), then draw.
        scheduler = self.scheduler
        scheduler.set_timesteps(self.options.num_inference_steps, device=self.execution_device)
        latents = self.draw_latents(frames, h, w, generator)
        temporal = temporal or (frames, 0)
        spatial = spatial or (max(h, w), 0)
        plan = WindowPlan.build(frames, h, w, temporal, spatial)
        # Conditioning computed once: the CLIP embedding of each temporal window's first warped
        # frame (whole frame: every tile of a window shares it, so tiles get no colour cast of
        # their own; one window = the official call).
        embeddings = {t0: self.clip_embedding(warped01[t0:t0 + 1]) for t0, _ in plan.frames}
        from tqdm.auto import tqdm

        steps = tqdm(scheduler.timesteps, desc="stereocrafter steps", disable=not self.options.progress)
        with self.on_device(self.unet):
            for timestep in steps:
                scaled = scheduler.scale_model_input(latents, timestep)

                def window(ts: slice, ys: slice, xs: slice, scaled=scaled, timestep=timestep) -> torch.Tensor:
                    pred = self.guided_prediction(scaled[:, ts, :, ys, xs], timestep, cond[:, ts, :, ys, xs],
                                                  embeddings[ts.start])
                    return pred[0]

                if len(plan) == 1:
                    pred = window(slice(0, frames), slice(0, h), slice(0, w))[None]
                else:
                    pred = blend_windows(window, (frames, LATENT_CHANNELS, h, w), temporal, spatial,
                                         device=self.execution_device)[None]
                latents = scheduler.step(pred, timestep, latents).prev_sample.float()
        return latents[0]

    def decode(self, latents: torch.Tensor, round_output: bool | None = None) -> torch.Tensor:
        """(T, 4, h, w) generated latents -> (T, 3, H, W) float32 in [0, 1]: / 0.18215, temporal
        decode ``decode_chunk_size`` frames per call (each call its own short video, as the
        official ``decode_latents``), clamp, and the official rounding when ``round_output``
        (default: the option). Only one decoder chunk is in flight at a time."""
        rounding = self.options.round_output if round_output is None else round_output
        out = None
        with self.on_device(self.vae) as vae:
            start = 0
            for part in latents.split(self.options.decode_chunk_size):
                video = decode_latents(vae, part.to(self.execution_device), None, VAE_SCALING_FACTOR).float()
                video = (video / 2 + 0.5).clamp(0, 1)
                if rounding:
                    video = quantize_uint8(video)
                if out is None:
                    out = torch.empty((latents.shape[0], *video.shape[1:]), dtype=torch.float32, device=video.device)
                out[start:start + video.shape[0]] = video
                start += video.shape[0]
        return out

    # -- whole clips -----------------------------------------------------------------------
    def padded_multiple(self) -> int:
        opts = self.options
        if opts.chunking == "official" and opts.tile_num > 1:
            return math.lcm(self.size_multiple, OFFICIAL_TILE_OVERLAP)
        return self.size_multiple

    @torch.no_grad()
    def __call__(self, warped: torch.Tensor, hole_mask: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """Right video float32 (T, 3, H, W) in [0, 1] for any T >= 1, H, W.

        warped: (T, 3, H, W) in [0, 1], holes black; hole_mask: (T, 1, H, W) bool or float in
        [0, 1] (a hole where >= 0.5); seed: the one CPU generator of every random draw.
        """
        frames, _, height, width = warped.shape
        if frames < 1:
            raise StereobenchError("StereoCrafter needs at least one frame")
        out_device = warped.device
        warped = warped.float()
        hole_mask = hole_mask.float()
        multiple = self.padded_multiple()
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        if pad_h or pad_w:
            warped = F.pad(warped, (0, pad_w, 0, pad_h), mode="replicate")
            hole_mask = F.pad(hole_mask, (0, pad_w, 0, pad_h), value=0.0)
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        if self.options.chunking == "official":
            out = self._official(warped, hole_mask, generator)
        else:
            out = self._blend(warped, hole_mask, generator)
        return out[:, :, :height, :width].to(out_device)

    def _blend(self, warped: torch.Tensor, hole_mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        opts = self.options
        s, m = self.vae_scale, self.unet_multiple
        tile = max(m, opts.tile_size // s // m * m)
        tile_overlap = opts.tile_overlap // s
        if tile_overlap >= tile:
            raise StereobenchError(f"StereoCrafter tile_overlap={opts.tile_overlap} px is {tile_overlap} latent px, not "
                                   f"less than the tile of {tile} latent px: use a smaller tile_overlap")
        latents = self.denoise(warped, hole_mask, generator, (opts.chunk_frames, opts.overlap), (tile, tile_overlap))
        return self.decode(latents)

    def _official(self, warped: torch.Tensor, hole_mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        opts = self.options
        frames, _, height, width = warped.shape
        tiles_y, tiles_x = official_tiles(height, opts.tile_num), official_tiles(width, opts.tile_num)
        for size, stride in (tiles_y, tiles_x):
            if opts.tile_num > 1 and stride <= 0:
                raise StereobenchError(f"StereoCrafter official tiles: tile_num={opts.tile_num} on {height}x{width} px "
                                       f"(padded) leaves no stride past the {OFFICIAL_TILE_OVERLAP} px overlap; use a "
                                       f"smaller tile_num or chunking='blend'")
            if size % self.size_multiple:
                raise StereobenchError(f"StereoCrafter official tiles of {size} px are not a multiple of "
                                       f"{self.size_multiple}: use tile_num=1 or chunking='blend'")
        s = self.vae_scale
        results = []
        generated = None
        for start, end, overlap in official_chunks(frames, opts.chunk_frames, opts.overlap):
            chunk = warped[start:end].clone()
            if generated is not None and overlap:
                chunk[:overlap] = generated[-overlap:].to(chunk.device)
            mask = hole_mask[start:end]
            grid = []
            for i in range(opts.tile_num):
                row = []
                for j in range(opts.tile_num):
                    ys = slice(i * tiles_y[1], i * tiles_y[1] + tiles_y[0])
                    xs = slice(j * tiles_x[1], j * tiles_x[1] + tiles_x[0])
                    row.append(self.denoise(chunk[:, :, ys, xs], mask[:, :, ys, xs], generator))
                grid.append(row)
            latents = blend_official_tiles(grid, (tiles_y[1] // s, tiles_x[1] // s), OFFICIAL_TILE_OVERLAP // s)
            # The official script always goes through PIL (rounding) before re-conditioning;
            # round_output only decides what is returned.
            decoded = self.decode(latents, round_output=False)[overlap:]
            generated = quantize_uint8(decoded)
            results.append(generated if opts.round_output else decoded)
        return torch.cat(results)


# ----------------------------------------------------------------------------------------
# Loading: the U-Net folder (TencentARC/StereoCrafter, unet_diffusers/) and the SVD-xt-1.1 folder

SVD_COMPONENTS = ("vae", "image_encoder")
SVD_FILES = ("scheduler/scheduler_config.json", "feature_extractor/preprocessor_config.json")


def _weights_variant(component: Path) -> str | None:
    """None when ``component`` holds plain weights files, ``"fp16"`` when it only holds the fp16
    variant (``*.fp16.safetensors``, as in the SVD repos)."""
    names = [p.name for p in component.iterdir() if p.suffix in (".safetensors", ".bin")]
    if any(".fp16." not in n for n in names):
        return None
    return "fp16" if names else None


def resolve_unet_folder(source) -> Path:
    """The folder holding the 9-channel U-Net's ``config.json`` and weights.

    ``source``: a diffusers model folder, a copy of the hub repo (with ``unet_diffusers/``), or
    the hub id (looked up in the Hugging Face cache only; ``unet_diffusers/`` inside the snapshot,
    or the snapshot root as in its first commits).
    """
    from benchmark.weights import resolve_weights

    what = f"StereoCrafter U-Net ({UNET_HUB_ID}, subfolder {UNET_SUBFOLDER})"
    root = resolve_weights(source, what=what, how_to_get=HOW_TO_GET_UNET)
    for folder in (root / UNET_SUBFOLDER, root):
        if (folder / "config.json").is_file():
            if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
                raise StereobenchError(f"{what}: {folder} has config.json but no weights file; {HOW_TO_GET_UNET}")
            return folder
    raise StereobenchError(f"{what}: {root} holds neither config.json nor {UNET_SUBFOLDER}/config.json; {HOW_TO_GET_UNET}")


def check_unet_config(folder: Path) -> None:
    """Refuse a U-Net whose config is not the 9-channel StereoCrafter one (before reading weights)."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise StereobenchError(f"{folder / 'config.json'} is not readable JSON ({type(exc).__name__}); "
                               f"download it again: {HOW_TO_GET_UNET}") from None
    channels = config.get("in_channels")
    if channels != IN_CHANNELS:
        hint = PLAIN_SVD_HINT if channels == 8 else f"not a StereoCrafter U-Net; {HOW_TO_GET_UNET}"
        raise StereobenchError(f"StereoCrafter U-Net {folder}: expected {IN_CHANNELS} input channels, got {channels}: {hint}")


def resolve_svd_folder(source) -> Path:
    """The SVD-xt-1.1 pipeline folder (path or cached hub id) with every component it needs."""
    from methods._svd.folders import require_folder, resolve_folder

    what = f"SVD-xt-1.1 components ({SVD_HUB_ID}: {', '.join(SVD_SUBFOLDERS)})"
    folder = resolve_folder(source, what=what, how_to_get=HOW_TO_GET_SVD)
    return require_folder(folder, SVD_COMPONENTS, SVD_FILES, what=what, fix=HOW_TO_GET_SVD)


def load_pipeline(unet_source, svd_source, device="cpu", dtype=torch.float32,
                  options: PipelineOptions | None = None) -> StereoCrafterPipeline:
    """Load the U-Net and the SVD components onto ``device`` (all on the CPU under cpu_offload)."""
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPVisionModelWithProjection

    options = options or PipelineOptions()
    unet_folder = resolve_unet_folder(unet_source)
    check_unet_config(unet_folder)
    svd_folder = resolve_svd_folder(svd_source)
    device = torch.device(device)
    home = torch.device("cpu") if options.cpu_offload else device
    unet = UNetSpatioTemporalConditionModel.from_pretrained(unet_folder, torch_dtype=dtype,
                                                            variant=_weights_variant(unet_folder))
    vae = AutoencoderKLTemporalDecoder.from_pretrained(svd_folder / "vae", torch_dtype=dtype,
                                                       variant=_weights_variant(svd_folder / "vae"))
    image_encoder = CLIPVisionModelWithProjection.from_pretrained(
        svd_folder / "image_encoder", torch_dtype=dtype, variant=_weights_variant(svd_folder / "image_encoder"))
    if image_encoder.config.projection_dim != unet.config.cross_attention_dim:
        raise StereobenchError(f"image encoder projects to {image_encoder.config.projection_dim} but the U-Net expects "
                               f"{unet.config.cross_attention_dim}-d context: {svd_folder} is not the SVD-xt-1.1 folder")
    scheduler = EulerDiscreteScheduler.from_pretrained(svd_folder / "scheduler")
    preprocessor = json.loads((svd_folder / "feature_extractor" / "preprocessor_config.json").read_text())
    mean, std = preprocessor.get("image_mean", CLIP_MEAN), preprocessor.get("image_std", CLIP_STD)
    if device.type == "cuda" and options.channels_last:
        unet.to(memory_format=torch.channels_last)
    return StereoCrafterPipeline(unet.to(home), vae.to(home), image_encoder.to(home), scheduler, mean, std, options,
                                 device=device)


def tiny_components(seed: int = 0, in_channels: int = IN_CHANNELS):
    """Tiny random (unet, vae, image_encoder) of StereoCrafter's structure (tests, CPU demos).

    The VAE keeps SVD's 8x downsampling (4 levels) so latent-space tile arithmetic is real; the
    U-Net has 2 levels (latent sides multiples of 2, pixel sides multiples of 16).
    """
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    unet = UNetSpatioTemporalConditionModel(
        sample_size=8, in_channels=in_channels, out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        block_out_channels=(32, 64), addition_time_embed_dim=8, projection_class_embeddings_input_dim=24,
        layers_per_block=1, cross_attention_dim=32, transformer_layers_per_block=1, num_attention_heads=(2, 4),
        num_frames=25,
    )
    vae = AutoencoderKLTemporalDecoder(
        down_block_types=("DownEncoderBlock2D",) * 4, block_out_channels=(32, 32, 32, 32), layers_per_block=1,
        latent_channels=4,
    )
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8,
        projection_dim=32,
    ))
    return unet, vae, image_encoder


def save_svd_folder(folder, vae, image_encoder, image_mean=CLIP_MEAN, image_std=CLIP_STD,
                    scheduler_config: dict | None = None) -> Path:
    """Write an SVD-style pipeline folder: vae/, image_encoder/, feature_extractor/, scheduler/."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vae.save_pretrained(folder / "vae")
    image_encoder.save_pretrained(folder / "image_encoder")
    (folder / "feature_extractor").mkdir(exist_ok=True)
    size = image_encoder.config.image_size
    (folder / "feature_extractor" / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": {"height": size, "width": size}, "do_center_crop": True, "do_normalize": True, "do_rescale": True,
        "do_resize": True, "image_mean": list(image_mean), "image_processor_type": "CLIPImageProcessor",
        "image_std": list(image_std), "resample": 3, "rescale_factor": 1 / 255, "size": {"shortest_edge": size},
    }, indent=2))
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler_config or SVD_XT_1_1_SCHEDULER, indent=2))
    return folder
