"""FLOP counts of one clip on the meta device (no weights, no memory, exact shapes).

``FlopCounterMode`` counts matmuls, convolutions and SDPA (2 FLOPs per multiply-add); on the
meta device SDPA is counted too (the CPU kernel is missed on real tensors, FACTS 8).

Run: ``python -m methods.m2svid.flops`` (full-size SVD-xt architecture, 512x512x16).
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def _count(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def clip_flops(frames: int = 16, height: int = 512, width: int = 512, unet_in_channels: int = 13) -> dict[str, float]:
    """TFLOPs of M2SVid for one clip: U-Net (one call, no CFG), VAE encode of 2T frames,
    temporal VAE decode of T frames, CLIP on T frames.
    Without holes: each masked token adds one block recomputation against T*h*w keys."""
    from diffusers import AutoencoderKLTemporalDecoder
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from methods.m2svid.model import SVD_XT_UNET_CONFIG, M2SVidUNet

    h, w = height // 8, width // 8
    with torch.device("meta"):
        unet = M2SVidUNet(**{**SVD_XT_UNET_CONFIG, "in_channels": unet_in_channels}).eval()
        vae = AutoencoderKLTemporalDecoder(down_block_types=("DownEncoderBlock2D",) * 4,
                                           block_out_channels=(128, 256, 512, 512), layers_per_block=2).eval()
        clip = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                                                              num_attention_heads=16, image_size=224, patch_size=14,
                                                              projection_dim=1024, hidden_act="gelu")).eval()
        # A few parameters are built with torch.Tensor([...]) and land on CPU: move everything.
        unet, vae, clip = unet.to("meta"), vae.to("meta"), clip.to("meta")
        sample = torch.zeros(1, frames, unet_in_channels, h, w)
        context = torch.zeros(1, frames, 1024)
        ids = torch.zeros(1, 3)
        images = torch.zeros(frames, 3, height, width)
        latents = torch.zeros(frames, 4, h, w)
        clip_in = torch.zeros(frames, 3, 224, 224)
    with torch.no_grad():
        unet.full_attention = False  # no holes: the full-attention path adds work per masked token only
        unet_flops = _count(lambda: unet(sample, 1.6, context, ids))
        encode = _count(lambda: vae.encode(images).latent_dist.mode())
        decode = _count(lambda: vae.decode(latents, num_frames=frames).sample)
        clip_flops_ = _count(lambda: clip(pixel_values=clip_in))
    result = {"unet": unet_flops / 1e12, "vae_encode_2T": 2 * encode / 1e12, "vae_decode_T": decode / 1e12,
              "clip_T": clip_flops_ / 1e12}
    result["total"] = sum(result.values())
    return result


def stereocrafter_flops(steps: int = 25, frames: int = 16, height: int = 512, width: int = 512) -> dict[str, float]:
    """TFLOPs of StereoCrafter: 9-channel SVD U-Net x steps x 2 (CFG batch), VAE encode of T
    warped frames, temporal decode of T frames, CLIP on one frame per chunk."""
    base = clip_flops(frames, height, width, unet_in_channels=9)
    unet = base["unet"] * steps * 2
    encode = base["vae_encode_2T"] / 2
    result = {"unet": unet, "vae_encode_T": encode, "vae_decode_T": base["vae_decode_T"], "clip_1": base["clip_T"] / frames}
    result["total"] = sum(result.values())
    return result


if __name__ == "__main__":  # pragma: no cover
    m2 = clip_flops()
    sc = stereocrafter_flops()
    print("M2SVid TFLOPs per 512x512x16 clip:", {k: round(v, 2) for k, v in m2.items()})
    print("StereoCrafter (25 steps) TFLOPs:", {k: round(v, 2) for k, v in sc.items()})
    print(f"ratio StereoCrafter / M2SVid: {sc['total'] / m2['total']:.1f}x")
