"""Single-step M2SVid inference on diffusers modules, with padding, temporal chunks and tiles.

One window (at most 25 frames, sides multiples of 64) follows the official ``generate()``
(OFFICIAL_CODE_FACTS.md A, E):

1. warped pixels under the (closed) hole mask are zeroed, then the mask is dilated 3x3
   (the pixels of the dilation ring keep their warped values);
2. left, warped and mask map to [-1, 1]; 0.02 N(0,1) noise is added to left and warped
   (conditioning augmentation, seeded here for reproducibility);
3. both videos are VAE-encoded (encoder, quant_conv, posterior mode, *no* 0.18215 scaling);
   the mask is resized to latent size bilinearly without antialiasing (values in [-1, 1]);
4. CLIP image embeddings of *every* left frame (antialiased resize to the encoder's size,
   CLIP normalisation) condition the spatial cross-attention of their own frame;
5. one U-Net call on a zero latent at sigma_max = 700: c_noise = 0.25 ln 700, added time ids
   [fps, 127, 0.02]; the clean latent is z = c_out F with c_out = -700 / sqrt(700^2 + 1);
6. the temporal VAE decoder decodes z / 0.18215 for all frames of the window in one call
   (frame-batched decoding changes the temporal decoder's output; ``decode_chunk_size`` is
   an explicit, non-official memory option).

Beyond the official code (which refuses T > 25 and sides not divisible by 64): sides are
padded (replicate) to the size multiple and cropped back; longer videos run in overlapping
temporal windows and large frames in overlapping spatial tiles, blended with linear
cross-fades (weights normalised to sum to one at every frame and pixel).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from benchmark.stereo.warp import dilate_mask
from methods.m2svid.model import LATENT_SCALE, SIGMA_MAX

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
MOTION_BUCKET_ID = 127.0
COND_AUG = 0.02
MAX_FRAMES = 25


def edm_v_scalings(sigma: float) -> tuple[float, float, float, float]:
    """(c_skip, c_out, c_in, c_noise) of sgm's VScalingWithEDMcNoise at noise level sigma."""
    return 1.0 / (sigma**2 + 1), -sigma / math.sqrt(sigma**2 + 1), 1.0 / math.sqrt(sigma**2 + 1), 0.25 * math.log(sigma)


def _gaussian_kernel1d(size: int, sigma: float, device, dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=torch.float64) - (size - 1) / 2
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    return (kernel / kernel.sum()).to(dtype)


def resize_antialiased(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Kornia-style antialiased bicubic resize (Gaussian prefilter, align_corners=True).

    Matches sgm's CLIP preprocessing: sigma = max((factor - 1) / 2, 0.001) per axis, odd
    kernel of int(max(4 sigma, 3)) taps, reflect padding, then bicubic interpolation.
    images: (N, C, H, W) -> (N, C, *size).
    """
    height, width = images.shape[-2:]
    out = images
    for axis, (src, dst) in enumerate(((height, size[0]), (width, size[1]))):
        sigma = max((src / dst - 1.0) / 2.0, 0.001)
        taps = int(max(2.0 * 2 * sigma, 3))
        taps += 1 - taps % 2
        kernel = _gaussian_kernel1d(taps, sigma, images.device, images.dtype)
        pad = taps // 2
        channels = out.shape[1]
        if axis == 0:
            out = F.conv2d(F.pad(out, (0, 0, pad, pad), mode="reflect"), kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
        else:
            out = F.conv2d(F.pad(out, (pad, pad, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.interpolate(out, size=size, mode="bicubic", align_corners=True)


# ----------------------------------------------------------------------------------------
# Windows and blending (generic: tested with position-independent functions)


def windows_1d(length: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """Overlapping [start, end) windows covering ``length``; the last one is shifted back so
    every window has full size when ``length >= window``."""
    if length <= window:
        return [(0, length)]
    if not 0 <= overlap < window:
        raise ValueError(f"overlap must be in [0, {window}), got {overlap}")
    stride = window - overlap
    starts = list(range(0, length - window, stride)) + [length - window]
    return [(s, s + window) for s in dict.fromkeys(starts)]


def ramp_weights(spans: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Linear cross-fade weights of each window (float64 1-D tensors, all > 0).

    Inside an overlap of n samples with a neighbour, one window ramps up (1..n)/(n+1) and the
    other down, so two overlapping ramps sum exactly to one; the blender still normalises by
    the accumulated weight (three-way overlaps after the last window's shift).
    """
    weights = []
    for index, (start, end) in enumerate(spans):
        n = end - start
        position = torch.arange(n, dtype=torch.float64)
        weight = torch.ones(n, dtype=torch.float64)
        if index > 0:
            left_overlap = max(spans[index - 1][1] - start, 0)
            if left_overlap:
                weight = torch.minimum(weight, (position + 1) / (left_overlap + 1))
        if index < len(spans) - 1:
            right_overlap = max(end - spans[index + 1][0], 0)
            if right_overlap:
                weight = torch.minimum(weight, (n - position) / (right_overlap + 1))
        weights.append(weight)
    return weights


def blend_windows(
    window_fn: Callable[[slice, slice, slice], torch.Tensor],
    shape: tuple[int, int, int, int],
    temporal: tuple[int, int],
    spatial: tuple[int, int],
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> torch.Tensor:
    """Run ``window_fn`` on overlapping (frames, rows, cols) windows and cross-fade the results.

    Args:
        window_fn: (frame slice, row slice, col slice) -> (t, C, h, w) float tensor.
        shape: (T, C, H, W) of the output.
        temporal: (window frames, overlap frames).
        spatial: (tile size in px, tile overlap in px); tiles only when a side exceeds it.
        device: where the output is accumulated.

    Returns:
        float32 (T, C, H, W), every sample a convex combination of the windows covering it.
    """
    frames, channels, height, width = shape
    t_spans = windows_1d(frames, *temporal)
    y_spans, x_spans = windows_1d(height, *spatial), windows_1d(width, *spatial)
    t_w, y_w, x_w = ramp_weights(t_spans), ramp_weights(y_spans), ramp_weights(x_spans)
    out = torch.zeros(shape, dtype=torch.float32, device=device)
    total = torch.zeros((frames, 1, height, width), dtype=torch.float32, device=device)
    jobs = [(ti, yi, xi) for ti in range(len(t_spans)) for yi in range(len(y_spans)) for xi in range(len(x_spans))]
    for ti, yi, xi in tqdm(jobs, desc="m2svid windows", disable=not progress or len(jobs) == 1):
        ts, ys, xs = slice(*t_spans[ti]), slice(*y_spans[yi]), slice(*x_spans[xi])
        result = window_fn(ts, ys, xs).to(device=device, dtype=torch.float32)
        weight = (t_w[ti][:, None, None, None] * y_w[yi][None, None, :, None] * x_w[xi][None, None, None, :])
        weight = weight.to(device=device, dtype=torch.float32)
        out[ts, :, ys, xs] += result * weight
        total[ts, :, ys, xs] += weight
    return out / total


# ----------------------------------------------------------------------------------------


@dataclass
class InferenceOptions:
    """Knobs of :class:`M2SVidPipeline` (defaults follow the official inference).

    chunk_frames: frames per U-Net call (<= 25). temporal_overlap: frames cross-faded between
    consecutive windows. tile_size / tile_overlap: spatial tiling in pixels of the padded frame
    (tiles only when a side exceeds tile_size). encode_chunk_size: frames per VAE-encoder batch
    (per-frame encoder: exact). decode_chunk_size: None decodes each window in one temporal
    decoder call (official); an int trades fidelity for memory. motion_bucket_id, cond_aug: the
    official 127 and 0.02. dilate_mask: the official 3x3 dilation of the hole mask.
    """

    chunk_frames: int = MAX_FRAMES
    temporal_overlap: int = 4
    tile_size: int = 1024
    tile_overlap: int = 128
    encode_chunk_size: int = 8
    decode_chunk_size: int | None = None
    motion_bucket_id: float = MOTION_BUCKET_ID
    cond_aug: float = COND_AUG
    dilate_mask: bool = True
    progress: bool = False


class M2SVidPipeline:
    """The M2SVid model (U-Net + temporal VAE + CLIP image encoder) and its single-step call.

    All modules must be on the same device and in the same dtype (``dtype``).
    """

    def __init__(self, unet, vae, image_encoder, image_mean=CLIP_MEAN, image_std=CLIP_STD, options: InferenceOptions | None = None):
        self.unet, self.vae, self.image_encoder = unet, vae, image_encoder
        self.image_mean, self.image_std = tuple(image_mean), tuple(image_std)
        self.options = options or InferenceOptions()
        self.vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        self.size_multiple = self.vae_scale * 2 ** (len(unet.config.block_out_channels) - 1)
        for module in (unet, vae, image_encoder):
            module.eval().requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    # -- conditioning ----------------------------------------------------------------------
    def encode_video(self, video_m11: torch.Tensor) -> torch.Tensor:
        """VAE latents (posterior mode, unscaled) of (T, 3, H, W) in [-1, 1] -> (T, 4, H/8, W/8)."""
        latents = [
            self.vae.encode(batch.to(self.dtype)).latent_dist.mode()
            for batch in video_m11.split(self.options.encode_chunk_size)
        ]
        return torch.cat(latents)

    def clip_tokens(self, left_m11: torch.Tensor) -> torch.Tensor:
        """CLIP image embeddings (T, C) of every left frame in [-1, 1]."""
        size = self.image_encoder.config.image_size
        images = resize_antialiased(left_m11.float(), (size, size))
        images = (images + 1) / 2
        mean = torch.tensor(self.image_mean, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.image_std, device=images.device).view(1, 3, 1, 1)
        images = ((images - mean) / std).to(self.dtype)
        return self.image_encoder(pixel_values=images).image_embeds

    def latent_mask(self, hole_mask: torch.Tensor) -> torch.Tensor:
        """(T, 1, H, W) bool or float in [0, 1] -> (T, 1, H/8, W/8) in [-1, 1], bilinear without
        antialias, not thresholded (official: torchvision Resize(antialias=False) of mask*2-1)."""
        mask_m11 = hole_mask.float() * 2 - 1
        size = (hole_mask.shape[-2] // self.vae_scale, hole_mask.shape[-1] // self.vae_scale)
        return F.interpolate(mask_m11, size=size, mode="bilinear", align_corners=False, antialias=False)

    def conditioning(self, left_m11, warped_m11, hole_mask, fps: float):
        """U-Net concat input (1, T, 9, h, w) and added time ids (1, 3)."""
        left_latent = self.encode_video(left_m11)
        warped_latent = self.encode_video(warped_m11)
        mask_latent = self.latent_mask(hole_mask).to(left_latent.dtype)
        concat = torch.cat([left_latent, warped_latent, mask_latent], dim=1)[None]
        ids = torch.tensor([[fps, self.options.motion_bucket_id, self.options.cond_aug]], device=self.device, dtype=self.dtype)
        return concat, ids

    # -- model -----------------------------------------------------------------------------
    def predict_latent(self, concat: torch.Tensor, tokens: torch.Tensor, time_ids: torch.Tensor) -> torch.Tensor:
        """Clean latent z = D(0; sigma_max) = c_out F(0, c_noise) for (1, T, 9, h, w) conditions."""
        _, c_out, _, c_noise = edm_v_scalings(SIGMA_MAX)
        zero = torch.zeros_like(concat[:, :, :4])
        sample = torch.cat([zero, concat], dim=2)
        return c_out * self.unet(sample, c_noise, tokens, time_ids)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """(T, 4, h, w) clean latent -> (T, 3, H, W) in [-1, 1] (unclamped)."""
        frames = latent.shape[0]
        z = (latent / LATENT_SCALE).to(self.dtype)
        step = self.options.decode_chunk_size or frames
        parts = [self.vae.decode(part, num_frames=part.shape[0]).sample for part in z.split(step)]
        return torch.cat(parts)

    def refine_window(self, left: torch.Tensor, warped: torch.Tensor, hole_mask: torch.Tensor, noise: torch.Tensor, fps: float) -> torch.Tensor:
        """One window, sides multiples of ``size_multiple``, T <= 25.

        left, warped: (T, 3, H, W) in [0, 1], ``warped`` already 0 under the *closed* (undilated)
        hole mask; hole_mask: (T, 1, H, W) model mask, bool or float in [0, 1], already dilated.
        The official code zeroes the warped view under the closed mask and only then dilates
        (inpaint_and_refine.py, datasets.py): pixels of the dilation ring keep their warped
        values, so nothing is zeroed here. noise: (2, T, 3, H, W) standard normal for the
        conditioning augmentation. Returns float32 (T, 3, H, W) in [0, 1].
        """
        if left.shape[0] > MAX_FRAMES:
            raise ValueError(f"a window holds at most {MAX_FRAMES} frames, got {left.shape[0]}")
        aug = self.options.cond_aug
        left_m11 = left * 2 - 1
        warped_m11 = warped * 2 - 1
        tokens = self.clip_tokens(left_m11)[None]
        concat, time_ids = self.conditioning(left_m11 + aug * noise[0], warped_m11 + aug * noise[1], hole_mask, fps)
        latent = self.predict_latent(concat, tokens, time_ids)[0]
        return ((self.decode(latent).float() + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def __call__(self, left: torch.Tensor, warped: torch.Tensor, hole_mask: torch.Tensor, fps: float, seed: int = 0) -> torch.Tensor:
        """Right video float32 (T, 3, H, W) in [0, 1] for any T, H, W.

        left, warped: float (T, 3, H, W) in [0, 1]; hole_mask: bool (T, 1, H, W) True = hole;
        fps: the clip's frame rate (official fps_id, not fps - 1); seed: conditioning noise.
        """
        opts = self.options
        frames, _, height, width = left.shape
        device = self.device
        left, warped, hole_mask = left.to(device, torch.float32), warped.to(device, torch.float32), hole_mask.to(device)
        # Official order: zero the warped view under the closed mask, *then* dilate the mask.
        warped = torch.where(hole_mask, 0.0, warped)
        if opts.dilate_mask:
            hole_mask = dilate_mask(hole_mask, 3)
        multiple = self.size_multiple
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        if pad_h or pad_w:
            left = F.pad(left, (0, pad_w, 0, pad_h), mode="replicate")
            warped = F.pad(warped, (0, pad_w, 0, pad_h), mode="replicate")
            hole_mask = F.pad(hole_mask, (0, pad_w, 0, pad_h), value=False)
        padded_h, padded_w = left.shape[-2:]
        generator = torch.Generator(device="cpu")

        def noise_for(ts: slice) -> torch.Tensor:
            # One noise field per frame, independent of windows and tiles (seeded per frame).
            fields = []
            for frame in range(ts.start, ts.stop):
                generator.manual_seed(seed * 1_000_003 + frame)
                fields.append(torch.randn((2, 3, padded_h, padded_w), generator=generator))
            return torch.stack(fields, dim=1).to(device)

        tile = max(multiple, opts.tile_size // multiple * multiple)
        tile_overlap = opts.tile_overlap // multiple * multiple

        def window(ts: slice, ys: slice, xs: slice) -> torch.Tensor:
            return self.refine_window(left[ts, :, ys, xs], warped[ts, :, ys, xs], hole_mask[ts, :, ys, xs], noise_for(ts)[..., ys, xs], fps)

        out = blend_windows(
            window, (frames, 3, padded_h, padded_w), (min(opts.chunk_frames, MAX_FRAMES), opts.temporal_overlap),
            (tile, tile_overlap), device=device, progress=opts.progress,
        )
        return out[:, :, :height, :width]


# ----------------------------------------------------------------------------------------
# Diffusers-format folders: unet/, vae/, image_encoder/, feature_extractor/ (optional), m2svid.json

MANIFEST = "m2svid.json"
COMPONENTS = ("unet", "vae", "image_encoder")


def tiny_components(seed: int = 0):
    """Tiny random (unet, vae, image_encoder) of M2SVid's structure (tests, CPU demos)."""
    from diffusers import AutoencoderKLTemporalDecoder
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from methods.m2svid.model import M2SVidUNet, tiny_config

    torch.manual_seed(seed)
    unet = M2SVidUNet(**tiny_config())
    vae = AutoencoderKLTemporalDecoder(
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"), block_out_channels=(32, 32),
        layers_per_block=1, latent_channels=4,
    )
    clip_config = CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        image_size=32, patch_size=8, projection_dim=unet.config.cross_attention_dim,
    )
    image_encoder = CLIPVisionModelWithProjection(clip_config)
    return unet, vae, image_encoder


def save_pipeline_folder(folder, unet, vae, image_encoder, manifest: dict | None = None,
                         image_mean=CLIP_MEAN, image_std=CLIP_STD) -> None:
    """Write a diffusers-format M2SVid folder (safetensors; manifest last, as a completion mark)."""
    import json
    from pathlib import Path

    from benchmark.fileio import atomic_write_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    image_encoder.save_pretrained(folder / "image_encoder")
    (folder / "feature_extractor").mkdir(exist_ok=True)
    size = image_encoder.config.image_size
    (folder / "feature_extractor" / "preprocessor_config.json").write_text(json.dumps({
        "image_mean": list(image_mean), "image_std": list(image_std), "crop_size": {"height": size, "width": size},
        "resample": 3, "do_center_crop": False,
    }, indent=2))
    data = {"format": "m2svid-diffusers", "version": 1, "full_attention": True, **(manifest or {})}
    atomic_write_json(folder / MANIFEST, data, indent=2)


def resolve_weights_folder(source) -> "Path":
    """A local folder for ``source``: an existing path, or a hub id found in the HF cache only."""
    from pathlib import Path

    from benchmark.errors import StereobenchError

    path = Path(str(source)).expanduser()
    if path.exists():
        return path
    text = str(source)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(text, local_files_only=True))
        except Exception as exc:  # LocalEntryNotFoundError and friends: nothing cached
            raise StereobenchError(
                f"M2SVid weights {text!r} are not in the Hugging Face cache ({type(exc).__name__}); this machine "
                f"does not download: run `huggingface-cli download {text}` where the hub is reachable, or pass a local folder"
            ) from exc
    raise StereobenchError(f"weights folder {text!r} does not exist; give an existing diffusers-format folder (an "
                           f"M2SVid folder made by `stereobench weights convert-m2svid CHECKPOINT.pt --out DIR`, or "
                           f"an SVD img2vid-xt folder), a Hugging Face id already in the cache, or `tiny`")


def check_weights_folder(folder) -> list[str]:
    """Names of the missing components of a diffusers-format M2SVid folder (empty = complete)."""
    from pathlib import Path

    folder = Path(folder)
    missing = [name for name in COMPONENTS if not (folder / name / "config.json").exists()]
    if not (folder / MANIFEST).exists():
        missing.append(MANIFEST)
    return missing


def load_pipeline(source, device="cpu", dtype=torch.float32, full_attention: bool | None = None,
                  options: InferenceOptions | None = None) -> M2SVidPipeline:
    """Load a diffusers-format M2SVid folder (path or cached hub id) onto ``device`` in ``dtype``.

    ``full_attention`` None keeps the folder's variant (manifest); True/False forces it.
    """
    import json

    from diffusers import AutoencoderKLTemporalDecoder
    from transformers import CLIPVisionModelWithProjection

    from benchmark.errors import StereobenchError
    from methods.m2svid.model import IN_CHANNELS, M2SVidUNet

    folder = resolve_weights_folder(source)
    missing = check_weights_folder(folder)
    if missing:
        raise StereobenchError(
            f"M2SVid folder {folder} lacks {', '.join(missing)}; it must hold unet/, vae/, image_encoder/ and {MANIFEST} "
            f"as written by `stereobench weights convert-m2svid` (pass --svd-source for components the checkpoint lacks)"
        )
    manifest = json.loads((folder / MANIFEST).read_text())
    unet = M2SVidUNet.from_pretrained(folder / "unet", torch_dtype=dtype)
    if unet.config.in_channels != IN_CHANNELS:
        raise StereobenchError(f"{folder / 'unet'} has in_channels={unet.config.in_channels}, M2SVid needs {IN_CHANNELS}: "
                               f"is this a plain SVD U-Net? Convert the M2SVid checkpoint instead")
    unet.full_attention = manifest.get("full_attention", True) if full_attention is None else full_attention
    vae = AutoencoderKLTemporalDecoder.from_pretrained(folder / "vae", torch_dtype=dtype)
    image_encoder = CLIPVisionModelWithProjection.from_pretrained(folder / "image_encoder", torch_dtype=dtype)
    if image_encoder.config.projection_dim != unet.config.cross_attention_dim:
        raise StereobenchError(f"image encoder projects to {image_encoder.config.projection_dim} but the U-Net expects "
                               f"{unet.config.cross_attention_dim}-d context: the folder mixes components of different models")
    mean, std = CLIP_MEAN, CLIP_STD
    preprocessor = folder / "feature_extractor" / "preprocessor_config.json"
    if preprocessor.exists():
        config = json.loads(preprocessor.read_text())
        mean, std = config.get("image_mean", mean), config.get("image_std", std)
    return M2SVidPipeline(unet.to(device), vae.to(device), image_encoder.to(device), mean, std, options)
