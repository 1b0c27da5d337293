"""benchmark.weights: one root, one offline resolver (local / Hugging Face cache / URL + SHA-256),
and the provider registry behind `stereobench weights`. Every file is written by the test; the
fake Hugging Face cache is laid out in tmp_path exactly as huggingface_hub writes one."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from benchmark.errors import StereobenchError
from benchmark.weights import (
    WEIGHT_PROVIDERS, WeightsEntry, WeightSpec, WeightsStatus, hf_cache_dir, resolve_weights, source_kind,
    url_download_path, weights_root,
)

COMMIT_A = "a" * 40
COMMIT_B = "b" * 40


def fake_hf_cache(root, repo_id="org/tiny-model", snapshots=((COMMIT_A, ("main",)), (COMMIT_B, ("v2",)))):
    """``root/models--org--tiny-model/{refs/<ref>, snapshots/<commit>/unet/config.json}`` as the hub writes it."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    for commit, refs in snapshots:
        blob = repo / "blobs" / hashlib.sha256(commit.encode()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_text(json.dumps({"commit": commit}))
        config = repo / "snapshots" / commit / "unet" / "config.json"
        config.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, config.parent), config)  # snapshots link into blobs
        for ref in refs:
            (repo / "refs").mkdir(exist_ok=True)
            (repo / "refs" / ref).write_text(commit)  # no newline, as huggingface_hub writes it
    return repo


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hf"
    fake_hf_cache(cache)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("STEREOBENCH_WEIGHTS", str(tmp_path / "weights"))
    return tmp_path / "weights"


def test_weights_root_follows_the_environment_at_call_time(tmp_path, monkeypatch):
    monkeypatch.delenv("STEREOBENCH_WEIGHTS", raising=False)
    assert weights_root() == Path.home() / ".cache" / "stereobench" / "weights"
    monkeypatch.setenv("STEREOBENCH_WEIGHTS", str(tmp_path / "w"))
    assert weights_root() == tmp_path / "w"


def test_lpips_and_m2svid_use_the_one_root(root):
    from benchmark.metrics import lpips_weights
    from methods.m2svid.adapter import M2SVid

    assert lpips_weights.weights_dir() == root / "lpips"
    assert M2SVid().weights_source() == str(root / "m2svid")
    from methods.registry import METHODS

    assert METHODS["m2svid-no-full-attention"]().weights_source() == str(root / "m2svid-no-full-attention")


def test_source_kinds(tmp_path):
    assert source_kind("https://example.org/w.pt") == "url"
    assert source_kind("stabilityai/stable-video-diffusion-img2vid-xt") == "hf"
    assert source_kind(tmp_path) == "local"
    assert source_kind("./not/here") == "local"  # a relative path is never taken for a hub id


# -- local ----------------------------------------------------------------------------------

def test_local_folder_file_subfolder_and_checksum(tmp_path):
    folder = tmp_path / "model"
    (folder / "unet").mkdir(parents=True)
    weights = folder / "unet" / "w.bin"
    weights.write_bytes(b"\x00\x01weights")
    assert resolve_weights(folder) == folder
    assert resolve_weights(folder, subfolder="unet") == folder / "unet"
    good = hashlib.sha256(b"\x00\x01weights").hexdigest()
    assert resolve_weights(weights, sha256=good) == weights
    with pytest.raises(StereobenchError, match="not the pinned"):
        resolve_weights(weights, sha256="0" * 64)
    with pytest.raises(StereobenchError, match="does not exist"):
        resolve_weights(tmp_path / "missing")
    with pytest.raises(StereobenchError, match="no 'vae' inside"):
        resolve_weights(folder, subfolder="vae")


# -- Hugging Face cache ----------------------------------------------------------------------

def test_hub_id_resolves_main_a_tag_and_a_commit_offline(hf_cache):
    assert hf_cache_dir() == hf_cache
    snapshots = hf_cache / "models--org--tiny-model" / "snapshots"
    assert resolve_weights("org/tiny-model") == snapshots / COMMIT_A
    assert resolve_weights("org/tiny-model", revision="v2") == snapshots / COMMIT_B
    assert resolve_weights("org/tiny-model", revision=COMMIT_B) == snapshots / COMMIT_B
    assert resolve_weights("org/tiny-model", revision=COMMIT_B[:7]) == snapshots / COMMIT_B
    unet = resolve_weights("org/tiny-model", subfolder="unet")
    assert unet == snapshots / COMMIT_A / "unet"
    assert json.loads((unet / "config.json").read_text()) == {"commit": COMMIT_A}


@pytest.mark.parametrize("kwargs,needle", [
    ({"source": "org/not-cached"}, "not in the Hugging Face cache"),
    ({"source": "org/tiny-model", "revision": "v3"}, "cached revisions"),
    ({"source": "org/tiny-model", "revision": "c" * 40}, "huggingface-cli download org/tiny-model --revision"),
    ({"source": "org/tiny-model", "subfolder": "vae"}, "has no 'vae'"),
])
def test_hub_misses_are_one_line_errors(hf_cache, kwargs, needle):
    with pytest.raises(StereobenchError, match=needle) as info:
        resolve_weights(**kwargs)
    assert "\n" not in str(info.value)


def test_hub_lookup_never_touches_the_network(hf_cache, monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("the resolver opened a network connection")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(StereobenchError, match="not in the Hugging Face cache"):
        resolve_weights("org/elsewhere")
    assert resolve_weights("org/tiny-model").name == COMMIT_A


def test_empty_or_missing_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "nothing-here"))
    with pytest.raises(StereobenchError, match="not in the Hugging Face cache"):
        resolve_weights("org/tiny-model")


# -- URL file with a checksum ----------------------------------------------------------------

def test_url_file_must_be_downloaded_into_the_root_and_match(root):
    url = "https://example.org/files/model.pt"
    data = b"pretend these are weights"
    digest = hashlib.sha256(data).hexdigest()
    with pytest.raises(StereobenchError, match=r"not there .*wget -O .*model\.pt https://example.org/files/model\.pt"):
        resolve_weights(url, sha256=digest)
    root.mkdir(parents=True)
    (root / "model.pt").write_bytes(data)
    assert url_download_path(url) == root / "model.pt"
    assert resolve_weights(url, sha256=digest) == root / "model.pt"
    (root / "model.pt").write_bytes(data[:-3])  # a truncated download
    with pytest.raises(StereobenchError, match="not the pinned .*get it again: wget it") as info:
        resolve_weights(url, sha256=digest, how_to_get="wget it")
    assert "\n" not in str(info.value)


def test_weight_spec_resolves_env_var_first_then_its_source(root, tmp_path, monkeypatch):
    data = b"spec bytes"
    spec = WeightSpec("w", "https://example.org/x/spec.bin", sha256=hashlib.sha256(data).hexdigest(),
                      env_var="STEREOBENCH_TEST_WEIGHTS", how_to_get="get it")
    root.mkdir(parents=True)
    (root / "spec.bin").write_bytes(data)
    assert spec.resolve() == root / "spec.bin"
    local = tmp_path / "elsewhere.bin"
    local.write_bytes(b"other bytes")
    monkeypatch.setenv("STEREOBENCH_TEST_WEIGHTS", str(local))
    with pytest.raises(StereobenchError, match="not the pinned"):  # the env copy is checked too
        spec.resolve()
    local.write_bytes(data)
    assert spec.resolve() == local


# -- the listing -----------------------------------------------------------------------------

def fake_depth_entries():
    """A stand-in for a depth-model registry: what it would return to `stereobench weights`."""
    return [WeightsEntry(kind="depth model", name="tiny-depth", display_name="Tiny depth",
                         specs=(WeightSpec("encoder", "org/tiny-depth", revision="abc1234", how_to_get="ask nicely"),),
                         status=WeightsStatus(present=False, location="/nowhere", how_to_get="ask nicely"))]


def test_a_new_registry_plugs_into_the_listing_without_editing_the_command(capsys):
    from benchmark.cli import main

    WEIGHT_PROVIDERS.register("depth", "tests.test_weights_service:fake_depth_entries")
    try:
        assert main(["weights"]) == 0
        out = capsys.readouterr().out
        assert "depth model tiny-depth: MISSING at /nowhere" in out and "get it: ask nicely" in out
        assert main(["weights", "--json"]) == 0
        listing = json.loads(capsys.readouterr().out)
    finally:
        WEIGHT_PROVIDERS._paths.pop("depth", None)
        WEIGHT_PROVIDERS._cache.pop("depth", None)
    assert set(listing) == {"methods", "metrics", "depth"}
    assert listing["depth"][0]["weights"][0]["source"] == "org/tiny-depth"
    assert {e["name"] for e in listing["metrics"]} == {"lpips_alex", "lpips_vgg"}
    methods = {e["name"]: e for e in listing["methods"]}
    assert methods["left-copy"]["weights"] == [] and methods["left-copy"]["present"]
    assert methods["m2svid-no-full-attention"]["weights"][0]["env_var"] == "M2SVID_NO_FULL_ATTENTION_WEIGHTS"


def test_listing_reports_lpips_state_from_the_files(root, capsys, monkeypatch):
    from benchmark.cli import main
    from benchmark.metrics import lpips_weights

    monkeypatch.setattr(lpips_weights, "torchvision_weights_cached", lambda net: False)
    assert main(["weights", "--json"]) == 0
    metrics = {e["name"]: e for e in json.loads(capsys.readouterr().out)["metrics"]}
    assert not metrics["lpips_vgg"]["present"] and metrics["lpips_vgg"]["location"].startswith(str(root))
    assert "make weights-lpips" in metrics["lpips_vgg"]["how_to_get"]


def test_a_broken_method_does_not_hide_the_others(capsys):
    from benchmark.cli import main
    from methods.registry import METHODS

    METHODS.register("broken-method", "no_such_module_for_tests:Nothing")
    try:
        assert main(["weights"]) == 0
    finally:
        METHODS._paths.pop("broken-method", None)
    out = capsys.readouterr().out
    assert "broken-method: BROKEN" in out and "left-copy: no weights needed" in out


def test_method_filter_lists_only_those_methods(capsys):
    from benchmark.cli import main

    assert main(["weights", "--json", "--method", "m2svid", "--method", "left-copy"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert list(listing) == ["methods"] and [e["name"] for e in listing["methods"]] == ["m2svid", "left-copy"]
    assert listing["methods"][0]["weights"][0]["source"].endswith("/m2svid_weights.pt")


def test_listing_groups_variants_that_share_the_same_weights(capsys, monkeypatch, tmp_path):
    """The four StereoCrafter variants share two downloads: the instructions are printed once,
    under all four names, and still name both hub ids and the licence."""
    from benchmark.cli import main

    for var in ("STEREOCRAFTER_WEIGHTS", "SVD_XT_1_1_WEIGHTS", "SVG_ZEROSCOPE_WEIGHTS", "SVG_SVD_WEIGHTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    names = ["stereocrafter", "stereocrafter-1", "stereocrafter-8", "stereocrafter-nocfg", "svg", "svg-10", "left-copy"]
    assert main(["weights"] + [x for n in names for x in ("--method", n)]) == 0
    out = capsys.readouterr().out
    assert out.count("huggingface-cli download TencentARC/StereoCrafter --include") == 1
    assert out.count("huggingface-cli download stabilityai/stable-video-diffusion-img2vid-xt-1-1 --include") == 1
    assert "stereocrafter, stereocrafter-1, stereocrafter-8, stereocrafter-nocfg: MISSING" in out
    assert "svg, svg-10: MISSING" in out and "left-copy: no weights needed" in out
    assert "academic/research use only" in out and "unet_diffusers" in out
