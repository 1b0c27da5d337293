"""DepthCrafter on diffusers components: a tiny random DepthCrafter folder in the SVD layout
(written by the test with save_pretrained) loaded by the real loading code; the per-frame
embedding U-Net against the stock U-Net; the working size rule; windows with overlap; identity."""

from __future__ import annotations

import shutil

import pytest
import torch

from benchmark.depth import depth_model_identity, load_depth_model
from benchmark.depth.depthcrafter import _unet_class, processing_size
from benchmark.errors import StereobenchError


def write_tiny_depthcrafter(folder, seed=0, in_channels=8):
    """unet/ (8 input channels: noisy + video latent), vae/, image_encoder/ (projection = the
    U-Net's cross-attention width), feature_extractor/, scheduler/ (SVD's Euler config)."""
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    torch.manual_seed(seed)
    UNetSpatioTemporalConditionModel(
        sample_size=8, in_channels=in_channels, out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"), block_out_channels=(32, 64),
        layers_per_block=1, num_attention_heads=(2, 4), cross_attention_dim=16, addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=24, num_frames=4).save_pretrained(folder / "unet")
    # four 32-wide blocks (GroupNorm is fixed at 32 groups): 64x64 frames -> 8x8 latents, cheap on CPU
    AutoencoderKLTemporalDecoder(block_out_channels=(32, 32, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
                                 layers_per_block=1, latent_channels=4).save_pretrained(folder / "vae")
    CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=224,
        patch_size=32, projection_dim=16)).save_pretrained(folder / "image_encoder")
    CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(
        folder / "feature_extractor")
    EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                           interpolation_type="linear", num_train_timesteps=1000, prediction_type="v_prediction",
                           sigma_max=700.0, sigma_min=0.002, steps_offset=1, timestep_spacing="leading",
                           timestep_type="continuous", use_karras_sigmas=True).save_pretrained(folder / "scheduler")
    return folder


@pytest.fixture(scope="module")
def tiny_dc(tmp_path_factory):
    return write_tiny_depthcrafter(tmp_path_factory.mktemp("dc") / "depthcrafter")


def test_per_frame_embedding_unet_matches_the_stock_unet(tiny_dc):
    from diffusers import UNetSpatioTemporalConditionModel

    stock = UNetSpatioTemporalConditionModel.from_pretrained(tiny_dc / "unet").eval()
    ours = _unet_class().from_pretrained(tiny_dc / "unet").eval()
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 3, 8, 8, 8, generator=g)
    one = torch.randn(1, 1, 16, generator=g)
    ids = torch.tensor([[7.0, 127.0, 0.02]])
    with torch.no_grad():
        reference = stock(sample, 10.0, encoder_hidden_states=one, added_time_ids=ids).sample
        same = ours(sample, 10.0, encoder_hidden_states=one.expand(1, 3, 16), added_time_ids=ids).sample
        per_frame = torch.cat([one, torch.randn(1, 2, 16, generator=g)], dim=1)
        mixed = ours(sample, 10.0, encoder_hidden_states=per_frame, added_time_ids=ids).sample
    torch.testing.assert_close(same, reference, rtol=1e-4, atol=1e-5)  # one embedding per frame = stock
    assert not torch.allclose(mixed, reference, atol=1e-4)  # each frame sees its own embedding


def test_processing_size_rule():
    assert processing_size(1080, 1920, 1024) == (576, 1024)  # the larger side capped, multiples of 64
    assert processing_size(480, 854, 1024) == (512, 832)  # 7.5 -> 8, 13.3 -> 13 blocks of 64
    assert processing_size(20, 30, 1024) == (64, 64)  # at least one block
    assert processing_size(512, 512, 256) == (256, 256)


def test_depthcrafter_folder_loads_and_predicts_in_windows(tiny_dc):
    model = load_depth_model("depthcrafter", weights=str(tiny_dc), steps=1, window=3, overlap=1)
    assert "research" in model.licence and model.VIDEO
    frames = torch.rand(4, 3, 40, 72, generator=torch.Generator().manual_seed(2))
    depth = model.predict(frames)  # windows [0, 3) and [2, 4), blended over frame 2
    assert depth.shape == (4, 40, 72) and depth.dtype == torch.float32 and torch.isfinite(depth).all()
    assert float(depth.min()) >= 0.0 and float(depth.max()) <= 1.0
    assert model.spec["model"] == str(tiny_dc) and model.settings["steps"] == 1


def test_identity_and_separate_svd_parts(tiny_dc, tmp_path):
    base = depth_model_identity("depthcrafter", weights=str(tiny_dc))
    assert base["settings"]["steps"] == 5 and base["settings"]["window"] == 110 and base["settings"]["overlap"] == 25
    assert base["settings"]["max_res"] == 1024
    assert depth_model_identity("depthcrafter", weights=str(tiny_dc), steps=25) != base
    # the U-Net alone (as tencent/DepthCrafter ships it) + the SVD parts from another folder
    unet_only = tmp_path / "unet-only"
    shutil.copytree(tiny_dc / "unet", unet_only)
    with pytest.raises(StereobenchError, match="SVD img2vid-xt components"):
        depth_model_identity("depthcrafter", weights=str(unet_only), svd=str(tmp_path / "nowhere"))
    ident = depth_model_identity("depthcrafter", weights=str(unet_only), svd=str(tiny_dc))
    assert "+svd:" in ident["revision"] and ident["settings"]["svd"] == str(tiny_dc)
    with pytest.raises(StereobenchError, match="must be in \\[0, window\\)"):
        depth_model_identity("depthcrafter", weights=str(tiny_dc), window=4, overlap=4)


def test_a_plain_svd_unet_is_refused(tmp_path):
    folder = write_tiny_depthcrafter(tmp_path / "svd-like", in_channels=4)
    with pytest.raises(StereobenchError, match="not a DepthCrafter U-Net"):
        load_depth_model("depthcrafter", weights=str(folder))


def test_weights_listing_needs_every_part(tiny_dc, tmp_path, monkeypatch):
    from benchmark.weights import WEIGHT_PROVIDERS

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("STEREOBENCH_DEPTHCRAFTER", str(tiny_dc / "unet"))
    monkeypatch.delenv("STEREOBENCH_SVD_XT", raising=False)
    row = {r.name: r for r in WEIGHT_PROVIDERS["depth"]()}["depthcrafter"]
    assert not row.status.present  # the U-Net alone is not enough
    assert any("research only" in s.licence for s in row.specs)
    monkeypatch.setenv("STEREOBENCH_SVD_XT", str(tiny_dc))
    row = {r.name: r for r in WEIGHT_PROVIDERS["depth"]()}["depthcrafter"]
    assert row.status.present
