"""Official checkpoint (sgm layout) -> diffusers: mapping checked on the real full-size names
(meta device) and a tiny round trip through a checkpoint written in the official layout."""

from __future__ import annotations

import functools

import pytest
import torch

from benchmark.errors import StereobenchError
from methods.m2svid.convert import (
    CLIP_PREFIX, DECODER_PREFIX, clip_name_map, convert_checkpoint, read_checkpoint, unet_name_map, vae_name_map,
)
from methods.m2svid.model import SVD_XT_UNET_CONFIG, M2SVidUNet, tiny_config
from methods.m2svid.pipeline import M2SVidPipeline, load_pipeline, save_pipeline_folder, tiny_components
from tests.method_tester import make_layered_scene

TINY_VAE = dict(down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"), block_out_channels=(32, 32),
                layers_per_block=1, latent_channels=4)


def test_unet_mapping_on_real_full_size_names():
    from diffusers import AutoencoderKLTemporalDecoder

    with torch.device("meta"):
        unet = M2SVidUNet(**SVD_XT_UNET_CONFIG)
        vae = AutoencoderKLTemporalDecoder(down_block_types=("DownEncoderBlock2D",) * 4,
                                           block_out_channels=(128, 256, 512, 512), layers_per_block=2)
    names = unet_name_map(unet)
    # Official counts (OFFICIAL_CODE_FACTS.md C): 1428 U-Net tensors, bijective mapping.
    assert len(names) == 1428 and len(set(names.values())) == 1428
    official = {
        "input_blocks.0.0.weight": "conv_in.weight",
        "time_embed.0.weight": "time_embedding.linear_1.weight",
        "label_emb.0.2.bias": "add_embedding.linear_2.bias",
        "input_blocks.3.0.op.weight": "down_blocks.0.downsamplers.0.conv.weight",
        "input_blocks.4.0.skip_connection.weight": "down_blocks.1.resnets.0.spatial_res_block.conv_shortcut.weight",
        "input_blocks.1.0.time_stack.in_layers.2.weight": "down_blocks.0.resnets.0.temporal_res_block.conv1.weight",
        "input_blocks.1.0.time_mixer.mix_factor": "down_blocks.0.resnets.0.time_mixer.mix_factor",
        "input_blocks.1.1.time_pos_embed.2.bias": "down_blocks.0.attentions.0.time_pos_embed.linear_2.bias",
        "input_blocks.8.1.time_stack.0.ff_in.net.2.weight": "down_blocks.2.attentions.1.temporal_transformer_blocks.0.ff_in.net.2.weight",
        "middle_block.1.transformer_blocks.0.attn1.to_q.weight": "mid_block.attentions.0.transformer_blocks.0.attn1.to_q.weight",
        "middle_block.2.emb_layers.1.weight": "mid_block.resnets.1.spatial_res_block.time_emb_proj.weight",
        "output_blocks.2.1.conv.weight": "up_blocks.0.upsamplers.0.conv.weight",
        "output_blocks.5.2.conv.bias": "up_blocks.1.upsamplers.0.conv.bias",
        "output_blocks.8.2.conv.weight": "up_blocks.2.upsamplers.0.conv.weight",
        "output_blocks.11.1.transformer_blocks.0.attn2.to_k.weight": "up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_k.weight",
        "out.0.weight": "conv_norm_out.weight",
        "out.2.bias": "conv_out.bias",
    }
    inverse = {v.removeprefix("model.diffusion_model."): k for k, v in names.items()}
    for sgm, diffusers_name in official.items():
        assert inverse[sgm] == diffusers_name
    assert tuple(unet.state_dict()["conv_in.weight"].shape) == (320, 13, 3, 3)
    vae_names = vae_name_map(vae, "first_stage_model.encoder.")
    assert sum(v.startswith("first_stage_model.encoder.") for v in vae_names.values()) == 106
    assert sum(v.startswith(DECODER_PREFIX) for v in vae_names.values()) == 266
    assert vae_names["decoder.time_conv_out.weight"] == DECODER_PREFIX + "conv_out.time_mix_conv.weight"
    assert vae_names["decoder.up_blocks.0.resnets.0.temporal_res_block.conv1.weight"] == DECODER_PREFIX + "up.3.block.0.time_stack.in_layers.2.weight"
    assert vae_names["encoder.mid_block.attentions.0.to_out.0.weight"] == "first_stage_model.encoder.mid.attn_1.proj_out.weight"


def _official_state(unet, vae, encoder) -> dict[str, torch.Tensor]:
    """Write the tiny models' tensors under the official names (inverse of the converter)."""
    state = {}
    for name, source in unet_name_map(unet).items():
        state[source] = unet.state_dict()[name].clone()
    for name, source in vae_name_map(vae).items():
        tensor = vae.state_dict()[name].clone()
        if ".mid.attn_1." in source and source.endswith(".weight") and tensor.ndim == 2:
            tensor = tensor[:, :, None, None]  # sgm stores these as 1x1 convolutions
        state[source] = tensor
    clip_state = encoder.state_dict()
    qkv: dict[str, list] = {}
    for name, source in clip_name_map(encoder).items():
        if source.endswith("/3]"):
            key, index = source[:-5], int(source[-4])
            qkv.setdefault(key, [None] * 3)[index] = clip_state[name]
        elif source.endswith(".T"):
            state[source[:-2]] = clip_state[name].t().clone()
        else:
            state[source] = clip_state[name].clone()
    state.update({k: torch.cat(v) for k, v in qkv.items()})
    # Other tensors the official file carries (must be skipped, not required).
    state["loss_fn.lpips.lin0.model.1.weight"] = torch.zeros(1, 64, 1, 1)
    # The warped-view encoder (embedders.5): officially a copy of embedders.3's encoder + quant_conv.
    for source in list(state):
        if source.startswith(("conditioner.embedders.3.encoder.encoder.", "conditioner.embedders.3.encoder.quant_conv.")):
            state[source.replace("embedders.3.", "embedders.5.")] = state[source].clone()
    state["conditioner.embedders.5.encoder.decoder.conv_in.weight"] = torch.zeros(1)  # its AE decoder: skipped
    state[CLIP_PREFIX.replace("visual.", "token_embedding.weight")] = torch.zeros(3, 4)
    return state


@functools.lru_cache(maxsize=None)
def _reference():
    return tiny_components(seed=1)


def _write(tmp_path, state, name="m2svid_weights.pt"):
    path = tmp_path / name
    torch.save({"module": {"module." + k: v for k, v in state.items()}}, path)
    return path


def _tiny_configs(encoder):
    return dict(unet_config=tiny_config(), vae_config=TINY_VAE, clip_config=encoder.config)


def test_round_trip_every_key_and_identical_outputs(tmp_path):
    unet, vae, encoder = _reference()
    path = _write(tmp_path, _official_state(unet, vae, encoder))
    out = convert_checkpoint(path, tmp_path / "converted", dtype=torch.float32, **_tiny_configs(encoder))
    converted = load_pipeline(out)
    for ref, got in ((unet, converted.unet), (vae, converted.vae), (encoder, converted.image_encoder)):
        ref_state, got_state = ref.state_dict(), got.state_dict()
        assert set(ref_state) == set(got_state)
        assert all(torch.equal(ref_state[k], got_state[k]) for k in ref_state)
    direct = M2SVidPipeline(unet, vae, encoder)
    inp, _ = make_layered_scene(3, 32, 32, foreground_disparity=4, velocity=-2)
    with torch.no_grad():
        got, expected = converted(inp.left, inp.warped, inp.mask, 5.0), direct(inp.left, inp.warped, inp.mask, 5.0)
    # Same tensors; only kernel choice may differ (transformers picks SDPA vs eager attention by load path).
    assert (got - expected).abs().max() < 1e-5
    import json

    manifest = json.loads((out / "m2svid.json").read_text())
    assert manifest["full_attention"] is True and len(manifest["source_sha256"]) == 64
    assert "loss_fn.lpips" in manifest["skipped_prefixes"]


def test_variant_from_file_name_and_svd_source_for_missing_parts(tmp_path):
    unet, vae, encoder = _reference()
    state = {k: v for k, v in _official_state(unet, vae, encoder).items()
             if k.startswith("model.diffusion_model.")}
    path = _write(tmp_path, state, "m2svid_no_full_atten_weights.pt")
    with pytest.raises(StereobenchError, match="--svd-source"):
        convert_checkpoint(path, tmp_path / "x", unet_config=tiny_config())
    svd = tmp_path / "svd"
    save_pipeline_folder(svd, unet, vae, encoder)  # vae/ and image_encoder/ in the diffusers layout
    out = convert_checkpoint(path, tmp_path / "converted", svd_source=str(svd), unet_config=tiny_config(), dtype=torch.float32)
    pipe = load_pipeline(out)
    assert not pipe.unet.full_attention
    assert torch.equal(pipe.vae.decoder.conv_out.weight, vae.decoder.conv_out.weight)


def test_wrong_files_name_what_was_expected(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(StereobenchError, match="m2svid_weights.pt"):
        read_checkpoint(text)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {"model.conv.weight": torch.zeros(1)}}, other)
    with pytest.raises(StereobenchError, match="model.diffusion_model.input_blocks.0.0.weight"):
        read_checkpoint(other)
    with pytest.raises(StereobenchError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.pt")
    unet, vae, encoder = _reference()
    state = _official_state(unet, vae, encoder)
    del state["model.diffusion_model.out.2.weight"]
    with pytest.raises(StereobenchError, match="lacks 1 U-Net"):
        convert_checkpoint(_write(tmp_path, state), tmp_path / "a", **_tiny_configs(encoder))
    state = _official_state(unet, vae, encoder)
    state["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(32, 8, 3, 3)  # plain SVD
    with pytest.raises(StereobenchError, match="shapes do not match"):
        convert_checkpoint(_write(tmp_path, state), tmp_path / "b", **_tiny_configs(encoder))
    with pytest.raises(StereobenchError, match=r"\(320, 13, 3, 3\)"):
        convert_checkpoint(_write(tmp_path, state), tmp_path / "c")  # full-size config inferred: refused
    state = _official_state(unet, vae, encoder)
    state["model.diffusion_model.input_blocks.99.0.weight"] = torch.zeros(1)
    with pytest.raises(StereobenchError, match="no place"):
        convert_checkpoint(_write(tmp_path, state), tmp_path / "d", **_tiny_configs(encoder))
    assert not (tmp_path / "d").exists()


def test_manifest_reports_whether_training_target_encoder_matches():
    """Official training encodes the target with first_stage_model.encoder and no quant_conv;
    the converted VAE holds the conditioner encoder + quant_conv: the report says if they agree."""
    from methods.m2svid.convert import ENCODER_PREFIX, FIRST_STAGE_ENCODER_PREFIX, QUANT_PREFIX, convert_state

    unet, vae, encoder = _reference()
    state = _official_state(unet, vae, encoder)
    first_stage = {FIRST_STAGE_ENCODER_PREFIX + k[len(ENCODER_PREFIX):]: v.clone()
                   for k, v in state.items() if k.startswith(ENCODER_PREFIX)}
    report = convert_state({**state, **first_stage}, **_tiny_configs(encoder))[3]
    assert report["first_stage_encoder_equals_conditioner_encoder"] is True
    assert report["quant_conv_is_identity"] is False  # random tiny quant_conv
    channels = state[QUANT_PREFIX + "weight"].shape[0]
    identity = {QUANT_PREFIX + "weight": torch.eye(channels).reshape(channels, channels, 1, 1),
                QUANT_PREFIX + "bias": torch.zeros(channels)}
    first_stage[FIRST_STAGE_ENCODER_PREFIX + "conv_in.bias"] += 1
    report = convert_state({**state, **first_stage, **identity}, **_tiny_configs(encoder))[3]
    assert report["quant_conv_is_identity"] is True
    assert report["first_stage_encoder_equals_conditioner_encoder"] is False
    assert "quant_conv_is_identity" not in convert_state(state, **_tiny_configs(encoder))[3]  # no first stage: no claim


@pytest.mark.parametrize("differ", [False, True])
def test_warped_view_encoder_is_compared_and_kept_when_it_differs(tmp_path, differ):
    """conditioner.embedders.5 (warped view) vs embedders.3 (left view): equal -> dropped and
    recorded; different -> saved as warped_encoder/ and used for the warped view only."""
    import json
    import math

    from methods.m2svid.pipeline import InferenceOptions

    unet, vae, encoder = _reference()
    state = _official_state(unet, vae, encoder)
    if differ:
        state["conditioner.embedders.5.encoder.encoder.conv_in.weight"] = state["conditioner.embedders.5.encoder.encoder.conv_in.weight"] * 1.5
        state["conditioner.embedders.5.encoder.quant_conv.bias"] = state["conditioner.embedders.5.encoder.quant_conv.bias"] + 0.3
    out = convert_checkpoint(_write(tmp_path, state), tmp_path / "converted", dtype=torch.float32, **_tiny_configs(encoder))
    manifest = json.loads((out / "m2svid.json").read_text())
    assert manifest["warped_encoder_equals_left_encoder"] is (not differ)
    assert (out / "warped_encoder").is_dir() is differ and ("warped_encoder" in manifest["components"]) is differ
    pipe = load_pipeline(out, options=InferenceOptions(cond_aug=0.0))  # no noise: exact latents
    assert (pipe.warped_encoder is not None) is differ
    # Independent reference: a copy of the VAE with embedders.5's tensors loaded.
    import copy

    warped_vae = copy.deepcopy(vae)
    with torch.no_grad():
        warped_vae.encoder.conv_in.weight.copy_(state["conditioner.embedders.5.encoder.encoder.conv_in.weight"])
        warped_vae.quant_conv.bias.copy_(state["conditioner.embedders.5.encoder.quant_conv.bias"])
    seen = {}
    pipe.unet.register_forward_pre_hook(lambda m, a, k: seen.__setitem__("sample", a[0]), with_kwargs=True)
    inp, _ = make_layered_scene(3, 32, 32, foreground_disparity=4, velocity=-2)
    with torch.no_grad():
        pipe(inp.left, inp.warped, inp.mask, fps=5.0)
        warped_m11 = torch.where(inp.mask, 0.0, inp.warped) * 2 - 1
        expected_warped = warped_vae.encode(warped_m11).latent_dist.mode()
        left_encoder_warped = vae.encode(warped_m11).latent_dist.mode()
        expected_left = vae.encode(inp.left * 2 - 1).latent_dist.mode()
    sample = seen["sample"][0]
    assert torch.allclose(sample[:, 4:8], expected_left, atol=1e-5)
    assert torch.allclose(sample[:, 8:12], expected_warped, atol=1e-5)
    assert math.isclose(float((expected_warped - left_encoder_warped).abs().max()), 0.0, abs_tol=1e-6) is (not differ)


def test_incomplete_warped_encoder_is_refused(tmp_path):
    unet, vae, encoder = _reference()
    state = _official_state(unet, vae, encoder)
    del state["conditioner.embedders.5.encoder.encoder.conv_out.bias"]
    with pytest.raises(StereobenchError, match=r"warped-view encoder \(conditioner.embedders.5\).*1 tensor\(s\) missing"):
        convert_checkpoint(_write(tmp_path, state), tmp_path / "x", **_tiny_configs(encoder))
    assert not (tmp_path / "x").exists()


def test_save_pipeline_keeps_the_extra_encoders_and_their_records(tmp_path):
    from methods.m2svid.pipeline import save_pipeline

    unet, vae, encoder = _reference()
    state = _official_state(unet, vae, encoder)
    state["conditioner.embedders.5.encoder.quant_conv.bias"] = state["conditioner.embedders.5.encoder.quant_conv.bias"] + 0.3
    out = convert_checkpoint(_write(tmp_path, state), tmp_path / "converted", dtype=torch.float32, **_tiny_configs(encoder))
    pipe = load_pipeline(out)
    save_pipeline(pipe, tmp_path / "resaved", manifest={"source_file": "trained"})
    again = load_pipeline(tmp_path / "resaved")
    assert again.manifest["warped_encoder_equals_left_encoder"] is False and again.manifest["source_file"] == "trained"
    assert again.warped_encoder is not None
    assert torch.equal(again.warped_encoder.quant_conv.bias, pipe.warped_encoder.quant_conv.bias)
