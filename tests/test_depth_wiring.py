"""Depth-source wiring across commands: depth models follow the run's --device (the env var
overrides it), `prepare --depth ...` warms exactly the entries `run --depth ...` reads, convert's
weights flag is spelled as run's, and benchmark.stereo exports the D_max helpers."""

from __future__ import annotations

import pytest
import torch

from tests.badinput import assert_clean_error


def _input_entries(cache_root):
    return {p: p.stat().st_mtime_ns for p in cache_root.rglob("*") if p.is_file()}


# -- 1. the depth device ------------------------------------------------------------------------


def test_depth_device_follows_the_given_device_and_the_env_overrides(monkeypatch):
    from benchmark.stereo.depth_stage import DEPTH_DEVICE_ENV, depth_device

    monkeypatch.delenv(DEPTH_DEVICE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert depth_device() == "cuda"  # no run device: cuda when available
    assert depth_device("auto") == "cuda"
    assert depth_device("cpu") == "cpu" and depth_device(torch.device("cpu")) == "cpu"
    assert depth_device("cuda:1") == "cuda:1"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert depth_device() == "cpu"
    monkeypatch.setenv(DEPTH_DEVICE_ENV, "cuda:3")
    assert depth_device("cpu") == "cuda:3"  # the env var wins over the run's device


def test_run_puts_the_depth_model_on_the_runs_device(footage, tmp_path, monkeypatch, capsys):
    """A CUDA-looking machine, `run --device cpu`: the depth model is loaded on the CPU (it used to
    follow torch.cuda.is_available() and ignore --device)."""
    from benchmark.cli import main
    from benchmark.stereo import depth_stage
    from tests.test_depth_models import write_tiny_depth_anything

    weights = write_tiny_depth_anything(tmp_path / "dav2")
    monkeypatch.delenv(depth_stage.DEPTH_DEVICE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    depth_stage._MODEL_SLOT.clear()
    seen = []
    real = depth_stage._model_for

    def spy(recipe, device):
        seen.append(device)
        return real(recipe, device)

    monkeypatch.setattr(depth_stage, "_model_for", spy)
    code = main(["run", "--dataset", str(footage), "--method", "left-copy",
                 "--protocol", "native", "--clips", "1", "--device", "cpu", "--depth", "depth-anything-v2",
                 "--weights-depth", str(weights), "--out", str(tmp_path / "runs"), "--cache", str(tmp_path / "c"),
                 "--no-progress", "--no-leaderboard"])
    captured = capsys.readouterr()
    out = captured.out + captured.err
    depth_stage._MODEL_SLOT.clear()
    assert code == 0, out
    assert seen == ["cpu"], seen


# -- 2. prepare --depth -------------------------------------------------------------------------


def test_prepare_with_depth_warms_what_run_reads(footage, tmp_path, capsys, monkeypatch):
    from benchmark.cli import main
    from benchmark.stereo import cache as cache_module

    cache = tmp_path / "cache"
    depth_flags = ["--depth", "files", "--depth-option", "d_max_percent=4", "--depth-option", "convergence=0.25"]
    assert main(["prepare", "--dataset", str(footage), "--protocol", "native", "--no-preview",
                 "--cache", str(cache), *depth_flags]) == 0
    first = capsys.readouterr().out
    row = next(line for line in first.splitlines() if line.startswith("folder"))
    assert row.split()[2:4] == ["2", "0"]  # 2 clips built, none cached before
    entries = _input_entries(cache)
    assert entries

    builds = []
    real_build = cache_module.build_input
    monkeypatch.setattr(cache_module, "build_input", lambda *a, **k: builds.append(1) or real_build(*a, **k))
    code = main(["run", "--dataset", str(footage), "--method", "left-copy", "--protocol", "native",
                 "--out", str(tmp_path / "runs"), "--cache", str(cache), "--no-progress", "--no-leaderboard",
                 *depth_flags])
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert code == 0, out
    assert builds == [], "run rebuilt an input that prepare had built"
    assert _input_entries(cache) == entries  # nothing rewritten, nothing added

    # the inputs really carry the depth settings: d = (n - 0.25) * 4 % of 48 px, n in [0, 1]
    from benchmark.datasets import get_dataset
    from benchmark.stereo.cache import StereoInputCache, load_input
    from benchmark.stereo.recipe import make_recipe

    ds = get_dataset("folder", root=str(footage))
    reader = StereoInputCache(cache)
    inp, _ = load_input(ds, make_recipe(ds, "beach", "native", depth="files", d_max_percent=4, convergence=0.25),
                        reader)
    assert (reader.hits, reader.builds) == (1, 0)
    assert float(inp.disparity.min()) == pytest.approx(-0.25 * 0.04 * 48, abs=1e-4)
    assert float(inp.disparity.max()) == pytest.approx(0.75 * 0.04 * 48, abs=1e-4)

    # without --depth the key differs (gt), so a second prepare with other settings builds anew
    assert main(["prepare", "--dataset", str(footage), "--protocol", "native", "--no-preview",
                 "--cache", str(cache), "--depth", "files", "--depth-option", "d_max_percent=3"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("folder"))
    assert row.split()[2:4] == ["2", "0"]


def test_prepare_depth_flags_are_checked_as_in_run(footage, tmp_path, capsys):
    base = ["prepare", "--dataset", str(footage), "--no-preview", "--cache", str(tmp_path / "c")]
    assert_clean_error([*base, "--depth", "depth-anyting-v2"], capsys, contains="Did you mean 'depth-anything-v2'")
    assert_clean_error([*base, "--weights-depth", str(tmp_path)], capsys, contains="need a depth source")
    assert_clean_error([*base, "--depth", "files", "--depth-option", "d_max_percent"], capsys, contains="KEY=VALUE")
    assert_clean_error([*base, "--depth", "files", "--depth-option", "steps=5"], capsys, contains="steps")
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").rglob("*.safetensors"))


# -- 3. convert's weights flag ------------------------------------------------------------------


def test_convert_spells_the_weights_flag_as_run_and_keeps_the_old_one_hidden():
    import argparse

    from benchmark.commands import convert

    parser = argparse.ArgumentParser()
    convert.add_arguments(parser)
    assert parser.parse_args(["in.mp4", "-o", "o", "--weights-depth", "W"]).depth_weights == "W"
    assert parser.parse_args(["in.mp4", "-o", "o", "--depth-weights", "W"]).depth_weights == "W"
    text = parser.format_help()
    assert "--weights-depth" in text and "--depth-weights" not in text
    assert "--depth-weights" not in convert.__doc__


# -- 4. exports ---------------------------------------------------------------------------------


def test_stereo_package_exports_the_d_max_helpers():
    from benchmark import stereo
    from benchmark.stereo import disparity

    assert stereo.disparity_from_normalized_depth is disparity.disparity_from_normalized_depth
    assert stereo.d_max_pixels is disparity.d_max_pixels
    assert {"disparity_from_normalized_depth", "d_max_pixels"} <= set(stereo.__all__)
    assert stereo.d_max_pixels(200, d_max_percent=5) == pytest.approx(10.0)
