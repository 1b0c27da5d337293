"""Single-step M2SVid inference on diffusers modules, with padding, temporal windows and tiles.

One window (at most 25 frames, sides multiples of 64) follows the official ``generate()``
(OFFICIAL_CODE_FACTS.md A, E):

1. warped pixels under the (closed) hole mask are zeroed, then the mask is dilated 3x3
   (the pixels of the dilation ring keep their warped values);
2. left, warped and mask map to [-1, 1]; 0.02 N(0,1) noise is added to left and warped
   (conditioning augmentation, seeded here for reproducibility; under float16 the strength is
   0.02 rounded to half precision, 0.0200043, as in the official fp16 code);
3. both videos are VAE-encoded (encoder, quant_conv, posterior mode, *no* 0.18215 scaling; the
   warped view by its own encoder when the checkpoint's ``embedders.5`` differs from ``.3``);
   the mask is resized to latent size bilinearly without antialiasing (values in [-1, 1]);
4. CLIP image embeddings of *every* left frame (antialiased resize to the encoder's size,
   CLIP normalisation) condition the spatial cross-attention of their own frame;
5. one U-Net call on a zero latent at sigma_max = 700: c_noise = 0.25 ln 700, added time ids
   [fps, 127, cond_aug]; the clean latent is z = c_out F with c_out = -700 / sqrt(700^2 + 1);
6. the temporal VAE decoder decodes z / 0.18215 for all frames of the window in one call
   (frame-batched decoding changes the temporal decoder's output; ``decode_chunk_size`` is
   an explicit, non-official memory option).

Beyond the official code (which refuses T > 25 and sides not divisible by 64): sides are
padded (replicate) to the size multiple and cropped back; longer videos run in overlapping
temporal windows and large frames in overlapping spatial tiles, blended with linear
cross-fades (weights normalised to sum to one at every frame and pixel; :mod:`benchmark.windows`).
The CLIP preprocessing, VAE batches and EDM scalings are the shared ones of :mod:`methods._svd`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmark.errors import StereobenchError
from benchmark.stereo.warp import dilate_mask
from benchmark.windows import blend_windows
from methods._svd.clip import CLIP_MEAN, CLIP_STD, clip_image_embeds
from methods._svd.edm import edm_v_scalings
from methods._svd.vae import decode_latents, encode_video
from methods.m2svid.model import LATENT_SCALE, SIGMA_MAX

MOTION_BUCKET_ID = 127.0
COND_AUG = 0.02
MAX_FRAMES = 25


def half_precision_cond_aug(value: float, dtype: torch.dtype) -> float:
    """The conditioning-augmentation strength the official code uses in ``dtype``.

    The official inference builds cond_aug = 0.02 as a float16 tensor (``torch.full(..., 0.02)
    .half()`` in ``add_custom_cond``), so both the time id and the noise strength are
    float(float16(0.02)) = 0.0200043 there. Under float16 this returns that rounded value; in
    any other dtype ``value`` unchanged (float32 keeps the documented 0.02; bfloat16 has no
    official counterpart).
    """
    if dtype == torch.float16:
        return float(torch.tensor(value, dtype=torch.float16))
    return float(value)


@dataclass
class InferenceOptions:
    """Knobs of :class:`M2SVidPipeline` (defaults follow the official inference).

    chunk_frames: frames per U-Net call (1..25). temporal_overlap: frames cross-faded between
    consecutive windows (0 <= overlap < chunk_frames). tile_size / tile_overlap: spatial tiling
    in pixels of the padded frame (tiles only when a side exceeds tile_size; both are rounded
    down to the model's size multiple, 64 for the full model). encode_chunk_size: frames per
    VAE-encoder batch (per-frame encoder: exact). decode_chunk_size: None decodes each window in
    one temporal decoder call (official); an int trades fidelity for memory. motion_bucket_id,
    cond_aug: the official 127 and 0.02 (under float16 cond_aug is rounded to half precision as
    officially, 0.0200043: :func:`half_precision_cond_aug`). dilate_mask: the official 3x3
    dilation of the hole mask.

    Raises StereobenchError on construction for values no window plan can honour, so a bad
    option fails before any weights are loaded.
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

    def __post_init__(self) -> None:
        if not 1 <= self.chunk_frames <= MAX_FRAMES:
            raise StereobenchError(f"M2SVid chunk_frames must be in 1..{MAX_FRAMES} (frames per U-Net call), got {self.chunk_frames}")
        if not 0 <= self.temporal_overlap < self.chunk_frames:
            raise StereobenchError(f"M2SVid temporal_overlap must be in [0, chunk_frames={self.chunk_frames}), "
                                   f"got {self.temporal_overlap}: choose an overlap smaller than the window")
        if self.tile_size < 1 or not 0 <= self.tile_overlap < self.tile_size:
            raise StereobenchError(f"M2SVid tiles need tile_size >= 1 and 0 <= tile_overlap < tile_size, got "
                                   f"tile_size={self.tile_size}, tile_overlap={self.tile_overlap}")
        if self.encode_chunk_size < 1:
            raise StereobenchError(f"M2SVid encode_chunk_size must be >= 1 (frames per VAE-encoder call), got {self.encode_chunk_size}")
        if self.decode_chunk_size is not None and self.decode_chunk_size < 1:
            raise StereobenchError(f"M2SVid decode_chunk_size must be None (whole window, official) or >= 1, "
                                   f"got {self.decode_chunk_size}")


class M2SVidPipeline:
    """The M2SVid model (U-Net + temporal VAE + CLIP image encoder) and its single-step call.

    All modules must be on the same device and in the same dtype (``dtype``).
    ``warped_encoder``: the warped-view conditioning encoder (official ``conditioner.embedders.5``)
    when the checkpoint's differs from the left-view one (``embedders.3``, the VAE's encoder +
    quant_conv); None encodes both views with the VAE. ``target_encoder``: the first-stage
    encoder of the official training target when it differs from the VAE's encoder (training
    only, see :mod:`methods.m2svid.train`). ``manifest``: the folder's ``m2svid.json`` records.
    """

    def __init__(self, unet, vae, image_encoder, image_mean=CLIP_MEAN, image_std=CLIP_STD, options: InferenceOptions | None = None,
                 warped_encoder=None, target_encoder=None, manifest: dict | None = None):
        self.unet, self.vae, self.image_encoder = unet, vae, image_encoder
        self.warped_encoder, self.target_encoder = warped_encoder, target_encoder
        self.manifest = dict(manifest or {})
        self.image_mean, self.image_std = tuple(image_mean), tuple(image_std)
        self.options = options or InferenceOptions()
        self.vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        self.size_multiple = self.vae_scale * 2 ** (len(unet.config.block_out_channels) - 1)
        for module in (unet, vae, image_encoder, warped_encoder, target_encoder):
            if module is not None:
                module.eval().requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def cond_aug(self) -> float:
        """The conditioning-augmentation strength of inference in this pipeline's dtype."""
        return half_precision_cond_aug(self.options.cond_aug, self.dtype)

    # -- conditioning ----------------------------------------------------------------------
    def encode_video(self, video_m11: torch.Tensor, encoder=None) -> torch.Tensor:
        """VAE latents (posterior mode, unscaled) of (T, 3, H, W) in [-1, 1] -> (T, 4, H/8, W/8).

        ``encoder`` (default the VAE): any module with ``encode`` (e.g. ``warped_encoder``).
        """
        return encode_video(encoder if encoder is not None else self.vae, video_m11, self.options.encode_chunk_size)

    def clip_tokens(self, left_m11: torch.Tensor) -> torch.Tensor:
        """CLIP image embeddings (T, C) of every left frame in [-1, 1]."""
        return clip_image_embeds(self.image_encoder, left_m11, self.image_mean, self.image_std)

    def latent_mask(self, hole_mask: torch.Tensor) -> torch.Tensor:
        """(T, 1, H, W) bool or float in [0, 1] -> (T, 1, H/8, W/8) in [-1, 1], bilinear without
        antialias, not thresholded (official: torchvision Resize(antialias=False) of mask*2-1)."""
        mask_m11 = hole_mask.float() * 2 - 1
        size = (hole_mask.shape[-2] // self.vae_scale, hole_mask.shape[-1] // self.vae_scale)
        return F.interpolate(mask_m11, size=size, mode="bilinear", align_corners=False, antialias=False)

    def conditioning(self, left_m11, warped_m11, hole_mask, fps: float):
        """U-Net concat input (1, T, 9, h, w) and added time ids (1, 3).

        The left view goes through the VAE's encoder (official ``embedders.3``), the warped view
        through ``warped_encoder`` when the checkpoint has a distinct one (``embedders.5``).
        """
        left_latent = self.encode_video(left_m11)
        warped_latent = self.encode_video(warped_m11, self.warped_encoder)
        mask_latent = self.latent_mask(hole_mask).to(left_latent.dtype)
        concat = torch.cat([left_latent, warped_latent, mask_latent], dim=1)[None]
        ids = torch.tensor([[fps, self.options.motion_bucket_id, self.cond_aug()]], device=self.device, dtype=self.dtype)
        return concat, ids

    # -- model -----------------------------------------------------------------------------
    def predict_latent(self, concat: torch.Tensor, tokens: torch.Tensor, time_ids: torch.Tensor) -> torch.Tensor:
        """Clean latent z = D(0; sigma_max) = c_out F(0, c_noise) for (1, T, 9, h, w) conditions."""
        _, c_out, _, c_noise = edm_v_scalings(SIGMA_MAX)
        zero = torch.zeros_like(concat[:, :, :4])
        sample = torch.cat([zero, concat], dim=2)
        return c_out * self.unet(sample, c_noise, tokens, time_ids)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """(T, 4, h, w) clean latent -> (T, 3, H, W) in [-1, 1] (unclamped); whole window in one
        temporal-decoder call unless ``decode_chunk_size`` is set."""
        return decode_latents(self.vae, latent, self.options.decode_chunk_size, LATENT_SCALE)

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
        aug = self.cond_aug()
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

        # Tiles must be whole multiples of the model's size multiple (64 for the full model).
        tile = max(multiple, opts.tile_size // multiple * multiple)
        tile_overlap = opts.tile_overlap // multiple * multiple
        if tile_overlap >= tile:
            raise StereobenchError(f"M2SVid tile_overlap={opts.tile_overlap} rounds to {tile_overlap} px, not less than the "
                                   f"tile of {tile} px (both are multiples of {multiple}): use a smaller tile_overlap")

        def window(ts: slice, ys: slice, xs: slice) -> torch.Tensor:
            return self.refine_window(left[ts, :, ys, xs], warped[ts, :, ys, xs], hole_mask[ts, :, ys, xs], noise_for(ts)[..., ys, xs], fps)

        out = blend_windows(
            window, (frames, 3, padded_h, padded_w), (opts.chunk_frames, opts.temporal_overlap),
            (tile, tile_overlap), device=device, progress=opts.progress, desc="m2svid windows",
        )
        return out[:, :, :height, :width]


# ----------------------------------------------------------------------------------------
# Diffusers-format folders: unet/, vae/, image_encoder/, feature_extractor/ (optional), m2svid.json,
# and when the checkpoint needs them warped_encoder/ and training_target_encoder/ (KLEncoder)

MANIFEST = "m2svid.json"
COMPONENTS = ("unet", "vae", "image_encoder")
#: Optional components: folder name -> the manifest record that says the folder must exist.
WARPED_ENCODER = "warped_encoder"
TARGET_ENCODER = "training_target_encoder"
CONVERT_HINT = ("make one with `stereobench weights convert-m2svid CHECKPOINT.pt --out DIR` (an M2SVid folder), or "
                "give an SVD img2vid-xt folder where an SVD source is asked for")


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
                         image_mean=CLIP_MEAN, image_std=CLIP_STD, warped_encoder=None, target_encoder=None) -> None:
    """Write a diffusers-format M2SVid folder (safetensors; manifest last, as a completion mark).

    ``warped_encoder`` / ``target_encoder`` (:class:`methods._svd.vae.KLEncoder`, optional) go to
    ``warped_encoder/`` and ``training_target_encoder/``; the manifest records which exist.
    """
    import json
    from pathlib import Path

    from benchmark.fileio import atomic_write_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    image_encoder.save_pretrained(folder / "image_encoder")
    extras = {}
    for name, module in ((WARPED_ENCODER, warped_encoder), (TARGET_ENCODER, target_encoder)):
        if module is not None:
            module.save_pretrained(folder / name)
            extras[name] = True
    (folder / "feature_extractor").mkdir(exist_ok=True)
    size = image_encoder.config.image_size
    (folder / "feature_extractor" / "preprocessor_config.json").write_text(json.dumps({
        "image_mean": list(image_mean), "image_std": list(image_std), "crop_size": {"height": size, "width": size},
        "resample": 3, "do_center_crop": False,
    }, indent=2))
    data = {"format": "m2svid-diffusers", "version": 1, "full_attention": True, **(manifest or {}),
            "extra_components": sorted(extras)}
    atomic_write_json(folder / MANIFEST, data, indent=2)


#: Manifest records a re-saved pipeline keeps (they describe the encoders it carries).
CARRIED_RECORDS = ("warped_encoder_equals_left_encoder", "first_stage_encoder_equals_conditioner_encoder",
                   "quant_conv_is_identity", "training_target", "full_attention")


def save_pipeline(pipe: M2SVidPipeline, folder, manifest: dict | None = None) -> None:
    """Save every module of ``pipe`` (the extra encoders included) as a diffusers-format folder.

    The encoder records of ``pipe.manifest`` (:data:`CARRIED_RECORDS`) are kept, so a model
    trained from a converted folder still knows its warped-view and training-target encoders;
    ``manifest`` entries override them.
    """
    carried = {k: pipe.manifest[k] for k in CARRIED_RECORDS if k in pipe.manifest}
    save_pipeline_folder(folder, pipe.unet, pipe.vae, pipe.image_encoder, manifest={**carried, **(manifest or {})},
                         image_mean=pipe.image_mean, image_std=pipe.image_std, warped_encoder=pipe.warped_encoder,
                         target_encoder=pipe.target_encoder)


def resolve_weights_folder(source) -> Path:
    """A local folder for ``source``: an existing path, or a hub id found in the HF cache only."""
    from methods._svd.folders import resolve_folder

    return resolve_folder(source, what="M2SVid weights", how_to_get=CONVERT_HINT)


def _read_manifest(folder) -> dict:
    import json
    from pathlib import Path

    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StereobenchError(f"{path} is not readable JSON ({type(exc).__name__}); convert the checkpoint again "
                               f"with `stereobench weights convert-m2svid`") from None
    if not isinstance(data, dict):
        raise StereobenchError(f"{path} holds {type(data).__name__}, not a JSON object; convert the checkpoint again")
    return data


def check_weights_folder(folder) -> list[str]:
    """Names of the missing components of a diffusers-format M2SVid folder (empty = complete).

    The optional ``warped_encoder/`` and ``training_target_encoder/`` are required when the
    manifest lists them in ``extra_components``.
    """
    from pathlib import Path

    from methods._svd.folders import check_folder

    folder = Path(folder)
    missing = check_folder(folder, COMPONENTS, [MANIFEST])
    if not missing:
        extras = _read_manifest(folder).get("extra_components", [])
        missing = check_folder(folder, [name for name in (WARPED_ENCODER, TARGET_ENCODER) if name in extras])
    return missing


def load_pipeline(source, device="cpu", dtype=torch.float32, full_attention: bool | None = None,
                  options: InferenceOptions | None = None) -> M2SVidPipeline:
    """Load a diffusers-format M2SVid folder (path or cached hub id) onto ``device`` in ``dtype``.

    ``full_attention`` None keeps the folder's variant (manifest); True/False forces it.
    """
    import json

    from diffusers import AutoencoderKLTemporalDecoder
    from transformers import CLIPVisionModelWithProjection

    from methods._svd.vae import KLEncoder
    from methods.m2svid.model import IN_CHANNELS, M2SVidUNet

    folder = resolve_weights_folder(source)
    missing = check_weights_folder(folder)
    if missing:
        raise StereobenchError(
            f"M2SVid folder {folder} lacks {', '.join(missing)}; it must hold unet/, vae/, image_encoder/ and {MANIFEST} "
            f"as written by `stereobench weights convert-m2svid` (pass --svd-source for components the checkpoint lacks)"
        )
    manifest = _read_manifest(folder)
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
    extras = {}
    for name in (WARPED_ENCODER, TARGET_ENCODER):
        if name in manifest.get("extra_components", []):
            extras[name] = KLEncoder.from_pretrained(folder / name, torch_dtype=dtype).to(device)
    mean, std = CLIP_MEAN, CLIP_STD
    preprocessor = folder / "feature_extractor" / "preprocessor_config.json"
    if preprocessor.exists():
        config = json.loads(preprocessor.read_text())
        mean, std = config.get("image_mean", mean), config.get("image_std", std)
    return M2SVidPipeline(unet.to(device), vae.to(device), image_encoder.to(device), mean, std, options,
                          warped_encoder=extras.get(WARPED_ENCODER), target_encoder=extras.get(TARGET_ENCODER),
                          manifest=manifest)
