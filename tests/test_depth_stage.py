"""Depth sources in the input recipe and the stereo stage: user depth files through the protocol,
depth models through the depth cache, keys that change with the depth model and its settings,
the ``depth`` timing, and the errors of a clip without depth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark import video_io
from benchmark.datasets import get_dataset
from benchmark.depth import normalize_video, write_depth_files
from benchmark.errors import StereobenchError
from benchmark.stereo.cache import MissingDepthError, StereoInputCache, load_input
from benchmark.stereo.protocol import get_protocol
from benchmark.stereo.recipe import make_recipe
from tests.test_depth_models import write_tiny_depth_anything

NATIVE4 = get_protocol("native", num_frames=4)


@pytest.fixture
def footage(tmp_path):
    """A folder dataset of one left-only video (6 frames, 32x48) with its own depth file."""
    root = tmp_path / "videos"
    root.mkdir()
    g = torch.Generator().manual_seed(0)
    video_io.write_video(root / "beach.mp4", torch.rand(6, 3, 32, 48, generator=g), fps=10)
    ramp = np.linspace(0.1, 1.0, 48, dtype=np.float32)
    depth = np.tile(ramp, (6, 32, 1)) * np.linspace(1.0, 1.2, 6, dtype=np.float32)[:, None, None]
    write_depth_files(root / "beach_depth.npy", depth, fmt="npy")
    return root, depth


def test_user_depth_files_become_disparity(footage, tmp_path):
    root, depth = footage
    ds = get_dataset("folder", root=str(root))
    assert not ds.spec.has_ground_truth
    recipe = make_recipe(ds, "beach", NATIVE4, depth="files")
    assert dict(recipe.depth_settings) == {"kind": "disparity", "stability": "ema", "d_max_percent": 5.0}
    assert recipe.convergence == 0.0
    cache = StereoInputCache(tmp_path / "cache")
    inp, gt = load_input(ds, recipe, cache)
    assert gt is None
    # native protocol: no resize, so the disparity is exactly normalised depth x 5 % of 48 px
    expected = normalize_video(torch.from_numpy(depth[:4])) * (0.05 * 48)
    torch.testing.assert_close(inp.disparity[:, 0], expected)
    assert cache.timings["depth"] > 0
    # declared as depth (larger = farther): the ramp inverts, near is now on the left
    as_depth = load_input(ds, make_recipe(ds, "beach", NATIVE4, depth="files", kind="depth"), cache)[0]
    assert float(as_depth.disparity[0, 0, 0, 0]) > float(as_depth.disparity[0, 0, 0, -1])
    # D_max in pixels and a convergence: d = (n - c) * D_max
    px = load_input(ds, make_recipe(ds, "beach", NATIVE4, depth="files", d_max=10, convergence=0.5), cache)[0]
    torch.testing.assert_close(px.disparity[:, 0], (normalize_video(torch.from_numpy(depth[:4])) - 0.5) * 10)


def test_depth_files_that_do_not_match_the_video_are_named(footage, tmp_path):
    root, depth = footage
    write_depth_files(root / "beach_depth.npy", depth[:5], fmt="npy")
    ds = get_dataset("folder", root=str(root))
    with pytest.raises(StereobenchError, match=r"beach_depth\.npy.*hold 5 frames but the video has 6"):
        load_input(ds, make_recipe(ds, "beach", "quick", depth="files"))
    write_depth_files(root / "beach_depth.npy", depth[:, :16], fmt="npy")
    ds = get_dataset("folder", root=str(root))
    with pytest.raises(StereobenchError, match=r"48x16 \(WxH\) but the video is 48x32"):
        load_input(ds, make_recipe(ds, "beach", NATIVE4, depth="files"))


def test_clip_without_depth_names_the_fix(footage):
    root, _ = footage
    (root / "beach_depth.npy").unlink()
    ds = get_dataset("folder", root=str(root))
    with pytest.raises(MissingDepthError, match="name a depth source"):
        load_input(ds, make_recipe(ds, "beach", NATIVE4))
    with pytest.raises(MissingDepthError, match="has no depth files"):
        load_input(ds, make_recipe(ds, "beach", NATIVE4, depth="files"))


def test_unknown_depth_source_and_settings(footage):
    ds = get_dataset("folder", root=str(footage[0]))
    with pytest.raises(StereobenchError, match="Did you mean 'depth-anything-v2'"):
        make_recipe(ds, "beach", depth="depth-anything")
    with pytest.raises(StereobenchError, match="does not take steps"):
        make_recipe(ds, "beach", depth="files", steps=3)
    with pytest.raises(StereobenchError, match="Did you mean 'video'"):
        make_recipe(ds, "beach", depth="files", stability="vide")
    with pytest.raises(StereobenchError, match="give D_max once"):
        make_recipe(ds, "beach", depth="files", d_max=3, d_max_percent=2)


@pytest.fixture(scope="module")
def two_tiny_models(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    return write_tiny_depth_anything(base / "a", seed=0), write_tiny_depth_anything(base / "b", seed=1)


def test_cache_key_changes_with_the_depth_model_and_its_settings(footage, two_tiny_models):
    ds = get_dataset("folder", root=str(footage[0]))
    a, b = two_tiny_models
    keys = {
        "files": make_recipe(ds, "beach", depth="files").key(),
        "files-depth": make_recipe(ds, "beach", depth="files", kind="depth").key(),
        "model-a": make_recipe(ds, "beach", depth="depth-anything-v2", weights=str(a)).key(),
        "model-b": make_recipe(ds, "beach", depth="depth-anything-v2", weights=str(b)).key(),
        "transformers-a": make_recipe(ds, "beach", depth="transformers", weights=str(a)).key(),
        "a-dmax3": make_recipe(ds, "beach", depth="depth-anything-v2", weights=str(a), d_max_percent=3).key(),
        "a-conv": make_recipe(ds, "beach", depth="depth-anything-v2", weights=str(a), convergence=0.5).key(),
        "a-frame": make_recipe(ds, "beach", depth="depth-anything-v2", weights=str(a), stability="frame").key(),
    }
    assert len(set(keys.values())) == len(keys), keys
    # the same model and settings spelled differently is the same key
    assert make_recipe(ds, "beach", depth="depth-anything-v2", weights=str(a) + "/", d_max_percent=5.0).key() == \
        keys["model-a"]
    # weights changed on disk -> another revision -> another key
    (a / "config.json").touch()
    import os
    os.utime(a / "config.json", ns=(1, 1))
    assert make_recipe(ds, "beach", depth="depth-anything-v2", weights=str(a)).key() != keys["model-a"]


def test_model_depth_is_cached_below_the_input_cache(footage, two_tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("STEREOBENCH_DEPTH_DEVICE", "cpu")
    ds = get_dataset("folder", root=str(footage[0]))
    a, _ = two_tiny_models
    proto = get_protocol("native", num_frames=2)
    cache = StereoInputCache(tmp_path / "cache")
    first = load_input(ds, make_recipe(ds, "beach", proto, depth="depth-anything-v2", weights=str(a)), cache)[0]
    assert (cache.depth_cache.builds, cache.depth_cache.hits) == (1, 0)
    assert first.disparity.shape == (2, 1, 32, 48) and torch.isfinite(first.disparity).all()
    assert float(first.disparity.min()) >= 0 and float(first.disparity.max()) <= 0.05 * 48 + 1e-5
    assert first.params["depth_source"] == "depth-anything-v2" and first.params["depth_settings"]["model"] == str(a)
    # another D_max: a new input entry, the same raw depth from the depth cache
    other = load_input(ds, make_recipe(ds, "beach", proto, depth="depth-anything-v2", weights=str(a), d_max=8),
                       cache)[0]
    assert (cache.builds, cache.depth_cache.builds, cache.depth_cache.hits) == (2, 1, 1)
    torch.testing.assert_close(other.disparity, first.disparity / (0.05 * 48) * 8)
    assert list((tmp_path / "cache" / "depth").rglob("*.safetensors"))


def test_qualitative_protocol_is_the_papers_study_setting(footage):
    from benchmark.stereo.protocol import PROTOCOLS, apply_protocol

    proto = PROTOCOLS["qualitative"]
    assert (proto.num_frames, proto.fps, proto.size, proto.crop, proto.short_side) == (16, 8.0, (640, 1152), None, None)
    # the protocols that existed before keep their keys (no "size" entry in their description)
    assert "size" not in PROTOCOLS["paper"].to_dict() and PROTOCOLS["qualitative"].to_dict()["size"] == [640, 1152]
    ds = get_dataset("folder", root=str(footage[0]))
    clip = apply_protocol(ds.load_clip("beach"), "qualitative")  # 6 frames at 10 fps, 32x48
    assert clip.left.shape == (16, 3, 640, 1152) and clip.fps == 8.0
    # 8 fps from 10 fps: targets 0, .125, .25, .375, .5 s -> nearest source frames 0, 1, 3 (the .25
    # tie goes to the later frame), 4, 5; .625 s is past the clip: zero padding from there
    assert clip.metadata["source_frame_indices"][:6] == [0, 1, 3, 4, 5, -1]
    assert clip.metadata["scale"] == 1152 / 48
    small = get_protocol("qualitative", size=(64, 96))  # the same steps, smaller (the warp is slow on CPU)
    inp = load_input(ds, make_recipe(ds, "beach", small, depth="files"))[0]
    assert inp.disparity.shape == (16, 1, 64, 96)
    assert torch.isnan(inp.disparity[5:]).all() and torch.isfinite(inp.disparity[:5]).all()
    assert abs(float(inp.disparity[:5].max()) - 0.05 * 96) < 1e-4  # D_max = 5 % of the output width
