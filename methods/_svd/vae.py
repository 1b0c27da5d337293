"""VAE plumbing of SVD-family models: encode in frame batches, temporal decode in frame batches,
and a stand-alone KL encoder.

* Encoding is per frame (SD KL-f8 encoder), so batching frames does not change the result
  beyond float rounding (the conv kernels' summation order depends on the batch size: ~1e-6
  in float32); ``chunk_size`` only bounds memory.
* SVD's temporal decoder mixes frames inside one call: decoding in chunks of ``chunk_size``
  frames gives a *different* result from one call over all frames. M2SVid decodes a whole
  window at once (OFFICIAL_CODE_FACTS.md A, H8); the official StereoCrafter decodes chunks of 2
  (section F). The chunk size is therefore a parameter of :func:`decode_latents`, not a
  hidden memory knob.
* Latents of the *generated* video are scaled by ``VAE_SCALING_FACTOR`` (0.18215): divide
  before decoding. Conditioning latents (M2SVid, StereoCrafter) are *not* scaled.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution, Encoder
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

#: Latent scale of SD / SVD's KL-f8 VAE.
VAE_SCALING_FACTOR = 0.18215


class KLEncoder(ModelMixin, ConfigMixin):
    """The encoder half of a KL VAE (SD KL-f8 layout), optionally with its ``quant_conv``.

    Interchangeable with ``AutoencoderKLTemporalDecoder`` wherever only ``encode`` is called
    (``encode(x).latent_dist``). Uses: M2SVid's warped-view conditioning encoder when it differs
    from the left-view one, and its training-target encoder (sgm's first stage: no quant_conv).
    Saved and loaded as a diffusers model folder (``save_pretrained`` / ``from_pretrained``).
    """

    @register_to_config
    def __init__(self, in_channels: int = 3, latent_channels: int = 4,
                 down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",) * 4,
                 block_out_channels: tuple[int, ...] = (128, 256, 512, 512), layers_per_block: int = 2,
                 use_quant_conv: bool = True):
        super().__init__()
        self.encoder = Encoder(in_channels=in_channels, out_channels=latent_channels, down_block_types=down_block_types,
                               block_out_channels=block_out_channels, layers_per_block=layers_per_block, double_z=True)
        self.quant_conv = nn.Conv2d(2 * latent_channels, 2 * latent_channels, 1) if use_quant_conv else None

    @classmethod
    def from_vae(cls, vae, use_quant_conv: bool = True) -> "KLEncoder":
        """A copy of ``vae``'s encoder (and quant_conv when ``use_quant_conv``), same dtype and device."""
        config = vae.config
        module = cls(in_channels=config.in_channels, latent_channels=config.latent_channels,
                     down_block_types=tuple(config.down_block_types), block_out_channels=tuple(config.block_out_channels),
                     layers_per_block=config.layers_per_block, use_quant_conv=use_quant_conv)
        state = {f"encoder.{k}": v for k, v in vae.encoder.state_dict().items()}
        if use_quant_conv:
            state.update({f"quant_conv.{k}": v for k, v in vae.quant_conv.state_dict().items()})
        module.load_state_dict(state, strict=True)
        parameter = next(vae.parameters())
        return module.to(device=parameter.device, dtype=parameter.dtype)

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        """Posterior of (N, 3, H, W) images in [-1, 1]: ``.latent_dist`` over (N, latent, H/f, W/f)."""
        moments = self.encoder(x)
        if self.quant_conv is not None:
            moments = self.quant_conv(moments)
        posterior = DiagonalGaussianDistribution(moments)
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)


def _module_dtype(module) -> torch.dtype:
    return next(module.parameters()).dtype


def encode_posterior(vae, video_m11: torch.Tensor, chunk_size: int = 8, use_quant_conv: bool = True) -> DiagonalGaussianDistribution:
    """Posterior over every frame of ``video_m11``, encoded ``chunk_size`` frames at a time.

    Args:
        vae: anything with ``encoder`` (+ ``quant_conv``) and ``encode`` (diffusers
            ``AutoencoderKL*`` or :class:`KLEncoder`).
        video_m11: float (T, 3, H, W) in [-1, 1]; cast to the VAE's dtype.
        chunk_size: frames per encoder call (>= 1); the encoder is per frame, so the result
            depends on it only through float rounding.
        use_quant_conv: False skips ``quant_conv`` (sgm's first-stage encoder has none).

    Returns:
        DiagonalGaussianDistribution over (T, latent, H/f, W/f) (``.mode()``, ``.mean``,
        ``.std``; draw with :func:`sample_posterior` for a generator on any device).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    dtype = _module_dtype(vae)
    moments = []
    for batch in video_m11.split(chunk_size):
        batch = batch.to(dtype)
        if use_quant_conv:
            moments.append(vae.encode(batch).latent_dist.parameters)
        else:
            moments.append(vae.encoder(batch))
    return DiagonalGaussianDistribution(torch.cat(moments))


def encode_video(vae, video_m11: torch.Tensor, chunk_size: int = 8, use_quant_conv: bool = True) -> torch.Tensor:
    """Posterior mode (T, latent, H/f, W/f), unscaled, of (T, 3, H, W) frames in [-1, 1]."""
    return encode_posterior(vae, video_m11, chunk_size, use_quant_conv).mode()


def sample_posterior(posterior: DiagonalGaussianDistribution, generator: torch.Generator | None = None) -> torch.Tensor:
    """mean + std * N(0, 1), the noise drawn on the generator's device (CPU by default) and then
    moved, so a CPU generator gives the same draw whatever device the VAE runs on."""
    noise = torch.randn(posterior.mean.shape, generator=generator)
    return posterior.mean + posterior.std * noise.to(posterior.mean.device, posterior.mean.dtype)


def decode_latents(vae, latents: torch.Tensor, chunk_size: int | None = None,
                   scaling_factor: float = VAE_SCALING_FACTOR) -> torch.Tensor:
    """Temporal decode of one video's scaled latents, ``chunk_size`` frames per decoder call.

    Args:
        vae: ``AutoencoderKLTemporalDecoder`` (``decode(z, num_frames=...)``).
        latents: (T, latent, h, w) generated latents (scaled by ``scaling_factor``).
        chunk_size: None decodes all T frames in one call (M2SVid, official); an int decodes
            consecutive chunks of that many frames, each as its own short video (StereoCrafter's
            official 2). The output depends on it.

    Returns:
        (T, 3, H, W) in the VAE's dtype, nominally in [-1, 1] (not clamped).
    """
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
    frames = latents.shape[0]
    z = (latents / scaling_factor).to(_module_dtype(vae))
    step = chunk_size or frames
    return torch.cat([vae.decode(part, num_frames=part.shape[0]).sample for part in z.split(step)])
