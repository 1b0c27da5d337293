"""Plumbing shared by the Stable-Video-Diffusion-based methods (M2SVid, StereoCrafter, SVG).

Each piece exists once here and each method's pipeline calls it:

* :mod:`methods._svd.clip` -- CLIP image preprocessing: the kornia-style antialiased resize of
  sgm and diffusers' SVD pipeline, the map from [-1, 1] to CLIP-normalised pixel values, and
  the image embeddings of a batch of frames;
* :mod:`methods._svd.vae` -- VAE encode in frame batches (posterior mode or sample, with or
  without ``quant_conv``), temporal decode in frame batches (the chunk size is a parameter:
  the temporal decoder's output depends on it), and :class:`KLEncoder`, a stand-alone KL
  encoder (a second conditioning encoder, a training-target encoder);
* :mod:`methods._svd.edm` -- EDM / Euler helpers: the v-prediction scalings (c_skip, c_out,
  c_in, c_noise), the loss weight, Karras sigmas, one Euler step;
* :mod:`methods._svd.folders` -- diffusers-format folder resolution (a local folder or a
  Hugging Face id already in the cache) and checking (which component subfolders and files
  exist, a one-line error naming what is missing).

Temporal windows and spatial tiles with cross-fades live in :mod:`benchmark.windows` (the
``convert`` command uses them too).
"""

from methods._svd.clip import CLIP_MEAN, CLIP_STD, clip_image_embeds, clip_pixel_values, resize_antialiased
from methods._svd.edm import edm_loss_weight, edm_v_denoise, edm_v_scalings, euler_step, karras_sigmas
from methods._svd.folders import check_folder, require_folder, resolve_folder
from methods._svd.vae import (
    VAE_SCALING_FACTOR, KLEncoder, decode_latents, encode_posterior, encode_video,
)

__all__ = [
    "CLIP_MEAN", "CLIP_STD", "VAE_SCALING_FACTOR", "KLEncoder", "check_folder", "clip_image_embeds",
    "clip_pixel_values", "decode_latents", "edm_loss_weight", "edm_v_denoise", "edm_v_scalings", "encode_posterior",
    "encode_video", "euler_step", "karras_sigmas", "require_folder", "resize_antialiased", "resolve_folder",
]
