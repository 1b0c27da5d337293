"""M2SVid single-step inference: the real loading path on a tiny random diffusers folder, the
official constants and conditioning, chunk/tile blending, and bad input."""

from __future__ import annotations

import functools
import math
import tempfile
from pathlib import Path

import pytest
import torch

from benchmark.errors import StereobenchError
from methods.m2svid import M2SVid, M2SVidNoFullAttention
from benchmark.windows import blend_windows, ramp_weights, windows_1d
from methods._svd.clip import resize_antialiased
from methods._svd.edm import edm_v_scalings
from methods.m2svid.pipeline import InferenceOptions, M2SVidPipeline, load_pipeline, save_pipeline_folder, tiny_components
from tests.method_tester import MethodTesterMixin, make_layered_scene


@functools.lru_cache(maxsize=None)
def tiny_folder() -> Path:
    """A tiny random M2SVid saved in the diffusers format (shared by the tests of this module)."""
    folder = Path(tempfile.mkdtemp(prefix="m2svid-tiny-")) / "m2svid"
    save_pipeline_folder(folder, *tiny_components(seed=0), manifest={"source_file": "tiny-random"})
    return folder


class TestM2SVidAdapter(MethodTesterMixin):
    input_size = (5, 32, 34)  # 5 frames with 4-frame windows: chunking runs; 34 px: padding runs

    def make_method(self, **options):
        return M2SVid(seed=0, weights=tiny_folder(), chunk_frames=4, temporal_overlap=2, **options)

    def make_input(self):
        frames, height, width = self.input_size
        return make_layered_scene(frames, height, width, foreground_disparity=4, velocity=-2)[0]

    def save_and_reload(self, method, tmp_path):
        pipe = method.pipeline
        save_pipeline_folder(tmp_path / "copy", pipe.unet, pipe.vae, pipe.image_encoder)
        return M2SVid(seed=0, weights=tmp_path / "copy", chunk_frames=4, temporal_overlap=2).load("cpu")


def test_official_single_step_constants():
    # Reference values from the official code (OFFICIAL_CODE_FACTS.md A): c_out = -0.99999898,
    # c_noise = 1.6377701 at sigma_max = 700.
    c_skip, c_out, c_in, c_noise = edm_v_scalings(700.0)
    assert c_out == pytest.approx(-0.99999898, abs=1e-8)
    assert c_noise == pytest.approx(1.6377701, abs=1e-7)
    assert c_skip == pytest.approx(1 / 490001) and c_in == pytest.approx(1 / math.sqrt(490001))


def test_conditioning_reaches_the_unet_as_official():
    pipe = load_pipeline(tiny_folder())
    seen = {}

    def capture(module, args, kwargs):
        seen["sample"], seen["timestep"], seen["context"], seen["ids"] = args[:4]

    pipe.unet.register_forward_pre_hook(capture, with_kwargs=True)
    inp, _ = make_layered_scene(4, 32, 32, foreground_disparity=4, velocity=-2)
    with torch.no_grad():
        pipe(inp.left, inp.warped, inp.mask, fps=29.97, seed=3)
    sample = seen["sample"]
    assert sample.shape == (1, 4, 13, 16, 16)
    assert torch.count_nonzero(sample[:, :, :4]) == 0  # denoise from zero
    mask_channel = sample[0, :, 12]
    assert mask_channel.min() >= -1 and mask_channel.max() <= 1 and (mask_channel > 0).any()
    # The mask channel is the dilated hole mask in [-1, 1], resized bilinearly without antialias.
    dilated = torch.nn.functional.max_pool2d(inp.mask.float(), 3, 1, 1) * 2 - 1
    assert torch.allclose(mask_channel, torch.nn.functional.interpolate(dilated, size=(16, 16), mode="bilinear")[:, 0])
    assert seen["timestep"] == pytest.approx(0.25 * math.log(700))
    assert seen["ids"].tolist() == [[pytest.approx(29.97), 127.0, pytest.approx(0.02)]]  # raw fps, not fps - 1
    assert seen["context"].shape == (1, 4, 32)  # one CLIP token per frame (all left frames)
    assert not torch.allclose(seen["context"][0, 0], seen["context"][0, 3])


def test_latent_mask_is_mean_of_central_2x2_of_each_8x8_block():
    pipe = M2SVidPipeline.__new__(M2SVidPipeline)
    pipe.vae_scale = 8
    mask = torch.rand(2, 1, 32, 48, generator=torch.Generator().manual_seed(0)) > 0.5
    latent = pipe.latent_mask(mask)
    m11 = mask.float() * 2 - 1
    central = m11[..., 3::8, 3::8] + m11[..., 4::8, 3::8] + m11[..., 3::8, 4::8] + m11[..., 4::8, 4::8]
    assert torch.allclose(latent, central / 4)
    assert set(latent.unique().tolist()) <= {-1.0, -0.5, 0.0, 0.5, 1.0}


def test_clip_resize_matches_diffusers_kornia_port():
    from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import _resize_with_antialiasing

    images = torch.rand(2, 3, 96, 160, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert torch.allclose(resize_antialiased(images, (24, 24)), _resize_with_antialiasing(images, (24, 24)), atol=1e-5)


@pytest.mark.parametrize("length,window,overlap", [(5, 4, 2), (25, 25, 4), (60, 25, 4), (13, 4, 1), (1088, 1024, 128)])
def test_windows_cover_and_crossfade_linearly(length, window, overlap):
    spans = windows_1d(length, window, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == length and all(e - s == min(window, length) for s, e in spans)
    weights = ramp_weights(spans)
    total = torch.zeros(length, dtype=torch.float64)
    for (s, e), w in zip(spans, weights):
        assert (w > 0).all()
        total[s:e] += w
    # Two-window overlaps are exact linear cross-fades summing to one.
    counts = torch.zeros(length)
    for s, e in spans:
        counts[s:e] += 1
    assert torch.allclose(total[counts <= 2], torch.ones(int((counts <= 2).sum()), dtype=torch.float64))


def test_blending_is_seamless_for_position_independent_model():
    video = torch.rand(11, 3, 40, 56, generator=torch.Generator().manual_seed(0))

    def per_pixel(ts, ys, xs):  # any position-independent model: chunked must equal unchunked
        return torch.sigmoid(3 * video[ts, :, ys, xs] - 1) ** 2

    direct = per_pixel(slice(None), slice(None), slice(None))
    chunked = blend_windows(per_pixel, tuple(video.shape), temporal=(4, 2), spatial=(24, 8))
    assert torch.allclose(chunked, direct, atol=1e-6)


def test_tiles_and_chunks_run_on_real_model_and_are_deterministic():
    pipe = load_pipeline(tiny_folder(), options=InferenceOptions(chunk_frames=3, temporal_overlap=1, tile_size=16, tile_overlap=8))
    inp, _ = make_layered_scene(4, 24, 28, foreground_disparity=4, velocity=-2)  # 2 x 2 x 3 windows
    with torch.no_grad():
        a = pipe(inp.left, inp.warped, inp.mask, fps=5.0, seed=1)
        b = pipe(inp.left, inp.warped, inp.mask, fps=5.0, seed=1)
        c = pipe(inp.left, inp.warped, inp.mask, fps=5.0, seed=2)
    assert a.shape == (4, 3, 24, 28) and torch.isfinite(a).all() and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_variants_differ_only_in_full_attention():
    inp, _ = make_layered_scene(4, 32, 32, foreground_disparity=4, velocity=-2)
    full = M2SVid(weights=tiny_folder()).load("cpu")
    plain = M2SVidNoFullAttention(weights=tiny_folder()).load("cpu")
    assert full.pipeline.unet.full_attention and not plain.pipeline.unet.full_attention
    with torch.no_grad():
        assert not torch.allclose(full.refine(inp), plain.refine(inp), atol=1e-6)


def test_cpu_fp16_falls_back_to_fp32_with_warning():
    with pytest.warns(RuntimeWarning, match="falling back to float32"):
        method = M2SVid(weights=tiny_folder()).load("cpu", torch.float16)
    assert method.dtype == torch.float32 and method.pipeline.dtype == torch.float32


def test_bad_folders_and_options(tmp_path, monkeypatch):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_folder(), broken)
    shutil.rmtree(broken / "vae")
    with pytest.raises(StereobenchError, match="lacks vae"):
        M2SVid(weights=broken).load("cpu")
    with pytest.raises(StereobenchError, match="does not exist"):
        M2SVid(weights=tmp_path / "nowhere").load("cpu")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(StereobenchError, match="not in the Hugging Face cache"):
        M2SVid(weights="someone/not-cached").load("cpu")
    with pytest.raises(StereobenchError, match="unknown M2SVid option"):
        M2SVid(chunk_frame=4)
    with pytest.raises(StereobenchError, match="before load"):
        M2SVid(weights=tiny_folder()).refine(make_layered_scene(2, 32, 32, foreground_disparity=4, velocity=-2)[0])
    status = M2SVid(weights=tmp_path / "nowhere").weights_status()
    assert not status.present and "storage.googleapis.com/gresearch/m2svid/m2svid_weights.pt" in status.how_to_get
    assert M2SVid(weights=tiny_folder()).weights_status().present


def test_plain_svd_unet_folder_is_refused(tmp_path):
    import shutil

    from diffusers import UNetSpatioTemporalConditionModel

    from methods.m2svid.model import tiny_config

    folder = tmp_path / "svd"
    shutil.copytree(tiny_folder(), folder)
    shutil.rmtree(folder / "unet")
    UNetSpatioTemporalConditionModel(**{**tiny_config(), "in_channels": 8}).save_pretrained(folder / "unet")
    with pytest.raises(StereobenchError, match="in_channels=8"):
        M2SVid(weights=folder).load("cpu")


def test_latents_channel_order_scaling_and_ring_pixels_as_official():
    """conv_in order [zero | left | warped | mask]; conditioning latents are the posterior mode
    *without* 0.18215; the warped view is zeroed under the closed mask *before* the 3x3
    dilation (dilation-ring pixels keep their values); the decoder gets c_out F / 0.18215."""
    from methods.m2svid.model import LATENT_SCALE

    pipe = load_pipeline(tiny_folder(), options=InferenceOptions(cond_aug=0.0))  # no noise: exact latents
    seen = {}
    pipe.unet.register_forward_pre_hook(lambda m, a, k: seen.__setitem__("sample", a[0]), with_kwargs=True)
    pipe.unet.register_forward_hook(lambda m, a, k, out: seen.__setitem__("F", out), with_kwargs=True)
    original_decode = pipe.vae.decode
    pipe.vae.decode = lambda z, num_frames: (seen.__setitem__("z", z), original_decode(z, num_frames=num_frames))[1]
    inp, _ = make_layered_scene(4, 32, 32, foreground_disparity=4, velocity=-2)
    warped = inp.warped.clone()
    warped[inp.mask.expand_as(warped)] = 0.7  # hole pixels must be zeroed by the pipeline
    with torch.no_grad():
        pipe(inp.left, warped, inp.mask, fps=7.0, seed=0)
        left_latent = pipe.vae.encode(inp.left * 2 - 1).latent_dist.mode()
        closed_zeroed = torch.where(inp.mask, 0.0, warped)
        ring = (torch.nn.functional.max_pool2d(inp.mask.float(), 3, 1, 1) > 0.5) & ~inp.mask
        assert (closed_zeroed * ring).abs().sum() > 0  # the ring holds warped content in this scene
        warped_latent = pipe.vae.encode(closed_zeroed * 2 - 1).latent_dist.mode()
        wrong_latent = pipe.vae.encode(torch.where(ring | inp.mask, 0.0, warped) * 2 - 1).latent_dist.mode()
    sample = seen["sample"][0]
    assert torch.allclose(sample[:, 4:8], left_latent, atol=1e-5)
    assert torch.allclose(sample[:, 8:12], warped_latent, atol=1e-5)
    assert not torch.allclose(sample[:, 8:12], wrong_latent, atol=1e-3)
    c_out = -700 / math.sqrt(700**2 + 1)
    assert torch.allclose(seen["z"], c_out * seen["F"][0] / LATENT_SCALE, rtol=1e-6, atol=1e-7)


def test_tiny_model_outputs_equal_the_reference_saved_before_the_refactor():
    """Every output of tests/data/m2svid_reference.safetensors (computed at f9990fd, before the
    SVD plumbing and the windows moved out of pipeline.py) is recomputed with the current code
    from the stored inputs: windows + tiles with and without full attention, one window with
    padding, VAE encode / whole and chunked decode, CLIP pixel values and embeddings, the latent
    mask and the training-loss parts. Tolerance 1e-6 (float results may differ in the last bit
    across CPUs, so outputs are stored, not hashed)."""
    from tests.data import m2svid_reference as reference

    saved = reference.load()
    inputs = {k: v for k, v in saved.items() if k.startswith("input_")}
    recomputed = reference.compute(inputs)
    assert set(recomputed) == set(saved) - set(inputs)
    for name, value in recomputed.items():
        assert value.shape == saved[name].shape, name
        difference = (value.double() - saved[name].double()).abs().max().item()
        assert difference <= 1e-6, (name, difference)


@pytest.mark.parametrize("dtype,expected", [(torch.float16, float(torch.tensor(0.02, dtype=torch.float16))), (torch.float32, 0.02)])
def test_cond_aug_is_rounded_to_half_precision_under_fp16_as_officially(dtype, expected):
    """The official fp16 code builds cond_aug = 0.02 as a float16 tensor: the time id *and* the
    noise strength are 0.0200043 there. Under float16 both equal float(float16(0.02)); float32
    keeps 0.02."""
    from methods.m2svid.pipeline import half_precision_cond_aug

    assert expected != 0.02 or dtype == torch.float32
    assert half_precision_cond_aug(0.02, dtype) == expected
    unet, vae, encoder = tiny_components(seed=0)
    pipe = M2SVidPipeline(unet.to(dtype), vae.to(dtype), encoder.to(dtype))
    seen = {}
    pipe.unet.register_forward_pre_hook(lambda m, a, k: seen.__setitem__("ids", a[3]), with_kwargs=True)
    original = pipe.conditioning
    pipe.conditioning = lambda left, warped, mask, fps: (seen.__setitem__("left", left), original(left, warped, mask, fps))[1]
    frames = torch.full((2, 3, 16, 16), 0.5)  # 0 in [-1, 1]: what reaches the encoder is the noise term alone
    ones = torch.ones(2, 2, 3, 16, 16)
    with torch.no_grad():
        pipe.refine_window(frames, frames, torch.zeros(2, 1, 16, 16), ones, fps=5.0)
    assert seen["ids"].dtype == dtype and float(seen["ids"][0, 2]) == float(torch.tensor(expected, dtype=dtype))
    assert torch.equal(seen["left"], torch.full_like(frames, expected))  # noise strength = the same value


@pytest.mark.parametrize("options,match", [
    ({"chunk_frames": 0}, "chunk_frames must be in 1..25"),
    ({"chunk_frames": 26}, "chunk_frames must be in 1..25"),
    ({"chunk_frames": 4, "temporal_overlap": 4}, "temporal_overlap must be in"),
    ({"temporal_overlap": -1}, "temporal_overlap must be in"),
    ({"tile_size": 0}, "tile_size >= 1"),
    ({"tile_size": 128, "tile_overlap": 128}, "tile_overlap < tile_size"),
    ({"encode_chunk_size": 0}, "encode_chunk_size must be >= 1"),
    ({"decode_chunk_size": 0}, "decode_chunk_size must be None"),
])
def test_inference_options_no_window_plan_can_honour_are_refused_on_construction(options, match):
    with pytest.raises(StereobenchError, match=match):
        InferenceOptions(**options)


def test_tile_overlap_that_rounds_to_the_tile_is_a_clear_error():
    # The tiny model's size multiple is 4: tile 6 -> 4 px, overlap 5 -> 4 px, no room to step.
    pipe = M2SVidPipeline(*tiny_components(seed=0), options=InferenceOptions(tile_size=6, tile_overlap=5))
    inp, _ = make_layered_scene(2, 16, 16, foreground_disparity=4, velocity=-2)
    with pytest.raises(StereobenchError, match="rounds to 4 px"):
        pipe(inp.left, inp.warped, inp.mask, fps=5.0)
