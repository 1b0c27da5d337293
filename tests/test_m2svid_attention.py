"""Full attention for disoccluded tokens against a naive, loop-based reference of the official
semantics (OFFICIAL_CODE_FACTS.md B): selected tokens recompute the block with keys/values from
all raw tokens of the clip and cross-attention to all frames' CLIP tokens; others are unchanged."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers.models.transformers.transformer_temporal import TransformerSpatioTemporalModel

from methods.m2svid.attention import FullAttentionState, install_full_attention, token_selection
from methods.m2svid.model import M2SVidUNet, tiny_config

HEADS, HEAD_DIM, CTX = 2, 16, 12


def _naive_attention(query, keys, values, heads):
    """softmax(q k^T / sqrt(d)) v for one query row (C,) against (N, C) keys, head by head."""
    dim = query.shape[-1] // heads
    out = []
    for head in range(heads):
        sl = slice(head * dim, (head + 1) * dim)
        scores = torch.stack([(query[sl] * k[sl]).sum() / math.sqrt(dim) for k in keys])
        weights = torch.softmax(scores, dim=0)
        out.append((weights[:, None] * values[:, sl]).sum(0))
    return torch.cat(out)


def _naive_full_token(block, video_tokens, token, frame_context):
    """Official full-attention block output for one token of one video (all loops, no SDPA)."""
    a1, a2 = block.attn1, block.attn2
    q = a1.to_q(block.norm1(token[None]))[0]
    k, v = a1.to_k(video_tokens), a1.to_v(video_tokens)  # raw tokens, no norm1
    h = a1.to_out[0](_naive_attention(q, k, v, a1.heads)[None])[0] + token
    q2 = a2.to_q(block.norm2(h[None]))[0]
    k2, v2 = a2.to_k(frame_context), a2.to_v(frame_context)
    h = a2.to_out[0](_naive_attention(q2, k2, v2, a2.heads)[None])[0] + h
    return block.ff(block.norm3(h[None]))[0] + h


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    container = TransformerSpatioTemporalModel(HEADS, HEAD_DIM, in_channels=HEADS * HEAD_DIM, cross_attention_dim=CTX).eval()
    state = FullAttentionState()
    assert install_full_attention(container, state) == 1
    block = container.transformer_blocks[0]
    batch, frames, h, w = 2, 3, 4, 5
    x = torch.randn(batch * frames, h * w, HEADS * HEAD_DIM)
    context = torch.randn(batch * frames, 1, CTX)
    state.num_frames, state.token_grid = frames, (h, w)
    state.frame_context = context.reshape(batch, frames, CTX)
    return block, state, x, context, (batch, frames, h, w)


def _run(block, state, x, context, mask):
    state.hole_mask_latent = mask
    with torch.no_grad():
        return block(x, encoder_hidden_states=context)


def _plain(block, state, x, context):
    enabled = state.enabled
    state.enabled = False
    try:
        with torch.no_grad():
            return block(x, encoder_hidden_states=context)
    finally:
        state.enabled = enabled


def test_empty_mask_is_plain_spatial_attention(setup):
    block, state, x, context, (b, t, h, w) = setup
    plain = _plain(block, state, x, context)
    out = _run(block, state, x, context, -torch.ones(b * t, 1, h, w))
    assert torch.equal(out, plain)


def test_all_true_mask_is_full_spatiotemporal_attention(setup):
    block, state, x, context, (b, t, h, w) = setup
    out = _run(block, state, x, context, torch.ones(b * t, 1, h, w))
    videos = x.reshape(b, t * h * w, -1)
    ctx = context.reshape(b, t, CTX)
    with torch.no_grad():
        for vid in range(b):
            for tok in (0, 7, t * h * w - 1, h * w + 3):  # a sample of tokens across frames
                ref = _naive_full_token(block, videos[vid], videos[vid, tok], ctx[vid])
                got = out.reshape(b, t * h * w, -1)[vid, tok]
                assert torch.allclose(got, ref, atol=1e-5), (vid, tok)
    assert not torch.allclose(out, _plain(block, state, x, context), atol=1e-3)


def test_partial_mask_mixes_full_and_spatial(setup):
    block, state, x, context, (b, t, h, w) = setup
    gen = torch.Generator().manual_seed(1)
    mask = torch.where(torch.rand(b * t, 1, h, w, generator=gen) > 0.6, 1.0, -1.0)
    mask[b * t - 1] = -1.0  # one frame without holes; video 1 still has holes in other frames
    out = _run(block, state, x, context, mask).reshape(b, t * h * w, -1)
    plain = _plain(block, state, x, context).reshape(b, t * h * w, -1)
    selected = (mask > 0).reshape(b, t * h * w)
    videos, ctx = x.reshape(b, t * h * w, -1), context.reshape(b, t, CTX)
    with torch.no_grad():
        for vid in range(b):
            for tok in range(t * h * w):
                if selected[vid, tok]:
                    ref = _naive_full_token(block, videos[vid], videos[vid, tok], ctx[vid])
                    assert torch.allclose(out[vid, tok], ref, atol=1e-5)
                else:
                    assert torch.equal(out[vid, tok], plain[vid, tok])


def test_token_selection_bilinear_half_values():
    # Bilinear, align_corners=False, factor 2 averages the central 2x2 of each block: a single
    # hole pixel of a 2x2 block gives 0 (not > 0), two give 0 too, three give 0.5 (> 0).
    m = -torch.ones(1, 1, 4, 4)
    m[0, 0, 0, 0] = 1  # one of four -> mean -0.5
    m[0, 0, 0, 2:4] = 1  # two of four -> 0
    m[0, 0, 2:4, 0] = 1
    m[0, 0, 3, 1] = 1  # three of four -> 0.5
    sel = token_selection(m, (2, 2), 1).reshape(2, 2)
    assert sel.tolist() == [[False, False], [True, False]]
    assert token_selection(m, (4, 4), 1).sum() == int((m > 0).sum())


def test_training_cap_limits_recomputed_tokens(setup):
    block, state, x, context, (b, t, h, w) = setup
    block.train()
    state.train_cap_per_frame = 2
    try:
        out = _run(block, state, x, context, torch.ones(b * t, 1, h, w)).reshape(b, t * h * w, -1)
    finally:
        block.eval()
        state.train_cap_per_frame = 512
    plain = _plain(block, state, x, context).reshape(b, t * h * w, -1)
    changed = (out != plain).any(-1).sum(1)
    assert changed.tolist() == [2 * t, 2 * t]


def test_unet_empty_mask_and_disabled_match_stock_forward():
    from diffusers import UNetSpatioTemporalConditionModel

    torch.manual_seed(0)
    unet = M2SVidUNet(**tiny_config()).eval()
    x = torch.randn(1, 3, 13, 8, 8)
    x[:, :, -1] = -1.0
    ctx, ids = torch.randn(1, 1, 32), torch.tensor([[5.0, 127.0, 0.02]])
    with torch.no_grad():
        stock = UNetSpatioTemporalConditionModel.forward(unet, x, 1.6, ctx, ids).sample
        assert torch.equal(unet(x, 1.6, ctx, ids), stock)
        x[:, :, -1, 2:6, 2:6] = 1.0
        with_holes = unet(x, 1.6, ctx, ids)
        unet.full_attention = False
        assert torch.equal(unet(x, 1.6, ctx, ids), UNetSpatioTemporalConditionModel.forward(unet, x, 1.6, ctx, ids).sample)
        assert not torch.allclose(with_holes, stock, atol=1e-4)
