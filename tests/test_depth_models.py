"""Depth models loaded by the real loading code from tiny random checkpoints that the tests write
in the real on-disk formats (transformers ``save_pretrained`` with the hub's preprocessor config;
a Hugging Face cache layout), compared with transformers' own processor + post-processing."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from benchmark.depth import load_depth_model
from benchmark.errors import StereobenchError

HUB_ID = "depth-anything/Depth-Anything-V2-Small-hf"


def write_tiny_depth_anything(folder, seed=0, metric=False):
    """A tiny random DepthAnythingForDepthEstimation + the hub's DPT preprocessing config."""
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessor,
    )

    torch.manual_seed(seed)
    backbone = Dinov2Config(image_size=518, patch_size=14, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                            intermediate_size=64, out_indices=[1, 2, 3, 4], reshape_hidden_states=False)
    extra = {"depth_estimation_type": "metric", "max_depth": 20} if metric else {}
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
                                 fusion_hidden_size=16, head_hidden_size=8, **extra)
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    # The hub checkpoint's values, saved explicitly (the class defaults differ: 384x384, mean 0.5).
    DPTImageProcessor(size={"height": 518, "width": 518}, keep_aspect_ratio=True, ensure_multiple_of=14, resample=3,
                      do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=[0.485, 0.456, 0.406],
                      image_std=[0.229, 0.224, 0.225], do_pad=False).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_dav2(tmp_path_factory):
    return write_tiny_depth_anything(tmp_path_factory.mktemp("dav2") / "tiny")


def test_depth_anything_v2_from_a_folder_matches_transformers(tiny_dav2):
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    model = load_depth_model("depth-anything-v2", weights=str(tiny_dav2), batch_size=1)
    frames = torch.rand(2, 3, 42, 70, generator=torch.Generator().manual_seed(1))
    out = model.predict(frames)
    assert out.shape == (2, 42, 70) and out.dtype == torch.float32
    # The checkpoint's own preprocessing: the scale closest to 1 of 518/42 and 518/70 (upscaling:
    # the long side goes to 518), each side rounded to a multiple of 14: 42x70 -> 310.8x518 -> 308x518.
    assert tuple(model.preprocess(frames).shape) == (2, 3, 308, 518)
    # Independent path: transformers' processor, model and post-processing.
    processor = AutoImageProcessor.from_pretrained(tiny_dav2)
    reference_model = AutoModelForDepthEstimation.from_pretrained(tiny_dav2).eval()
    with torch.no_grad():
        inputs = processor(images=list(frames), do_rescale=False, return_tensors="pt")
        outputs = reference_model(**inputs)
    post = processor.post_process_depth_estimation(outputs, target_sizes=[(42, 70)] * 2)
    reference = torch.stack([p["predicted_depth"] for p in post])
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-5)
    assert "model card" in model.licence  # a local folder: the name does not say which variant
    assert model.spec["name"] == "depth-anything-v2" and model.spec["revision"].startswith("files:")


def test_depth_anything_v2_from_the_hf_cache(tiny_dav2, tmp_path, monkeypatch):
    cache = tmp_path / "hf"
    commit = "c" * 40
    repo = cache / f"models--{HUB_ID.replace('/', '--')}"
    shutil.copytree(tiny_dav2, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("STEREOBENCH_DEPTH_ANYTHING_V2", raising=False)
    model = load_depth_model("depth-anything-v2")  # the default id, found in the cache offline
    assert model.spec == {"name": "depth-anything-v2", "model": HUB_ID, "revision": commit}
    assert model.licence == "Apache-2.0"
    assert model.predict(torch.rand(1, 3, 28, 28)).shape == (1, 28, 28)


def test_missing_weights_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.delenv("STEREOBENCH_DEPTH_ANYTHING_V2", raising=False)
    with pytest.raises(StereobenchError, match=r"not in the Hugging Face cache.*huggingface-cli download "
                                               r"depth-anything/Depth-Anything-V2-Large-hf"):
        load_depth_model("depth-anything-v2", variant="large")
    with pytest.raises(StereobenchError, match="Did you mean 'large'"):
        load_depth_model("depth-anything-v2", variant="larg")


def test_folder_without_preprocessor_config_is_refused(tiny_dav2, tmp_path):
    broken = tmp_path / "noproc"
    shutil.copytree(tiny_dav2, broken)
    os.remove(broken / "preprocessor_config.json")
    with pytest.raises(StereobenchError, match="no preprocessor_config.json"):
        load_depth_model("depth-anything-v2", weights=str(broken))
    (tmp_path / "empty").mkdir()
    with pytest.raises(StereobenchError, match="config.json"):
        load_depth_model("transformers", weights=str(tmp_path / "empty"))


def test_metric_model_is_inverted_and_keys_differ(tiny_dav2, tmp_path):
    metric = write_tiny_depth_anything(tmp_path / "metric", metric=True)
    relative = load_depth_model("transformers", weights=str(tiny_dav2))
    model = load_depth_model("transformers", weights=str(metric))
    assert model.output_kind == "depth" and relative.output_kind == "inverse_depth"
    frames = torch.rand(1, 3, 28, 42)
    forced = load_depth_model("transformers", weights=str(metric), output="inverse_depth").predict(frames)
    out = model.predict(frames)
    valid = forced > 0
    torch.testing.assert_close(out[valid], 1.0 / forced[valid])
    assert model.key() != relative.key()
    assert relative.key() == load_depth_model("transformers", weights=str(tiny_dav2), batch_size=7).key()


def test_weights_listing_has_the_depth_models(tiny_dav2, monkeypatch, tmp_path):
    from benchmark.weights import WEIGHT_PROVIDERS

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.delenv("STEREOBENCH_DEPTH_ANYTHING_V2", raising=False)
    rows = {row.name: row for row in WEIGHT_PROVIDERS["depth"]()}
    dav2 = rows["depth-anything-v2"]
    assert not dav2.status.present and "huggingface-cli download depth-anything/Depth-Anything-V2-Small-hf" in \
        dav2.status.how_to_get
    assert {s.licence for s in dav2.specs} == {"Apache-2.0", "CC-BY-NC-4.0 (non-commercial)"}
    assert rows["files"].status.present and not rows["files"].specs
    monkeypatch.setenv("STEREOBENCH_DEPTH_ANYTHING_V2", str(tiny_dav2))
    rows = {row.name: row for row in WEIGHT_PROVIDERS["depth"]()}
    assert rows["depth-anything-v2"].status.present and rows["depth-anything-v2"].status.location == str(tiny_dav2)
