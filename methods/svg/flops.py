"""SVG's work per clip: U-Net calls, VAE passes and FLOPs, counted on the meta device.

The plan (:func:`methods.svg.schedule.plan_steps`) gives the calls; ``FlopCounterMode`` on the
meta device (no weights, no memory, exact shapes; matmul, convolution and SDPA, 2 FLOPs per
multiply-add) gives the cost of one doubled U-Net call on a video of T frames and on a
view-"video" of N frames, of one VAE encode and one temporal decode of T frames, and of the
text encoder.

VAE passes: the official code decodes and re-encodes every denoised view at every step
(re-injection), encodes the N views once at the start, decodes view N-1's composite every 5
steps for its preview JPEGs and decodes views 0 and N-1 at the end (470 passes for 50 steps,
16 frames); this adapter does the same work minus the previews and view 0's decode, which do
not change the output.

Run: ``python -m methods.svg.flops`` (16 frames at 512x512, 50 steps, 8 views).
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from methods.svg.schedule import count_unet_videos, plan_steps


def _count(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def timesteps_for(steps: int, num_train: int = 1000, offset: int = 1) -> list[int]:
    """DDPM ``leading`` timesteps with ``steps_offset`` (zeroscope): noisiest first."""
    ratio = num_train // steps
    return [i * ratio + offset for i in range(steps)][::-1]


def vae_passes(steps: int = 50, views: int = 8, official: bool = False) -> dict[str, int]:
    """VAE videos (of T frames) encoded and decoded per clip, from the plan."""
    plan = plan_steps(timesteps_for(steps), views)
    denoised = sum(len(p.views) for p in plan if p.stage == "main")  # re-injection: one decode + encode each
    decodes = denoised + 1  # + the final decode of the last view
    if official:
        decodes += len(range(0, steps, 5)) + 1  # previews every 5 steps, and view 0 at the end
    encodes = denoised + views  # + the initial encode of every view
    return {"decodes": decodes, "encodes": encodes, "total": decodes + encodes}


def per_call_tflops(frames: int = 16, height: int = 512, width: int = 512, views: int = 8) -> dict[str, float]:
    """TFLOPs of one doubled U-Net call on T frames and on N view-frames, one VAE encode and one
    temporal decode of T frames, and one text-encoder call on 2 prompts."""
    from methods.svg.configs import real_modules

    h, w = height // 8, width // 8
    unet, text, vae = real_modules("meta")
    with torch.device("meta"):
        context = torch.zeros(2, 77, 1024)
        video_t = torch.zeros(2, 4, frames, h, w)
        video_v = torch.zeros(2, 4, views, h, w)
        images = torch.zeros(frames, 3, height, width)
        latents = torch.zeros(frames, 4, h, w)
        ids = torch.zeros(2, 77, dtype=torch.long)
        t = torch.tensor(981)
    with torch.no_grad():
        result = {
            "unet_time_call": _count(lambda: unet(video_t, t, encoder_hidden_states=context).sample),
            "unet_view_call": _count(lambda: unet(video_v, t, encoder_hidden_states=context).sample),
            "vae_encode": _count(lambda: vae.encode(images).latent_dist.mean),
            "vae_decode": _count(lambda: vae.decode(latents, num_frames=frames).sample),
            "text_encoder": _count(lambda: text(ids)[0]),
        }
    return {k: v / 1e12 for k, v in result.items()}


def clip_cost(steps: int = 50, frames: int = 16, height: int = 512, width: int = 512, views: int = 8,
              per_call: dict[str, float] | None = None) -> dict[str, float]:
    """Calls and TFLOPs of one clip (see the module docstring)."""
    plan = plan_steps(timesteps_for(steps), views)
    calls = count_unet_videos(plan, frames)
    per_call = per_call or per_call_tflops(frames, height, width, views)
    vae = vae_passes(steps, views)
    unet = calls["time_calls"] * per_call["unet_time_call"] + calls["view_calls"] * per_call["unet_view_call"]
    vae_tf = vae["decodes"] * per_call["vae_decode"] + vae["encodes"] * per_call["vae_encode"]
    return {
        "unet_videos": calls["total"], "unet_time_videos": calls["time_calls"], "unet_view_videos": calls["view_calls"],
        "unet_batched_calls": calls["batched_calls"], "vae_decodes": vae["decodes"], "vae_encodes": vae["encodes"],
        "unet_tflops": unet, "vae_tflops": vae_tf, "text_tflops": per_call["text_encoder"],
        "total_tflops": unet + vae_tf + per_call["text_encoder"],
    }


if __name__ == "__main__":  # pragma: no cover
    per_call = per_call_tflops()
    print("per call TFLOPs:", {k: round(v, 2) for k, v in per_call.items()})
    for steps in (50, 10):
        cost = clip_cost(steps, per_call=per_call)
        print(f"{steps} steps:", {k: round(v, 1) if isinstance(v, float) else v for k, v in cost.items()})
    print("official VAE passes (50 steps):", vae_passes(50, official=True))
