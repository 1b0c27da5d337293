"""The input recipe: one key and one params dict for every caller (runner, prepare, train).

The key must be the same whenever the input is the same (however the dataset was spelled or the
protocol given), and different whenever anything that changes the input differs (depth source
and its settings, D_max, convergence, warp, any protocol setting, stage version, dataset revision).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.datasets import get_dataset, parse_options
from benchmark.errors import StereobenchError
from benchmark.stereo import cache as cache_module
from benchmark.stereo.cache import MissingDepthError, StereoInputCache, load_input
from benchmark.stereo.protocol import get_protocol
from benchmark.stereo.recipe import DEPTH_SOURCES, KEY_VERSION, STAGE_VERSION, InputRecipe, make_recipe
from benchmark.types import params_hash

T, H, W = 4, 32, 48


@pytest.fixture(scope="module")
def folder_dataset(tmp_path_factory) -> Path:
    """A folder dataset ``videos/`` with one clip (left, right, disparity), 4 frames of 32x48."""
    from benchmark.video_io import write_video

    root = tmp_path_factory.mktemp("data") / "videos"
    root.mkdir()
    g = torch.Generator().manual_seed(0)
    write_video(root / "street_left.mp4", torch.rand(T, 3, H, W, generator=g), fps=5.0)
    write_video(root / "street_right.mp4", torch.rand(T, 3, H, W, generator=g), fps=5.0)
    disparity = np.full((T, H, W), 3.0, dtype=np.float32)
    disparity[:, 8:20, 10:30] = 7.0
    np.save(root / "street_disparity.npy", disparity)
    return root


def synthetic(**options):
    return get_dataset("synthetic", **{"num_clips": 2, "size": "32x48", "num_frames": 4, **options})


# ---------------------------------------------------------------------------- same input, same key


def test_folder_spellings_give_one_key(folder_dataset, monkeypatch):
    """Relative path, absolute path, trailing slash and ``--dataset folder --option root=``: one
    dataset name, one key."""
    monkeypatch.chdir(folder_dataset.parent)
    spellings = [
        ("videos/", {}),                                # runner / prepare: --dataset videos/
        ("./videos", {}),                               # relative, no trailing slash
        (str(folder_dataset), {}),                      # absolute
        (str(folder_dataset) + "/", {}),                # absolute with a trailing slash
        ("folder", {"root": "videos"}),                 # --dataset folder --option root=videos
        ("folder", {"root": str(folder_dataset)}),
    ]
    recipes = [make_recipe(get_dataset(name, **options), "street", "native") for name, options in spellings]
    assert len({r.key() for r in recipes}) == 1
    assert {r.dataset for r in recipes} == {"folder-videos"}  # spec.name, never the user's spelling
    assert all(str(folder_dataset) not in json.dumps(r.params()) for r in recipes)


def test_runner_prepare_and_train_style_calls_agree():
    """Each caller resolves the dataset its own way; the recipe comes out the same."""
    # runner: a YAML config entry {name, options} with typed values
    from benchmark.config import parse_config

    config = parse_config({"datasets": [{"name": "synthetic", "options": {"num_clips": 2, "size": "32x48",
                                                                          "num_frames": 4}}],
                           "protocol": {"name": "quick", "num_frames": 4}})
    entry = config.datasets[0]
    name, overrides = config.protocol_name_and_overrides()
    runner = make_recipe(get_dataset(entry.name, **entry.options), "scene-001", get_protocol(name, **overrides))
    # prepare: --option strings parsed by the CLI
    prepare = make_recipe(get_dataset("synthetic", **parse_options(["num_clips=2", "size=32x48", "num_frames=4"])),
                          "scene-001", get_protocol("quick", num_frames=4), warp="shared")
    # train: dataset name + options dict, a dataset-qualified clip id
    train = make_recipe(synthetic(), "synthetic/scene-001", get_protocol("quick", num_frames=4))
    assert runner == prepare == train
    assert runner.key() == prepare.key() == train.key()
    assert runner.params() == train.params()


def test_protocol_by_name_or_object_and_number_types_agree():
    dataset = synthetic()
    assert make_recipe(dataset, "scene-000", "quick").key() == make_recipe(dataset, "scene-000",
                                                                           get_protocol("quick")).key()
    # The dataset's default protocol (quick for synthetic) when none is given.
    assert make_recipe(dataset, "scene-000").key() == make_recipe(dataset, "scene-000", "quick").key()
    base = make_recipe(dataset, "scene-000", "quick")
    assert replace(base, d_max=32).key() == replace(base, d_max=32.0).key()
    assert replace(base, depth_settings=(("b", 1), ("a", "x"))).key() == \
        replace(base, depth_settings=(("a", "x"), ("b", 1.0))).key()


def test_key_is_the_hash_of_the_params():
    recipe = make_recipe(synthetic(), "scene-000", "quick", warp="m2svid")
    params = recipe.params()
    assert params["cache_key"] == recipe.key()
    expected = params_hash({"key_version": KEY_VERSION, **{k: v for k, v in params.items() if k != "cache_key"}})
    assert recipe.key() == expected and len(recipe.key()) == 32 and int(recipe.key(), 16) >= 0
    assert json.loads(json.dumps(params)) == params
    assert params["dataset"] == "synthetic" and params["clip"] == "scene-000"
    assert params["depth_source"] == "gt" and params["warp"] == "m2svid" and params["warp_mode"] == "native"
    assert params["hole_mask_closing"] == get_protocol("quick").hole_mask_closing
    assert params["stage_version"] == STAGE_VERSION
    assert params["protocol"] == get_protocol("quick").to_dict()


# ---------------------------------------------------------------------------- different input, different key

BASE = InputRecipe(dataset="synthetic", dataset_revision="r1", clip="scene-000", protocol=get_protocol("quick"))

VARIANTS = {
    "depth source": replace(BASE, depth="depth-anything-v2"),
    "depth setting": replace(BASE, depth="depth-anything-v2", depth_settings=(("encoder", "vitl"),)),
    "depth setting value": replace(BASE, depth="depth-anything-v2", depth_settings=(("encoder", "vits"),)),
    "D_max": replace(BASE, d_max=32.0),
    "another D_max": replace(BASE, d_max=40.0),
    "convergence": replace(BASE, convergence=0.5),
    "warp": replace(BASE, warp="m2svid"),
    "another warp": replace(BASE, warp="svg"),
    "protocol frames": replace(BASE, protocol=get_protocol("quick", num_frames=8)),
    "protocol fps": replace(BASE, protocol=get_protocol("quick", fps=10.0)),
    "protocol size": replace(BASE, protocol=get_protocol("quick", short_side=256, crop=(256, 256))),
    "hole closing": replace(BASE, protocol=get_protocol("quick", hole_mask_closing=3)),
    "another protocol": replace(BASE, protocol=get_protocol("paper")),
    "stage version": replace(BASE, stage_version="stereo-stage-999"),
    "dataset revision": replace(BASE, dataset_revision="r2"),
    "clip": replace(BASE, clip="scene-001"),
    "dataset": replace(BASE, dataset="middlebury-motorcycle"),
}


@pytest.mark.parametrize("what", list(VARIANTS))
def test_anything_that_changes_the_input_changes_the_key(what):
    assert VARIANTS[what].key() != BASE.key()


def test_all_variant_keys_differ_from_each_other():
    keys = [v.key() for v in VARIANTS.values()] + [BASE.key()]
    assert len(set(keys)) == len(keys)


def test_real_datasets_with_other_options_get_other_keys():
    """The dataset's revision carries its options (size, frames): different data, different key."""
    a = make_recipe(synthetic(), "scene-000", "native")
    b = make_recipe(synthetic(size="48x64"), "scene-000", "native")
    c = make_recipe(synthetic(seed=1), "scene-000", "native")
    assert len({a.key(), b.key(), c.key()}) == 3


# ---------------------------------------------------------------------------- make_recipe refuses bad input


@pytest.mark.parametrize("kwargs, message", [
    ({"clip": "scene-00"}, "unknown synthetic clip 'scene-00'. Did you mean 'scene-00"),
    ({"clip": "middlebury-motorcycle/scene-000"}, "unknown synthetic clip"),
    ({"protocol": "papr"}, "Did you mean 'paper'"),
    ({"warp": "m2svd"}, "Did you mean 'm2svid'"),
    ({"depth": "gtt"}, "Did you mean 'gt'"),
    ({"depth": "gt", "encoder": "vitl"}, "does not take encoder"),
    ({"d_max": 32}, "D_max"),
    ({"convergence": 0.5}, "D_max and convergence"),
])
def test_make_recipe_refuses_bad_input(kwargs, message):
    kwargs = {"clip": "scene-000", **kwargs}
    with pytest.raises(StereobenchError, match=message):
        make_recipe(synthetic(), **kwargs)


def test_make_recipe_needs_a_dataset_object():
    with pytest.raises(TypeError, match="get_dataset"):
        make_recipe("synthetic", "scene-000")


@pytest.mark.parametrize("field, value", [("d_max", -1.0), ("d_max", float("nan")), ("convergence", float("inf")),
                                          ("dataset", ""), ("warp", "")])
def test_recipe_fields_are_checked(field, value):
    with pytest.raises(StereobenchError):
        replace(BASE, **{field: value})


def test_depth_sources_are_declared():
    assert DEPTH_SOURCES["gt"].settings == () and not DEPTH_SOURCES["gt"].uses_d_max
    # issue 13: user depth files and depth models scale by D_max (tests/test_depth_stage.py)
    assert {"files", "depth-anything-v2", "transformers", "depthcrafter"} <= set(DEPTH_SOURCES)


# ---------------------------------------------------------------------------- load_input


def test_load_input_with_and_without_cache_are_identical(tmp_path):
    dataset = synthetic()
    recipe = make_recipe(dataset, "scene-000", get_protocol("quick", num_frames=3, short_side=32, crop=(32, 32)))
    plain, plain_gt = load_input(dataset, recipe)
    cache = StereoInputCache(tmp_path)
    built, built_gt = load_input(dataset, recipe, cache)
    hit, hit_gt = load_input(dataset, recipe, cache)
    assert (cache.builds, cache.hits) == (1, 1)
    for name in ("left", "warped", "mask", "disparity"):
        assert torch.equal(getattr(plain, name), getattr(built, name))
        assert torch.equal(getattr(built, name), getattr(hit, name))
    assert torch.equal(plain_gt, hit_gt) and plain_gt.shape == (3, 3, 32, 32)
    assert plain.params == recipe.params() == hit.params
    assert hit.clip_id == "synthetic/scene-000" and hit.fps == 5.0
    assert (tmp_path / recipe.key()[:2] / recipe.key() / "meta.json").is_file()


def test_load_input_refuses_a_recipe_of_another_dataset():
    recipe = make_recipe(synthetic(), "scene-000", "native")
    with pytest.raises(StereobenchError, match="make_recipe"):
        load_input(synthetic(seed=3), recipe)  # same name, other revision


def test_missing_disparity_is_its_own_error(folder_dataset, tmp_path):
    """Training skips clips without disparity by catching MissingDepthError; others show it."""
    root = tmp_path / "nodisp"
    root.mkdir()
    shutil.copy(folder_dataset / "street_left.mp4", root / "street_left.mp4")
    dataset = get_dataset(str(root))
    with pytest.raises(MissingDepthError, match="no disparity"):
        load_input(dataset, make_recipe(dataset, "street", "native"), StereoInputCache(tmp_path / "c"))
    assert not list((tmp_path / "c").rglob("meta.json"))


# ---------------------------------------------------------------------------- prepare warms run's cache


class _CountBuilds:
    def __init__(self, monkeypatch):
        self.calls = 0
        original = cache_module.build_input

        def counting(recipe, clip, *rest):
            self.calls += 1
            return original(recipe, clip, *rest)

        monkeypatch.setattr(cache_module, "build_input", counting)


def test_prepare_then_run_hits_the_cache_for_a_folder_dataset(folder_dataset, tmp_path, monkeypatch, capsys):
    """`stereobench prepare --dataset ./videos` (relative) then a run on `/abs/videos/` (the spelling
    differs): the run builds nothing."""
    from benchmark.cli import main
    from benchmark.config import parse_config
    from benchmark.runner import run_benchmark

    builds = _CountBuilds(monkeypatch)
    monkeypatch.chdir(folder_dataset.parent)
    cache = tmp_path / "cache"
    assert main(["prepare", "--dataset", "./videos", "--protocol", "native", "--cache", str(cache), "--no-preview"]) == 0
    assert builds.calls == 1
    config = parse_config({"datasets": [str(folder_dataset) + "/"], "methods": ["left-copy"], "protocol": "native",
                           "metrics": ["psnr"], "out": str(tmp_path / "runs"), "cache": str(cache),
                           "device": "cpu", "leaderboard": False})
    summary = run_benchmark(config, progress=False, echo=lambda s: None)
    assert summary.pairs_done == 1 and not summary.errors
    assert builds.calls == 1, "the run rebuilt an input that prepare had cached"
    # And prepare again finds it too (2nd line of the table: 1 clip, 1 cached).
    capsys.readouterr()
    assert main(["prepare", "--dataset", str(folder_dataset), "--protocol", "native", "--cache", str(cache),
                 "--no-preview"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("folder-videos"))
    assert row.split()[2:4] == ["1", "1"] and builds.calls == 1
    assert len(list(cache.rglob("meta.json"))) == 1


@pytest.mark.parametrize("warp", ["shared", "svg"])
def test_load_input_equals_the_stage_composed_by_hand(warp):
    """What training used to do by hand (protocol, warp, closing, zero holes) is what
    load_input returns, so moving training onto the recipe changes no sample."""
    from benchmark.stereo import get_warp
    from benchmark.stereo.protocol import apply_protocol
    from benchmark.stereo.warp import close_hole_mask

    dataset = synthetic()
    protocol = get_protocol("quick", num_frames=3, short_side=32, crop=(32, 40))
    inp, gt_right = load_input(dataset, make_recipe(dataset, "scene-001", protocol, warp=warp))
    clip = apply_protocol(dataset.load_clip("scene-001"), protocol)
    warped, hole = get_warp(warp)(clip.left.float(), clip.disparity.float())
    mask = close_hole_mask(hole, protocol.hole_mask_closing)
    assert torch.equal(inp.mask, mask)
    assert torch.equal(inp.warped, warped.masked_fill(mask, 0.0).clamp(0, 1))
    assert torch.equal(inp.left, clip.left.float()) and torch.equal(gt_right, clip.right.float())
    assert inp.fps == clip.fps == 5.0 and inp.params["warp"] == warp


def test_training_asks_for_the_same_recipe_as_prepare(monkeypatch):
    """The real training loader (methods.m2svid.train.load_training_samples), not an imitation:
    the recipe it asks load_input for has prepare's key, clip by clip."""
    from methods.m2svid.train import TrainConfig, load_training_samples

    seen = []
    real = cache_module.load_input

    def spy(dataset, recipe, cache=None):
        seen.append(recipe)
        return real(dataset, recipe, cache)

    monkeypatch.setattr(cache_module, "load_input", spy)
    options = {"num_clips": 2, "size": "32x48", "num_frames": 4}
    config = TrainConfig(init="tiny", output_dir="unused", dataset="synthetic", dataset_options=options,
                         protocol="quick")
    samples = load_training_samples(config)
    prepare_dataset = get_dataset("synthetic", **parse_options(["num_clips=2", "size=32x48", "num_frames=4"]))
    expected = [make_recipe(prepare_dataset, name, "quick").key() for name in prepare_dataset.clip_names()]
    assert [r.key() for r in seen] == expected and len(samples) == 2
    assert torch.equal(samples[0].warped, load_input(prepare_dataset, seen[0])[0].warped)
