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


def test_loader_version_is_part_of_the_folder_revision(tmp_path, monkeypatch):
    """Inputs cached from an older loader (sideways phone videos) must not be found again."""
    import numpy as np

    from benchmark.datasets import folder as folder_module
    from benchmark.video_io import write_video
    import torch

    write_video(tmp_path / "clip.mp4", torch.rand(2, 3, 16, 16), fps=5)
    np.save(tmp_path / "clip_disparity.npy", np.zeros((2, 16, 16), np.float32))
    current = folder_module.FolderDataset(tmp_path).spec.revision
    monkeypatch.setattr(folder_module, "LOADER_VERSION", folder_module.LOADER_VERSION - 1)
    older = folder_module.FolderDataset(tmp_path).spec.revision
    assert current != older
