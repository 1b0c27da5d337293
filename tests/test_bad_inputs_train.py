"""`stereobench train`: every bad input is one `error:` line, exit 2, no traceback, refused before
any model is built or clip loaded, and nothing already in the output folder is touched."""

from __future__ import annotations

import pytest
import torch

from tests.badinput import assert_clean_error

# The good arguments of a tiny CPU run, as (flag, value) pairs (value None: a switch).
GOOD = [("--init", "tiny"), ("--dataset", "synthetic"), ("--dataset-option", "size=64"), ("--frames", "4"),
        ("--size", "64"), ("--steps", "1"), ("--no-lpips", None)]


def train_argv(tmp_path, *changes: str, drop: tuple[str, ...] = ()) -> list[str]:
    """``train m2svid`` with the good arguments, ``drop`` flags removed, ``changes`` appended (a flag
    in ``changes`` replaces its good value); ``--output`` defaults to ``tmp_path/out``."""
    replaced = {c for c in changes if c.startswith("--")}
    argv = ["train", "m2svid"]
    for flag, value in GOOD:
        if flag not in replaced and flag not in drop:
            argv += [flag] if value is None else [flag, value]
    argv += changes
    if "--output" not in replaced:
        argv += ["--output", str(tmp_path / "out")]
    return argv


NUMBER_CASES = [
    (("--lr", "-1"), "--lr"),
    (("--lr", "nan"), "--lr"),
    (("--lr", "inf"), "--lr"),
    (("--lr", "-inf"), "--lr"),
    (("--lr", "0"), "--lr"),
    (("--lr", "abc"), "--lr"),
    (("--grad-accum", "0"), "--grad-accum"),
    (("--grad-accum", "-2"), "--grad-accum"),
    (("--checkpoint-every", "0"), "--checkpoint-every"),
    (("--checkpoint-every", "-5"), "--checkpoint-every"),
    (("--steps", "-3"), "--steps"),
    (("--steps", "0"), "--steps"),
    (("--steps", "1.5"), "--steps"),
    (("--frames", "0"), "--frames"),
    (("--frames", "26"), "--frames"),
    (("--frames", "-1"), "--frames"),
    (("--size", "7"), "--size"),
    (("--size", "0"), "--size"),
    (("--size", "-64"), "--size"),
    (("--max-clips", "0"), "--max-clips"),
    (("--validate-every", "-1"), "--validate-every"),
    (("--seed", "-1"), "--seed"),
    (("--seed", str(2**32)), "--seed"),
    (("--mixed-precision", "fp32"), "--mixed-precision"),
]


@pytest.mark.parametrize("change,needle", NUMBER_CASES, ids=[" ".join(c) for c, _ in NUMBER_CASES])
def test_bad_numbers(tmp_path, capsys, change, needle):
    assert_clean_error(train_argv(tmp_path, *change), capsys, contains=needle)
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.parametrize("change,needle", [
    (("--dataset", "synthetik"), "Did you mean 'synthetic'"),
    (("--dataset", "./no/such/videos"), "does not exist"),
    (("--dataset-option", "size"), "KEY=VALUE"),
    (("--dataset-option", "colour=red"), "does not accept"),
    (("--protocol", "quik"), "Did you mean 'quick'"),
    (("--init", "no-such-init-folder"), "no-such-init-folder"),
    (("--init", "someone/not-cached"), "not in the Hugging Face cache"),
])
def test_bad_names(tmp_path, capsys, monkeypatch, change, needle):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    assert_clean_error(train_argv(tmp_path, *change), capsys, contains=needle)


def test_init_that_is_a_file(tmp_path, capsys):
    weights = tmp_path / "m2svid_weights.pt"
    weights.write_bytes(b"PK\x03\x04 not converted")
    assert_clean_error(train_argv(tmp_path, "--init", str(weights)), capsys, contains=["is a file", "convert-m2svid"])


def test_output_that_is_a_file_is_refused_and_kept(tmp_path, capsys):
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me")
    assert_clean_error(train_argv(tmp_path, "--output", str(existing)), capsys, contains="is a file")
    assert_clean_error(train_argv(tmp_path, "--output", str(existing / "run")), capsys, contains="is a file")
    assert existing.read_text() == "keep me"


def test_bad_input_keeps_an_existing_output_folder(tmp_path, capsys):
    out = tmp_path / "out"
    checkpoint = out / "checkpoints" / "step-5" / "trainer_state.json"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text('{"step": 5}')
    assert_clean_error(train_argv(tmp_path, "--lr", "nan"), capsys, contains="--lr")
    assert checkpoint.read_text() == '{"step": 5}' and sorted(p.name for p in out.iterdir()) == ["checkpoints"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="mixed precision is valid on a GPU machine")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_without_a_gpu(tmp_path, capsys, precision):
    assert_clean_error(train_argv(tmp_path, "--mixed-precision", precision), capsys, contains="CUDA")


def test_missing_lpips_weights_name_the_fix(tmp_path, capsys, monkeypatch):
    from benchmark.metrics import lpips_weights

    monkeypatch.setenv("STEREOBENCH_WEIGHTS", str(tmp_path / "empty-weights"))
    monkeypatch.setattr(lpips_weights, "torchvision_weights_cached", lambda net: False)
    assert_clean_error(train_argv(tmp_path, drop=("--no-lpips",)), capsys, contains=["LPIPS", "--no-lpips"])


@pytest.mark.parametrize("argv,needle", [
    (["train"], "required"),
    (["train", "m2svd", "--init", "tiny", "--output", "x"], "invalid choice"),
    (["train", "m2svid", "--output", "x"], "--init"),
    (["train", "m2svid", "--init", "tiny"], "--output"),
    (["train", "m2svid", "--init", "tiny", "--output", "x", "--no-such-flag"], "unrecognized arguments"),
])
def test_argument_shape_errors(capsys, argv, needle):
    assert_clean_error(argv, capsys, contains=needle)
