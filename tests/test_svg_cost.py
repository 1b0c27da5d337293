"""SVG's cost: FLOPs of the real architectures on the meta device (slow: building them takes about
a minute on a busy 2-core box), and GPU latency / peak memory with random weights in the real
shapes (gpu: skipped cleanly without CUDA).

Reference numbers: STEREOCRAFTER_SVG_FACTS.md 2.6 (meta-device FlopCounter, zeroscope config):
41.65 TF per doubled call on 16 frames at 64x64 latents, 20.81 TF on 8 views; FACTS.md 8: 17.9 TF
per 16-frame SVD encode, 48.7 TF per 16-frame temporal decode; about 77 PFLOPs per clip. The
paper reports 1270 s per clip on an A100; the issue's target is 5x faster (<= 254 s) on one
H100/H200 at the same 50 steps.
"""

from __future__ import annotations

import json
import os
import time

import pytest
import torch

from methods.svg.flops import clip_cost, per_call_tflops

PAPER_SECONDS = 1270.0
TARGET_SPEEDUP = 5.0


@pytest.mark.slow
def test_flops_per_clip_on_the_meta_device():
    per_call = per_call_tflops(frames=16, height=512, width=512, views=8)
    assert per_call["unet_time_call"] == pytest.approx(41.65, rel=0.01)
    assert per_call["unet_view_call"] == pytest.approx(20.81, rel=0.01)
    assert per_call["vae_encode"] == pytest.approx(17.9, rel=0.01)
    assert per_call["vae_decode"] == pytest.approx(48.7, rel=0.01)
    cost = clip_cost(50, per_call=per_call)
    assert cost["unet_videos"] == 2073 and cost["unet_batched_calls"] == 248
    assert cost["unet_tflops"] == pytest.approx(61_300, rel=0.01)
    # 226 decodes + 233 encodes here (the official 470 passes add 11 decodes that do not reach the output).
    assert cost["total_tflops"] == pytest.approx(76_500, rel=0.01)
    assert cost["total_tflops"] + 11 * per_call["vae_decode"] == pytest.approx(77_000, rel=0.01)


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_latency_and_peak_memory_random_weights_real_shapes(tmp_path):
    """One 16 x 512 x 512 clip, 50 steps, 8 views, bf16 + SDPA, random weights in the real
    architectures. Writes the figures to $SVG_COST_OUT (JSON) when set. Steps can be lowered for
    a quick look with $SVG_COST_STEPS (the target applies to 50); $SVG_COST_NOISE_ON_DEVICE=1 draws
    the noise on the GPU."""
    from diffusers import DDPMScheduler
    from transformers import CLIPTokenizer

    from methods.svg.configs import (
        ZEROSCOPE_SCHEDULER_CONFIG,
        real_modules,
        write_tokenizer,
    )
    from methods.svg.frame_matrix import build_frame_matrix
    from methods.svg.pipeline import Components, Settings, SVGPipeline
    from tests.method_tester import make_layered_scene

    steps = int(os.environ.get("SVG_COST_STEPS", "50"))
    device = torch.device("cuda")
    torch.manual_seed(0)
    unet, text, vae = real_modules(device, torch.bfloat16)
    write_tokenizer(tmp_path / "tokenizer")
    components = Components(unet, text, CLIPTokenizer.from_pretrained(tmp_path / "tokenizer"),
                            DDPMScheduler.from_config(ZEROSCOPE_SCHEDULER_CONFIG), vae)
    inp, _ = make_layered_scene(16, 512, 512, background_disparity=4, foreground_disparity=24, velocity=-8)
    images, holes = build_frame_matrix(inp.to(device), 8)
    warm = SVGPipeline(components, Settings(steps=1))
    warm(images, holes, "a video", seed=0)  # warm-up: kernels, allocator, text cache
    noise_on_device = os.environ.get("SVG_COST_NOISE_ON_DEVICE", "0") == "1"
    pipe = SVGPipeline(components, Settings(steps=steps, progress=True, noise_on_device=noise_on_device))
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    out = pipe(images, holes, "a video", seed=0)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak_gib = torch.cuda.max_memory_allocated() / 2**30
    figures = {"steps": steps, "noise_on_device": noise_on_device, "seconds": seconds, "peak_gib": peak_gib, "device": torch.cuda.get_device_name(),
               "counters": pipe.counters, "paper_seconds": PAPER_SECONDS, "speedup_vs_paper": PAPER_SECONDS / seconds}
    print(json.dumps(figures))
    if os.environ.get("SVG_COST_OUT"):
        with open(os.environ["SVG_COST_OUT"], "w") as fh:
            json.dump(figures, fh, indent=2)
    assert out.shape == (16, 3, 512, 512)
    if steps == 50:
        assert pipe.counters["unet_videos"] == 2073
        assert seconds <= PAPER_SECONDS / TARGET_SPEEDUP, f"{seconds:.0f} s per clip; target <= 254 s"
