"""StereoCrafter's FLOPs per clip (meta device) and, on a GPU, latency and peak memory of the
full-size architecture with random weights (skipped cleanly without CUDA)."""

from __future__ import annotations

import time

import pytest
import torch

from methods.stereocrafter.flops import (
    build_full_size,
    clip_flops,
    count_flops,
    unet_call_flops,
)
from methods.stereocrafter.pipeline import tiny_components


def test_cfg_doubles_the_unet_work_and_steps_scale_it_exactly():
    unet, vae, clip = tiny_components()
    models = (unet.eval(), vae.eval(), clip.eval())
    single = unet_call_flops(unet, 4, 32, 32, batch=1)
    double = unet_call_flops(unet, 4, 32, 32, batch=2)
    assert single > 0 and double == 2 * single
    with_cfg = clip_flops(steps=3, frames=4, height=32, width=32, models=models)
    without = clip_flops(steps=3, frames=4, height=32, width=32, cfg=False, models=models)
    assert with_cfg["unet_step"] * 1e12 == pytest.approx(double) and with_cfg["unet"] == pytest.approx(3 * with_cfg["unet_step"])
    assert without["unet"] == pytest.approx(with_cfg["unet"] / 2)
    parts = ("unet", "vae_encode_T", "vae_decode_T", "clip_1")
    assert with_cfg["total"] == pytest.approx(sum(with_cfg[k] for k in parts))
    # A hand count of one part: the VAE's quant_conv (1x1, 8 -> 8 channels) on 2 x 4 x 4 latents.
    x = torch.zeros(2, 8, 4, 4)
    assert count_flops(lambda: vae.quant_conv(x)) == 2 * 8 * 8 * 2 * 4 * 4


@pytest.mark.slow
def test_full_size_flops_match_the_reference_figures():
    flops = clip_flops(steps=25)
    # STEREOCRAFTER_SVG_FACTS.md 1.7 (independent meta count): 40.61 TFLOPs per doubled call,
    # VAE encode of 16 frames 17.9, temporal decode of 16 frames 48.7, ~1.08 PFLOPs at 25 steps.
    assert flops["unet_step"] == pytest.approx(40.61, rel=0.005)
    assert flops["vae_encode_T"] == pytest.approx(17.9, rel=0.01)
    assert flops["vae_decode_T"] == pytest.approx(48.7, rel=0.01)
    assert flops["total"] == pytest.approx(1082, rel=0.01)


def _full_size_pipeline(dtype, options):
    from diffusers import EulerDiscreteScheduler

    from methods.stereocrafter.pipeline import (
        SVD_XT_1_1_SCHEDULER,
        StereoCrafterPipeline,
    )

    unet, vae, clip = build_full_size("cuda", dtype)
    scheduler = EulerDiscreteScheduler.from_config(SVD_XT_1_1_SCHEDULER)
    unet.to(memory_format=torch.channels_last)
    return StereoCrafterPipeline(unet, vae, clip, scheduler, options=options, device="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_full_size_latency_and_peak_memory_on_gpu(dtype):
    """Targets (issue 10) on one H100/H200 at 512x512x16, 25 steps with CFG: < 4 s, < 16 GiB."""
    from methods.stereocrafter.pipeline import PipelineOptions
    from tests.method_tester import make_layered_scene

    pipe = _full_size_pipeline(dtype, PipelineOptions(num_inference_steps=25))
    inp, _ = make_layered_scene(16, 512, 512, square=160, velocity=-8)
    inp = inp.to("cuda")
    with torch.no_grad():
        pipe(inp.warped, inp.mask)  # warm-up
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        pipe(inp.warped, inp.mask)
        torch.cuda.synchronize()
    latency = time.perf_counter() - start
    peak_gib = torch.cuda.max_memory_allocated() / 2**30
    print(f"StereoCrafter 512x512x16, 25 steps, {dtype}: {latency:.2f} s, peak {peak_gib:.1f} GiB on "
          f"{torch.cuda.get_device_name()}")
    assert peak_gib < 16
    assert latency < 4.0


@pytest.mark.gpu
@pytest.mark.slow
def test_1080p_long_clip_runs_in_bounded_memory_on_gpu():
    """1080p x 100 frames, 1 step, blended chunks and 1024 px tiles: peak memory stays bounded
    (well under the 24-48 GB users report for the official script)."""
    from methods.stereocrafter.pipeline import PipelineOptions

    pipe = _full_size_pipeline(torch.float16, PipelineOptions(num_inference_steps=1))
    warped = torch.rand(100, 3, 1080, 1920, device="cuda")
    mask = torch.rand(100, 1, 1080, 1920, device="cuda") > 0.9
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        out = pipe(warped, mask)
    peak_gib = torch.cuda.max_memory_allocated() / 2**30
    print(f"StereoCrafter 1080p x 100 frames, 1 step: peak {peak_gib:.1f} GiB")
    assert out.shape == warped.shape
    assert peak_gib < 24
