"""M2SVid tiny-model reference: the recipe behind ``m2svid_reference.safetensors``.

The tensors were computed once with the code *before* the SVD plumbing and the windows moved
out of ``methods/m2svid/pipeline.py`` (commit f9990fd, float32, CPU), so that the refactored
code can be compared with them (tests/test_m2svid_pipeline.py, max abs difference <= 1e-6;
float results may differ in the last bit across CPUs, so the outputs are stored, not hashed).

Only API that exists both before and after the move is used here: ``tiny_components``,
``M2SVidPipeline``, ``InferenceOptions`` and the pipeline's methods. The inputs are stored in
the file too, so a later change of the test scene helpers cannot move the reference.

Regenerate (only when the M2SVid *behaviour* is meant to change, and say why in the commit)::

    PYTHONPATH=<checkout> python tests/data/m2svid_reference.py
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
TENSORS = HERE / "m2svid_reference.safetensors"
RECIPE = HERE / "m2svid_reference.json"

#: Exact inputs and options (also written to m2svid_reference.json).
SPEC = {
    "model": "methods.m2svid.pipeline.tiny_components(seed=0), float32, CPU",
    "scene": "tests.method_tester.make_layered_scene(4, 32, 30, foreground_disparity=5, velocity=-2) "
             "(left, warped, mask stored as input_*)",
    "fps": 12.0,
    "seed": 7,
    "windowed_options": {"chunk_frames": 3, "temporal_overlap": 1, "tile_size": 24, "tile_overlap": 8},
    "single_options": {},  # one window of all frames, the padded frame in one tile (full attention only)
    "vae": "pipe.encode_video(input_left * 2 - 1) (posterior mode, encode_chunk_size 8), "
           "pipe.decode(vae_mode) with decode_chunk_size None and 2",
    "clip": "pixel_values reaching the image encoder from pipe.clip_tokens(input_left * 2 - 1), and its output",
    "latent_mask": "pipe.latent_mask(input_mask)",
    "train": "methods.m2svid.train.m2svid_loss(pipe, batch, generator=Generator().manual_seed(3)) parts "
             "latent_l2 and l1, batch = the first 3 frames, mask = input_mask dilated 3x3, fps 12",
}


def make_inputs() -> dict[str, torch.Tensor]:
    """left, warped float32 (4, 3, 32, 30) in [0, 1]; mask bool (4, 1, 32, 30)."""
    from tests.method_tester import make_layered_scene

    inp, _ = make_layered_scene(4, 32, 30, foreground_disparity=5, velocity=-2)
    return {"input_left": inp.left.float().contiguous(), "input_warped": inp.warped.float().contiguous(),
            "input_mask": inp.mask.bool().contiguous()}


def compute(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every reference output for ``inputs`` (as :func:`make_inputs` returns, or read back)."""
    from methods.m2svid.pipeline import InferenceOptions, M2SVidPipeline, tiny_components
    from methods.m2svid.train import m2svid_loss

    left, warped, mask = inputs["input_left"], inputs["input_warped"], inputs["input_mask"]
    fps, seed = SPEC["fps"], SPEC["seed"]
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for attention in (True, False):
            unet, vae, encoder = tiny_components(seed=0)
            unet.full_attention = attention
            suffix = "full" if attention else "plain"
            pipe = M2SVidPipeline(unet, vae, encoder, options=InferenceOptions(**SPEC["windowed_options"]))
            out[f"windowed_{suffix}"] = pipe(left, warped, mask, fps=fps, seed=seed)
            if attention:  # one window, padding only (2 frames of the same model)
                pipe.options = InferenceOptions(**SPEC["single_options"])
                out["single_full"] = pipe(left, warped, mask, fps=fps, seed=seed)

        pipe = M2SVidPipeline(*tiny_components(seed=0))
        latents = pipe.encode_video(left * 2 - 1)
        out["vae_mode"] = latents
        out["vae_decode_whole"] = pipe.decode(latents)
        pipe.options = InferenceOptions(decode_chunk_size=2)
        out["vae_decode_chunk2"] = pipe.decode(latents)
        seen = {}
        hook = pipe.image_encoder.register_forward_pre_hook(
            lambda module, args, kwargs: seen.__setitem__("pixels", kwargs["pixel_values"].clone()), with_kwargs=True)
        out["clip_embeds"] = pipe.clip_tokens(left * 2 - 1)
        hook.remove()
        out["clip_pixels"] = seen["pixels"]
        out["latent_mask"] = pipe.latent_mask(mask)

    pipe = M2SVidPipeline(*tiny_components(seed=0))
    dilated = (torch.nn.functional.max_pool2d(mask[:3].float(), 3, 1, 1) > 0.5).float()
    batch = {"left": left[None, :3], "warped": warped[None, :3], "mask": dilated[None],
             "right": torch.flip(left[None, :3], dims=[-1]), "fps": torch.tensor([fps])}
    with torch.no_grad():
        parts = m2svid_loss(pipe, batch, generator=torch.Generator().manual_seed(3))[1]
    out["train_latent_l2"] = torch.tensor([parts["latent_l2"]], dtype=torch.float64)
    out["train_l1"] = torch.tensor([parts["l1"]], dtype=torch.float64)
    return {k: v.detach().float().contiguous() if v.dtype != torch.float64 else v.contiguous() for k, v in out.items()}


def load() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(TENSORS)


def main() -> None:
    from safetensors.torch import save_file

    torch.set_num_threads(2)
    inputs = make_inputs()
    outputs = compute(inputs)
    save_file({**inputs, **outputs}, TENSORS)
    RECIPE.write_text(json.dumps({**SPEC, "tensors": {k: list(v.shape) for k, v in {**inputs, **outputs}.items()}},
                                 indent=2) + "\n")
    print(f"wrote {TENSORS} ({TENSORS.stat().st_size} bytes) and {RECIPE}")


if __name__ == "__main__":
    main()
