"""Full attention for disoccluded tokens (M2SVid's change to SVD's spatial transformer blocks).

Semantics (official sgm code, OFFICIAL_CODE_FACTS.md section B):

* Every spatial ``BasicTransformerBlock`` (``transformer_blocks.0`` of each
  ``TransformerSpatioTemporalModel``) first runs its ordinary per-frame path for all tokens.
* The latent hole mask (values in [-1, 1]) is resized to the block's token grid with bilinear
  interpolation (align_corners=False, no antialias); tokens whose value is > 0 are *selected*.
* Selected tokens recompute the whole block: self-attention with the query from
  ``norm1(selected)`` and keys/values from **all T*h*w raw block inputs of the clip (no norm1)**,
  cross-attention to the CLIP tokens of **all T frames**, then norm3 + feed-forward, each with
  its residual. The result *replaces* the ordinary output at those positions.
* In training mode at most ``512 * T`` tokens per video are selected (uniformly at random),
  as in the official code; in eval mode there is no cap.

The work grows with the number of selected tokens N: one SDPA of N queries against T*h*w
keys per video, with the selected tokens gathered by index (no Python loop over frames).
The hook is installed with :func:`install_full_attention`; the per-forward state (mask,
frame count, per-frame context, on/off switch) lives in a :class:`FullAttentionState` that the
U-Net fills before each forward, so diffusers' own modules and processors stay untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

#: Official training-mode cap on selected tokens per frame of a video.
TRAIN_TOKEN_CAP_PER_FRAME = 512


@dataclass
class FullAttentionState:
    """Per-forward state shared by all full-attention hooks of one U-Net.

    Attributes:
        enabled: False gives the official "no full attention" variant.
        hole_mask_latent: (B*T, 1, h, w) float mask at latent resolution in [-1, 1] (token > 0
            means selected), or None (no selection).
        num_frames: T of the current forward.
        frame_context: (B, T, C) CLIP token of every frame (cross-attention context of the
            selected path).
        token_grid: (h, w) of the block that runs next (recorded by a pre-hook on its
            TransformerSpatioTemporalModel).
        train_cap_per_frame: cap on selected tokens per frame in training mode (None = no cap).
        last_selected_counts: per-video number of selected tokens at the last block (for tests
            and cost accounting).
    """

    enabled: bool = True
    hole_mask_latent: torch.Tensor | None = None
    num_frames: int = 1
    frame_context: torch.Tensor | None = None
    token_grid: tuple[int, int] | None = None
    train_cap_per_frame: int | None = TRAIN_TOKEN_CAP_PER_FRAME
    last_selected_counts: list[int] = field(default_factory=list)


def token_selection(hole_mask_latent: torch.Tensor, grid: tuple[int, int], num_frames: int) -> torch.Tensor:
    """Selected tokens of each video at a block's token grid.

    Args:
        hole_mask_latent: (B*T, 1, H_lat, W_lat) in [-1, 1].
        grid: (h, w) token grid of the block.
        num_frames: T.

    Returns:
        bool (B, T*h*w), frame-major then row-major (the order of the block's tokens).
    """
    h, w = grid
    mask = hole_mask_latent.float()
    if tuple(mask.shape[-2:]) != (h, w):
        mask = F.interpolate(mask, size=(h, w), mode="bilinear", align_corners=False, antialias=False)
    return (mask > 0).reshape(-1, num_frames * h * w)


def _pick_indices(selected: torch.Tensor, cap: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N) token indices and (B, N) validity of the selected tokens, padded to the max count.

    With ``cap``, videos with more selected tokens keep ``cap`` of them chosen uniformly at
    random (random keys + top-k: vectorised equivalent of the official per-video randperm).
    """
    counts = selected.sum(dim=1)
    n = int(counts.max())
    if cap is not None and n > cap:
        keys = torch.where(selected, torch.rand(selected.shape, device=selected.device), -1.0)
        top = keys.topk(cap, dim=1)
        return top.indices, top.values >= 0
    # Stable sort puts selected tokens first, in token order.
    order = torch.sort((~selected).to(torch.uint8), dim=1, stable=True).indices[:, :n]
    valid = torch.arange(n, device=selected.device)[None, :] < counts[:, None]
    return order, valid


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, c = x.shape
    return x.view(b, n, heads, c // heads).transpose(1, 2)


def selected_block_forward(
    block: nn.Module, block_input: torch.Tensor, indices: torch.Tensor, frame_context: torch.Tensor
) -> torch.Tensor:
    """Recompute a BasicTransformerBlock for gathered tokens with clip-wide attention.

    Args:
        block: diffusers ``BasicTransformerBlock`` (layer_norm type, as in SVD).
        block_input: (B, T*h*w, C) raw block input of every token of each video.
        indices: (B, N) token indices to recompute (padding rows may repeat any index).
        frame_context: (B, T, C_ctx) CLIP token of every frame.

    Returns:
        (B, N, C) block output for the gathered tokens.
    """
    channels = block_input.shape[-1]
    selected = torch.gather(block_input, 1, indices[..., None].expand(-1, -1, channels))
    attn = block.attn1
    query = _heads(attn.to_q(block.norm1(selected)), attn.heads)
    # Official: keys/values come from the raw block input, not norm1 of it (facts B, H1).
    key = _heads(attn.to_k(block_input), attn.heads)
    value = _heads(attn.to_v(block_input), attn.heads)
    out = F.scaled_dot_product_attention(query, key, value, scale=attn.scale)
    out = out.transpose(1, 2).reshape(selected.shape[0], -1, channels).to(selected.dtype)
    out = attn.to_out[1](attn.to_out[0](out))
    hidden = out + selected
    if block.attn2 is not None:
        hidden = block.attn2(block.norm2(hidden), encoder_hidden_states=frame_context) + hidden
    return block.ff(block.norm3(hidden)) + hidden


def _block_hook(state: FullAttentionState):
    def hook(module: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor) -> torch.Tensor | None:
        if not state.enabled or state.hole_mask_latent is None or state.token_grid is None:
            return None
        block_input = args[0] if args else kwargs["hidden_states"]
        frames = state.num_frames
        batch_frames, tokens, channels = block_input.shape
        batch = batch_frames // frames
        selected = token_selection(state.hole_mask_latent, state.token_grid, frames)
        state.last_selected_counts = selected.sum(dim=1).tolist()
        if not bool(selected.any()):
            return None
        cap = state.train_cap_per_frame * frames if (module.training and state.train_cap_per_frame) else None
        indices, valid = _pick_indices(selected, cap)
        per_video_input = block_input.reshape(batch, frames * tokens, channels)
        recomputed = selected_block_forward(module, per_video_input, indices, state.frame_context)
        # Scatter the recomputed rows over the ordinary output (replace, not add); padding dropped.
        flat_index = (indices + torch.arange(batch, device=indices.device)[:, None] * frames * tokens)[valid]
        merged = output.reshape(batch * frames * tokens, channels).index_put((flat_index,), recomputed[valid])
        return merged.reshape(batch_frames, tokens, channels)

    return hook


def _grid_pre_hook(state: FullAttentionState):
    def pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        state.token_grid = (int(hidden.shape[-2]), int(hidden.shape[-1]))

    return pre_hook


def install_full_attention(unet: nn.Module, state: FullAttentionState) -> int:
    """Hook every spatial transformer block of an SVD U-Net; returns how many were hooked.

    Only ``transformer_blocks`` of each ``TransformerSpatioTemporalModel`` are affected: the
    temporal blocks, ``time_pos_embed`` and ``time_mixer`` keep their ordinary behaviour.
    """
    from diffusers.models.transformers.transformer_temporal import TransformerSpatioTemporalModel

    hooked = 0
    for module in unet.modules():
        if isinstance(module, TransformerSpatioTemporalModel):
            module.register_forward_pre_hook(_grid_pre_hook(state), with_kwargs=True)
            for block in module.transformer_blocks:
                block.register_forward_hook(_block_hook(state), with_kwargs=True)
                hooked += 1
    return hooked
