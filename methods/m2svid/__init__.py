"""M2SVid (Shvetsova et al.): end-to-end inpainting and refinement for monocular-to-stereo video.

A diffusers re-implementation of the official model: SVD's spatio-temporal U-Net with a
13-channel input, full attention for disoccluded tokens, single-step inference. See
docs/m2svid.md.

This module is the package's registry data and imports no torch: the two official variants as
:class:`~methods.meta.MethodSpec` records over the one adapter class
(:class:`methods.m2svid.adapter.M2SVid`), and the CLI sub-commands the package adds
(``stereobench weights convert-m2svid``, ``stereobench train m2svid``).
"""

from __future__ import annotations

from typing import Any

from benchmark.registry import CliHook
from benchmark.weights import WeightSpec, weights_root
from methods.meta import MethodSpec, MethodMeta

PAPER = "M2SVid: End-to-End Inpainting and Refinement for Monocular-to-Stereo Video Conversion"
CITATION = "Shvetsova, Bhat, Truong, Kuehne, Tombari. M2SVid. 2025."
GCS = "https://storage.googleapis.com/gresearch/m2svid"
OFFICIAL_CODE = "m2svid@11b0133093d6abfcc6ff953890edf05457975318"


def _spec(filename: str, size_gb: float, variant_dir: str, env_var: str) -> WeightSpec:
    return WeightSpec(
        name="m2svid-checkpoint",
        source=f"{GCS}/{filename}",
        revision=f"file linked by {OFFICIAL_CODE} (no checksum published; the converter records its sha256)",
        env_var=env_var,
        filename=filename,
        size_bytes=int(size_gb * 1e9),
        licence="Apache-2.0",
        how_to_get=(
            f"wget {GCS}/{filename} && stereobench weights convert-m2svid {filename} "
            f"--out {weights_root() / variant_dir}  (VAE/CLIP come from the checkpoint; if it lacks them add "
            f"--svd-source stabilityai/stable-video-diffusion-img2vid-xt from your Hugging Face cache); "
            f"or set {env_var} to a converted folder"
        ),
    )


M2SVID = MethodSpec(
    meta=MethodMeta(
        name="m2svid",
        display_name="M2SVid",
        paper=PAPER,
        citation=CITATION,
        url="https://m2svid.github.io/",
        licence="Apache-2.0",
        weights=(_spec("m2svid_weights.pt", 4.64, "m2svid", "M2SVID_WEIGHTS"),),
        native_resolution=(512, 512),
        native_frames=16,
        denoising_steps=1,
        needs_gpu=True,
        native_warp="m2svid",
        outside_mask="any",
        description="SVD U-Net with 13-channel input (left, warped, mask), full attention for disoccluded "
        "tokens, single-step inference; frames 16 (evaluation) / up to 25 per call.",
    ),
    loader="methods.m2svid.adapter:M2SVid",
    cli_hooks=(
        CliHook("weights", "convert-m2svid", "methods.m2svid.cli:CONVERT",
                help="convert the official M2SVid checkpoint to diffusers' layout"),
        CliHook("train", "m2svid", "methods.m2svid.cli:TRAIN",
                help="train M2SVid end to end (paper objective; accelerate for multi-GPU)"),
    ),
)

#: The official ablation without full attention: the same adapter, its own weights and default.
M2SVID_NO_FULL_ATTENTION = M2SVID.variant(
    loader_kwargs={"full_attention": False},
    name="m2svid-no-full-attention",
    display_name="M2SVid (no full attention)",
    weights=(_spec("m2svid_no_full_atten_weights.pt", 4.6, "m2svid-no-full-attention",
                   "M2SVID_NO_FULL_ATTENTION_WEIGHTS"),),
    description="M2SVid without full attention for disoccluded tokens (official ablation weights).",
)

VARIANTS = (M2SVID, M2SVID_NO_FULL_ATTENTION)

__all__ = ["M2SVID", "M2SVID_NO_FULL_ATTENTION", "VARIANTS", "M2SVid", "M2SVidNoFullAttention"]


def __getattr__(name: str) -> Any:
    # The adapter imports torch and diffusers: load it only when a class is asked for.
    if name == "M2SVid":
        return M2SVID.adapter_class()
    if name == "M2SVidNoFullAttention":  # the variant's bound class (kept for existing imports)
        return M2SVID_NO_FULL_ATTENTION.adapter_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
