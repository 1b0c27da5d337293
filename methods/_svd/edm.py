"""EDM / Euler helpers of SVD-family samplers (sgm's ``VScalingWithEDMcNoise``,
``EDMDiscretization`` with Karras' rho schedule, ``EulerEDMSampler``; diffusers'
``EulerDiscreteScheduler`` with ``use_karras_sigmas``, v-prediction and continuous timesteps).

Definitions (Karras et al. 2022, "Elucidating the design space", with sgm's v-parametrisation):

* the denoiser D(x; sigma) = c_skip x + c_out F(c_in x, c_noise), with
  c_skip = 1 / (sigma^2 + 1), c_out = -sigma / sqrt(sigma^2 + 1), c_in = 1 / sqrt(sigma^2 + 1),
  c_noise = 0.25 ln sigma;
* the loss weight of that parametrisation, w = (sigma^2 + 1) / sigma^2 (sgm's ``VWeighting``);
* Karras sigmas sigma_i = (sigma_max^(1/rho) + i / (n - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,
  i = 0..n-1, decreasing from sigma_max to sigma_min;
* one Euler step of the probability-flow ODE from sigma to sigma_next:
  x + (sigma_next - sigma) (x - D) / sigma.

Sigmas are plain noise levels (standard deviations in latent units), not timesteps.
"""

from __future__ import annotations

import math

import torch


def edm_v_scalings(sigma: float) -> tuple[float, float, float, float]:
    """(c_skip, c_out, c_in, c_noise) of sgm's VScalingWithEDMcNoise at noise level ``sigma`` > 0."""
    return 1.0 / (sigma**2 + 1), -sigma / math.sqrt(sigma**2 + 1), 1.0 / math.sqrt(sigma**2 + 1), 0.25 * math.log(sigma)


def edm_loss_weight(sigma: float) -> float:
    """sgm's VWeighting: (sigma^2 + 1) / sigma^2, the loss weight that makes the v-target unit-scaled."""
    return (sigma**2 + 1) / sigma**2


def edm_v_denoise(model_output: torch.Tensor, sample: torch.Tensor, sigma: float) -> torch.Tensor:
    """D(x; sigma) = c_skip x + c_out F from a v-prediction ``model_output`` F at input ``sample`` x.

    Both tensors share a shape; the result has it too (the predicted clean latent).
    """
    c_skip, c_out, _, _ = edm_v_scalings(sigma)
    return c_skip * sample + c_out * model_output


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras' noise levels, float64 (steps,), from ``sigma_max`` down to ``sigma_min``.

    The closing 0 that samplers append is not included. ``steps == 1`` gives [sigma_max] (the
    single-step case of M2SVid's trailing EDM discretisation).
    """
    if steps < 1:
        raise ValueError(f"karras_sigmas needs steps >= 1, got {steps}")
    if not 0 < sigma_min <= sigma_max:
        raise ValueError(f"karras_sigmas needs 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
    if steps == 1:
        return torch.tensor([float(sigma_max)], dtype=torch.float64)
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    low, high = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (high + ramp * (low - high)) ** rho


def euler_step(sample: torch.Tensor, denoised: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """One Euler step of the EDM ODE: x + (sigma_next - sigma) (x - D) / sigma (no churn).

    sample: x at ``sigma``; denoised: D(x; sigma), same shape. From sigma to 0 this returns D.
    """
    derivative = (sample - denoised) / sigma
    return sample + (sigma_next - sigma) * derivative
