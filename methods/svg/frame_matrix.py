"""The frame matrix (N views x T frames) and SVG's mask rules, vectorised.

View ``k`` of ``N`` is the left video warped at disparity ``d * k / (N - 1)`` (SVG scales the
baseline linearly, create_frame_matrix.py:230-231): view 0 is the left video itself, fully known
(:343-345), and view N-1 is the input's own warped right view and hole mask, so the method sees
exactly the shared input. The intermediate views are warped with the warp that made the input
(the suite's shared warp, or SVG's z-buffer warp with crack clean-up in ``native`` mode, read
from ``StereoInput.params["warp"]``) and get the same hole-mask closing; all N-2 of them in one
warp call (views stacked along the frame axis).

Masks, with SVG's convention 1 = known (svg.py:103-191 @ 9466625):

1. pixel mask: known = not hole, eroded by a 3x3 rectangle (cv2.erode: the frame border does
   not erode); the known images are multiplied by it (holes black);
2. latent mask: 8x8 box mean of the eroded mask (cv2.filter2D, anchor at the kernel centre
   (4, 4), BORDER_REFLECT_101) >= 0.7, times the eroded mask, resized to the latent size with
   INTER_LINEAR (for an exact 8x reduction: the mean of the central 2x2 pixels of each 8x8
   block), keeping only values == 1;
3. soft mask: cv2.GaussianBlur 5x5 with sigma 0 (the kernel [1, 4, 6, 4, 1] / 16 in both
   directions, BORDER_REFLECT_101) of the latent mask, times the latent mask.

``tests/test_svg_frame_matrix.py`` checks 1-3 against OpenCV itself.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from benchmark.errors import StereobenchError
from benchmark.stereo.warp import close_hole_mask, dilate_mask
from benchmark.types import StereoInput

#: Official mask constants (svg.py argparse defaults at 9466625).
ERODE_SIZE = 3
LATENT_THRESHOLD = 0.7
SOFT_MASK_KERNEL = 5
LATENT_FACTOR = 8


def view_scales(num_views: int) -> list[float]:
    """Disparity scale of every view, ``k / (N - 1)`` (``np.linspace(0, max_baseline, N) / max``)."""
    if num_views < 2:
        raise StereobenchError(f"SVG needs at least 2 views (the left and the right one), got {num_views}")
    return [k / (num_views - 1) for k in range(num_views)]


def input_warp(inp: StereoInput):
    """The warp callable that made ``inp`` (``params["warp"]``, default the shared warp)."""
    from benchmark.stereo import get_warp

    return get_warp(str(inp.params.get("warp", "shared")))


def build_frame_matrix(inp: StereoInput, num_views: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """The frame matrix of ``inp``: images and hole masks of every view.

    Returns:
        (images float32 (N, T, 3, H, W) in [0, 1] with holes 0, holes bool (N, T, 1, H, W)),
        on ``inp.left``'s device. View 0 = ``inp.left`` (no hole), view N-1 = ``inp.warped`` /
        ``inp.mask``; views 1..N-2 = the input's warp at ``d * k / (N - 1)``, holes closed with
        the input's ``hole_mask_closing`` and zeroed as the stereo stage does.
    """
    scales = view_scales(num_views)
    t = inp.left.shape[0]
    images = [inp.left.to(torch.float32)]
    holes = [torch.zeros_like(inp.mask, dtype=torch.bool)]
    middle = scales[1:-1]
    if middle:
        warp = input_warp(inp)
        left = inp.left.to(torch.float32).repeat(len(middle), 1, 1, 1)
        disparity = torch.cat([inp.disparity.to(torch.float32) * s for s in middle])
        warped, hole = warp(left, disparity)
        hole = close_hole_mask(hole.bool(), int(inp.params.get("hole_mask_closing", 0) or 0))
        warped = warped.to(torch.float32).masked_fill(hole, 0.0).clamp_(0.0, 1.0)
        images += list(warped.split(t))
        holes += list(hole.split(t))
    images.append(inp.warped.to(torch.float32))
    holes.append(inp.mask.bool())
    return torch.stack(images), torch.stack(holes)


def pixel_known_mask(holes: torch.Tensor, erode_size: int = ERODE_SIZE) -> torch.Tensor:
    """SVG's pixel mask, float {0, 1} of ``holes``' shape ((..., 1, H, W)): known = not hole,
    eroded by an ``erode_size`` square (the border does not erode, as cv2.erode)."""
    shape = holes.shape
    flat = holes.reshape(-1, 1, *shape[-2:]).bool()
    known = ~dilate_mask(flat, erode_size)
    return known.to(torch.float32).reshape(shape)


def _reflect101_pad(x: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
    """BORDER_REFLECT_101 padding (torch's ``reflect``), repeated for pads wider than the image."""
    while left or right or top or bottom:
        h, w = x.shape[-2:]
        step = (min(left, w - 1), min(right, w - 1), min(top, h - 1), min(bottom, h - 1))
        if not any(step):  # a 1-pixel side: reflect-101 degenerates to replicate
            return F.pad(x, (left, right, top, bottom), mode="replicate")
        x = F.pad(x, step, mode="reflect")
        left, right, top, bottom = (a - b for a, b in zip((left, right, top, bottom), step, strict=True))
    return x


def latent_mask(known: torch.Tensor, threshold: float = LATENT_THRESHOLD, factor: int = LATENT_FACTOR) -> torch.Tensor:
    """SVG's binary latent mask (``create_latent_mask``) of a pixel mask.

    Args:
        known: float {0, 1} (..., 1, H, W), H and W multiples of ``factor``.

    Returns:
        float {0, 1} (..., 1, H / factor, W / factor).
    """
    shape = known.shape
    h, w = shape[-2:]
    if h % factor or w % factor:
        raise StereobenchError(f"latent mask: frame {h}x{w} is not a multiple of {factor}; pad the frames first")
    x = known.reshape(-1, 1, h, w).to(torch.float32)
    before, after = factor // 2, factor - 1 - factor // 2  # cv2.filter2D anchor = kernel centre
    counts = F.avg_pool2d(_reflect101_pad(x, before, after, before, after), factor, stride=1) * (factor * factor)
    # The box mean is count / factor^2; compare the integer count (exact, as float32 in OpenCV).
    need = math.ceil(threshold * factor * factor - 1e-9)
    reliable = (counts.round() >= need).to(torch.float32) * x
    # INTER_LINEAR at an exact 1/factor scale samples source (factor*i + factor/2 - 0.5): the mean
    # of the two central pixels per axis; == 1 only where all four are 1.
    lo, hi = factor // 2 - 1, factor // 2
    centre = reliable.reshape(-1, 1, h // factor, factor, w // factor, factor)[:, :, :, lo:hi + 1, :, lo:hi + 1]
    out = (centre.amin(dim=(3, 5)) >= 1.0).to(torch.float32)
    return out.reshape(*shape[:-2], h // factor, w // factor)


def soft_mask(mask: torch.Tensor, kernel_size: int = SOFT_MASK_KERNEL) -> torch.Tensor:
    """SVG's soft mask: cv2.GaussianBlur(mask, (k, k), 0) (BORDER_REFLECT_101) times ``mask``.

    For k = 5 OpenCV uses the fixed kernel [1, 4, 6, 4, 1] / 16; other odd k use its sigma rule
    ``0.3 * ((k - 1) / 2 - 1) + 0.8``. ``kernel_size < 1`` returns the mask unchanged.
    """
    if kernel_size < 1:
        return mask
    shape = mask.shape
    x = mask.reshape(-1, 1, *shape[-2:]).to(torch.float32)
    if kernel_size == 1:
        taps = torch.ones(1)
    elif kernel_size == 5:
        taps = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
    else:
        sigma = 0.3 * ((kernel_size - 1) / 2 - 1) + 0.8
        grid = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2
        taps = torch.exp(-grid ** 2 / (2 * sigma ** 2))
        taps = (taps / taps.sum()).to(torch.float32)
    taps = taps.to(x.device)
    r = kernel_size // 2
    padded = _reflect101_pad(x, r, r, r, r)
    blurred = F.conv2d(F.conv2d(padded, taps.view(1, 1, 1, -1)), taps.view(1, 1, -1, 1))
    return (blurred * x).reshape(shape)
