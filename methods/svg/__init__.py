"""SVG (Dai et al.): stereoscopic video generation by denoising a frame matrix, training-free.

A re-implementation of the official method (daipengwa/Stereoscopic-Video-Generation-via-
Denoising-Frame-Matrix @ 9466625, Apache-2.0; facts with file:line in docs/svg.md): a frame
matrix of N virtual views x T frames is built by warping the left video at linearly scaled
disparity; the frozen text-to-video U-Net of ``cerspense/zeroscope_v2_576w`` denoises it along
time and along the view axis with RePaint-style resampling of the known regions, the SVD VAE of
``stabilityai/stable-video-diffusion-img2vid-xt`` encodes and decodes, and the right view is the
decode of the last view.

This module is the package's registry data and imports no torch: the method and its quick-look
variant as :class:`~methods.meta.MethodSpec` records over one adapter class
(:class:`methods.svg.adapter.SVG`).
"""

from __future__ import annotations

from typing import Any

from benchmark.weights import WeightSpec
from methods.meta import MethodMeta, MethodSpec

PAPER = "SVG: 3D Stereoscopic Video Generation via Denoising Frame Matrix"
CITATION = ("Dai, Tan, Xu, Futschik, Du, Fanello, Qi, Zhang. SVG: 3D Stereoscopic Video Generation via "
            "Denoising Frame Matrix. arXiv:2407.00367.")
OFFICIAL_CODE = "daipengwa/Stereoscopic-Video-Generation-via-Denoising-Frame-Matrix@946662518185716f7df7a4469667f91bf81ea68c"

#: The frozen text-to-video model (U-Net, CLIP text encoder, tokenizer, scheduler config).
ZEROSCOPE_HUB_ID = "cerspense/zeroscope_v2_576w"
#: The VAE (encoder and temporal decoder) SVG swaps in for zeroscope's (svg.py:76-80): xt, not xt-1-1.
SVD_HUB_ID = "stabilityai/stable-video-diffusion-img2vid-xt"
ZEROSCOPE_ENV = "SVG_ZEROSCOPE_WEIGHTS"
SVD_VAE_ENV = "SVG_SVD_WEIGHTS"
#: Components read from the zeroscope folder, and from the SVD folder.
ZEROSCOPE_COMPONENTS = ("unet", "text_encoder")
ZEROSCOPE_FILES = ("tokenizer/vocab.json", "tokenizer/merges.txt", "scheduler/scheduler_config.json")

#: The official negative prompt (svg.py:46), the unconditional branch of classifier-free guidance.
NEGATIVE_PROMPT = "low-quality, blurry, flickering, ghost"
#: The neutral prompt benchmarks use when the user gives none (SVG needs a text prompt; the
#: official examples describe the clip's content). Recorded in every result's options.
DEFAULT_PROMPT = "a high-quality, sharp, natural video"

ZEROSCOPE_HOW = (f"huggingface-cli download {ZEROSCOPE_HUB_ID} --include 'unet/*' 'text_encoder/*' 'tokenizer/*' "
                 f"'scheduler/*' 'model_index.json'  (or set {ZEROSCOPE_ENV} to a local copy of that folder)")
SVD_HOW = (f"huggingface-cli download {SVD_HUB_ID} --include 'vae/*' 'model_index.json'  "
           f"(or set {SVD_VAE_ENV} to a local copy of that folder or of its vae/)")

WEIGHTS = (
    WeightSpec(name="zeroscope", source=ZEROSCOPE_HUB_ID, revision="main (the revision SVG's code loads; no commit pinned "
               "by the official code)", env_var=ZEROSCOPE_ENV, how_to_get=ZEROSCOPE_HOW, licence="CC-BY-NC-4.0",
               size_bytes=int(3.6e9)),
    WeightSpec(name="svd-vae", source=SVD_HUB_ID, filename="vae", revision="main (the revision SVG's code loads; no "
               "commit pinned by the official code)", env_var=SVD_VAE_ENV, how_to_get=SVD_HOW,
               licence="stable-video-diffusion-community (Stability AI)", size_bytes=int(0.4e9)),
)

SVG = MethodSpec(
    meta=MethodMeta(
        name="svg",
        display_name="SVG",
        paper=PAPER,
        citation=CITATION,
        url="https://daipengwa.github.io/SVG_ProjectPage/",
        licence="Apache-2.0 (code); weights: zeroscope CC-BY-NC-4.0, SVD community licence",
        weights=WEIGHTS,
        native_resolution=(320, 576),
        native_frames=16,
        denoising_steps=50,
        needs_gpu=True,
        native_warp="svg",
        outside_mask="any",
        description="Training-free: a frame matrix of 8 views x T frames from linearly scaled disparity, denoised "
        "by the frozen zeroscope text-to-video U-Net along time and views (DDPM, 50 steps, CFG 7.5, RePaint "
        "resampling, boundary re-injection), SVD VAE; the right view is the decode of the last view. "
        f"Default prompt {DEFAULT_PROMPT!r}, negative prompt {NEGATIVE_PROMPT!r} (options prompt, negative_prompt).",
    ),
    loader="methods.svg.adapter:SVG",
)

#: A quick look with 10 DDPM steps (its own leaderboard row; the schedule scales with the steps).
SVG_10 = SVG.variant(
    loader_kwargs={"steps": 10},
    name="svg-10",
    display_name="SVG (10 steps)",
    denoising_steps=10,
    description="SVG with 10 DDPM steps instead of 50 (quick look; same schedule rules).",
)

VARIANTS = (SVG, SVG_10)

__all__ = ["SVG", "SVG_10", "VARIANTS", "SVGMethod"]


def __getattr__(name: str) -> Any:
    # The adapter imports torch and diffusers: load it only when the class is asked for.
    if name == "SVGMethod":
        return SVG.adapter_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
