"""Architectures of SVG's components: the real ones (for FLOP counts and random-weight speed
tests in the real shapes) and tiny ones of the same structure, and writers of complete folders
in the real on-disk layouts (tests, smoke runs; nothing is downloaded).

Real configurations (STEREOCRAFTER_SVG_FACTS.md part 3, read from the hub configs of
zeroscope_v2 and SVD img2vid-xt): zeroscope's ``UNet3DConditionModel`` (1.41 B parameters; its
``attention_head_dim`` 64 ends up as the head *dimension*: 5/10/20/20 heads), the OpenCLIP
ViT-H text tower as ``CLIPTextModel`` (23 layers, width 1024), SVD's
``AutoencoderKLTemporalDecoder``. The tiny ones keep every code path (cross-attention blocks,
temporal transformer, temporal decoder; the temporal decoder's GroupNorm has 32 groups, so its
widths are multiples of 32).
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch

ZEROSCOPE_UNET_CONFIG = {
    "sample_size": 32, "in_channels": 4, "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
    "up_block_types": ("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
    "block_out_channels": (320, 640, 1280, 1280), "layers_per_block": 2, "downsample_padding": 1, "mid_block_scale_factor": 1,
    "act_fn": "silu", "norm_num_groups": 32, "norm_eps": 1e-5, "cross_attention_dim": 1024, "attention_head_dim": 64,
}
ZEROSCOPE_TEXT_CONFIG = {
    "vocab_size": 49408, "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 23, "num_attention_heads": 16,
    "max_position_embeddings": 77, "hidden_act": "gelu", "projection_dim": 512, "bos_token_id": 49406, "eos_token_id": 49407,
    "pad_token_id": 0,
}
SVD_VAE_CONFIG = {
    "in_channels": 3, "out_channels": 3, "down_block_types": ("DownEncoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512), "layers_per_block": 2, "latent_channels": 4, "sample_size": 768,
    "scaling_factor": 0.18215, "force_upcast": True,
}
#: Zeroscope's scheduler_config.json (a DDIM config; SVG reads it into DDPMScheduler).
ZEROSCOPE_SCHEDULER_CONFIG = {
    "_class_name": "DDIMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "clip_sample": False, "num_train_timesteps": 1000, "prediction_type": "epsilon", "set_alpha_to_one": False,
    "steps_offset": 1, "trained_betas": None, "thresholding": False,
}

TINY_UNET_CONFIG = {
    "sample_size": 8, "in_channels": 4, "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock3D", "DownBlock3D"), "up_block_types": ("UpBlock3D", "CrossAttnUpBlock3D"),
    "block_out_channels": (32, 64), "layers_per_block": 1, "norm_num_groups": 8, "cross_attention_dim": 32, "attention_head_dim": 4,
}
TINY_VAE_CONFIG = {
    "in_channels": 3, "out_channels": 3, "down_block_types": ("DownEncoderBlock2D",) * 4, "block_out_channels": (32, 32, 64, 64),
    "layers_per_block": 1, "latent_channels": 4,  # 4 blocks: the real 8x reduction (SVG's latent mask needs it)
}


def _tokenizer_vocab() -> dict[str, int]:
    """A character-level CLIP BPE vocabulary: "!" (id 0, zeroscope's pad token), characters and
    their word-final forms, start and end tokens."""
    chars = ["!"] + [c for c in string.ascii_lowercase + string.digits + string.punctuation if c != "!"]
    vocab: dict[str, int] = {}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    for c in chars:
        vocab.setdefault(c + "</w>", len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab


def write_tokenizer(folder: Path) -> dict[str, int]:
    """A tiny CLIPTokenizer folder in the hub layout (vocab.json, merges.txt, special tokens,
    config; pad "!", 77 positions); returns the vocabulary."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = _tokenizer_vocab()
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "!",
               "unk_token": "<|endoftext|>"}
    (folder / "special_tokens_map.json").write_text(json.dumps(special))
    (folder / "tokenizer_config.json").write_text(json.dumps({**special, "model_max_length": 77, "do_lower_case": True,
                                                             "tokenizer_class": "CLIPTokenizer"}))
    return vocab


def write_tiny_zeroscope(folder: str | Path, seed: int = 0) -> Path:
    """A tiny random zeroscope folder (unet/, text_encoder/, tokenizer/, scheduler/,
    model_index.json) written with ``save_pretrained`` in the hub layout."""
    from diffusers import UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    torch.manual_seed(seed)
    UNet3DConditionModel(**TINY_UNET_CONFIG).save_pretrained(folder / "unet")
    vocab = write_tokenizer(folder / "tokenizer")
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, projection_dim=32, bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"], pad_token_id=0))
    text.save_pretrained(folder / "text_encoder")
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(ZEROSCOPE_SCHEDULER_CONFIG, indent=2))
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "TextToVideoSDPipeline", "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet3DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}, indent=2))
    return folder


def write_tiny_svd(folder: str | Path, seed: int = 0) -> Path:
    """A tiny random SVD pipeline folder holding only what SVG reads: vae/ (temporal decoder)."""
    from diffusers import AutoencoderKLTemporalDecoder

    folder = Path(folder)
    torch.manual_seed(seed)
    AutoencoderKLTemporalDecoder(**TINY_VAE_CONFIG).save_pretrained(folder / "vae")
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "StableVideoDiffusionPipeline", "vae": ["diffusers", "AutoencoderKLTemporalDecoder"]}, indent=2))
    return folder


def real_modules(device: str | torch.device = "meta", dtype: torch.dtype = torch.float32):
    """(unet, text_encoder, vae) in the real architectures with random weights (``"meta"``: no
    memory, for FLOP counts)."""
    from diffusers import AutoencoderKLTemporalDecoder, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device(device):
        unet = UNet3DConditionModel(**ZEROSCOPE_UNET_CONFIG)
        text = CLIPTextModel(CLIPTextConfig(**ZEROSCOPE_TEXT_CONFIG))
        vae = AutoencoderKLTemporalDecoder(**{k: v for k, v in SVD_VAE_CONFIG.items()
                                              if k not in ("sample_size", "scaling_factor", "force_upcast")})
    # A few parameters are built with torch.Tensor([...]) on CPU whatever the default device.
    return tuple(m.to(device=device, dtype=dtype).eval().requires_grad_(False) for m in (unet, text, vae))
