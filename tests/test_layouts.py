"""benchmark.layouts: exact geometry of every stereo layout, anaglyph channels, VR file names."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from benchmark.errors import StereobenchError
from benchmark.layouts import (
    LAYOUTS,
    anaglyph,
    cross_eyed,
    get_layout,
    layout_size,
    output_name,
    pack,
    side_by_side,
    squeeze,
    top_bottom,
)


def _eyes(t=2, h=6, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(t, 3, h, w, generator=g), torch.rand(t, 3, h, w, generator=g)


def test_full_sbs_and_tb_place_each_eye_exactly():
    left, right = _eyes()
    sbs = side_by_side(left, right)
    assert sbs.shape == (2, 3, 6, 16)
    assert torch.equal(sbs[..., :8], left) and torch.equal(sbs[..., 8:], right)
    tb = top_bottom(left, right)
    assert tb.shape == (2, 3, 12, 8)
    assert torch.equal(tb[:, :, :6], left) and torch.equal(tb[:, :, 6:], right)


def test_cross_eyed_swaps_the_eyes():
    left, right = _eyes()
    cross = cross_eyed(left, right)
    assert torch.equal(cross[..., :8], right) and torch.equal(cross[..., 8:], left)
    assert torch.equal(pack("cross-eyed", left, right), cross)


def test_half_sbs_halves_each_eyes_width_with_antialiased_bicubic():
    left, right = _eyes(h=6, w=9)
    half = side_by_side(left, right, half=True)
    assert half.shape == (2, 3, 6, 8)  # each eye 9 // 2 = 4 columns
    ref_left = F.interpolate(left, size=(6, 4), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    assert torch.allclose(half[..., :4], ref_left) and not torch.allclose(half[..., 4:], ref_left)
    # A flat eye stays flat: the resize keeps a constant colour exactly where it is.
    flat_l = torch.full((1, 3, 4, 10), 0.25)
    flat_r = torch.full((1, 3, 4, 10), 0.75)
    out = side_by_side(flat_l, flat_r, half=True)
    assert out.shape == (1, 3, 4, 10)
    assert torch.allclose(out[..., :5], torch.full_like(out[..., :5], 0.25), atol=1e-6)
    assert torch.allclose(out[..., 5:], torch.full_like(out[..., 5:], 0.75), atol=1e-6)


def test_half_tb_halves_each_eyes_height_and_stacks_left_on_top():
    flat_l = torch.full((1, 3, 8, 6), 0.1)
    flat_r = torch.full((1, 3, 8, 6), 0.9)
    out = top_bottom(flat_l, flat_r, half=True)
    assert out.shape == (1, 3, 8, 6)
    assert torch.allclose(out[:, :, :4], torch.full((1, 3, 4, 6), 0.1), atol=1e-6)
    assert torch.allclose(out[:, :, 4:], torch.full((1, 3, 4, 6), 0.9), atol=1e-6)


def test_layout_size_matches_pack_for_every_layout():
    left, right = _eyes(t=1, h=7, w=9)
    for name in LAYOUTS:
        assert tuple(pack(name, left, right).shape[-2:]) == layout_size(name, 7, 9), name


def test_single_frames_keep_their_rank():
    left, right = _eyes(t=1)
    assert pack("full-sbs", left[0], right[0]).shape == (3, 6, 16)
    assert pack("anaglyph-dubois", left[0], right[0]).shape == (3, 6, 8)


def test_simple_anaglyph_takes_red_from_left_and_green_blue_from_right():
    left, right = _eyes()
    out = anaglyph(left, right, "color")
    assert torch.equal(out[:, 0], left[:, 0])
    assert torch.equal(out[:, 1:], right[:, 1:])
    # Changing the left eye's green/blue never changes the anaglyph: they come from the right eye.
    other = left.clone()
    other[:, 1:] = 0.0
    assert torch.equal(anaglyph(other, right, "color"), out)


def test_half_color_and_gray_anaglyph_use_bt601_luma():
    left, right = _eyes()
    luma = lambda v: 0.299 * v[:, 0] + 0.587 * v[:, 1] + 0.114 * v[:, 2]
    half = anaglyph(left, right, "half-color")
    assert torch.allclose(half[:, 0], luma(left)) and torch.equal(half[:, 1:], right[:, 1:])
    gray = anaglyph(left, right, "gray")
    assert torch.allclose(gray[:, 1], luma(right)) and torch.allclose(gray[:, 2], luma(right))


def _srgb_decode(x):
    return x / 12.92 if x <= 0.04045 else ((x + 0.055) / 1.055) ** 2.4


def _srgb_encode(x):
    return x * 12.92 if x <= 0.0031308 else 1.055 * x ** (1 / 2.4) - 0.055


def test_dubois_matches_a_hand_computation_per_pixel():
    # Scalar re-derivation of Dubois' red-cyan rule (linear light, clip each eye, sum, clip, encode).
    ml = [[0.437, 0.449, 0.164], [-0.062, -0.062, -0.024], [-0.048, -0.050, -0.017]]
    mr = [[-0.011, -0.032, -0.007], [0.377, 0.761, 0.009], [-0.026, -0.093, 1.234]]
    left, right = _eyes(t=1, h=2, w=3, seed=3)
    out = anaglyph(left, right, "dubois")
    for y in range(2):
        for x in range(3):
            lin_l = [_srgb_decode(float(left[0, c, y, x])) for c in range(3)]
            lin_r = [_srgb_decode(float(right[0, c, y, x])) for c in range(3)]
            for o in range(3):
                a = min(max(sum(ml[o][c] * lin_l[c] for c in range(3)), 0.0), 1.0)
                b = min(max(sum(mr[o][c] * lin_r[c] for c in range(3)), 0.0), 1.0)
                expected = _srgb_encode(min(a + b, 1.0))
                assert abs(float(out[0, o, y, x]) - expected) < 1e-5


def test_dubois_green_and_blue_follow_the_right_eye():
    # With both eyes black except the right one, only the right eye's matrix acts.
    black = torch.zeros(1, 3, 2, 2)
    white = torch.ones(1, 3, 2, 2)
    only_right = anaglyph(black, white, "dubois")
    assert float(only_right[0, 0].max()) == 0.0  # the red row of the right matrix sums to < 0: clipped
    assert float(only_right[0, 1].min()) > 0.9 and float(only_right[0, 2].min()) > 0.9
    only_left = anaglyph(white, black, "dubois")
    assert float(only_left[0, 0].min()) > 0.9 and float(only_left[0, 1:].max()) == 0.0


def test_right_only_returns_the_right_view():
    left, right = _eyes()
    assert torch.equal(pack("right-only", left, right), right)


@pytest.mark.parametrize("layout,iw3,skybox,commedia", [
    ("full-sbs", "clip_LRF_Full_SBS.mp4", "clip_SBS.mp4", "clip_SBS.mp4"),
    ("half-sbs", "clip_LR.mp4", "clip_HSBS.mp4", "clip_SBS_Half.mp4"),
    ("full-tb", "clip_TBF_fulltb.mp4", "clip_TB.mp4", "clip_TB.mp4"),
    ("half-tb", "clip_TB.mp4", "clip_HOU.mp4", "clip_TB_Half.mp4"),
    ("cross-eyed", "clip_RLF_cross.mp4", "clip_RLF_cross.mp4", "clip_RLF_cross.mp4"),
    ("anaglyph-dubois", "clip_redcyan_dubois.mp4", "clip_redcyan_dubois.mp4", "clip_redcyan_dubois.mp4"),
    ("anaglyph-color", "clip_redcyan_color.mp4", "clip_redcyan_color.mp4", "clip_redcyan_color.mp4"),
])
def test_vr_player_suffixes(layout, iw3, skybox, commedia):
    assert output_name("/videos/clip.mov", layout) == iw3
    assert output_name("clip.mp4", layout, naming="skybox") == skybox
    assert output_name("clip.mp4", layout, naming="commedia") == commedia


def test_aliases_and_did_you_mean():
    assert get_layout("anaglyph").name == "anaglyph-dubois"
    assert get_layout("SBS").name == "full-sbs"
    assert get_layout("half_sbs").name == "half-sbs"
    with pytest.raises(StereobenchError, match="Did you mean 'half-sbs'"):
        get_layout("half-sbss")
    with pytest.raises(StereobenchError, match="file naming"):
        output_name("a.mp4", "full-sbs", naming="skybx")


def test_bad_inputs_are_one_line_errors():
    left, right = _eyes()
    with pytest.raises(StereobenchError, match="differ in shape"):
        side_by_side(left, right[..., :4])
    with pytest.raises(StereobenchError, match="floating point"):
        pack("full-sbs", (left * 255).to(torch.uint8), (right * 255).to(torch.uint8))
    with pytest.raises(StereobenchError, match="anaglyph type"):
        anaglyph(left, right, "duboi")
    assert squeeze(left, 6, 8) is left  # no resize when the size already matches
