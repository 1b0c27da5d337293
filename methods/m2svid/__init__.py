"""M2SVid (Shvetsova et al.): end-to-end inpainting and refinement for monocular-to-stereo video.

A diffusers re-implementation of the official model: SVD's spatio-temporal U-Net with a
13-channel input, full attention for disoccluded tokens, single-step inference. See
docs/m2svid.md.
"""

from methods.m2svid.adapter import M2SVid, M2SVidNoFullAttention

__all__ = ["M2SVid", "M2SVidNoFullAttention"]
