"""Convert the official M2SVid checkpoint (generative-models / sgm key layout) to diffusers.

The official ``m2svid_weights.pt`` / ``m2svid_no_full_atten_weights.pt`` hold a DeepSpeed dict
``{"module": {"module.<name>": tensor}}`` of the whole sgm ``VideoLDM``
(OFFICIAL_CODE_FACTS.md C). This module maps

* ``model.diffusion_model.*`` -> :class:`methods.m2svid.model.M2SVidUNet` (13-channel SVD U-Net),
* ``conditioner.embedders.3.encoder.{encoder,quant_conv}.*`` + ``first_stage_model.decoder.*``
  -> ``AutoencoderKLTemporalDecoder`` (the conditioner's KL encoder is what encodes the
  conditions at inference; the first stage has no quant_conv),
* ``conditioner.embedders.0.open_clip.model.visual.*`` -> transformers
  ``CLIPVisionModelWithProjection`` (OpenCLIP ViT-H-14; mapping not verified against OpenCLIP
  numerically here),

and takes any component the checkpoint lacks from an SVD img2vid-xt folder or cached hub id
(``svd_source``). The mapping is written diffusers -> sgm, one rule per key; conversion is
strict: every diffusers parameter must be filled with a tensor of the right shape and every
tensor under a converted prefix must be consumed, else a :class:`StereobenchError` names what
was expected. Tensors under other prefixes (LPIPS, the conditioner's AE decoders, the OpenCLIP
text leftovers) are reported as skipped.

Two encoders are compared rather than assumed (OFFICIAL_CODE_FACTS.md C, D):

* the warped-view conditioning encoder ``conditioner.embedders.5.encoder.{encoder,quant_conv}``
  against the left-view one (``embedders.3``): equal -> dropped; different -> kept as
  ``warped_encoder/`` (:class:`methods._svd.vae.KLEncoder`) and used for the warped view;
* the first-stage encoder (the official *training target* encoder, no quant_conv) against the
  conditioner's: different -> kept as ``training_target_encoder/``.

The manifest records every outcome (``warped_encoder_equals_left_encoder``,
``first_stage_encoder_equals_conditioner_encoder``, ``quant_conv_is_identity``,
``training_target``), and :mod:`methods.m2svid.train` reads them.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import torch

from benchmark.errors import StereobenchError
from benchmark.fileio import file_sha256

UNET_PREFIX = "model.diffusion_model."
ENCODER_PREFIX = "conditioner.embedders.3.encoder.encoder."
QUANT_PREFIX = "conditioner.embedders.3.encoder.quant_conv."
FIRST_STAGE_ENCODER_PREFIX = "first_stage_model.encoder."
DECODER_PREFIX = "first_stage_model.decoder."
CLIP_PREFIX = "conditioner.embedders.0.open_clip.model.visual."
#: The warped-view conditioning encoder (a frozen KL encoder + quant_conv like embedders.3).
WARPED_ENCODER_PREFIX = "conditioner.embedders.5.encoder.encoder."
WARPED_QUANT_PREFIX = "conditioner.embedders.5.encoder.quant_conv."
SVD_HUB_ID = "stabilityai/stable-video-diffusion-img2vid-xt"

_RESNET_RULES = (
    ("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
    ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection"),
)


def _rename_unet_resnet(rest: str) -> str:
    if rest.startswith("time_mixer."):
        return rest
    branch, _, inner = rest.partition(".")
    for new, old in _RESNET_RULES:
        if inner.startswith(new + "."):
            inner = old + inner[len(new):]
            break
    return inner if branch == "spatial_res_block" else "time_stack." + inner


def _rename_unet_transformer(rest: str) -> str:
    rest = re.sub(r"^temporal_transformer_blocks\.", "time_stack.", rest)
    return re.sub(r"^time_pos_embed\.linear_([12])\.", lambda m: f"time_pos_embed.{2 * int(m[1]) - 2}.", rest)


def unet_diffusers_to_sgm(name: str, layers_per_block: int, up_attention: list[bool]) -> str:
    """The sgm name (without ``model.diffusion_model.``) of a diffusers U-Net parameter.

    ``layers_per_block`` resnets per down level (up levels have one more); ``up_attention[b]``
    whether up block b has attention (then its upsampler sits at index 2, else 1).
    """
    fixed = {
        "time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
        "add_embedding.linear_1.": "label_emb.0.0.", "add_embedding.linear_2.": "label_emb.0.2.",
        "conv_in.": "input_blocks.0.0.", "conv_norm_out.": "out.0.", "conv_out.": "out.2.",
    }
    for new, old in fixed.items():
        if name.startswith(new):
            return old + name[len(new):]
    per_down = per_up = layers_per_block + 1
    if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", name):
        block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = 1 + block * per_down + layer
        if kind == "resnets":
            return f"input_blocks.{index}.0.{_rename_unet_resnet(rest)}"
        return f"input_blocks.{index}.1.{_rename_unet_transformer(rest)}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", name):
        return f"input_blocks.{(int(m[1]) + 1) * per_down}.0.op.{m[2]}"
    if m := re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", name):
        kind, layer, rest = m[1], int(m[2]), m[3]
        if kind == "attentions":
            return f"middle_block.1.{_rename_unet_transformer(rest)}"
        return f"middle_block.{2 * layer}.{_rename_unet_resnet(rest)}"
    if m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", name):
        block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = block * per_up + layer
        if kind == "resnets":
            return f"output_blocks.{index}.0.{_rename_unet_resnet(rest)}"
        return f"output_blocks.{index}.1.{_rename_unet_transformer(rest)}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", name):
        block = int(m[1])
        index = block * per_up + layers_per_block
        return f"output_blocks.{index}.{2 if up_attention[block] else 1}.conv.{m[2]}"
    raise KeyError(f"no sgm rule for diffusers U-Net parameter {name!r}")


def unet_name_map(unet) -> dict[str, str]:
    """diffusers name -> official checkpoint name (with ``model.diffusion_model.``) for every
    parameter of ``unet`` (any SVD-structured config, real or on the meta device)."""
    layers = unet.config.layers_per_block
    layers = layers if isinstance(layers, int) else layers[0]
    up_attention = [hasattr(block, "attentions") for block in unet.up_blocks]
    return {name: UNET_PREFIX + unet_diffusers_to_sgm(name, layers, up_attention) for name in unet.state_dict()}


_ATTN_RULES = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out"))


def _vae_attention(rest: str) -> str:
    for new, old in _ATTN_RULES:
        if rest.startswith(new + "."):
            return old + rest[len(new):]
    raise KeyError(rest)


def _vae_plain_resnet(rest: str) -> str:
    return re.sub(r"^conv_shortcut\.", "nin_shortcut.", rest)


def _vae_temporal_resnet(rest: str) -> str:
    if rest == "time_mixer.mix_factor":
        return "mix_factor"
    branch, _, inner = rest.partition(".")
    if branch == "spatial_res_block":
        return _vae_plain_resnet(inner)
    mapping = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3"}
    layer, _, param = inner.partition(".")
    return f"time_stack.{mapping[layer]}.{param}"


def vae_diffusers_to_sgm(name: str, num_levels: int, encoder_prefix: str = ENCODER_PREFIX,
                         quant_prefix: str = QUANT_PREFIX) -> str:
    """Official checkpoint name of a diffusers ``AutoencoderKLTemporalDecoder`` parameter."""
    if name.startswith("quant_conv."):
        return quant_prefix + name[len("quant_conv."):]
    part, _, rest = name.partition(".")
    prefix = encoder_prefix if part == "encoder" else DECODER_PREFIX
    if rest.startswith("conv_norm_out."):
        return prefix + "norm_out." + rest[len("conv_norm_out."):]
    if rest.startswith(("conv_in.", "conv_out.")):
        return prefix + rest
    if rest.startswith("time_conv_out."):
        return prefix + "conv_out.time_mix_conv." + rest[len("time_conv_out."):]
    resnet = _vae_plain_resnet if part == "encoder" else _vae_temporal_resnet
    if m := re.match(r"mid_block\.attentions\.0\.(.*)", rest):
        return prefix + "mid.attn_1." + _vae_attention(m[1])
    if m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", rest):
        return prefix + f"mid.block_{int(m[1]) + 1}." + resnet(m[2])
    if m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", rest):
        return prefix + f"down.{m[1]}.block.{m[2]}." + resnet(m[3])
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", rest):
        return prefix + f"down.{m[1]}.downsample.conv.{m[2]}"
    if m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", rest):
        return prefix + f"up.{num_levels - 1 - int(m[1])}.block.{m[2]}." + resnet(m[3])
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", rest):
        return prefix + f"up.{num_levels - 1 - int(m[1])}.upsample.conv.{m[2]}"
    raise KeyError(f"no sgm rule for diffusers VAE parameter {name!r}")


def vae_name_map(vae, encoder_prefix: str = ENCODER_PREFIX, quant_prefix: str = QUANT_PREFIX) -> dict[str, str]:
    levels = len(vae.config.block_out_channels)
    return {name: vae_diffusers_to_sgm(name, levels, encoder_prefix, quant_prefix) for name in vae.state_dict()}


def clip_name_map(encoder) -> dict[str, str]:
    """diffusers/transformers CLIP vision name -> OpenCLIP visual name; q/k/v map to slices of
    ``in_proj_*`` written as ``"<name>[i/3]"``; the projection is transposed (``"<name>.T"``)."""
    out = {}
    for name in encoder.state_dict():
        if name.endswith("position_ids"):
            continue
        rest = name.removeprefix("vision_model.")
        simple = {
            "embeddings.class_embedding": "class_embedding",
            "embeddings.patch_embedding.weight": "conv1.weight",
            "embeddings.position_embedding.weight": "positional_embedding",
        }
        if rest in simple:
            target = simple[rest]
        elif name == "visual_projection.weight":
            target = "proj.T"
        elif m := re.match(r"(pre_layrnorm|post_layernorm)\.(weight|bias)", rest):
            target = {"pre_layrnorm": "ln_pre", "post_layernorm": "ln_post"}[m[1]] + "." + m[2]
        elif m := re.match(r"encoder\.layers\.(\d+)\.(.*)", rest):
            layer, inner = m[1], m[2]
            base = f"transformer.resblocks.{layer}."
            if qkv := re.match(r"self_attn\.([qkv])_proj\.(weight|bias)", inner):
                target = f"{base}attn.in_proj_{qkv[2]}[{'qkv'.index(qkv[1])}/3]"
            else:
                rules = {"self_attn.out_proj.": "attn.out_proj.", "layer_norm1.": "ln_1.", "layer_norm2.": "ln_2.",
                         "mlp.fc1.": "mlp.c_fc.", "mlp.fc2.": "mlp.c_proj."}
                target = next(base + old + inner[len(new):] for new, old in rules.items() if inner.startswith(new))
        else:
            raise KeyError(f"no OpenCLIP rule for {name!r}")
        out[name] = CLIP_PREFIX + target
    return out


def _fetch(state: dict[str, torch.Tensor], source: str) -> tuple[torch.Tensor, str]:
    """Tensor for a mapped name (handles the ``[i/3]`` slice and ``.T`` transpose notations)."""
    if m := re.match(r"(.*)\[(\d)/3\]$", source):
        return state[m[1]].chunk(3, dim=0)[int(m[2])], m[1]
    if source.endswith(".T"):
        return state[source[:-2]].t(), source[:-2]
    return state[source], source


def load_mapped(module: torch.nn.Module, state: dict[str, torch.Tensor], name_map: dict[str, str], what: str) -> set[str]:
    """Fill every parameter of ``module`` from ``state`` through ``name_map`` (strict).

    Returns the set of consumed checkpoint keys. Raises StereobenchError naming the missing
    official keys or the shape mismatches.
    """
    missing = sorted({_fetch_key(src) for src in name_map.values()} - set(state))
    if missing:
        raise StereobenchError(
            f"checkpoint lacks {len(missing)} {what} tensor(s) the official layout has, e.g. {missing[:3]}: "
            f"is this an M2SVid checkpoint (m2svid_weights.pt)?"
        )
    converted, consumed, bad = {}, set(), []
    expected = module.state_dict()
    for name, source in name_map.items():
        tensor, key = _fetch(state, source)
        consumed.add(key)
        if tuple(tensor.shape) != tuple(expected[name].shape):
            bad.append(f"{key} {tuple(tensor.shape)} -> {name} {tuple(expected[name].shape)}")
        converted[name] = tensor
    if bad:
        raise StereobenchError(f"{what} shapes do not match the M2SVid architecture ({len(bad)}), e.g. {bad[:2]}")
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in converted.items()}, strict=True)
    return consumed


def _fetch_key(source: str) -> str:
    return re.sub(r"(\[\d/3\]|\.T)$", "", source)


def read_checkpoint(path: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The flat ``name -> tensor`` dict of an official checkpoint (DeepSpeed ``module`` dict,
    a ``state_dict`` dict or a flat dict), with a leading ``module.`` stripped."""
    path = Path(path)
    if not path.is_file():
        raise StereobenchError(f"checkpoint {path} does not exist; download it from "
                               f"https://storage.googleapis.com/gresearch/m2svid/m2svid_weights.pt")
    try:
        data = torch.load(path, map_location="cpu", weights_only=not trust_pickle, mmap=True)
    except Exception as exc:  # UnpicklingError for non-tensor objects, or not a torch file at all
        raise StereobenchError(
            f"cannot read {path} as a PyTorch checkpoint ({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); expected the "
            f"official m2svid_weights.pt (a dict with 'module'); if it is that file and holds extra Python objects, "
            f"rerun with --trust-pickle"
        ) from exc
    if isinstance(data, dict) and "module" in data and isinstance(data["module"], dict):
        data = data["module"]
    elif isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not data:
        raise StereobenchError(f"{path} holds {type(data).__name__}, not a state dict; expected the official M2SVid checkpoint")
    state = {k.removeprefix("module."): v for k, v in data.items() if isinstance(v, torch.Tensor)}
    if not any(k.startswith(UNET_PREFIX) for k in state):
        sample = ", ".join(list(state)[:3])
        raise StereobenchError(
            f"{path} has no '{UNET_PREFIX}*' tensors (found e.g. {sample}); expected the official M2SVid checkpoint "
            f"(generative-models layout, e.g. '{UNET_PREFIX}input_blocks.0.0.weight' of shape (320, 13, 3, 3))"
        )
    return state


def _unet_config_from_state(state: dict[str, torch.Tensor]) -> dict:
    from methods.m2svid.model import SVD_XT_UNET_CONFIG

    conv_in = state[UNET_PREFIX + "input_blocks.0.0.weight"]
    config = dict(SVD_XT_UNET_CONFIG)
    if conv_in.shape[0] != config["block_out_channels"][0] or conv_in.shape[1] != 13:
        raise StereobenchError(
            f"{UNET_PREFIX}input_blocks.0.0.weight has shape {tuple(conv_in.shape)}, M2SVid's is (320, 13, 3, 3): "
            f"this is not an M2SVid checkpoint (a plain SVD checkpoint has 8 input channels)"
        )
    return config


def _clip_config_from_state(state: dict[str, torch.Tensor]):
    from transformers import CLIPVisionConfig

    conv1 = state[CLIP_PREFIX + "conv1.weight"]
    width, patch = conv1.shape[0], conv1.shape[-1]
    layers = 1 + max(int(k.split(".")[len(CLIP_PREFIX.split(".")) + 1]) for k in state if k.startswith(CLIP_PREFIX + "transformer.resblocks."))
    positions = state[CLIP_PREFIX + "positional_embedding"].shape[0]
    image_size = int(round((positions - 1) ** 0.5)) * patch
    hidden = state[CLIP_PREFIX + "transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
    return CLIPVisionConfig(
        hidden_size=width, intermediate_size=hidden, num_hidden_layers=layers, num_attention_heads={1280: 16, 1024: 16, 768: 12}.get(width, max(width // 64, 1)),  # ViT-H-14: head width 80
        image_size=image_size, patch_size=patch, projection_dim=state[CLIP_PREFIX + "proj"].shape[1],
        hidden_act="gelu", layer_norm_eps=1e-5,
    )


def _svd_component(svd_source: str | None, subfolder: str, what: str):
    if svd_source is None:
        raise StereobenchError(
            f"the checkpoint carries no {what} and no SVD source was given: pass --svd-source with a local "
            f"SVD img2vid-xt folder or the hub id {SVD_HUB_ID} (read from the Hugging Face cache only)"
        )
    from diffusers import AutoencoderKLTemporalDecoder
    from transformers import CLIPVisionModelWithProjection

    from methods._svd.folders import require_folder, resolve_folder

    folder = resolve_folder(svd_source, what="SVD source", how_to_get=f"give a local SVD img2vid-xt folder or {SVD_HUB_ID}")
    require_folder(folder, [subfolder], what="SVD source", fix=f"expected the diffusers layout of {SVD_HUB_ID}")
    cls = AutoencoderKLTemporalDecoder if subfolder == "vae" else CLIPVisionModelWithProjection
    return cls.from_pretrained(folder / subfolder)


class Converted(NamedTuple):
    """What :func:`convert_state` builds: the three pipeline modules, the manifest report and the
    optional extra encoders (None when the checkpoint's copy is identical or absent)."""

    unet: Any
    vae: Any
    image_encoder: Any
    report: dict
    warped_encoder: Any = None
    target_encoder: Any = None


def _load_vae_like(module, state: dict[str, torch.Tensor], name_map: dict[str, str], what: str) -> set[str]:
    """:func:`load_mapped` for VAE-layout modules: sgm stores the mid attention's q/k/v/proj_out
    as 1x1 convolutions, diffusers as linear layers (squeezed here)."""
    squeezed = {}
    for source in name_map.values():
        if ".mid.attn_1." in source and source.endswith(".weight") and source in state and state[source].ndim == 4:
            squeezed[source] = state[source][:, :, 0, 0]
    return load_mapped(module, {**state, **squeezed}, name_map, what)


def _encoder_name_map(encoder, encoder_prefix: str, quant_prefix: str) -> dict[str, str]:
    """Official names of a :class:`KLEncoder`'s parameters (same rules as the VAE's encoder)."""
    levels = len(encoder.config.block_out_channels)
    return {name: vae_diffusers_to_sgm(name, levels, encoder_prefix, quant_prefix) for name in encoder.state_dict()}


def _warped_encoder(state: dict[str, torch.Tensor], vae, vae_names: dict[str, str], report: dict):
    """Compare ``embedders.5`` (warped view) with ``embedders.3`` (left view); a KLEncoder if they differ.

    Records ``warped_encoder_equals_left_encoder`` (absent when the checkpoint has no
    embedders.5). An incomplete embedders.5 is refused: it cannot be compared.
    """
    from methods._svd.vae import KLEncoder

    present = [k for k in state if k.startswith((WARPED_ENCODER_PREFIX, WARPED_QUANT_PREFIX))]
    if not present:
        return None
    left = [src for src in vae_names.values() if src.startswith((ENCODER_PREFIX, QUANT_PREFIX))]
    twins = {src: (WARPED_ENCODER_PREFIX + src[len(ENCODER_PREFIX):] if src.startswith(ENCODER_PREFIX)
                   else WARPED_QUANT_PREFIX + src[len(QUANT_PREFIX):]) for src in left}
    missing = sorted(twin for twin in twins.values() if twin not in state)
    extra = sorted(set(present) - set(twins.values()))
    if missing or extra:
        raise StereobenchError(
            f"the checkpoint's warped-view encoder (conditioner.embedders.5) does not match the left-view encoder's layout "
            f"({len(missing)} tensor(s) missing, e.g. {missing[:2]}; {len(extra)} unexpected, e.g. {extra[:2]}): "
            f"is this an unmodified M2SVid checkpoint?")
    equal = all(torch.equal(state[src], state[twin]) for src, twin in twins.items())  # False on a shape mismatch too
    report["warped_encoder_equals_left_encoder"] = equal
    if equal:
        return None
    encoder = KLEncoder.from_vae(vae, use_quant_conv=True)
    _load_vae_like(encoder, state, _encoder_name_map(encoder, WARPED_ENCODER_PREFIX, WARPED_QUANT_PREFIX),
                   "warped-view encoder (conditioner.embedders.5)")
    report["components"]["warped_encoder"] = f"checkpoint ({WARPED_ENCODER_PREFIX}* + {WARPED_QUANT_PREFIX}*)"
    return encoder


def convert_state(state: dict[str, torch.Tensor], svd_source: str | None = None, unet_config: dict | None = None,
                  vae_config: dict | None = None, clip_config=None) -> Converted:
    """Build the converted modules from a flat official state dict.

    ``*_config`` override the architectures inferred for the full-size model (tests use tiny
    ones). ``report`` lists consumed/skipped key counts, where each component came from and the
    encoder comparisons (module docstring).
    """
    from diffusers import AutoencoderKLTemporalDecoder
    from transformers import CLIPVisionModelWithProjection

    from methods.m2svid.model import M2SVidUNet

    report: dict = {"components": {}}
    unet = M2SVidUNet(**(unet_config or _unet_config_from_state(state)))
    unet_keys = {k for k in state if k.startswith(UNET_PREFIX)}
    consumed = load_mapped(unet, state, unet_name_map(unet), "U-Net")
    if unused := sorted(unet_keys - consumed):
        raise StereobenchError(f"{len(unused)} U-Net tensor(s) of the checkpoint have no place in the M2SVid U-Net, "
                               f"e.g. {unused[:3]}: the file does not match the SVD-xt architecture")
    report["components"]["unet"] = "checkpoint"

    has_decoder = any(k.startswith(DECODER_PREFIX) for k in state)
    has_encoder = any(k.startswith(ENCODER_PREFIX) for k in state)
    has_first_encoder = any(k.startswith(FIRST_STAGE_ENCODER_PREFIX) for k in state)
    warped_encoder = target_encoder = None
    if has_decoder and (has_encoder or has_first_encoder):
        vae = AutoencoderKLTemporalDecoder(**(vae_config or {
            "down_block_types": ("DownEncoderBlock2D",) * 4, "block_out_channels": (128, 256, 512, 512),
            "layers_per_block": 2, "latent_channels": 4,
        }))
        encoder_prefix = ENCODER_PREFIX if has_encoder else FIRST_STAGE_ENCODER_PREFIX
        name_map = vae_name_map(vae, encoder_prefix)
        if not has_encoder or QUANT_PREFIX + "weight" not in state:
            # The first stage has no quant_conv: it acts as the identity (facts C).
            channels = vae.quant_conv.weight.shape[0]
            state = {**state, QUANT_PREFIX + "weight": torch.eye(channels).reshape(channels, channels, 1, 1),
                     QUANT_PREFIX + "bias": torch.zeros(channels)}
        consumed_vae = _load_vae_like(vae, state, name_map, "VAE")
        unused = sorted(k for k in state if k.startswith((encoder_prefix, DECODER_PREFIX)) and k not in consumed_vae)
        if unused:
            raise StereobenchError(f"{len(unused)} VAE tensor(s) have no place in AutoencoderKLTemporalDecoder, e.g. {unused[:3]}")
        report["components"]["vae"] = f"checkpoint ({encoder_prefix}* + {DECODER_PREFIX}*)"
        report.update(_training_target_encoder_check(state, name_map, has_encoder and has_first_encoder))
        if report.get("first_stage_encoder_equals_conditioner_encoder") is False:
            from methods._svd.vae import KLEncoder

            target_encoder = KLEncoder.from_vae(vae, use_quant_conv=False)
            _load_vae_like(target_encoder, state, _encoder_name_map(target_encoder, FIRST_STAGE_ENCODER_PREFIX, QUANT_PREFIX),
                           "first-stage encoder")
            report["components"]["training_target_encoder"] = f"checkpoint ({FIRST_STAGE_ENCODER_PREFIX}*)"
        if has_encoder:
            warped_encoder = _warped_encoder(state, vae, name_map, report)
        elif any(k.startswith(WARPED_ENCODER_PREFIX) for k in state):
            raise StereobenchError("the checkpoint has a warped-view encoder (conditioner.embedders.5) but no left-view "
                                   "encoder (conditioner.embedders.3): is this an unmodified M2SVid checkpoint?")
    else:
        vae = _svd_component(svd_source, "vae", "VAE (first_stage_model.decoder / conditioner encoder)")
        report["components"]["vae"] = f"svd source {svd_source}"

    if any(k.startswith(CLIP_PREFIX) for k in state):
        encoder = CLIPVisionModelWithProjection(clip_config or _clip_config_from_state(state))
        consumed_clip = load_mapped(encoder, state, clip_name_map(encoder), "CLIP image encoder")
        unused = sorted(k for k in state if k.startswith(CLIP_PREFIX) and k not in consumed_clip)
        if unused:
            raise StereobenchError(f"{len(unused)} OpenCLIP visual tensor(s) unmapped, e.g. {unused[:3]}")
        report["components"]["image_encoder"] = "checkpoint (OpenCLIP visual)"
    else:
        encoder = _svd_component(svd_source, "image_encoder", "CLIP image encoder (conditioner.embedders.0)")
        report["components"]["image_encoder"] = f"svd source {svd_source}"
    prefixes = (UNET_PREFIX, ENCODER_PREFIX, QUANT_PREFIX, DECODER_PREFIX, CLIP_PREFIX)
    skipped = sorted({k.split(".")[0] + "." + k.split(".")[1] if k.count(".") > 1 else k
                      for k in state if not k.startswith(prefixes)})
    report["skipped_prefixes"] = skipped
    return Converted(unet, vae, encoder, report, warped_encoder, target_encoder)


def _training_target_encoder_check(state: dict[str, torch.Tensor], name_map: dict[str, str], both: bool) -> dict:
    """Whether the converted VAE encoder also reproduces the official *training* target encoder.

    Officially the conditions are encoded by the conditioner's KL encoder + quant_conv (what the
    converted VAE holds), but the training target by ``first_stage_model.encoder`` with no
    quant_conv (OFFICIAL_CODE_FACTS.md C, D). The two agree iff the encoder tensors are equal and
    quant_conv is the identity. Recorded in the manifest, with ``training_target`` saying which
    encoder :mod:`methods.m2svid.train` uses for the target.
    """
    if not both:
        return {}
    weight, bias = state[QUANT_PREFIX + "weight"], state[QUANT_PREFIX + "bias"]
    channels = weight.shape[0]
    identity = bool(torch.equal(weight.reshape(channels, -1).float(), torch.eye(channels)) and not bias.any())
    same = all(
        FIRST_STAGE_ENCODER_PREFIX + src[len(ENCODER_PREFIX):] in state
        and torch.equal(state[src], state[FIRST_STAGE_ENCODER_PREFIX + src[len(ENCODER_PREFIX):]])
        for src in name_map.values() if src.startswith(ENCODER_PREFIX)
    )
    if not same:
        target = "training_target_encoder/ (first_stage_model.encoder, no quant_conv)"
    elif not identity:
        target = "vae encoder without quant_conv"
    else:
        target = "vae (identical to the official target encoder)"
    return {"quant_conv_is_identity": identity, "first_stage_encoder_equals_conditioner_encoder": same,
            "training_target": target}


def _sha256(path: Path) -> str:
    return file_sha256(path, chunk_size=1 << 22)


def convert_checkpoint(src_pt: str | Path, out_dir: str | Path, svd_source: str | None = None,
                       full_attention: bool | None = None, trust_pickle: bool = False, dtype: torch.dtype = torch.float16,
                       **configs) -> Path:
    """Convert an official checkpoint into a diffusers-format M2SVid folder; returns ``out_dir``.

    ``full_attention`` None infers the variant from the file name (``no_full_atten`` -> False).
    The folder is written to a temporary sibling and moved into place only when complete.
    """
    from methods.m2svid.pipeline import save_pipeline_folder

    src_pt, out_dir = Path(src_pt), Path(out_dir)
    state = read_checkpoint(src_pt, trust_pickle=trust_pickle)
    converted = convert_state(state, svd_source=svd_source, **configs)
    if full_attention is None:
        full_attention = "no_full_att" not in src_pt.name
    manifest = {
        "source_file": src_pt.name, "source_sha256": _sha256(src_pt), "full_attention": bool(full_attention),
        "dtype": str(dtype).removeprefix("torch."), **converted.report,
    }
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        extras = {name: module.to(dtype) if module is not None else None
                  for name, module in (("warped_encoder", converted.warped_encoder), ("target_encoder", converted.target_encoder))}
        save_pipeline_folder(tmp, converted.unet.to(dtype), converted.vae.to(dtype), converted.image_encoder.to(dtype),
                             manifest=manifest, **extras)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``stereobench weights convert-m2svid``."""
    from benchmark.weights import weights_root

    parser.add_argument("checkpoint", type=Path, help="official m2svid_weights.pt or m2svid_no_full_atten_weights.pt")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output folder (default: {weights_root()}/m2svid or m2svid-no-full-attention by file name)")
    parser.add_argument("--svd-source", default=None,
                        help=f"SVD img2vid-xt folder or cached hub id ({SVD_HUB_ID}) for components the checkpoint lacks")
    parser.add_argument("--variant", choices=("auto", "full-attention", "no-full-attention"), default="auto",
                        help="which model the file is (auto: from the file name)")
    parser.add_argument("--dtype", choices=("float16", "bfloat16", "float32"), default="float16", help="stored precision")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow arbitrary pickled objects in the checkpoint (only for files from the official source)")


def run_convert(args: argparse.Namespace) -> int:
    """Run the conversion for parsed ``add_convert_arguments`` arguments; prints the folder."""
    from benchmark.weights import weights_root

    full = {"auto": None, "full-attention": True, "no-full-attention": False}[args.variant]
    if full is None:
        full = "no_full_att" not in Path(args.checkpoint).name
    out = args.out or weights_root() / ("m2svid" if full else "m2svid-no-full-attention")
    folder = convert_checkpoint(args.checkpoint, out, svd_source=args.svd_source, full_attention=full,
                                trust_pickle=args.trust_pickle, dtype=getattr(torch, args.dtype))
    manifest = json.loads((folder / "m2svid.json").read_text())
    print(f"wrote {folder} (full_attention={manifest['full_attention']}, sources: {manifest['components']})")
    return 0
