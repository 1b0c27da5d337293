"""CLIP image preprocessing of SVD-family models (sgm's ``FrozenOpenCLIPImageEmbedder`` and
diffusers' ``StableVideoDiffusionPipeline._encode_image``).

Frames in [-1, 1] are resized *straight* to the encoder's square input (no centre crop) with a
kornia-style antialiased bicubic resize, mapped to [0, 1] and normalised with CLIP's mean and
std (OFFICIAL_CODE_FACTS.md C, "CLIP"; StereoCrafter's pipeline does the same, section F).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

#: OpenAI CLIP normalisation (RGB), used by OpenCLIP ViT-H-14 and SVD's image encoder.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _gaussian_kernel1d(size: int, sigma: float, device, dtype) -> torch.Tensor:
    # Built in float64 and cast once, so the taps do not depend on the working dtype's rounding.
    x = torch.arange(size, device=device, dtype=torch.float64) - (size - 1) / 2
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    return (kernel / kernel.sum()).to(dtype)


def resize_antialiased(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Kornia-style antialiased bicubic resize (Gaussian prefilter, align_corners=True).

    Matches sgm's CLIP preprocessing and diffusers' ``_resize_with_antialiasing``: per axis
    sigma = max((factor - 1) / 2, 0.001), an odd kernel of int(max(4 sigma, 3)) taps, reflect
    padding, separable blur, then bicubic interpolation.

    Args:
        images: float (N, C, H, W), any range.
        size: (height, width) of the output in pixels.

    Returns:
        (N, C, *size), same dtype and device.
    """
    height, width = images.shape[-2:]
    out = images
    for axis, (src, dst) in enumerate(((height, size[0]), (width, size[1]))):
        sigma = max((src / dst - 1.0) / 2.0, 0.001)
        taps = int(max(2.0 * 2 * sigma, 3))
        taps += 1 - taps % 2
        kernel = _gaussian_kernel1d(taps, sigma, images.device, images.dtype)
        pad = taps // 2
        channels = out.shape[1]
        if axis == 0:
            out = F.conv2d(F.pad(out, (0, 0, pad, pad), mode="reflect"), kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
        else:
            out = F.conv2d(F.pad(out, (pad, pad, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.interpolate(out, size=size, mode="bicubic", align_corners=True)


def clip_pixel_values(images_m11: torch.Tensor, size: int, mean: Sequence[float] = CLIP_MEAN,
                      std: Sequence[float] = CLIP_STD, dtype: torch.dtype | None = None) -> torch.Tensor:
    """CLIP encoder input of frames in [-1, 1].

    Args:
        images_m11: float (N, 3, H, W) in [-1, 1] (RGB).
        size: the encoder's square input side (``image_encoder.config.image_size``, 224 for
            ViT-H-14).
        mean, std: per-channel normalisation (the folder's ``feature_extractor`` values).
        dtype: dtype of the result (the encoder's); the resize itself always runs in float32
            because the Gaussian taps and the bicubic weights lose too much in half precision.

    Returns:
        (N, 3, size, size) normalised pixel values in ``dtype`` (default float32).
    """
    images = resize_antialiased(images_m11.float(), (size, size))
    images = (images + 1) / 2
    mean_t = torch.tensor(tuple(mean), device=images.device).view(1, 3, 1, 1)
    std_t = torch.tensor(tuple(std), device=images.device).view(1, 3, 1, 1)
    return ((images - mean_t) / std_t).to(dtype or torch.float32)


def clip_image_embeds(image_encoder, images_m11: torch.Tensor, mean: Sequence[float] = CLIP_MEAN,
                      std: Sequence[float] = CLIP_STD) -> torch.Tensor:
    """Projected CLIP image embeddings (N, projection_dim) of frames (N, 3, H, W) in [-1, 1].

    ``image_encoder`` is a transformers ``CLIPVisionModelWithProjection``; the pixel values are
    cast to its parameters' dtype.
    """
    dtype = next(image_encoder.parameters()).dtype
    pixels = clip_pixel_values(images_m11, image_encoder.config.image_size, mean, std, dtype)
    return image_encoder(pixel_values=pixels).image_embeds
