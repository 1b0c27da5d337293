"""M2SVid's U-Net: SVD img2vid-xt's spatio-temporal U-Net with a 13-channel input.

Input channel order (official, OFFICIAL_CODE_FACTS.md A): [noisy latent 4 | VAE latent of the
left video 4 | VAE latent of the warped right video 4 | hole mask 1], the mask at latent size
with values in [-1, 1]. Differences from diffusers' stock ``UNetSpatioTemporalConditionModel``:

* per-frame CLIP context: the spatial cross-attention of frame t sees frame t's CLIP token
  (stock diffusers repeats one token for every frame); the temporal blocks see frame 0's;
* full attention for disoccluded tokens (:mod:`methods.m2svid.attention`), switchable off;
* GroupNorm eps 1e-5 in every resnet, as in sgm (diffusers uses 1e-6 in some of them).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from diffusers import UNetSpatioTemporalConditionModel
from torch import nn

from methods._svd.vae import VAE_SCALING_FACTOR
from methods.m2svid.attention import FullAttentionState, install_full_attention

#: Latent scale of SVD's VAE (generated latents are divided by it before decoding).
LATENT_SCALE = VAE_SCALING_FACTOR
#: EDM sigma_max of the official config; the single step runs at this noise level.
SIGMA_MAX = 700.0
IN_CHANNELS = 13
LATENT_CHANNELS = 4

#: SVD img2vid-xt U-Net configuration (= diffusers defaults) with the 13-channel conv_in.
SVD_XT_UNET_CONFIG: dict[str, Any] = dict(
    sample_size=96,
    in_channels=IN_CHANNELS,
    out_channels=4,
    down_block_types=(
        "CrossAttnDownBlockSpatioTemporal",
        "CrossAttnDownBlockSpatioTemporal",
        "CrossAttnDownBlockSpatioTemporal",
        "DownBlockSpatioTemporal",
    ),
    up_block_types=(
        "UpBlockSpatioTemporal",
        "CrossAttnUpBlockSpatioTemporal",
        "CrossAttnUpBlockSpatioTemporal",
        "CrossAttnUpBlockSpatioTemporal",
    ),
    block_out_channels=(320, 640, 1280, 1280),
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=768,
    layers_per_block=2,
    cross_attention_dim=1024,
    transformer_layers_per_block=1,
    num_attention_heads=(5, 10, 20, 20),
    num_frames=25,
)


def tiny_config() -> dict[str, Any]:
    """A tiny U-Net of the same structure (for tests and CPU demos): ~1M parameters.

    Two levels (the first with attention, as in SVD's first three), one resnet per level,
    32/64 channels (GroupNorm needs multiples of 32), context width 32, time ids 3 x 8.
    """
    return dict(
        sample_size=16,
        in_channels=IN_CHANNELS,
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        block_out_channels=(32, 64),
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=24,
        layers_per_block=1,
        cross_attention_dim=32,
        transformer_layers_per_block=1,
        num_attention_heads=(2, 4),
        num_frames=25,
    )


class M2SVidUNet(UNetSpatioTemporalConditionModel):
    """SVD U-Net with M2SVid's per-frame context, full attention for holes and sgm eps.

    ``full_attention`` (attribute, default True) switches the disoccluded-token full attention;
    False is the official "no full attention" variant (same weights layout).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # sgm uses GroupNorm eps 1e-5 in every U-Net resnet (facts G, H9).
        for name, module in self.named_modules():
            if ".resnets." in f".{name}." and isinstance(module, nn.GroupNorm):
                module.eps = 1e-5
        self.full_attention_state = FullAttentionState()
        install_full_attention(self, self.full_attention_state)

    @property
    def full_attention(self) -> bool:
        return self.full_attention_state.enabled

    @full_attention.setter
    def full_attention(self, enabled: bool) -> None:
        self.full_attention_state.enabled = bool(enabled)

    def forward(  # type: ignore[override]
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        encoder_hidden_states: torch.Tensor,
        added_time_ids: torch.Tensor,
        hole_mask_latent: torch.Tensor | None = None,
        return_dict: bool = False,
    ) -> torch.Tensor:
        """One U-Net evaluation F(x; c_noise, c).

        Args:
            sample: (B, T, in_channels, h, w) U-Net input (noisy latent + concat conditions).
            timestep: c_noise (0.25 ln sigma), scalar or (B,).
            encoder_hidden_states: (B, T, C) per-frame CLIP tokens, or (B, 1, C) one token for
                all frames (stock SVD behaviour).
            added_time_ids: (B, 3) [fps, motion bucket, conditioning augmentation].
            hole_mask_latent: (B, T, 1, h, w) in [-1, 1] for token selection; default: the
                last input channel (the official model passes the concat mask channel).

        Returns:
            (B, T, out_channels, h, w) model output F (v-prediction).
        """
        batch, frames = sample.shape[:2]
        if sample.shape[2] != self.config.in_channels:
            raise ValueError(f"sample has {sample.shape[2]} channels, the U-Net expects {self.config.in_channels}")
        if hole_mask_latent is None and self.config.in_channels == IN_CHANNELS:
            hole_mask_latent = sample[:, :, -1:]
        timesteps = torch.as_tensor(timestep, device=sample.device, dtype=torch.float32).reshape(-1).expand(batch)
        emb = self.time_embedding(self.time_proj(timesteps).to(sample.dtype))
        time_embeds = self.add_time_proj(added_time_ids.flatten()).reshape(batch, -1).to(emb.dtype)
        emb = (emb + self.add_embedding(time_embeds)).repeat_interleave(frames, dim=0)
        if encoder_hidden_states.shape[1] == frames:
            context = encoder_hidden_states.reshape(batch * frames, 1, -1)
        elif encoder_hidden_states.shape[1] == 1:
            context = encoder_hidden_states.repeat_interleave(frames, dim=0)
        else:
            raise ValueError(
                f"encoder_hidden_states must be (B, T, C) or (B, 1, C), got {tuple(encoder_hidden_states.shape)} for T={frames}"
            )

        state = self.full_attention_state
        state.num_frames = frames
        state.frame_context = context.reshape(batch, frames, -1)
        state.hole_mask_latent = None if hole_mask_latent is None else hole_mask_latent.flatten(0, 1)
        try:
            hidden = self.conv_in(sample.flatten(0, 1))
            image_only_indicator = torch.zeros(batch, frames, dtype=hidden.dtype, device=hidden.device)
            skips = (hidden,)
            for block in self.down_blocks:
                kwargs = dict(hidden_states=hidden, temb=emb, image_only_indicator=image_only_indicator)
                if getattr(block, "has_cross_attention", False):
                    kwargs["encoder_hidden_states"] = context
                hidden, residuals = block(**kwargs)
                skips += residuals
            hidden = self.mid_block(
                hidden_states=hidden, temb=emb, encoder_hidden_states=context, image_only_indicator=image_only_indicator
            )
            for index, block in enumerate(self.up_blocks):
                residuals, skips = skips[-len(block.resnets):], skips[: -len(block.resnets)]
                kwargs = dict(
                    hidden_states=hidden, temb=emb, res_hidden_states_tuple=residuals,
                    image_only_indicator=image_only_indicator,
                )
                if index < len(self.up_blocks) - 1:
                    kwargs["upsample_size"] = skips[-1].shape[2:]
                if getattr(block, "has_cross_attention", False):
                    kwargs["encoder_hidden_states"] = context
                hidden = block(**kwargs)
            hidden = self.conv_out(self.conv_act(self.conv_norm_out(hidden)))
        finally:
            state.hole_mask_latent = None
            state.frame_context = None
        out = hidden.reshape(batch, frames, *hidden.shape[1:])
        return (out,) if return_dict else out


# diffusers reads the accepted config keys from the __init__ signature: expose the parent's.
M2SVidUNet.__init__.__signature__ = inspect.signature(UNetSpatioTemporalConditionModel.__init__)


def build_unet(config: dict[str, Any] | None = None) -> M2SVidUNet:
    """A randomly initialised M2SVid U-Net (default: the full-size SVD-xt config)."""
    return M2SVidUNet(**(config or SVD_XT_UNET_CONFIG))


def expand_conv_in(unet8: UNetSpatioTemporalConditionModel) -> M2SVidUNet:
    """Build M2SVid's 13-channel U-Net from a pretrained 8-channel SVD U-Net (official init).

    conv_in weight = [SVD channels 0-3 | SVD channels 4-7 / 2 | SVD channels 4-7 / 2 | zeros];
    the bias and every other tensor are copied unchanged (make_m2svid_init.py).
    """
    if unet8.config.in_channels != 8:
        raise ValueError(f"expand_conv_in expects an 8-channel SVD U-Net, got in_channels={unet8.config.in_channels}")
    config = {k: v for k, v in dict(unet8.config).items() if not k.startswith("_")}
    config["in_channels"] = IN_CHANNELS
    unet = M2SVidUNet(**config)
    state = unet8.state_dict()
    weight = state["conv_in.weight"]
    conditioning = weight[:, 4:8] / 2
    state["conv_in.weight"] = torch.cat([weight[:, :4], conditioning, conditioning, torch.zeros_like(weight[:, :1])], dim=1)
    unet.load_state_dict(state, strict=True)
    return unet.to(dtype=weight.dtype)
