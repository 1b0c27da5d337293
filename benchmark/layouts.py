"""Stereo layouts: pack a left and a right video into one frame for a headset, a 3-D TV or glasses.

Pure tensor functions (torch only; ground floor of the harness), used by ``stereobench convert``
and by the study app (side-by-side packing for VR trials, anaglyph previews). Every function takes
float videos (T, 3, H, W) (or single frames (3, H, W)) in [0, 1] and returns the same layout.

Layouts (``LAYOUTS``; the geometry follows iw3, nagadomi/nunif ``postprocess_image``):

==================  =========================================================  ==================
name                frame                                                       iw3 suffix
==================  =========================================================  ==================
``full-sbs``        left | right, (H, 2W)                                       ``_LRF_Full_SBS``
``half-sbs``        left | right, each eye squeezed to W // 2, (H, 2 (W // 2))  ``_LR``
``full-tb``         left over right, (2H, W)                                    ``_TBF_fulltb``
``half-tb``         left over right, each eye squeezed to H // 2                ``_TB``
``cross-eyed``      right | left (free viewing, eyes crossed), (H, 2W)          ``_RLF_cross``
``anaglyph-dubois`` red-cyan, Dubois least-squares matrices in linear RGB       ``_redcyan_dubois``
``anaglyph-color``  red-cyan, the simple one: R from the left eye, G and B from
                    the right eye                                               ``_redcyan_color``
``anaglyph-gray``   red-cyan from the BT.601 luma of each eye                   ``_redcyan_gray``
``anaglyph-half-color``  R = left luma, G and B from the right eye              ``_redcyan_half-color``
``right-only``      the right view alone, (H, W)                                ``_R``
==================  =========================================================  ==================

Squeezing (half layouts) is a bicubic, antialiased resize of each eye, clamped to [0, 1], as iw3
does. Dubois is applied in linear light: both eyes are decoded from sRGB, each eye's 3x3 matrix is
applied and clipped to [0, 1] per output channel, the two are summed, clipped and encoded back to
sRGB (Dubois' published matrices for red-cyan glasses; iw3's ``dubois`` type).

File names (:func:`output_name`): ``naming="iw3"`` gives iw3's suffixes above (players that read
iw3's names, DeoVR/HereSphere/Skybox all recognise ``LR``/``SBS``/``TB`` in them);
``naming="skybox"`` and ``naming="commedia"`` use those players' own keywords (Skybox: ``SBS``,
``HSBS`` for half side-by-side, ``TB``, ``HOU`` for half over-under; Commedia: ``SBS``/``TB`` plus
``Half``). Layouts a player has no keyword for (cross-eyed, anaglyph, right-only) keep iw3's
suffix under every naming.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmark.errors import StereobenchError, did_you_mean

__all__ = [
    "ANAGLYPH_TYPES", "LAYOUTS", "NAMINGS", "Layout", "anaglyph", "cross_eyed", "get_layout", "layout_size",
    "output_name", "pack", "side_by_side", "squeeze", "top_bottom",
]

NAMINGS = ("iw3", "skybox", "commedia")

#: Dubois' red-cyan matrices (rows = output R, G, B; columns = input R, G, B), applied in linear RGB.
DUBOIS_LEFT = ((0.437, 0.449, 0.164), (-0.062, -0.062, -0.024), (-0.048, -0.050, -0.017))
DUBOIS_RIGHT = ((-0.011, -0.032, -0.007), (0.377, 0.761, 0.009), (-0.026, -0.093, 1.234))
#: BT.601 luma weights (iw3's gray and half-color anaglyphs).
LUMA_601 = (0.299, 0.587, 0.114)
ANAGLYPH_TYPES = ("dubois", "color", "gray", "half-color")


@dataclass(frozen=True)
class Layout:
    """One stereo layout: how the two eyes share a frame and how players recognise the file."""

    name: str
    description: str
    suffix: str  # iw3's file-name suffix
    skybox: str | None = None  # Skybox keyword suffix (None: keep iw3's)
    commedia: str | None = None  # Commedia keyword suffix (None: keep iw3's)
    packing: str | None = None  # "sbs" or "tb": what an H.264 frame-packing SEI would declare

    def suffix_for(self, naming: str = "iw3") -> str:
        if naming not in NAMINGS:
            raise did_you_mean(str(naming), NAMINGS, "file naming")
        return {"iw3": self.suffix, "skybox": self.skybox, "commedia": self.commedia}[naming] or self.suffix


LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (
    Layout("full-sbs", "full side-by-side: left | right at full width each", "_LRF_Full_SBS", "_SBS", "_SBS", "sbs"),
    Layout("half-sbs", "half side-by-side: each eye squeezed to half width", "_LR", "_HSBS", "_SBS_Half", "sbs"),
    Layout("full-tb", "full top-bottom: left over right at full height each", "_TBF_fulltb", "_TB", "_TB", "tb"),
    Layout("half-tb", "half top-bottom: each eye squeezed to half height", "_TB", "_HOU", "_TB_Half", "tb"),
    Layout("cross-eyed", "cross-eyed side-by-side: right | left, for free viewing", "_RLF_cross"),
    Layout("anaglyph-dubois", "red-cyan anaglyph, Dubois matrices in linear RGB", "_redcyan_dubois"),
    Layout("anaglyph-color", "red-cyan anaglyph, simple: R from the left eye, G and B from the right",
           "_redcyan_color"),
    Layout("anaglyph-gray", "red-cyan anaglyph from each eye's luma", "_redcyan_gray"),
    Layout("anaglyph-half-color", "red-cyan anaglyph: R from the left eye's luma, G and B from the right",
           "_redcyan_half-color"),
    Layout("right-only", "the right view alone", "_R"),
)}


def get_layout(name: str | Layout) -> Layout:
    """The :class:`Layout` called ``name`` (``anaglyph`` alone means ``anaglyph-dubois``, iw3's default).

    Raises:
        StereobenchError: an unknown name, with did-you-mean and the list of layouts.
    """
    if isinstance(name, Layout):
        return name
    key = str(name).strip().lower().replace("_", "-")
    aliases = {"anaglyph": "anaglyph-dubois", "sbs": "full-sbs", "tb": "full-tb", "cross": "cross-eyed"}
    key = aliases.get(key, key)
    if key not in LAYOUTS:  # the aliases are choices too ('anaglph' -> 'anaglyph', not 'anaglyph-gray')
        raise did_you_mean(str(name), [*LAYOUTS, *aliases], "layout")
    return LAYOUTS[key]


def _as_video(x: torch.Tensor, what: str) -> tuple[torch.Tensor, bool]:
    """(T, 3, H, W) view of ``x`` and whether it was a single (3, H, W) frame."""
    if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4) or x.shape[-3] != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise StereobenchError(f"{what} must be a float tensor (T, 3, H, W) or (3, H, W) in [0, 1], got {shape}")
    if not x.is_floating_point():
        raise StereobenchError(f"{what} must be floating point in [0, 1], got {x.dtype}; divide uint8 frames by 255")
    return (x.unsqueeze(0), True) if x.dim() == 3 else (x, False)


def _pair(left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    left, single = _as_video(left, "left view")
    right, single_r = _as_video(right, "right view")
    if left.shape != right.shape or single != single_r:
        raise StereobenchError(f"left view {tuple(left.shape)} and right view {tuple(right.shape)} differ in shape; "
                               "both eyes need the same frames and size")
    return left, right, single


def squeeze(video: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize (T, 3, H, W) to (height, width): bicubic with antialiasing, clamped to [0, 1] (iw3's rule)."""
    video, single = _as_video(video, "video")
    if tuple(video.shape[-2:]) != (height, width):
        video = F.interpolate(video, size=(height, width), mode="bicubic", align_corners=False,
                              antialias=True).clamp_(0.0, 1.0)
    return video[0] if single else video


def side_by_side(left: torch.Tensor, right: torch.Tensor, half: bool = False) -> torch.Tensor:
    """left | right along the width: (T, 3, H, 2W), or with ``half`` each eye squeezed to W // 2 first."""
    left, right, single = _pair(left, right)
    if half:
        h, w = left.shape[-2:]
        left, right = squeeze(left, h, max(1, w // 2)), squeeze(right, h, max(1, w // 2))
    out = torch.cat([left, right], dim=-1)
    return out[0] if single else out


def top_bottom(left: torch.Tensor, right: torch.Tensor, half: bool = False) -> torch.Tensor:
    """left over right: (T, 3, 2H, W), or with ``half`` each eye squeezed to H // 2 first."""
    left, right, single = _pair(left, right)
    if half:
        h, w = left.shape[-2:]
        left, right = squeeze(left, max(1, h // 2), w), squeeze(right, max(1, h // 2), w)
    out = torch.cat([left, right], dim=-2)
    return out[0] if single else out


def cross_eyed(left: torch.Tensor, right: torch.Tensor, half: bool = False) -> torch.Tensor:
    """right | left (the eyes swapped, for cross-eyed free viewing)."""
    return side_by_side(right, left, half=half)


def _srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp(min=0.0031308) ** (1.0 / 2.4) - 0.055)


def _apply_matrix(video: torch.Tensor, matrix) -> torch.Tensor:
    """(T, 3, H, W) x 3x3 (rows = output channels) -> (T, 3, H, W)."""
    m = torch.tensor(matrix, dtype=video.dtype, device=video.device)
    return torch.einsum("oc,tchw->tohw", m, video)


def _luma(video: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(LUMA_601, dtype=video.dtype, device=video.device)
    return torch.einsum("c,tchw->thw", w, video).unsqueeze(1)


def anaglyph(left: torch.Tensor, right: torch.Tensor, kind: str = "dubois") -> torch.Tensor:
    """Red-cyan anaglyph (T, 3, H, W) for glasses with the red filter on the left eye.

    ``kind``: ``dubois`` (least-squares matrices in linear RGB, the default), ``color`` (R from the
    left eye, G and B from the right eye), ``gray`` (R = left luma, G = B = right luma),
    ``half-color`` (R = left luma, G and B from the right eye). Channels G and B always come from
    the RIGHT eye alone in ``color``/``half-color``/``gray``.
    """
    left, right, single = _pair(left, right)
    if kind not in ANAGLYPH_TYPES:
        raise did_you_mean(str(kind), ANAGLYPH_TYPES, "anaglyph type")
    if kind == "color":
        out = torch.cat([left[:, :1], right[:, 1:]], dim=1)
    elif kind == "half-color":
        out = torch.cat([_luma(left), right[:, 1:]], dim=1).clamp(0.0, 1.0)
    elif kind == "gray":
        ry = _luma(right)
        out = torch.cat([_luma(left), ry, ry], dim=1).clamp(0.0, 1.0)
    else:
        lin_l, lin_r = _srgb_to_linear(left.clamp(0.0, 1.0)), _srgb_to_linear(right.clamp(0.0, 1.0))
        mixed = _apply_matrix(lin_l, DUBOIS_LEFT).clamp(0.0, 1.0) + _apply_matrix(lin_r, DUBOIS_RIGHT).clamp(0.0, 1.0)
        out = _linear_to_srgb(mixed.clamp(0.0, 1.0)).clamp(0.0, 1.0)
    return out[0] if single else out


def pack(layout: str | Layout, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Pack the two eyes into one frame in ``layout`` (a name or a :class:`Layout`)."""
    name = get_layout(layout).name
    if name == "right-only":
        _pair(left, right)
        return right
    if name.startswith("anaglyph-"):
        return anaglyph(left, right, name[len("anaglyph-"):])
    if name.endswith("sbs"):
        return side_by_side(left, right, half=name == "half-sbs")
    if name.endswith("tb"):
        return top_bottom(left, right, half=name == "half-tb")
    return cross_eyed(left, right)


def layout_size(layout: str | Layout, height: int, width: int) -> tuple[int, int]:
    """(height, width) of a packed frame for eyes of ``height`` x ``width``."""
    name = get_layout(layout).name
    return {
        "full-sbs": (height, 2 * width), "cross-eyed": (height, 2 * width),
        "half-sbs": (height, 2 * max(1, width // 2)),
        "full-tb": (2 * height, width), "half-tb": (2 * max(1, height // 2), width),
    }.get(name, (height, width))


def output_name(source: str | Path, layout: str | Layout, naming: str = "iw3", extension: str = ".mp4") -> str:
    """The file name players recognise: ``<source stem><suffix><extension>``.

    >>> output_name("holiday.mov", "full-sbs")
    'holiday_LRF_Full_SBS.mp4'
    >>> output_name("holiday.mov", "half-sbs", naming="skybox")
    'holiday_HSBS.mp4'
    """
    return f"{Path(source).stem}{get_layout(layout).suffix_for(naming)}{extension}"
