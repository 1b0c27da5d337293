"""FLOPs of one 512x512x16 clip (meta device) against FACTS.md section 8, and the GPU latency /
peak-memory benchmark of the full-size architecture (random weights; skipped without CUDA)."""

from __future__ import annotations

import time

import pytest
import torch

from methods.m2svid.flops import clip_flops


def test_clip_flops_match_reference_figures():
    flops = clip_flops()
    # FACTS.md 8 (independent meta-device count): U-Net 20.3, VAE encode of 32 frames 35.7,
    # temporal decode of 16 frames 48.7 TFLOPs.
    assert flops["unet"] == pytest.approx(20.3, rel=0.01)
    assert flops["vae_encode_2T"] == pytest.approx(35.7, rel=0.01)
    assert flops["vae_decode_T"] == pytest.approx(48.7, rel=0.01)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_full_size_latency_and_peak_memory_on_gpu(dtype):
    from diffusers import AutoencoderKLTemporalDecoder
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from methods.m2svid.model import build_unet
    from methods.m2svid.pipeline import M2SVidPipeline
    from tests.method_tester import make_layered_scene

    unet = build_unet()
    vae = AutoencoderKLTemporalDecoder(down_block_types=("DownEncoderBlock2D",) * 4,
                                       block_out_channels=(128, 256, 512, 512), layers_per_block=2)
    clip = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                                                          num_attention_heads=16, image_size=224, patch_size=14,
                                                          projection_dim=1024, hidden_act="gelu"))
    pipe = M2SVidPipeline(unet.to("cuda", dtype), vae.to("cuda", dtype), clip.to("cuda", dtype))
    inp, _ = make_layered_scene(16, 512, 512, square=160, velocity=-8)
    inp = inp.to("cuda")
    with torch.no_grad():
        pipe(inp.left, inp.warped, inp.mask, fps=5.0)  # warm-up
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(3):
            pipe(inp.left, inp.warped, inp.mask, fps=5.0)
        torch.cuda.synchronize()
    latency = (time.perf_counter() - start) / 3
    peak_gib = torch.cuda.max_memory_allocated() / 2**30
    print(f"M2SVid 512x512x16 {dtype}: {latency:.3f} s/clip, peak {peak_gib:.1f} GiB on {torch.cuda.get_device_name()}")
    assert peak_gib < 16
