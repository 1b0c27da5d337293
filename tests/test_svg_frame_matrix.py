"""SVG's frame matrix on synthetic data with exact disparity, and its mask rules against OpenCV
(the library the official code calls: cv2.erode, cv2.filter2D, cv2.resize, cv2.GaussianBlur)."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
import torch

from benchmark.errors import StereobenchError
from benchmark.stereo.native_warps import warp_svg
from benchmark.stereo.warp import close_hole_mask, forward_warp
from benchmark.types import StereoInput
from methods.svg.adapter import pad_to_multiple
from methods.svg.frame_matrix import (
    build_frame_matrix,
    latent_mask,
    pixel_known_mask,
    soft_mask,
    view_scales,
)
from tests.method_tester import make_layered_scene


def shared_input(warp: str = "shared", closing: int = 0, frames: int = 3) -> StereoInput:
    """The layered scene's left view and exact disparity, warped by the named warp (as the
    stereo stage does), with the parameters the stage records."""
    scene, _ = make_layered_scene(frames, 40, 64, background_disparity=3, foreground_disparity=11, velocity=-2)
    warp_fn = forward_warp if warp == "shared" else warp_svg
    warped, hole = warp_fn(scene.left, scene.disparity)
    hole = close_hole_mask(hole, closing)
    warped = warped.masked_fill(hole, 0.0)
    return StereoInput(left=scene.left, warped=warped, mask=hole, disparity=scene.disparity, clip_id="test/svg",
                       fps=5.0, params={"warp": warp, "hole_mask_closing": closing})


def test_views_scale_disparity_linearly():
    assert view_scales(8) == [k / 7 for k in range(8)]
    assert view_scales(2) == [0.0, 1.0]
    with pytest.raises(StereobenchError, match="at least 2 views"):
        view_scales(1)


def test_frame_matrix_ends_are_the_left_view_and_the_shared_warp():
    inp = shared_input()
    images, holes = build_frame_matrix(inp, 8)
    assert images.shape == (8, 3, 3, 40, 64) and holes.shape == (8, 3, 1, 40, 64) and holes.dtype == torch.bool
    assert torch.equal(images[0], inp.left) and not holes[0].any()
    warped, hole = forward_warp(inp.left, inp.disparity)  # recomputed independently
    assert torch.equal(images[-1], warped.masked_fill(hole, 0)) and torch.equal(holes[-1], hole)
    for k in range(1, 7):  # each intermediate view is the shared warp at d * k / 7
        warped_k, hole_k = forward_warp(inp.left, inp.disparity * (k / 7))
        assert torch.equal(holes[k], hole_k)
        assert torch.equal(images[k], warped_k.masked_fill(hole_k, 0))


def test_holes_shrink_monotonically_toward_view_0():
    _, holes = build_frame_matrix(shared_input(), 8)
    counts = [int(h.sum()) for h in holes]
    assert counts[0] == 0
    assert all(a <= b for a, b in itertools.pairwise(counts)), counts
    assert counts[1] < counts[4] < counts[7], counts  # and they really grow with the baseline


def test_native_mode_uses_svgs_warp_and_the_input_closing():
    inp = shared_input("svg", closing=5)
    images, holes = build_frame_matrix(inp, 4)
    assert torch.equal(images[-1], inp.warped) and torch.equal(holes[-1], inp.mask)
    for k in (1, 2):
        warped_k, hole_k = warp_svg(inp.left, inp.disparity * (k / 3))
        hole_k = close_hole_mask(hole_k, 5)
        assert torch.equal(holes[k], hole_k)
        assert torch.equal(images[k], warped_k.masked_fill(hole_k, 0))


def random_holes(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Blobby hole masks (float64, 1 = hole) like disocclusions: thresholded smooth noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((h // 8 + 1, w // 8 + 1))
    smooth = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    return (smooth > 0.6).astype(np.float64)


def official_masks(holes: np.ndarray, erode: int = 3, threshold: float = 0.7, soft_k: int = 5):
    """svg.py load_video_images / create_latent_mask / create_soft_mask on one frame, via OpenCV."""
    known = 1.0 - holes
    eroded = cv2.erode(known, np.ones((erode, erode), np.float64))
    eroded[eroded < 1] = 0
    box = cv2.filter2D(eroded, -1, np.ones((8, 8), np.float64) / 64)
    box[box < threshold] = 0
    box[box >= threshold] = 1
    box = box * eroded
    h, w = holes.shape
    latent = cv2.resize(box, (w // 8, h // 8))
    latent[latent < 1] = 0
    soft = cv2.GaussianBlur(latent, (soft_k, soft_k), 0) * latent
    return eroded, latent, soft


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_masks_equal_the_official_opencv_pipeline(seed):
    holes_np = random_holes(seed)
    eroded, latent, soft = official_masks(holes_np)
    holes = torch.from_numpy(holes_np > 0.5)[None, None]
    known = pixel_known_mask(holes)
    assert np.array_equal(known[0, 0].numpy(), eroded.astype(np.float32))
    ours_latent = latent_mask(known)
    assert 0 < ours_latent.sum() < ours_latent.numel()  # a mixed mask: the test can fail
    assert np.array_equal(ours_latent[0, 0].numpy(), latent.astype(np.float32))
    np.testing.assert_allclose(soft_mask(ours_latent)[0, 0].numpy(), soft, atol=1e-6)


def test_latent_mask_needs_all_four_central_pixels_and_the_box_threshold():
    known = torch.ones(1, 1, 16, 16)
    known[..., 3, 4] = 0  # one unknown central pixel of block (0, 0); erosion is not applied here
    out = latent_mask(known)
    assert out[0, 0, 0, 0] == 0 and out[0, 0, 0, 1] == 1 and out[0, 0, 1, 0] == 1
    sparse = torch.ones(1, 1, 16, 16)
    sparse[..., 8:, 8:] = 0
    sparse[..., 8:, 8:][..., 2:6, 2:6] = 1  # central pixels known, but only 16/64 of the box: < 0.7
    assert latent_mask(sparse)[0, 0, 1, 1] == 0
    with pytest.raises(StereobenchError, match="multiple of 8"):
        latent_mask(torch.ones(1, 1, 12, 16))


def test_padding_to_a_multiple_of_8_repeats_edges_and_crops_back():
    images = torch.rand(2, 3, 3, 13, 21)
    holes = torch.rand(2, 3, 1, 13, 21) > 0.5
    padded, padded_holes, size = pad_to_multiple(images, holes, 8)
    assert padded.shape[-2:] == (16, 24) and padded_holes.shape[-2:] == (16, 24) and size == (13, 21)
    assert torch.equal(padded[..., :13, :21], images) and torch.equal(padded_holes[..., :13, :21], holes)
    assert torch.equal(padded[..., 15, 23], images[..., 12, 20])


def test_frame_matrix_of_the_synthetic_dataset_through_the_stereo_stage():
    """The suite's synthetic clip (exact disparity), its input built by the stereo stage under the
    native protocol (11x11 hole-mask closing): the ends are the left view and the stage's shared
    warp, and the holes grow with the baseline."""
    from benchmark.datasets import get_dataset
    from benchmark.stereo.cache import build_stereo_input
    from benchmark.stereo.protocol import load_windowed_clip
    from benchmark.stereo.recipe import make_recipe

    dataset = get_dataset("synthetic", num_clips=1, size="48x64", num_frames=3)
    clip_name = dataset.clip_names()[0]
    recipe = make_recipe(dataset, clip_name, "native")
    inp = build_stereo_input(load_windowed_clip(dataset, clip_name, "native"), recipe)
    images, holes = build_frame_matrix(inp, 8)
    assert torch.equal(images[0], inp.left) and not holes[0].any()
    warped, hole = forward_warp(inp.left, inp.disparity)
    closed = close_hole_mask(hole, 11)
    assert torch.equal(holes[-1], closed) and torch.equal(images[-1], warped.masked_fill(closed, 0).clamp(0, 1))
    counts = [int(h.sum()) for h in holes]
    assert counts[0] == 0 and all(a <= b for a, b in itertools.pairwise(counts)) and counts[1] < counts[7], counts
