"""StereoCrafter (Zhao et al., 2024): the official video-inpainting stage on diffusers.

A fine-tuned Stable Video Diffusion U-Net with a 9-channel input (noisy latent 4 | VAE latent of
the warped right view 4 | hole mask 1) denoised with Euler over the SVD-xt-1.1 scheduler, with
classifier-free guidance 1.01 on a doubled batch. See docs/stereocrafter.md.

This module is the package's registry data and imports no torch: the variants as
:class:`~methods.meta.MethodSpec` records over the one adapter class
(:class:`methods.stereocrafter.adapter.StereoCrafter`):

* ``stereocrafter`` -- 25 steps, the paper's setting;
* ``stereocrafter-8`` -- 8 steps, the official inference script's default;
* ``stereocrafter-1`` -- 1 step (the paper's speed comparison);
* ``stereocrafter-nocfg`` -- 25 steps with guidance 1.0: the doubled batch is dropped (half the
  U-Net work). Not an official setting: an opt-in fast path reported as its own row.
"""

from __future__ import annotations

from typing import Any

from benchmark.weights import WeightSpec
from methods.meta import MethodMeta, MethodSpec

PAPER = "StereoCrafter: Diffusion-based Generation of Long and High-fidelity Stereoscopic 3D from Monocular Videos"
CITATION = "Zhao, Guo, Hu, Zhang, Xie, Zhang, Shan. StereoCrafter. arXiv:2409.07447, 2024."
OFFICIAL_CODE = "TencentARC/StereoCrafter@52c450b99c86e19ed752accf3c62251b21a12748"

#: Hugging Face ids and subfolders the official script loads (inpainting_inference.py:152-172).
UNET_HUB_ID = "TencentARC/StereoCrafter"
UNET_SUBFOLDER = "unet_diffusers"
SVD_HUB_ID = "stabilityai/stable-video-diffusion-img2vid-xt-1-1"
SVD_SUBFOLDERS = ("vae", "image_encoder", "feature_extractor", "scheduler")
UNET_ENV = "STEREOCRAFTER_WEIGHTS"
SVD_ENV = "SVD_XT_1_1_WEIGHTS"
LICENCE = ("academic, research and education use only, no commercial use (StereoCrafter code and weights, "
           "License-Code.txt / LICENSE); SVD-xt-1.1: Stability AI Community License (gated on the hub)")

HOW_TO_GET_UNET = (
    f"huggingface-cli download {UNET_HUB_ID} --include '{UNET_SUBFOLDER}/*' (licence: academic/research use "
    f"only, no commercial use), or set {UNET_ENV} to a folder holding the U-Net's config.json and weights "
    f"(or a copy of the repo with {UNET_SUBFOLDER}/)"
)
HOW_TO_GET_SVD = (
    f"accept the licence on https://huggingface.co/{SVD_HUB_ID}, then huggingface-cli download {SVD_HUB_ID} "
    + " ".join(f"--include '{s}/*'" for s in SVD_SUBFOLDERS)
    + f", or set {SVD_ENV} to a diffusers folder with {', '.join(s + '/' for s in SVD_SUBFOLDERS)}"
)
HOW_TO_GET = (f"StereoCrafter needs two downloads (academic use only): (1) the 9-channel U-Net: {HOW_TO_GET_UNET}; "
              f"(2) the SVD-xt-1.1 components: {HOW_TO_GET_SVD}")

WEIGHTS = (
    WeightSpec(
        name="stereocrafter-unet", source=UNET_HUB_ID, revision="main", env_var=UNET_ENV, filename=UNET_SUBFOLDER,
        how_to_get=HOW_TO_GET_UNET, size_bytes=3_050_000_000,
        licence="StereoCrafter licence: academic, research and education use only, no commercial use",
    ),
    WeightSpec(
        name="svd-xt-1.1", source=SVD_HUB_ID, revision="main", env_var=SVD_ENV,
        filename=",".join(SVD_SUBFOLDERS), how_to_get=HOW_TO_GET_SVD,
        licence="Stability AI Community License (gated)",
    ),
)

STEREOCRAFTER = MethodSpec(
    meta=MethodMeta(
        name="stereocrafter",
        display_name="StereoCrafter (25 steps)",
        paper=PAPER,
        citation=CITATION,
        url="https://stereocrafter.github.io/",
        licence=LICENCE,
        weights=WEIGHTS,
        native_resolution=None,
        native_frames=23,
        denoising_steps=25,
        needs_gpu=True,
        native_warp="stereocrafter",
        outside_mask="any",
        description="SVD U-Net with 9-channel input (noisy | warped latent | hole mask), Euler over the "
        "SVD-xt-1.1 Karras schedule, guidance 1.01 on a doubled batch; 23-frame chunks blended in latent space.",
    ),
    loader="methods.stereocrafter.adapter:StereoCrafter",
    loader_kwargs={"num_inference_steps": 25},
)

STEREOCRAFTER_8 = STEREOCRAFTER.variant(
    loader_kwargs={"num_inference_steps": 8}, name="stereocrafter-8", display_name="StereoCrafter (8 steps)",
    denoising_steps=8, description="StereoCrafter at 8 Euler steps, the official inference script's default.",
)

STEREOCRAFTER_1 = STEREOCRAFTER.variant(
    loader_kwargs={"num_inference_steps": 1}, name="stereocrafter-1", display_name="StereoCrafter (1 step)",
    denoising_steps=1, description="StereoCrafter at a single Euler step (the paper's speed comparison).",
)

STEREOCRAFTER_NOCFG = STEREOCRAFTER.variant(
    loader_kwargs={"num_inference_steps": 25, "guidance_scale": 1.0}, name="stereocrafter-nocfg",
    display_name="StereoCrafter (25 steps, no CFG)",
    description="Not official: StereoCrafter at 25 steps with guidance 1.0, so the doubled (unconditional) "
    "batch is dropped and each step costs half; the official guidance is 1.01.",
)

VARIANTS = (STEREOCRAFTER, STEREOCRAFTER_8, STEREOCRAFTER_1, STEREOCRAFTER_NOCFG)

__all__ = ["STEREOCRAFTER", "STEREOCRAFTER_1", "STEREOCRAFTER_8", "STEREOCRAFTER_NOCFG", "VARIANTS", "StereoCrafter"]


def __getattr__(name: str) -> Any:
    # The adapter imports torch and diffusers: load it only when the class is asked for.
    if name == "StereoCrafter":
        return STEREOCRAFTER.adapter_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
