"""Shared pytest configuration: markers that skip cleanly, small helpers.

Fixtures specific to one area live in that area's test modules; tests write their own tiny
fixtures (videos, checkpoints) into tmp_path and never download anything.
"""

from __future__ import annotations

import os

import pytest
import torch

# Keep tests reproducible and polite on 2-core machines.
torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_collection_modifyitems(config, items):
    has_cuda = torch.cuda.is_available()
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture
def footage(tmp_path):
    """A folder dataset of two left-only videos (4 frames, 32x48), each with `<name>_depth.npy`
    (a horizontal ramp), for the depth-source tests."""
    import numpy as np

    from benchmark import video_io
    from benchmark.depth import write_depth_files

    root = tmp_path / "videos"
    root.mkdir()
    g = torch.Generator().manual_seed(0)
    for name in ("beach", "street"):
        video_io.write_video(root / f"{name}.mp4", torch.rand(4, 3, 32, 48, generator=g), fps=8)
        ramp = np.tile(np.linspace(0.2, 1.0, 48, dtype=np.float32), (4, 32, 1))
        write_depth_files(root / f"{name}_depth.npy", ramp, fmt="npy")
    return root
