"""The batched SVG pipeline against a literal, one-video-at-a-time transcription of the official
loop (svg.py @ 9466625, STEREOCRAFTER_SVG_FACTS.md 2.4) written here independently: diffusers'
``DDPMScheduler.step`` / ``add_noise``, the official beta-product loop for re-noising, per-view
``predict_noise`` with ``cat([latents] * 2)``, view passes built frame by frame, the reverse pass
flipping the views before the U-Net and the prediction back, non-denoised views zeroed.

Both consume the same random draws: the reference draws each tensor the pipeline draws, in the
same order, and hands the DDPM variance noise to ``DDPMScheduler.step`` by patching its
``randn_tensor``. Tiny random weights, 3 DDPM steps (667: the frame matrix with time and both view
directions; 334: the last view with resampling; 1: the last step).
"""

from __future__ import annotations

import pytest
import torch

from methods.svg import NEGATIVE_PROMPT
from methods.svg.frame_matrix import (
    build_frame_matrix,
    latent_mask,
    pixel_known_mask,
    soft_mask,
)
from methods.svg.pipeline import Settings, SVGPipeline, load_components
from tests.test_svg import one_thread, scene, tiny_folders  # noqa: F401  (one_thread: autouse fixture)

SCALE = 0.18215


def official_loop(c, images, holes, prompt, negative, seed, steps, resample, last_view_resample, end=500):
    """Final latents of the last view (1, C, T, h, w), the official way (see the module docstring)."""
    import diffusers.schedulers.scheduling_ddpm as ddpm_module

    gen = torch.Generator().manual_seed(seed)
    draw = lambda shape: torch.randn(tuple(shape), generator=gen)
    queue: list[torch.Tensor] = []
    original = ddpm_module.randn_tensor
    ddpm_module.randn_tensor = lambda shape, **kw: queue.pop(0).reshape(shape)
    try:
        sched = c.scheduler
        v, t_frames = images.shape[:2]
        known = pixel_known_mask(holes)
        images = images * known
        masks = soft_mask(latent_mask(known)).permute(0, 2, 1, 3, 4)  # (V, 1, T, h, w)

        def encode(views):  # images2latents(use_mean=False) of each view; one draw for all of them
            posts = [c.vae.encode(views[i] * 2 - 1).latent_dist for i in range(views.shape[0])]
            mean, std = torch.cat([p.mean for p in posts]), torch.cat([p.std for p in posts])
            z = (mean + std * draw(mean.shape)) * SCALE
            return z.reshape(views.shape[0], t_frames, *z.shape[1:]).permute(0, 2, 1, 3, 4)

        ids = c.tokenizer([prompt], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        uncond_ids = c.tokenizer([negative], padding="max_length", max_length=77, return_tensors="pt").input_ids
        text = torch.cat([c.text_encoder(uncond_ids)[0], c.text_encoder(ids)[0]])

        def predict_noise(latents, t):
            pred = c.unet(torch.cat([latents] * 2), t, encoder_hidden_states=text).sample
            uncond, cond = pred.chunk(2)
            return uncond + 7.5 * (cond - uncond)

        def step(eps, t, x, noise):
            queue.append(noise)
            out = sched.step(eps, t, x)
            return out.prev_sample, out.pred_original_sample

        sources = encode(images)
        sched.set_timesteps(steps)
        timesteps = [int(x) for x in sched.timesteps]
        latents = draw(sources.shape)
        for i, t in enumerate(timesteps):
            t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else None
            views = list(range(v)) if t > end else [v - 1]
            noise = draw((len(views), *latents.shape[1:]))
            new = torch.zeros_like(latents)
            x0 = {}
            for j, view in enumerate(views):
                new[view], x0[view] = (y[0] for y in step(predict_noise(latents[view:view + 1], t), t,
                                                          latents[view:view + 1], noise[j:j + 1]))
            latents = new
            decoded = []
            for view in views:  # re-injection: decode x0 (T frames as one video), paste, re-encode
                frames = (x0[view] / SCALE).permute(1, 0, 2, 3)
                image = (c.vae.decode(frames, num_frames=t_frames).sample / 2 + 0.5).clamp(0, 1)
                decoded.append(image * (1 - known[view]) + images[view] * known[view])
            new_sources = encode(torch.stack(decoded))
            for j, view in enumerate(views):
                sources[view] = new_sources[j]
            if t_prev is not None:
                repeats = last_view_resample if t < end else resample
                alpha = 1.0
                for k in range(t - t_prev):  # the official loop: betas[t_cur + j]
                    alpha = alpha * (1 - sched.betas[t_prev + k])
                for r in range(repeats):
                    renoise, known_noise = draw((len(views), *latents.shape[1:])), draw((len(views), *latents.shape[1:]))
                    noisy = latents.clone()
                    for j, view in enumerate(views):
                        noisy[view] = alpha.sqrt() * latents[view] + (1 - alpha).sqrt() * renoise[j]
                        known_now = sched.add_noise(sources[view], known_noise[j], torch.tensor([t]))
                        noisy[view] = noisy[view] * (1 - masks[view]) + known_now * masks[view]
                    pass_noise = draw((len(views), *latents.shape[1:]))
                    out = torch.zeros_like(latents)
                    if t > end and r % 4 in (1, 3):  # along the views, frame by frame
                        for f in range(t_frames):
                            video = noisy[:, :, f].permute(1, 0, 2, 3)[None]  # (1, C, V, h, w)
                            if r % 4 == 1:
                                eps = predict_noise(video, t)
                            else:
                                eps = predict_noise(video.flip(2), t).flip(2)
                            prev, _ = step(eps, t, video, pass_noise[:, :, f].permute(1, 0, 2, 3)[None])
                            out[:, :, f] = prev[0].permute(1, 0, 2, 3)
                    else:
                        for j, view in enumerate(views):
                            prev, _ = step(predict_noise(noisy[view:view + 1], t), t, noisy[view:view + 1],
                                           pass_noise[j:j + 1])
                            out[view] = prev[0]
                    latents = out
            final_noise = None if t_prev is None else draw((len(views), *latents.shape[1:]))
            for j, view in enumerate(views):
                clean = sources[view] if t_prev is None else sched.add_noise(sources[view], final_noise[j],
                                                                             torch.tensor([t_prev]))
                latents[view] = latents[view] * (1 - masks[view]) + clean * masks[view]
        assert not queue
        return latents[v - 1:v]
    finally:
        ddpm_module.randn_tensor = original


@pytest.mark.parametrize("unet_batch", [None, 1])
def test_pipeline_equals_the_literal_official_loop(unet_batch):
    zs, svd = tiny_folders()
    c = load_components(zs, svd, "cpu", torch.float32)
    images, holes = build_frame_matrix(scene(2, 16, 24), 3)
    settings = Settings(steps=3, resample=4, last_view_resample=2, unet_batch=unet_batch, vae_batch=2)
    pipe = SVGPipeline(c, settings)
    _, ours = pipe(images, holes, "a video", seed=3, return_latents=True)
    with torch.no_grad():
        expected = official_loop(c, images, holes, "a video", NEGATIVE_PROMPT, seed=3, steps=3, resample=4,
                                 last_view_resample=2)
    assert [int(t) for t in c.scheduler.timesteps] == [667, 334, 1]
    assert pipe.counters["unet_videos"] == 3 + (3 + 2 + 3 + 2) + 1 + 2 + 1
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)
