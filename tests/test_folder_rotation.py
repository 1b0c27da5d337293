"""A folder dataset applies a video's display rotation (phone videos), as `convert` does: the clip
comes upright, and a ground-truth disparity or depth maps are at the upright size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.datasets import get_dataset
from benchmark.errors import StereobenchError
from tests.convert_helpers import make_video, scene


def test_rotated_video_loads_upright(tmp_path):
    frames = scene(6, 48, 32)  # stored 48 high, 32 wide
    make_video(tmp_path / "phone.mp4", frames, fps=12, rotation=90)
    make_video(tmp_path / "plain.mp4", frames, fps=12)
    ds = get_dataset(str(tmp_path))
    phone, plain = ds.load_clip("phone"), ds.load_clip("plain")
    assert tuple(plain.left.shape) == (6, 3, 48, 32)
    assert tuple(phone.left.shape) == (6, 3, 32, 48)  # upright: 90 degrees counter-clockwise
    expected = torch.rot90(plain.left, 1, dims=(-2, -1))
    assert torch.allclose(phone.left, expected, atol=1e-6)


def test_disparity_of_a_rotated_video_is_at_the_upright_size(tmp_path):
    make_video(tmp_path / "phone_left.mp4", scene(4, 48, 32), fps=12, rotation=90)
    np.save(tmp_path / "phone_disparity.npy", np.ones((4, 32, 48), np.float32))
    assert tuple(get_dataset(str(tmp_path)).load_clip("phone").disparity.shape) == (4, 1, 32, 48)
    np.save(tmp_path / "phone_disparity.npy", np.ones((4, 48, 32), np.float32))  # the stored size: refused
    with pytest.raises(StereobenchError, match=r"expected \(4, 32, 48\)"):
        get_dataset(str(tmp_path)).load_clip("phone")
