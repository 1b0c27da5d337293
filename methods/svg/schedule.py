"""SVG's per-step schedule as data, and the DDPM arithmetic it runs.

The plan (:func:`plan_steps`) says, for every DDPM step, which denoising passes run, in which
order, along which axis of the frame matrix and over which views; the pipeline executes it and
the tests compare it with the official schedule written out from the code (svg.py @ 9466625):

- main pass (svg.py:482-498): every view along time while ``t > frame_matrix_end`` (500), then
  the last view only;
- resampling (svg.py:261-402), after every step but the last: ``resample`` (6) passes while
  ``t >= frame_matrix_end`` (the official test is ``t < 500 -> last_view_resample``), else
  ``last_view_resample`` (2). While ``t > frame_matrix_end`` pass ``r`` runs along time for
  ``r % 4 in {0, 2}``, along the view axis 0 -> N-1 for ``r % 4 == 1`` and N-1 -> 0 for
  ``r % 4 == 3`` (time, views->, time, views<-, time, views-> for 6); afterwards the last view
  along time.

A time pass treats each view as a video of T frames (views are independent: one batched U-Net
call); a view pass treats each frame index as a "video" of N views (frames are independent).

DDPM (zeroscope's DDIM-configured scheduler read into ``DDPMScheduler``: epsilon prediction,
``fixed_small`` variance, no clipping, ``leading`` spacing with ``steps_offset`` 1, so 50 steps
are 981, 961, ..., 1). :func:`ddpm_step` is the scheduler's ``step`` with the variance noise
passed in, so that batched and one-at-a-time passes can consume the same draws;
``tests/test_svg_schedule.py`` checks it against ``DDPMScheduler.step``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

#: Official constants (svg.py argparse defaults at 9466625).
FRAME_MATRIX_END = 500
RESAMPLE = 6
LAST_VIEW_RESAMPLE = 2


class Pass(NamedTuple):
    """One denoising pass of the plan.

    Attributes:
        step: index of the DDPM step (0 = the noisiest).
        timestep: the DDPM timestep the U-Net is called at (the step's ``t``).
        stage: ``"main"`` (the step itself) or ``"resample"`` (a RePaint repetition at ``t``).
        axis: ``"time"`` (each view is a video of T frames) or ``"view"`` (each frame index is
            a video of the views).
        direction: ``"forward"`` (views in order 0..N-1; always for time passes) or
            ``"reverse"`` (the view axis flipped before the U-Net, the prediction flipped back).
        views: the views this pass denoises (a view pass always covers all of them).
    """

    step: int
    timestep: int
    stage: str
    axis: str
    direction: str
    views: tuple[int, ...]


def plan_steps(timesteps: list[int], num_views: int = 8, frame_matrix_end: int = FRAME_MATRIX_END,
               resample: int = RESAMPLE, last_view_resample: int = LAST_VIEW_RESAMPLE) -> list[Pass]:
    """Every pass of a run, in execution order (see the module docstring for the rules).

    Args:
        timesteps: the scheduler's timesteps, noisiest first (``scheduler.timesteps``).
        num_views: N, views of the frame matrix; the last one (N-1) is the output.
    """
    every = tuple(range(num_views))
    last = (num_views - 1,)
    plan: list[Pass] = []
    for i, t in enumerate(int(x) for x in timesteps):
        matrix = t > frame_matrix_end
        plan.append(Pass(i, t, "main", "time", "forward", every if matrix else last))
        if i + 1 == len(timesteps):
            break  # no resampling after the last step
        repeats = last_view_resample if t < frame_matrix_end else resample
        for r in range(repeats):
            if not matrix:
                plan.append(Pass(i, t, "resample", "time", "forward", last))
            elif r % 4 in (0, 2):
                plan.append(Pass(i, t, "resample", "time", "forward", every))
            else:
                plan.append(Pass(i, t, "resample", "view", "forward" if r % 4 == 1 else "reverse", every))
    return plan


def count_unet_videos(plan: list[Pass], frames: int) -> dict[str, int]:
    """Doubled (CFG) U-Net calls of the official one-video-at-a-time loop: a time pass is one
    call per view (T frames each), a view pass one call per frame (N "frames" each)."""
    time_calls = sum(len(p.views) for p in plan if p.axis == "time")
    view_calls = sum(frames for p in plan if p.axis == "view")
    return {"time_calls": time_calls, "view_calls": view_calls, "total": time_calls + view_calls,
            "batched_calls": len(plan)}


# -- DDPM arithmetic ----------------------------------------------------------------------------

def previous_timestep(scheduler, t: int) -> int:
    """``DDPMScheduler.previous_timestep`` for a scheduler with ``num_inference_steps`` set
    (``t - num_train_timesteps // num_inference_steps``; may be negative at the last step)."""
    return int(t) - scheduler.config.num_train_timesteps // scheduler.num_inference_steps


def _alpha_prod(scheduler, t: int) -> float:
    return float(scheduler.alphas_cumprod[t]) if t >= 0 else 1.0


def ddpm_step(scheduler, eps: torch.Tensor, t: int, sample: torch.Tensor,
              noise: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDPM step x_t -> x_{t_prev} for epsilon prediction, ``fixed_small`` variance and no
    clipping (zeroscope's configuration), with the variance noise given.

    Args:
        scheduler: a ``DDPMScheduler`` after ``set_timesteps`` (its ``alphas_cumprod``).
        eps: predicted noise, same shape as ``sample``.
        noise: standard normal noise of ``sample``'s shape for the variance term (None = 0).

    Returns:
        (prev_sample, pred_original_sample), both in ``sample``'s dtype.
    """
    prev_t = previous_timestep(scheduler, t)
    a_t, a_prev = _alpha_prod(scheduler, t), _alpha_prod(scheduler, prev_t)
    beta_t, beta_prev = 1.0 - a_t, 1.0 - a_prev
    current_alpha = a_t / a_prev
    current_beta = 1.0 - current_alpha
    x0 = (sample - beta_t ** 0.5 * eps) / a_t ** 0.5
    mean = (a_prev ** 0.5 * current_beta / beta_t) * x0 + (current_alpha ** 0.5 * beta_prev / beta_t) * sample
    if t > 0 and noise is not None:
        variance = max(beta_prev / beta_t * current_beta, 1e-20)
        mean = mean + variance ** 0.5 * noise
    return mean, x0


def add_noise(scheduler, clean: torch.Tensor, noise: torch.Tensor, t: int) -> torch.Tensor:
    """q(x_t | x_0): ``sqrt(abar_t) x0 + sqrt(1 - abar_t) noise`` (``scheduler.add_noise``)."""
    a_t = _alpha_prod(scheduler, int(t))
    return a_t ** 0.5 * clean + (1.0 - a_t) ** 0.5 * noise


def renoise_factor(scheduler, t: int, t_prev: int) -> float:
    """The official re-noising factor from level ``t_prev`` back to ``t``:
    ``prod_{k = t_prev}^{t - 1} (1 - beta_k)`` (svg.py:313-318; note the index range, one below
    the textbook ``abar_t / abar_{t_prev}``)."""
    betas = scheduler.betas[int(t_prev):int(t)].to(torch.float64)
    return float(torch.prod(1.0 - betas))
