"""Speed of the depth stage on this machine (``pytest -m perf tests/test_depth_perf.py``): the
temporal normalisation of a 1080p stream, and Depth Anything V2 Small's real architecture (random
weights, written by the test; no download) per 1080p frame through the real loading code.
Figures go to docs/performance.md; the box is shared, so they are noisy."""

from __future__ import annotations

import time

import pytest
import torch

from benchmark.depth import TemporalNormalizer, load_depth_model

pytestmark = pytest.mark.perf


def write_dav2_small_architecture(folder):
    """Depth Anything V2 Small's shapes (ViT-S/14: hidden 384, 12 layers, 6 heads; DPT neck 48/96/192/384,
    fusion 64, head 32) with random weights and the hub's preprocessor config."""
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessor,
    )

    backbone = Dinov2Config(image_size=518, patch_size=14, hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                            intermediate_size=1536, out_indices=[3, 6, 9, 12], reshape_hidden_states=False,
                            apply_layernorm=True)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=384, neck_hidden_sizes=[48, 96, 192, 384],
                                 fusion_hidden_size=64, head_hidden_size=32)
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    DPTImageProcessor(size={"height": 518, "width": 518}, keep_aspect_ratio=True, ensure_multiple_of=14, resample=3,
                      do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=[0.485, 0.456, 0.406],
                      image_std=[0.229, 0.224, 0.225], do_pad=False).save_pretrained(folder)
    return folder


def test_normaliser_throughput_1080p():
    raw = torch.rand(60, 1080, 1920)
    norm = TemporalNormalizer()
    t0 = time.perf_counter()
    for i in range(0, 60, 8):
        norm.push(raw[i:i + 8])
    norm.flush()
    fps = 60 / (time.perf_counter() - t0)
    print(f"\nTemporalNormalizer 1080p: {fps:.1f} frames/s")
    assert fps > 1


def test_depth_anything_v2_small_cpu_per_frame(tmp_path):
    model = load_depth_model("depth-anything-v2", weights=str(write_dav2_small_architecture(tmp_path / "s")),
                             batch_size=2)
    frames = torch.rand(2, 3, 1080, 1920)
    model.predict(frames[:1])  # warm-up
    t0 = time.perf_counter()
    model.predict(frames)
    per_frame = (time.perf_counter() - t0) / 2
    params = sum(p.numel() for p in model.model.parameters())
    print(f"\nDepth Anything V2 Small architecture ({params / 1e6:.1f} M params), 1080p -> 518x924: "
          f"{per_frame:.2f} s/frame on CPU")
    assert per_frame > 0


@pytest.mark.gpu
def test_depth_anything_v2_small_cuda_fps(tmp_path):
    """On a GPU machine: frames per second and peak memory of Depth Anything V2 Small's architecture
    on 1080p frames (fp16, batch 8). Not run in this session (no GPU); skips cleanly without CUDA."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    model = load_depth_model("depth-anything-v2", weights=str(write_dav2_small_architecture(tmp_path / "s")),
                             device="cuda", dtype=torch.float16, batch_size=8)
    frames = torch.rand(16, 3, 1080, 1920, device="cuda")
    model.predict(frames[:8])  # warm-up
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    depth = model.predict(frames)
    torch.cuda.synchronize()
    fps = frames.shape[0] / (time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"\nDepth Anything V2 Small architecture on CUDA fp16, 1080p: {fps:.1f} frames/s, peak {peak:.2f} GiB")
    assert depth.shape == (16, 1080, 1920) and torch.isfinite(depth).all()
