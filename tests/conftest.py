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
