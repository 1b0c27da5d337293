"""Depth -> disparity conversions against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from benchmark.errors import StereobenchError
from benchmark.stereo.disparity import (
    disparity_from_disparity, disparity_from_inverse_depth, disparity_from_metric_depth)


def test_inverse_depth_clip_normalisation():
    inv = torch.tensor([[[1.0, 2.0], [3.0, 5.0]], [[2.0, 3.0], [4.0, 3.0]]])  # (T=2, H=2, W=2)
    d = disparity_from_inverse_depth(inv, d_max_px=8.0)
    assert d.shape == (2, 1, 2, 2)
    expected = (inv - 1.0) / 4.0 * 8.0
    torch.testing.assert_close(d[:, 0], expected)


def test_inverse_depth_frame_normalisation_and_fraction_of_width():
    inv = torch.tensor([[[[0.0, 1.0, 2.0, 4.0]]], [[[10.0, 10.0, 30.0, 20.0]]]])
    d = disparity_from_inverse_depth(inv, d_max_frac=0.5, normalise="frame")  # W = 4 -> D_max = 2 px
    torch.testing.assert_close(d[0, 0, 0], torch.tensor([0.0, 0.5, 1.0, 2.0]))
    torch.testing.assert_close(d[1, 0, 0], torch.tensor([0.0, 0.0, 2.0, 1.0]))


def test_convergence_and_stereocrafter_rule():
    n = torch.tensor([[[[0.0, 0.25, 0.5, 1.0]]]])
    d = disparity_from_inverse_depth(n, d_max_px=40.0, convergence=0.5)
    torch.testing.assert_close(d[0, 0, 0], (2 * n[0, 0, 0] - 1) * 20)  # StereoCrafter: (2n - 1) * 20


def test_invalid_values_become_nan_and_flat_input_is_zero():
    inv = torch.tensor([[[[1.0, float("nan"), 3.0, float("inf")]]]])
    d = disparity_from_inverse_depth(inv, d_max_px=10)
    assert torch.isnan(d[0, 0, 0, 1]) and torch.isnan(d[0, 0, 0, 3])
    torch.testing.assert_close(d[0, 0, 0, [0, 2]], torch.tensor([0.0, 10.0]))
    flat = disparity_from_inverse_depth(torch.ones(2, 1, 3, 3), d_max_px=10)
    assert (flat == 0).all()
    with pytest.raises(StereobenchError, match="exactly one"):
        disparity_from_inverse_depth(inv, d_max_px=1, d_max_frac=0.1)
    with pytest.raises(StereobenchError, match="no finite"):
        disparity_from_inverse_depth(torch.full((1, 1, 2, 2), float("nan")), d_max_px=1)


def test_metric_depth():
    depth = torch.tensor([[[[2.0, 0.0, -1.0, float("inf"), float("nan"), 0.5]]]])
    d = disparity_from_metric_depth(depth, focal_px=443.4, baseline_m=0.063)
    assert d[0, 0, 0, 0].item() == pytest.approx(443.4 * 0.063 / 2.0)
    assert d[0, 0, 0, 5].item() == pytest.approx(443.4 * 0.063 / 0.5)
    assert torch.isnan(d[0, 0, 0, 1:5]).all()
    with pytest.raises(StereobenchError):
        disparity_from_metric_depth(depth, focal_px=0, baseline_m=0.1)


def test_disparity_rescale():
    disp = torch.tensor([[[[4.0, float("inf"), -2.0]]]])
    d = disparity_from_disparity(disp, scale=0.5, convergence_px=1.0)
    torch.testing.assert_close(d[0, 0, 0, [0, 2]], torch.tensor([1.0, -2.0]))
    assert torch.isnan(d[0, 0, 0, 1])


# ---- disparity files ---------------------------------------------------------------------------

def test_load_disparity_reads_npy_and_pt_in_the_project_layout(tmp_path):
    import numpy as np

    from benchmark.stereo.disparity import load_disparity, match_disparity

    array = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    array[0, 0, 0] = np.inf
    array[1, 2, 3] = np.nan
    np.save(tmp_path / "d.npy", array)
    torch.save(torch.from_numpy(array[:, None]).float(), tmp_path / "d.pt")
    np.save(tmp_path / "int.npy", np.ones((2, 3, 4), np.int16))
    for name in ("d.npy", "d.pt"):
        disparity = load_disparity(tmp_path / name)
        assert disparity.dtype == torch.float32 and disparity.shape == (2, 1, 3, 4)
        assert torch.isnan(disparity[0, 0, 0, 0]) and torch.isnan(disparity[1, 0, 2, 3])  # inf is invalid too
        finite = torch.isfinite(disparity)
        torch.testing.assert_close(disparity[finite], torch.from_numpy(array[:, None]).float()[finite])
    assert load_disparity(tmp_path / "int.npy").dtype == torch.float32
    # more maps than frames: the first ones are used; fewer, another size, or nothing finite: errors
    assert match_disparity(load_disparity(tmp_path / "d.npy"), 1, 3, 4).shape == (1, 1, 3, 4)
    with pytest.raises(StereobenchError, match="2 frames but the videos have 3"):
        match_disparity(load_disparity(tmp_path / "d.npy"), 3, 3, 4)
    with pytest.raises(StereobenchError, match="4x3"):
        match_disparity(load_disparity(tmp_path / "d.npy"), 2, 3, 5)
    with pytest.raises(StereobenchError, match="no finite value"):
        match_disparity(torch.full((2, 1, 3, 4), float("nan")), 2, 3, 4)


@pytest.mark.parametrize("content, match", [
    ({"d": torch.zeros(2, 3, 4)}, "holds a dict"),
    ((torch.zeros(2, 3, 4),), "holds a tuple"),
    (torch.zeros(2, 3, 4, dtype=torch.complex64), "complex"),
    (torch.zeros(2, 3, 4, dtype=torch.bool), "bool"),
    (torch.zeros(3, 4), r"shape \(3, 4\)"),
    (torch.zeros(0, 3, 4), "no frames"),
])
def test_load_disparity_rejects_what_is_not_one_map_per_frame(tmp_path, content, match):
    from benchmark.stereo.disparity import load_disparity

    torch.save(content, tmp_path / "d.pt")
    with pytest.raises(StereobenchError, match=match) as info:
        load_disparity(tmp_path / "d.pt")
    assert "\n" not in str(info.value)
