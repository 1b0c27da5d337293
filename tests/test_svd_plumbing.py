"""methods._svd: CLIP preprocessing, VAE batches, EDM/Euler helpers and folder checks, each
against an independent reference (diffusers' scheduler and SVD pipeline helpers, transformers'
CLIP image processor, closed forms, direct module calls)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from benchmark.errors import StereobenchError
from methods._svd import (
    CLIP_MEAN, CLIP_STD, KLEncoder, check_folder, clip_image_embeds, clip_pixel_values, decode_latents, edm_loss_weight,
    edm_v_denoise, edm_v_scalings, encode_posterior, encode_video, euler_step, karras_sigmas, require_folder,
    resize_antialiased, resolve_folder,
)
from methods._svd.vae import sample_posterior


@functools.lru_cache(maxsize=None)
def _tiny():
    from methods.m2svid.pipeline import tiny_components

    unet, vae, encoder = tiny_components(seed=2)
    return vae.eval(), encoder.eval()


def _video(frames=5, height=16, width=20, seed=0):
    return torch.rand(frames, 3, height, width, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ---- CLIP preprocessing ---------------------------------------------------------------------

@pytest.mark.parametrize("size", [(24, 24), (224, 224), (40, 17)])
def test_antialiased_resize_matches_diffusers_svd_helper(size):
    from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import _resize_with_antialiasing

    images = torch.rand(2, 3, 96, 160, generator=torch.Generator().manual_seed(1)) * 2 - 1
    assert torch.allclose(resize_antialiased(images, size), _resize_with_antialiasing(images, size), atol=1e-5)


def test_clip_pixel_values_match_diffusers_svd_encode_image_steps():
    """diffusers' SVD ``_encode_image``: antialiased resize, (x + 1) / 2, then the CLIP image
    processor normalising only (no resize, crop or rescale)."""
    from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import _resize_with_antialiasing
    from transformers import CLIPImageProcessor

    images = _video(3, 64, 96)
    processor = CLIPImageProcessor(image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))
    reference = processor(images=(_resize_with_antialiasing(images, (32, 32)) + 1) / 2, do_normalize=True,
                          do_center_crop=False, do_resize=False, do_rescale=False, return_tensors="pt").pixel_values
    ours = clip_pixel_values(images, 32)
    assert ours.dtype == torch.float32 and ours.shape == (3, 3, 32, 32)
    assert torch.allclose(ours, reference, atol=1e-5)
    assert clip_pixel_values(images, 32, dtype=torch.float64).dtype == torch.float64


def test_clip_image_embeds_are_the_encoder_on_the_pixel_values():
    _, encoder = _tiny()
    images = _video(4, 48, 40)
    with torch.no_grad():
        direct = encoder(pixel_values=clip_pixel_values(images, encoder.config.image_size)).image_embeds
        embeds = clip_image_embeds(encoder, images)
    assert embeds.shape == (4, encoder.config.projection_dim) and torch.equal(embeds, direct)


# ---- EDM / Euler ----------------------------------------------------------------------------

@pytest.mark.parametrize("sigma", [0.002, 0.5, 1.0, 30.99, 700.0])
def test_edm_scalings_follow_their_definitions(sigma):
    c_skip, c_out, c_in, c_noise = edm_v_scalings(sigma)
    assert c_skip == pytest.approx(1 / (sigma**2 + 1), rel=1e-15)
    assert c_out == pytest.approx(-sigma / math.sqrt(sigma**2 + 1), rel=1e-15)
    assert c_in == pytest.approx(1 / math.sqrt(sigma**2 + 1), rel=1e-15)
    assert c_noise == pytest.approx(math.log(sigma) / 4, rel=1e-15)
    # EDM identities with sigma_data = 1: c_skip + c_out^2 = 1, c_in is the inverse std of the
    # noisy input, and the loss weight is w = 1 / c_out^2 (VWeighting).
    assert c_skip + c_out**2 == pytest.approx(1.0, rel=1e-12)
    assert c_in**2 * (sigma**2 + 1) == pytest.approx(1.0)
    assert edm_loss_weight(sigma) == pytest.approx(1 / c_out**2, rel=1e-12)


def test_single_step_denoiser_from_zero_is_c_out_f():
    output = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    zero = torch.zeros_like(output)
    assert torch.allclose(edm_v_denoise(output, zero, 700.0), -700 / math.sqrt(490001) * output)
    # The Euler step from sigma to 0 returns the denoised sample (M2SVid's single step).
    denoised = edm_v_denoise(output, zero, 700.0)
    assert torch.allclose(euler_step(zero, denoised, 700.0, 0.0), denoised, atol=1e-6)


def _karras_closed_form(steps, sigma_min, sigma_max, rho=7.0):
    return np.array([(sigma_max ** (1 / rho) + i / (steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
                     for i in range(steps)])


@pytest.mark.parametrize("steps", [2, 8, 25])
def test_karras_sigmas_closed_form(steps):
    sigmas = karras_sigmas(steps, 0.002, 700.0)
    assert sigmas.dtype == torch.float64 and sigmas.shape == (steps,)
    assert np.allclose(sigmas.numpy(), _karras_closed_form(steps, 0.002, 700.0), rtol=1e-12)
    assert sigmas[0] == pytest.approx(700.0) and sigmas[-1] == pytest.approx(0.002)
    assert (sigmas.diff() < 0).all()


def test_karras_sigmas_match_stereocrafter_eight_steps_and_the_diffusers_scheduler():
    from diffusers import EulerDiscreteScheduler

    # OFFICIAL_CODE_FACTS.md F: StereoCrafter's 8 steps.
    expected = [700, 286.54, 102.90, 30.99, 7.28, 1.17, 0.097, 0.002]
    sigmas = karras_sigmas(8, 0.002, 700.0)
    assert np.allclose(sigmas.numpy(), expected, rtol=5e-3)
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", prediction_type="v_prediction",
        use_karras_sigmas=True, sigma_min=0.002, sigma_max=700.0, timestep_type="continuous", steps_offset=1,
    )
    scheduler.set_timesteps(8)
    assert np.allclose(scheduler.sigmas[:-1].numpy(), sigmas.numpy(), rtol=1e-6)
    assert float(scheduler.sigmas[-1]) == 0.0
    # Continuous timesteps are c_noise = 0.25 ln sigma.
    c_noise = torch.tensor([edm_v_scalings(float(s))[3] for s in sigmas], dtype=torch.float64)
    assert torch.allclose(scheduler.timesteps.double(), c_noise, atol=1e-5)


def test_euler_steps_match_the_diffusers_scheduler():
    from diffusers import EulerDiscreteScheduler

    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", prediction_type="v_prediction",
        use_karras_sigmas=True, sigma_min=0.002, sigma_max=700.0, timestep_type="continuous", steps_offset=1,
    )
    scheduler.set_timesteps(4)
    g = torch.Generator().manual_seed(0)
    sigmas = karras_sigmas(4, 0.002, 700.0).tolist() + [0.0]
    ours = theirs = torch.randn(1, 4, 6, 6, generator=g, dtype=torch.float64) * sigmas[0]
    for index, timestep in enumerate(scheduler.timesteps):
        sigma, sigma_next = sigmas[index], sigmas[index + 1]
        model_output = torch.randn(1, 4, 6, 6, generator=g, dtype=torch.float64)  # any v-prediction
        _, _, c_in, _ = edm_v_scalings(sigma)
        assert torch.allclose(scheduler.scale_model_input(theirs, timestep), c_in * theirs, rtol=1e-6)
        theirs = scheduler.step(model_output, timestep, theirs).prev_sample
        ours = euler_step(ours, edm_v_denoise(model_output, ours, sigma), sigma, sigma_next)
        assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-5), index


def test_karras_bad_arguments():
    with pytest.raises(ValueError, match="steps >= 1"):
        karras_sigmas(0, 0.002, 700.0)
    with pytest.raises(ValueError, match="sigma_min <= sigma_max"):
        karras_sigmas(4, 700.0, 0.002)
    assert karras_sigmas(1, 0.002, 700.0).tolist() == [700.0]


# ---- VAE batches ----------------------------------------------------------------------------

def test_batched_vae_encode_equals_unbatched_and_the_diffusers_call():
    vae, _ = _tiny()
    video = _video(5)
    with torch.no_grad():
        whole = vae.encode(video).latent_dist
        for chunk in (1, 2, 3, 5, 8):
            latents = encode_video(vae, video, chunk_size=chunk)
            assert latents.shape == (5, 4, 8, 10)
            assert torch.allclose(latents, whole.mode(), atol=1e-5), chunk
        per_frame = torch.cat([vae.encode(frame[None]).latent_dist.mode() for frame in video])
        assert torch.allclose(encode_video(vae, video, chunk_size=2), per_frame, atol=1e-5)
        posterior = encode_posterior(vae, video, chunk_size=2)
        assert torch.allclose(posterior.std, whole.std, atol=1e-5)


def test_encode_without_quant_conv_is_the_raw_encoder_posterior():
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    vae, _ = _tiny()
    video = _video(3)
    with torch.no_grad():
        raw = DiagonalGaussianDistribution(vae.encoder(video))
        ours = encode_posterior(vae, video, chunk_size=2, use_quant_conv=False)
        with_quant = encode_posterior(vae, video, chunk_size=2)
    # Batch size changes the conv kernels' float rounding (~1e-6), not the result.
    assert torch.allclose(ours.mean, raw.mean, atol=1e-5) and torch.allclose(ours.std, raw.std, atol=1e-5)
    assert not torch.allclose(with_quant.mean, raw.mean, atol=1e-3)  # the tiny quant_conv is random


def test_posterior_sample_uses_a_cpu_generator_draw():
    vae, _ = _tiny()
    with torch.no_grad():
        posterior = encode_posterior(vae, _video(2))
    draw = sample_posterior(posterior, torch.Generator().manual_seed(5))
    noise = torch.randn(posterior.mean.shape, generator=torch.Generator().manual_seed(5))
    assert torch.equal(draw, posterior.mean + posterior.std * noise)


def test_kl_encoder_copies_the_vae_encoder_and_round_trips(tmp_path):
    vae, _ = _tiny()
    video = _video(3)
    with torch.no_grad():
        with_quant = KLEncoder.from_vae(vae)
        without = KLEncoder.from_vae(vae, use_quant_conv=False)
        assert torch.allclose(encode_video(with_quant, video), encode_video(vae, video), atol=1e-6)
        assert torch.allclose(encode_video(without, video), encode_video(vae, video, use_quant_conv=False), atol=1e-6)
        without.save_pretrained(tmp_path / "enc")
        reloaded = KLEncoder.from_pretrained(tmp_path / "enc")
        assert reloaded.quant_conv is None
        assert torch.equal(encode_video(reloaded, video), encode_video(without, video))


def test_temporal_decode_in_frame_batches():
    vae, _ = _tiny()
    latents = torch.randn(5, 4, 6, 6, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        whole = decode_latents(vae, latents)
        direct = vae.decode(latents / 0.18215, num_frames=5).sample
        chunked = decode_latents(vae, latents, chunk_size=2)
        manual = torch.cat([vae.decode(latents[i:i + 2] / 0.18215, num_frames=len(latents[i:i + 2])).sample
                            for i in range(0, 5, 2)])
    assert whole.shape == (5, 3, 12, 12) and torch.equal(whole, direct)
    assert torch.equal(chunked, manual)
    # The temporal decoder mixes the frames of one call: chunking changes the output.
    assert not torch.allclose(whole, chunked, atol=1e-4)
    with pytest.raises(ValueError, match="chunk_size"):
        decode_latents(vae, latents, chunk_size=0)
    with pytest.raises(ValueError, match="chunk_size"):
        encode_video(vae, _video(2), chunk_size=0)


# ---- folders --------------------------------------------------------------------------------

def _component(folder, name, weights=True):
    (folder / name).mkdir(parents=True)
    (folder / name / "config.json").write_text("{}")
    if weights:
        (folder / name / "diffusion_pytorch_model.safetensors").write_bytes(b"x")


def test_check_folder_names_every_missing_piece(tmp_path):
    _component(tmp_path, "unet")
    _component(tmp_path, "vae", weights=False)
    (tmp_path / "image_encoder").mkdir()
    missing = check_folder(tmp_path, ["unet", "vae", "image_encoder", "scheduler"], ["m2svid.json"])
    assert missing == ["vae (config.json but no weights file)", "image_encoder", "scheduler", "m2svid.json"]
    with pytest.raises(StereobenchError, match=r"lacks vae \(config.json but no weights file\), image_encoder.*fix it"):
        require_folder(tmp_path, ["unet", "vae", "image_encoder"], what="test folder", fix="fix it")
    (tmp_path / "m2svid.json").write_text("{}")
    assert check_folder(tmp_path, ["unet"], ["m2svid.json"]) == []
    assert require_folder(tmp_path, ["unet"]) == tmp_path


def test_resolve_folder_local_missing_file_and_uncached_hub_id(tmp_path, monkeypatch):
    assert resolve_folder(tmp_path) == tmp_path
    with pytest.raises(StereobenchError, match="does not exist"):
        resolve_folder(tmp_path / "nowhere", what="test weights")
    file = tmp_path / "weights.bin"
    file.write_bytes(b"x")
    with pytest.raises(StereobenchError, match="is a file, not a diffusers-format folder"):
        resolve_folder(file)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(StereobenchError, match="not in the Hugging Face cache"):
        resolve_folder("someone/not-cached")
