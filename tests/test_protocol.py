"""Clip protocols on synthetic tensor clips: sampling, padding, sizes and disparity scaling."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.types import Clip
from benchmark.errors import StereobenchError
from benchmark.stereo.protocol import PROTOCOLS, ClipProtocol, apply_protocol, get_protocol, resize_disparity


def _clip(t=40, h=300, w=400, fps=30.0, disparity=10.0):
    index = torch.arange(t).float().view(t, 1, 1, 1)
    left = (index / 255).expand(t, 3, h, w).contiguous()  # frame k has value k/255
    right = left.flip(-1).contiguous()
    disp = torch.full((t, 1, h, w), disparity)
    return Clip("syn/a", left=left, fps=fps, right=right, disparity=disp)


def _frame_ids(video):
    return (video[:, 0, 0, 0] * 255).round().long().tolist()


def test_builtin_protocols_match_the_paper_and_the_brief():
    paper = PROTOCOLS["paper"]
    assert (paper.num_frames, paper.fps, paper.short_side, paper.crop, paper.hole_mask_closing) == (16, 5.0, 512, (512, 512), 11)
    quick = PROTOCOLS["quick"]
    assert (quick.num_frames, quick.fps, quick.short_side, quick.crop, quick.hole_mask_closing) == (16, 5.0, 192, (192, 192), 5)
    native = PROTOCOLS["native"]
    assert native.num_frames is None and native.fps is None and native.short_side is None and native.crop is None


def test_overrides_are_named_and_unknown_names_suggest():
    p = get_protocol("paper", num_frames=8)
    assert p.name == "paper[num_frames=8]" and p.num_frames == 8 and p.fps == 5.0
    assert get_protocol("paper", num_frames=16) is PROTOCOLS["paper"]
    assert get_protocol("quick", crop=(128, 64), fps=2).name == "quick[crop=128x64,fps=2]"
    with pytest.raises(StereobenchError, match="Did you mean 'paper'"):
        get_protocol("papr")
    with pytest.raises(StereobenchError, match="num_frames"):
        get_protocol("paper", num_frame=3)
    with pytest.raises(StereobenchError):
        ClipProtocol("bad", num_frames=0)


def test_paper_protocol_samples_resizes_and_crops():
    clip = _clip(t=100)  # 3.3 s at 30 fps: enough for 16 frames at 5 fps
    out = apply_protocol(clip, "paper")
    assert out.left.shape == (16, 3, 512, 512) and out.right.shape == (16, 3, 512, 512)
    assert out.disparity.shape == (16, 1, 512, 512)
    assert _frame_ids(out.left) == [6 * k for k in range(16)]
    assert out.fps == 5.0 and out.metadata["padded_frames"] == 0
    torch.testing.assert_close(out.timestamps, torch.arange(16, dtype=torch.float64) / 5)
    # Short side 300 -> 512, width 400 -> 683; disparity in pixels scales with the width.
    scale = 683 / 400
    assert out.metadata["scale"] == pytest.approx(scale)
    torch.testing.assert_close(out.disparity, torch.full_like(out.disparity, 10 * scale))
    assert clip.left.shape == (100, 3, 300, 400)  # the input clip is untouched


def test_short_clip_is_zero_padded_with_nan_disparity():
    out = apply_protocol(_clip(t=20), "paper")  # 20 frames at 30 fps: targets 0..0.6 s -> 4 real frames
    assert out.left.shape[0] == 16
    assert out.metadata["padded_frames"] == 12
    assert out.metadata["source_frame_indices"][:4] == [0, 6, 12, 18]
    assert out.metadata["source_frame_indices"][4:] == [-1] * 12
    assert (out.left[4:] == 0).all() and (out.right[4:] == 0).all()
    assert torch.isnan(out.disparity[4:]).all() and torch.isfinite(out.disparity[:4]).all()
    edge = apply_protocol(_clip(t=20), get_protocol("paper", pad="edge"))
    assert _frame_ids(edge.left) == [0, 6, 12, 18] + [18] * 12


def test_timestamps_drive_sampling():
    clip = _clip(t=10, h=64, w=64)
    clip.timestamps = torch.tensor([0.0, 0.1, 0.15, 0.42, 0.43, 0.6, 0.78, 0.83, 1.2, 1.4], dtype=torch.float64)
    out = apply_protocol(clip, get_protocol("native", fps=5.0))
    # Targets 0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4 -> nearest frames.
    assert _frame_ids(out.left) == [0, 2, 3, 5, 6, 7, 8, 9]


@pytest.mark.parametrize("t0", [0.0, 10.0, 1234.5])
@pytest.mark.parametrize("src_fps,dst_fps", [(30.0, 20.0), (24.0, 16.0), (30000 / 1001, 20000 / 1001)])
def test_exact_ties_go_to_the_later_frame_whatever_the_rounding(t0, src_fps, dst_fps):
    """Resampling by 2/3: every odd target lies exactly between two source frames. FFmpeg's fps
    filter (round=near) takes the later one, so output k is source frame ceil(1.5 k)."""
    clip = _clip(t=30, h=8, w=8, fps=src_fps)
    clip.timestamps = t0 + torch.arange(30, dtype=torch.float64) / src_fps
    out = apply_protocol(clip, get_protocol("native", fps=dst_fps))
    expected = [math.ceil(1.5 * k) for k in range(out.num_frames)]
    assert list(out.metadata["source_frame_indices"]) == expected
    assert _frame_ids(out.left) == expected


def test_nan_aware_disparity_resize():
    disparity = torch.full((1, 1, 40, 80), 8.0)
    disparity[..., :, :40] = float("nan")
    disparity[..., 0, 60] = float("inf")
    out = resize_disparity(disparity, (20, 40))
    assert torch.isnan(out[..., :, :19]).all()
    torch.testing.assert_close(out[..., :, 21:], torch.full_like(out[..., :, 21:], 4.0))  # halved width


def test_crop_larger_than_frame_and_mismatched_clip_raise():
    with pytest.raises(StereobenchError, match="crop"):
        apply_protocol(_clip(t=3, h=100, w=100), get_protocol("native", crop=(200, 200)))
    bad = _clip(t=5, h=20, w=20)
    bad.disparity = bad.disparity[:4]
    with pytest.raises(StereobenchError, match="disparity"):
        apply_protocol(bad, "quick")


def test_quick_protocol_vectorised_sizes():
    out = apply_protocol(_clip(t=60, h=200, w=120), "quick")
    assert out.left.shape == (16, 3, 192, 192)
    assert out.disparity[0, 0, 0, 0].item() == pytest.approx(10 * 192 / 120)
    assert math.isclose(out.left.min().item(), 0.0)


# ---- filled-disparity flags, time windows and composed source indices ------------------------------

def test_filled_flags_follow_time_resize_crop_and_padding():
    clip = _clip(t=9, h=300, w=400, fps=10.0)  # 0.8 s: five frames at 5 fps, then padding
    flags = torch.zeros(9, 1, 300, 400, dtype=torch.bool)
    flags[:, :, 100:110, 200:203] = True   # a small filled patch
    flags[5] = True                        # frame 5 entirely filled: identifies the frame
    clip.disparity_filled = flags
    protocol = get_protocol("paper", num_frames=6, fps=5.0, short_side=150, crop=(150, 150))
    out = apply_protocol(clip, protocol)
    assert out.disparity_filled.shape == out.disparity.shape == (6, 1, 150, 150)
    assert out.disparity_filled.dtype == torch.bool
    # Time: output k is source 2k, so the whole-frame flag is nowhere (source 5 is skipped) ...
    assert out.metadata["source_frame_indices"] == [0, 2, 4, 6, 8, -1]
    assert not out.disparity_filled[:5].all(dim=(1, 2, 3)).any()
    # ... padding has no disparity at all, so it is not "filled".
    assert not out.disparity_filled[5].any()
    # Space (independent reference): an output pixel is flagged where any input pixel of its
    # antialiased footprint is; at scale 0.5 the patch rows 100..109 -> about 50..54, 2 px
    # margin at most; cols 200..202 minus the crop offset ((200 - 150) // 2 = 25) -> 75..76.
    flagged = out.disparity_filled[0, 0].nonzero()
    rows, cols = flagged[:, 0], flagged[:, 1]
    assert 48 <= int(rows.min()) <= 50 and 54 <= int(rows.max()) <= 56
    assert 73 <= int(cols.min()) <= 75 and 76 <= int(cols.max()) <= 78
    # Conservative: a pixel whose value took any weight from a filled pixel is flagged.
    weight = torch.nn.functional.interpolate(flags[:1].float(), size=(150, 200), mode="bilinear",
                                             align_corners=False, antialias=True)[..., 25:175]
    assert torch.equal(out.disparity_filled[:1], weight > 0)


def test_filled_flags_need_a_matching_disparity():
    clip = _clip(t=4, h=20, w=30)
    clip.disparity_filled = torch.zeros(4, 1, 20, 31, dtype=torch.bool)
    with pytest.raises(StereobenchError, match="disparity_filled"):
        apply_protocol(clip, get_protocol("native"))


def test_time_window_is_the_protocols_clock():
    window = PROTOCOLS["paper"].time_window()
    assert (window.start_time, window.num_frames, window.fps) == (None, 16, 5.0)
    assert PROTOCOLS["native"].time_window() is None
    assert get_protocol("native", num_frames=4).time_window().num_frames == 4


def test_source_indices_of_a_windowed_read_are_composed():
    """A reader that decoded only a window records its source indices; the protocol's own indices
    then map through them, so metadata still names frames of the original source."""
    clip = _clip(t=6, h=20, w=30, fps=10.0)
    clip.metadata["source_frame_indices"] = [10, 12, 14, 16, 18, 20]
    out = apply_protocol(clip, get_protocol("native", num_frames=8, short_side=None, crop=None, fps=5.0))
    assert out.metadata["source_frame_indices"] == [10, 14, 18, -1, -1, -1, -1, -1]
