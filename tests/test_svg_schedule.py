"""SVG's per-step plan against the official schedule, and its DDPM arithmetic against diffusers.

The official schedule is written out here from ../shared/reference/STEREOCRAFTER_SVG_FACTS.md
2.4/2.6 (svg.py @ 9466625: main loop :474-536, resampling :261-402): 50 DDPM steps 981..1 of
zeroscope's leading schedule; while t > 500 every view along time, then 6 resampling passes in
the order time, views 0->7, time, views 7->0, time, views 0->7; from t <= 500 only view 7, with
2 resampling passes along time; no resampling after the last step.
"""

from __future__ import annotations

import pytest
import torch

from methods.svg.configs import ZEROSCOPE_SCHEDULER_CONFIG
from methods.svg.flops import timesteps_for, vae_passes
from methods.svg.schedule import (
    Pass,
    add_noise,
    count_unet_videos,
    ddpm_step,
    plan_steps,
    renoise_factor,
)

ALL = (0, 1, 2, 3, 4, 5, 6, 7)
LAST = (7,)
# (axis, direction) of the 6 resampling passes while t > 500, in the official order.
MATRIX_RESAMPLE = [("time", "forward"), ("view", "forward"), ("time", "forward"),
                   ("view", "reverse"), ("time", "forward"), ("view", "forward")]


def official_schedule_50() -> list[tuple]:
    timesteps = [981 - 20 * i for i in range(50)]
    out = []
    for i, t in enumerate(timesteps):
        if t > 500:
            out.append((i, t, "main", "time", "forward", ALL))
            if i < 49:
                out += [(i, t, "resample", axis, direction, ALL) for axis, direction in MATRIX_RESAMPLE]
        else:
            out.append((i, t, "main", "time", "forward", LAST))
            if i < 49:
                out += [(i, t, "resample", "time", "forward", LAST)] * 2
    return out


def scheduler(steps: int = 50):
    from diffusers import DDPMScheduler

    sched = DDPMScheduler.from_config(ZEROSCOPE_SCHEDULER_CONFIG)
    sched.set_timesteps(steps)
    return sched


def test_zeroscope_ddpm_timesteps_are_981_to_1():
    sched = scheduler(50)
    assert [int(t) for t in sched.timesteps] == [981 - 20 * i for i in range(50)] == timesteps_for(50)
    assert sched.config.variance_type == "fixed_small" and not sched.config.clip_sample
    assert [int(t) for t in scheduler(10).timesteps] == timesteps_for(10) == [901 - 100 * i for i in range(10)]


def test_plan_for_50_steps_equals_the_official_schedule():
    plan = plan_steps(timesteps_for(50), num_views=8)
    assert all(isinstance(p, Pass) for p in plan)
    assert [tuple(p) for p in plan] == official_schedule_50()
    # The view axis only appears inside resampling, and only while the frame matrix is alive.
    assert {p.timestep for p in plan if p.axis == "view"} == {981 - 20 * i for i in range(25)}


def test_call_counts_match_the_official_loop():
    # STEREOCRAFTER_SVG_FACTS.md 2.6: 873 doubled calls on 16 frames + 1200 on 8 views = 2073;
    # 237 temporal decodes + 233 encodes = 470 VAE passes (ours skips 10 previews + view 0's decode).
    plan = plan_steps(timesteps_for(50), 8)
    counts = count_unet_videos(plan, frames=16)
    assert counts == {"time_calls": 873, "view_calls": 1200, "total": 2073, "batched_calls": 248}
    assert vae_passes(50, 8, official=True) == {"decodes": 237, "encodes": 233, "total": 470}
    assert vae_passes(50, 8) == {"decodes": 226, "encodes": 233, "total": 459}
    # svg-10: timesteps 901..1, five of them > 500 (the matrix), resampling after nine.
    assert count_unet_videos(plan_steps(timesteps_for(10), 8), frames=16) == {
        "time_calls": 5 * 8 + 5 + 5 * 3 * 8 + 4 * 2, "view_calls": 5 * 3 * 16, "total": 413, "batched_calls": 48}


def test_fewer_views_and_no_resampling():
    plan = plan_steps([901, 1], num_views=3, resample=0, last_view_resample=0)
    assert [tuple(p) for p in plan] == [(0, 901, "main", "time", "forward", (0, 1, 2)),
                                        (1, 1, "main", "time", "forward", (2,))]


@pytest.mark.parametrize("t", [981, 501, 481, 21, 1])
def test_ddpm_step_equals_diffusers_with_the_same_variance_noise(t):
    sched = scheduler(50)
    g = torch.Generator().manual_seed(3)
    sample, eps = torch.randn(2, 4, 3, 5, 6, generator=g), torch.randn(2, 4, 3, 5, 6, generator=g)
    expected = sched.step(eps, t, sample, generator=torch.Generator().manual_seed(7))
    noise = torch.randn(sample.shape, generator=torch.Generator().manual_seed(7))
    prev, x0 = ddpm_step(sched, eps, t, sample, noise)
    torch.testing.assert_close(prev, expected.prev_sample, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x0, expected.pred_original_sample, rtol=1e-5, atol=1e-5)


def test_add_noise_and_the_official_renoise_factor():
    sched = scheduler(50)
    g = torch.Generator().manual_seed(0)
    clean, noise = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    torch.testing.assert_close(add_noise(sched, clean, noise, 501), sched.add_noise(clean, noise, torch.tensor([501])))
    # The literal official loop (svg.py:313-318): alpha_cumprod *= 1 - betas[t_cur + j], j < t_next - t_cur.
    t_next, t_cur = 521, 501
    literal = 1.0
    for j in range(t_next - t_cur):
        literal *= float(1 - sched.betas[t_cur + j])
    assert renoise_factor(sched, t_next, t_cur) == pytest.approx(literal, rel=1e-6)  # float32 betas there
    # ... which is abar_{t-1} / abar_{t_prev-1}, one index below the textbook abar_t / abar_{t_prev}.
    abar = sched.alphas_cumprod.to(torch.float64)
    assert renoise_factor(sched, t_next, t_cur) == pytest.approx(float(abar[t_next - 1] / abar[t_cur - 1]), rel=1e-6)
    assert renoise_factor(sched, t_next, t_cur) != pytest.approx(float(abar[t_next] / abar[t_cur]), rel=1e-6)
