"""`stereobench run`: every bad input is one `error:` line, exit 2, no traceback, before any work.

Each case runs the real CLI in-process (tests/badinput.py) on a tiny synthetic request and takes
milliseconds: the plan validates everything (device, metrics, methods and their options, datasets
and clips, output folders, run ids) before a single clip is warped. After each case, nothing was
computed: no rows file exists under --out.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from tests.badinput import assert_clean_error

BASE_CONFIG = {
    "datasets": [{"name": "synthetic", "options": {"num_clips": 1, "size": 32, "num_frames": 2}}],
    "methods": ["left-copy"],
    "metrics": ["psnr"],
    "protocol": "quick",
    "device": "cpu",
    "leaderboard": False,
}


def _base(tmp_path: Path) -> list[str]:
    return ["run", "--dataset", "synthetic", "--option", "num_clips=1", "--option", "size=32",
            "--option", "num_frames=2", "--method", "left-copy", "--metrics", "psnr", "--device", "cpu",
            "--out", str(tmp_path / "runs"), "--cache", str(tmp_path / "cache"), "--no-progress",
            "--no-leaderboard"]


def _override(argv: list[str], flag: str, value: str | None) -> list[str]:
    """``argv`` with ``flag``'s value replaced (or the flag removed when ``value`` is None)."""
    out, skip = [], False
    for i, item in enumerate(argv):
        if skip:
            skip = False
            continue
        if item == flag:
            skip = True
            if value is not None:
                out += [flag, value]
            continue
        out.append(item)
    if flag not in argv and value is not None:
        out += [flag, value]
    return out


def _nothing_computed(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    assert not (runs.is_dir() and list(runs.glob("*/rows*.jsonl"))), "a bad input must stop before any work"


# ---------------------------------------------------------------------------------------------
# Command-line flags
# ---------------------------------------------------------------------------------------------
FLAG_CASES = [
    # (flag, value, text the error line must contain)
    ("--metrics", "psnrr", "Did you mean 'psnr'"),
    ("--metrics", "lpips_vg", "lpips_vgg"),
    ("--metrics", "psnr,ssim_of_doom", "ssim_of_doom"),
    ("--metrics", ",", "metrics"),
    ("--metrics", "PSNR", "psnr"),
    ("--method", "temporal-fil", "Did you mean 'temporal-fill'"),
    ("--method", "no-such-method", "unknown method"),
    ("--method", "", "method"),
    ("--device", "gpu", "cuda"),
    ("--device", "tpu", "unknown device"),
    ("--device", "cuda:x", "unknown device"),
    ("--device", "", "device"),
    ("--device", "cpu:0:1", "unknown device"),
    ("--dataset", "synthtic", "Did you mean 'synthetic'"),
    ("--dataset", "/no/such/folder/of/videos", "does not exist"),
    ("--dataset", "./missing-folder", "does not exist"),
    ("--option", "size", "KEY=VALUE"),
    ("--option", "=3", "KEY=VALUE"),
    ("--option", "colour=red", "colour"),
    ("--option", "size=-4", "size"),
    ("--clips", "0", "clips"),
    ("--clips", "-3", "clips"),
    ("--clips", "two", "invalid int"),
    ("--protocol", "paperr", "Did you mean 'paper'"),
    ("--protocol", "", "protocol"),
    ("--warp-mode", "sideways", "invalid choice"),
    ("--overwrite", "sometimes", "invalid choice"),
    ("--dtype", "float64", "invalid choice"),
    ("--seed", "abc", "invalid int"),
    ("--shard", "2/2", "i/n"),
    ("--shard", "abc", "i/n"),
    ("--shard", "1/0", "i/n"),
    ("--shard", "-1/2", "--shard"),
    ("--shard", "", "i/n"),
    ("--run-id", "a/b", "plain folder name"),
    ("--run-id", ".hidden", "plain folder name"),
    ("--run-id", "has space", "plain folder name"),
    ("--run-id", "latest", "no run under"),
    ("--bogus-flag", "1", "unrecognized arguments"),
]


@pytest.mark.parametrize("flag, value, contains", FLAG_CASES, ids=[f"{f}={v}" for f, v, _ in FLAG_CASES])
def test_bad_flag(tmp_path, capsys, flag, value, contains):
    if flag == "--option":
        argv = _base(tmp_path) + ["--option", value]
    elif flag == "--bogus-flag":
        argv = _base(tmp_path) + [flag, value]
    else:
        argv = _override(_base(tmp_path), flag, value)
    assert_clean_error(argv, capsys, contains=contains)
    _nothing_computed(tmp_path)


def test_option_without_dataset(tmp_path, capsys):
    argv = ["run", "--option", "size=32", "--out", str(tmp_path / "runs"), "--no-progress"]
    assert_clean_error(argv, capsys, contains="--option applies to datasets given with --dataset")


def test_method_listed_twice(tmp_path, capsys):
    assert_clean_error(_base(tmp_path) + ["--method", "left-copy"], capsys, contains="listed twice")


@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for CUDA on a machine without it")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3", "CUDA"])
def test_cuda_without_a_gpu(tmp_path, capsys, device):
    assert_clean_error(_override(_base(tmp_path), "--device", device), capsys,
                       contains=["no CUDA device is visible", "--device cpu"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_index_that_does_not_exist(tmp_path, capsys):  # pragma: no cover - GPU machines only
    assert_clean_error(_override(_base(tmp_path), "--device", f"cuda:{torch.cuda.device_count()}"), capsys,
                       contains="visible")


# ---------------------------------------------------------------------------------------------
# Output folders and run ids
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["out", "out-parent", "cache", "cache-parent"])
def test_output_folder_that_is_a_file(tmp_path, capsys, where):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    flag = "--out" if where.startswith("out") else "--cache"
    target = blocker if not where.endswith("parent") else blocker / "sub"
    argv = _override(_base(tmp_path), flag, str(target))
    assert_clean_error(argv, capsys, contains=[str(blocker), flag])
    assert blocker.read_text() == "not a folder"


def test_run_id_that_is_a_file(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "r1").write_text("x")
    assert_clean_error(_base(tmp_path) + ["--run-id", "r1"], capsys, contains="is a file")


def test_run_id_of_a_run_made_with_another_config(tmp_path, capsys):
    from benchmark.run_store import RunDir

    run = RunDir(tmp_path / "runs", "r1")
    run.write_manifest({"run_id": "r1", "status": "finished", "config": {"metrics": ["msssim"]},
                        "extra": {"config_hash": "0123456789abcdef"}})
    before = run.manifest_path().read_text()
    assert_clean_error(_base(tmp_path) + ["--run-id", "r1"], capsys, contains=["config differs from run r1", "--new"])
    assert run.manifest_path().read_text() == before  # nothing touched


def test_new_with_an_existing_run_id(tmp_path, capsys):
    (tmp_path / "runs" / "r1").mkdir(parents=True)
    assert_clean_error(_base(tmp_path) + ["--run-id", "r1", "--new"], capsys, contains="already exists")


def test_shard_under_torchrun(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert_clean_error(_base(tmp_path) + ["--shard", "0/2"], capsys, contains="not both")


def test_world_size_that_is_not_a_number(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    assert_clean_error(_base(tmp_path), capsys, contains="WORLD_SIZE")


# ---------------------------------------------------------------------------------------------
# Config files
# ---------------------------------------------------------------------------------------------
CONFIG_CASES = [
    # (what the config changes, text the error line must contain)
    ({"metrcs": ["psnr"]}, "Did you mean 'metrics'"),
    ({"metrics": ["lpips_vg"]}, "lpips_vgg"),
    ({"metrics": ["psnrr"]}, "Did you mean 'psnr'"),
    ({"metrics": []}, "metrics"),
    ({"metrics": "psnr"}, "metrics"),
    ({"warmup": -1}, "warmup"),
    ({"warmup": "soon"}, "warmup"),
    ({"device": "gpu"}, "cuda"),
    ({"device": 3}, "device"),
    ({"methods": [{"name": "left-copy", "optionz": {}}]}, "Did you mean 'options'"),
    ({"methods": [{"name": "temporal-fill", "options": {"max_ofset": 3}}]}, "max_ofset"),
    ({"methods": [{"name": "left-copy", "label": "a/b"}]}, "label"),
    ({"methods": [{"name": "left-copy", "label": "gt"}]}, "saved input video"),
    ({"methods": [{"name": "left-copy", "label": "warped-m2svid"}]}, "saved input video"),
    ({"methods": ["left-copy", "left-copy"]}, "listed twice"),
    ({"methods": [{"label": "x"}]}, "name"),
    ({"methods": "some"}, "unknown method"),
    ({"datasets": [{"name": "synthetic", "clips": 0}]}, "clips"),
    ({"datasets": [{"name": "synthetic", "options": {"num_clips": 1}, "clips": ["scene-999"]}]}, "scene-999"),
    ({"datasets": [{"name": "synthetic", "options": {"sizee": 32}}]}, "sizee"),
    ({"datasets": [{"nmae": "synthetic"}]}, "nmae"),
    ({"datasets": []}, "no datasets"),
    ({"datasets": [{"name": "synthetic", "options": {"num_clips": 1, "size": 32, "num_frames": 2}},
                   {"name": "synthetic", "options": {"num_clips": 1, "size": 32, "num_frames": 2}}]}, "listed twice"),
    ({"regions": ["everywhere"]}, "regions"),
    ({"regions": []}, "regions"),
    ({"scoring_protocols": ["lenient"]}, "scoring_protocols"),
    ({"protocol": {"num_frames": 8}}, "needs a 'name'"),
    ({"protocol": {"name": "quick", "bogus": 1}}, "bogus"),
    ({"protocol": "paperr"}, "Did you mean 'paper'"),
    ({"seed": "x"}, "seed"),
    ({"dtype": "float64"}, "dtype"),
    ({"warp_mode": "other"}, "warp_mode"),
    ({"overwrite": "sometimes"}, "overwrite"),
    ({"out": ""}, "out"),
    ({"cache": " "}, "cache"),
    ({"save_videos": "maybe"}, "save_videos"),
    ({"run_id": "../escape"}, "plain folder name"),
]


@pytest.mark.parametrize("change, contains", CONFIG_CASES, ids=[json.dumps(c)[:60] for c, _ in CONFIG_CASES])
def test_bad_config_value(tmp_path, capsys, change, contains):
    config = {**BASE_CONFIG, "out": str(tmp_path / "runs"), "cache": str(tmp_path / "cache"), **change}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert_clean_error(["run", "--config", str(path), "--no-progress"], capsys, contains=contains)
    _nothing_computed(tmp_path)


RAW_CONFIGS = [
    # (file bytes, text the error line must contain)
    (b"metrics: [psnr\n", "not valid YAML"),
    (b"- psnr\n- msssim\n", "must be a mapping"),
    ("device: cpu\ntitle: caf\u00e9\n".encode("latin-1"), "not UTF-8"),
    (b"\xff\xfe\x00d\x00e\x00v\x00", "not UTF-8"),
    (b"device: cpu\x00\n", "NUL"),
    (b"metrics: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
    (b"just a sentence\n", "must be a mapping"),
    (b"datasets: synthetic\ndatasets: middlebury\n", "given twice"),
]


@pytest.mark.parametrize("content, contains", RAW_CONFIGS, ids=[str(i) for i in range(len(RAW_CONFIGS))])
def test_bad_config_file_content(tmp_path, capsys, content, contains):
    path = tmp_path / "run.yaml"
    path.write_bytes(content)
    assert_clean_error(["run", "--config", str(path), "--out", str(tmp_path / "runs"), "--no-progress"], capsys,
                       contains=contains)
    _nothing_computed(tmp_path)


def test_config_file_missing_or_a_folder(tmp_path, capsys):
    assert_clean_error(["run", "--config", str(tmp_path / "nope.yaml")], capsys, contains="does not exist")
    assert_clean_error(["run", "--config", str(tmp_path)], capsys, contains="is a folder")
