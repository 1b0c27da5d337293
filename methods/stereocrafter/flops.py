"""FLOP counts of StereoCrafter on the meta device (no weights, no memory, exact shapes).

``FlopCounterMode`` counts matmuls, convolutions and SDPA (2 FLOPs per multiply-add). The
U-Net is diffusers' stock ``UNetSpatioTemporalConditionModel`` with SVD-xt's configuration and
9 input channels, called exactly as the pipeline calls it: a doubled batch (2, T, 9, h, w) with
CFG, a single one (1, T, 9, h, w) without.

Run: ``python -m methods.stereocrafter.flops`` (full-size architecture, 512x512x16).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

#: SVD img2vid-xt U-Net configuration (diffusers' defaults) with StereoCrafter's 9-channel conv_in.
SVD_XT_UNET_9CH: dict[str, Any] = {
    "sample_size": 96, "in_channels": 9, "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlockSpatioTemporal",) * 3 + ("DownBlockSpatioTemporal",),
    "up_block_types": ("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * 3,
    "block_out_channels": (320, 640, 1280, 1280), "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 768, "layers_per_block": 2, "cross_attention_dim": 1024,
    "transformer_layers_per_block": 1, "num_attention_heads": (5, 10, 20, 20), "num_frames": 25,
}
#: SVD's VAE (AutoencoderKLTemporalDecoder) and CLIP ViT-H/14 image encoder configurations.
SVD_VAE: dict[str, Any] = {"down_block_types": ("DownEncoderBlock2D",) * 4, "block_out_channels": (128, 256, 512, 512),
                               "layers_per_block": 2, "latent_channels": 4}
SVD_CLIP: dict[str, Any] = {"hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 16,
                                "image_size": 224, "patch_size": 14, "projection_dim": 1024, "hidden_act": "gelu"}


def count_flops(fn) -> int:
    """FLOPs of ``fn()`` under ``FlopCounterMode`` (no gradient)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def build_full_size(device: str = "meta", dtype: torch.dtype = torch.float32):
    """(unet, vae, image_encoder) of the real architecture with random (or meta) weights."""
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    with torch.device(device):
        unet = UNetSpatioTemporalConditionModel(**SVD_XT_UNET_9CH)
        vae = AutoencoderKLTemporalDecoder(**SVD_VAE)
        clip = CLIPVisionModelWithProjection(CLIPVisionConfig(**SVD_CLIP))
    # A few parameters are built with torch.Tensor([...]) on the CPU: move everything.
    models = [m.to(device) for m in (unet, vae, clip)]
    return tuple((m if dtype == torch.float32 else m.to(dtype)).eval() for m in models)


def unet_call_flops(unet, frames: int, height: int, width: int, batch: int) -> int:
    """FLOPs of one U-Net call on (batch, T, 9, H/8, W/8) (batch 2 = the CFG doubled batch)."""
    device = next(unet.parameters()).device
    sample = torch.zeros(batch, frames, unet.config.in_channels, height // 8, width // 8, device=device)
    context = torch.zeros(batch, 1, unet.config.cross_attention_dim, device=device)
    ids = torch.zeros(batch, 3, device=device)
    return count_flops(lambda: unet(sample, 1.0, encoder_hidden_states=context, added_time_ids=ids))


def clip_flops(steps: int = 25, frames: int = 16, height: int = 512, width: int = 512, cfg: bool = True,
               decode_chunk_size: int = 2, models=None) -> dict[str, float]:
    """TFLOPs of one StereoCrafter clip that fits one chunk and one tile.

    Keys: ``unet_step`` (one call, doubled batch when ``cfg``), ``unet`` (x steps),
    ``vae_encode_T``, ``vae_decode_T`` (``decode_chunk_size`` frames per call), ``clip_1`` (one
    224 px frame), ``total``. ``models``: (unet, vae, clip) to count (default: the full-size
    architecture on the meta device).
    """
    unet, vae, clip = models or build_full_size()
    device = next(unet.parameters()).device
    h, w = height // 8, width // 8
    step = unet_call_flops(unet, frames, height, width, 2 if cfg else 1)
    images = torch.zeros(min(frames, 5), 3, height, width, device=device)
    encode_5 = count_flops(lambda: vae.encode(images).latent_dist.mode())
    latents = torch.zeros(decode_chunk_size, 4, h, w, device=device)
    decode_chunk = count_flops(lambda: vae.decode(latents, num_frames=decode_chunk_size).sample)
    pixels = torch.zeros(1, 3, clip.config.image_size, clip.config.image_size, device=device)
    clip_one = count_flops(lambda: clip(pixel_values=pixels))
    result = {
        "unet_step": step / 1e12,
        "unet": steps * step / 1e12,
        "vae_encode_T": encode_5 / images.shape[0] * frames / 1e12,
        "vae_decode_T": decode_chunk / decode_chunk_size * frames / 1e12,
        "clip_1": clip_one / 1e12,
    }
    result["total"] = result["unet"] + result["vae_encode_T"] + result["vae_decode_T"] + result["clip_1"]
    return result


if __name__ == "__main__":  # pragma: no cover
    models = build_full_size()
    for steps, cfg in ((25, True), (8, True), (1, True), (25, False)):
        flops = clip_flops(steps, cfg=cfg, models=models)
        print(f"StereoCrafter {steps} steps{'' if cfg else ' no CFG'} TFLOPs per 512x512x16 clip:",
              {k: round(v, 2) for k, v in flops.items()})
