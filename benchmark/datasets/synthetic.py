"""Procedural stereo clips with exact ground truth (no download, any size and length, seeded).

A scene is a stack of textured layers at constant disparities: a far background plane, a few
mid-depth objects (discs and rectangles) and a near fence of thin bars with a rail. Every layer
is defined analytically in its own continuous coordinates (a procedural texture and a shape),
so both eyes are rendered *directly*: the right view evaluates each layer shifted by its
disparity (x_R = x_L - d) and a z-buffer (larger disparity = nearer wins) composites the layers.
The right view is therefore the true view, including what the left camera cannot see, never a
warp of the left view.

Motion: each object moves on its own (linear drift plus a slow oscillation), and the camera pans
(all layers shift alike) and translates sideways (static layers shift in proportion to their
disparity: motion parallax). Background that a near layer hides in one frame is visible in
others, which is what temporal hole filling exploits.

With ``integer_disparity=True`` (default) every layer's disparity is a whole number of pixels, so
warping the left view by its ground-truth disparity reproduces the right view *exactly* on every
pixel seen by both eyes; with ``False`` disparities are real-valued (still exact ground truth).

Rendering is vectorised: per layer the texture is a sum of separable sinusoids evaluated as
outer products of per-column (T, 1, W) and per-row (T, H, 1) factors, only inside the layer's
bounding box; there is no loop over frames or pixels. A 16 x 512 x 512 clip renders in a fraction
of a second on a 2-core CPU.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from benchmark.datasets.base import DatasetSpec, option_bool, option_int
from benchmark.types import Clip, TimeWindow
from benchmark.errors import StereobenchError

#: Bump when rendering changes in any way that alters pixels; part of ``spec.revision``.
GENERATOR_VERSION = "1"

NUM_SINUSOIDS = 5


@dataclass(frozen=True)
class Layer:
    """One scene layer; lengths in pixels, speeds in pixels per frame.

    ``kind`` is ``"plane"`` (fills the frame), ``"disc"`` (ellipse, half-axes ``size``),
    ``"rect"`` (half-extents ``size``) or ``"fence"`` (vertical bars of width ``bar_width`` every
    ``bar_period`` pixels between rows ``cy - size[1]`` and ``cy + size[1]``, plus a rail).
    """

    kind: str
    disparity: float
    centre: tuple[float, float]  # (x, y) at frame 0, left view
    size: tuple[float, float] = (0.0, 0.0)
    velocity: tuple[float, float] = (0.0, 0.0)  # own motion (x, y), px / frame
    wobble: tuple[float, float, float] = (0.0, 0.0, 0.0)  # amplitude px, angular freq rad/frame, phase
    moves_with_world: bool = True  # static in the world: takes camera translation parallax
    base_colour: tuple[float, float, float] = (0.5, 0.5, 0.5)
    # sinusoid texture: per term (fx, fy) rad/px, phase, RGB amplitude
    frequencies: tuple[tuple[float, float], ...] = ()
    phases: tuple[float, ...] = ()
    amplitudes: tuple[tuple[float, float, float], ...] = ()
    checker: tuple[float, float, float] = (0.0, 0.0, 0.0)  # (fu, fv) rad/px and amplitude
    bar_width: float = 0.0
    bar_period: float = 0.0


@dataclass(frozen=True)
class SceneParams:
    """Everything that determines a synthetic clip (sampled from a seed by :func:`sample_scene`)."""

    height: int
    width: int
    num_frames: int
    layers: tuple[Layer, ...]
    camera_pan: float  # px / frame, all layers alike (camera rotation)
    camera_translation: float  # baselines / frame: a static layer moves -translation * disparity px / frame


@dataclass
class SyntheticRender:
    """A rendered scene with everything the tests need.

    Attributes:
        left, right: float32 (T, 3, H, W) in [0, 1].
        disparity: float32 (T, 1, H, W), of the LEFT view, x_R = x_L - d (all finite).
        disparity_right: float32 (T, 1, H, W), of the RIGHT view: the right pixel x_R shows the
            point that the left view has at x_L = x_R + disparity_right.
        layer_left, layer_right: int64 (T, 1, H, W), index into ``params.layers`` of the visible
            layer per pixel.
        offsets: float64 (K, T, 2) position (x, y) of each layer's origin per frame, left view.
    """

    left: torch.Tensor
    right: torch.Tensor
    disparity: torch.Tensor
    disparity_right: torch.Tensor
    layer_left: torch.Tensor
    layer_right: torch.Tensor
    offsets: np.ndarray
    params: SceneParams = field(repr=False)


def _random_texture(rng: np.random.Generator, scale: float, base: tuple[float, float, float] | None = None,
                    contrast: float = 0.18) -> dict:
    """Random band-limited texture parameters: frequencies between 1/64 and 1/6 cycles per px
    (scaled with the frame width so textures look alike at any size, capped against aliasing)."""
    colour = tuple(float(c) for c in (base if base is not None else rng.uniform(0.15, 0.85, 3)))
    freqs, phases, amps = [], [], []
    for _ in range(NUM_SINUSOIDS):
        cycles_per_px = min(1 / 6, float(np.exp(rng.uniform(np.log(1 / 64), np.log(1 / 10)))) * max(scale, 0.25))
        angle = rng.uniform(0, np.pi)
        omega = 2 * np.pi * cycles_per_px
        freqs.append((float(omega * np.cos(angle)), float(omega * np.sin(angle))))
        phases.append(float(rng.uniform(0, 2 * np.pi)))
        amps.append(tuple(float(a) for a in rng.uniform(-contrast, contrast, 3)))
    return dict(base_colour=colour, frequencies=tuple(freqs), phases=tuple(phases), amplitudes=tuple(amps))


def sample_scene(seed: int, index: int = 0, height: int = 512, width: int = 512, num_frames: int = 16,
                 integer_disparity: bool = True, num_objects: int | None = None,
                 camera_pan: float | None = None, camera_translation: float | None = None) -> SceneParams:
    """Sample the parameters of scene ``index`` of generator ``seed`` (deterministic).

    Disparities scale with the width like the paper's rig (nearest about 5% of the width):
    background about 0.6%, objects 1.5-3.5%, fence about 4.5-5%. ``camera_pan`` (px / frame)
    and ``camera_translation`` (baselines / frame) override the sampled camera motion.
    """
    if height < 8 or width < 8 or num_frames < 1:
        raise StereobenchError(f"synthetic clip size must be at least 8x8 pixels and 1 frame, got "
                               f"{height}x{width} and {num_frames} frames")
    rng = np.random.default_rng([int(seed), int(index), 0x5732])
    scale = width / 512.0

    def disp(fraction_lo: float, fraction_hi: float) -> float:
        value = rng.uniform(fraction_lo, fraction_hi) * width
        return float(max(1, round(value))) if integer_disparity else float(max(0.5, value))

    layers: list[Layer] = []
    # Far background plane: static in the world, high-contrast checker so warps are visible.
    layers.append(Layer(
        kind="plane", disparity=disp(0.004, 0.008), centre=(0.0, 0.0),
        checker=(float(2 * np.pi / rng.uniform(24, 48) / max(scale, 0.25)),
                 float(2 * np.pi / rng.uniform(24, 48) / max(scale, 0.25)), 0.12),
        **_random_texture(rng, scale, contrast=0.15),
    ))
    n_objects = int(rng.integers(3, 6)) if num_objects is None else int(num_objects)
    for _ in range(n_objects):
        kind = "disc" if rng.random() < 0.5 else "rect"
        half = (float(rng.uniform(0.06, 0.16) * width), float(rng.uniform(0.06, 0.16) * height))
        layers.append(Layer(
            kind=kind, disparity=disp(0.015, 0.035),
            centre=(float(rng.uniform(0.1, 0.9) * width), float(rng.uniform(0.15, 0.75) * height)),
            size=half,
            velocity=(float(rng.uniform(-1.5, 1.5) * scale), float(rng.uniform(-0.5, 0.5) * scale)),
            wobble=(float(rng.uniform(0, 6) * scale), float(rng.uniform(0.2, 0.6)), float(rng.uniform(0, 2 * np.pi))),
            moves_with_world=False,
            **_random_texture(rng, scale, contrast=0.2),
        ))
    # Near fence: thin bars (2-4 px at 512 wide) across the full width in the lower part.
    bar_width = max(1.0, round(rng.uniform(2, 4) * scale))
    layers.append(Layer(
        kind="fence", disparity=disp(0.045, 0.05),
        centre=(float(rng.uniform(0, 40) * scale), float(rng.uniform(0.7, 0.8) * height)),
        size=(0.0, float(rng.uniform(0.1, 0.15) * height)),
        bar_width=float(bar_width), bar_period=float(max(bar_width + 2, round(rng.uniform(18, 36) * scale))),
        **_random_texture(rng, scale, base=tuple(rng.uniform(0.55, 0.95) * np.array([1.0, 0.9, 0.75])), contrast=0.06),
    ))
    pan = float(rng.choice([-2.0, -1.0, 1.0, 2.0]) * max(1.0, round(scale))) if camera_pan is None else float(camera_pan)
    translation = float(rng.uniform(-0.06, 0.06)) if camera_translation is None else float(camera_translation)
    return SceneParams(height=int(height), width=int(width), num_frames=int(num_frames), layers=tuple(layers),
                       camera_pan=pan, camera_translation=translation)


def layer_offsets(params: SceneParams) -> np.ndarray:
    """Origin (x, y) of every layer per frame in the left view, float64 (K, T, 2), pixels."""
    t = np.arange(params.num_frames, dtype=np.float64)
    out = np.zeros((len(params.layers), params.num_frames, 2))
    for k, layer in enumerate(params.layers):
        amp, omega, phase = layer.wobble
        x = layer.centre[0] + layer.velocity[0] * t + amp * (np.sin(omega * t + phase) - np.sin(phase))
        y = layer.centre[1] + layer.velocity[1] * t
        x = x + params.camera_pan * t
        if layer.moves_with_world:
            # Sideways camera translation by s baselines shifts a static point by -s * d pixels,
            # exactly as the stereo baseline does: motion parallax consistent with the disparity.
            x = x - params.camera_translation * t * layer.disparity
        out[k, :, 0] = x
        out[k, :, 1] = y
    return out


def _texture(layer: Layer, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Colour of ``layer`` at layer coordinates u (T, 1, w) and v (T, h, 1): float32 (T, 3, h, w)."""
    t, h, w = u.shape[0], v.shape[1], u.shape[2]
    colour = torch.empty((t, 3, h, w), dtype=torch.float32, device=u.device)
    for c in range(3):
        colour[:, c].fill_(layer.base_colour[c])
    for (fx, fy), phase, amp in zip(layer.frequencies, layer.phases, layer.amplitudes):
        # sin(fx u + fy v + p) = sin(fx u) cos(fy v + p) + cos(fx u) sin(fy v + p): outer products only.
        su, cu = torch.sin(fx * u), torch.cos(fx * u)
        cv, sv = torch.cos(fy * v + phase), torch.sin(fy * v + phase)
        wave = su * cv + cu * sv
        for c in range(3):
            colour[:, c].add_(wave, alpha=amp[c])
    fu, fv, amp = layer.checker
    if amp:
        checker = torch.tanh(4.0 * torch.sin(fu * u) * torch.sin(fv * v))
        colour.add_(checker.unsqueeze(1), alpha=amp)
    return colour.clamp_(0.0, 1.0)


def _coverage(layer: Layer, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Where ``layer`` exists at layer coordinates u (T, 1, w), v (T, h, 1): bool (T, h, w)."""
    if layer.kind == "plane":
        return torch.ones((u.shape[0], v.shape[1], u.shape[2]), dtype=torch.bool, device=u.device)
    rx, ry = layer.size
    if layer.kind == "disc":
        return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0
    if layer.kind == "rect":
        return (u.abs() <= rx) & (v.abs() <= ry)
    if layer.kind == "fence":
        bars = torch.remainder(u, layer.bar_period) < layer.bar_width
        in_band = v.abs() <= ry
        rail = (v + ry).abs() <= max(1.0, layer.bar_width)  # top rail, as thin as the bars
        return (bars & in_band) | rail
    raise ValueError(f"unknown layer kind {layer.kind!r}")


def _bounds(layer: Layer, offsets: np.ndarray, shift: float, height: int, width: int) -> tuple[int, int, int, int]:
    """Row/column slice (y0, y1, x0, x1) inside the frame that contains ``layer`` in every frame."""
    if layer.kind == "plane":
        return 0, height, 0, width
    rx, ry = layer.size
    if layer.kind == "fence":
        rx = float("inf")
        ry = ry + max(1.0, layer.bar_width)
    xs, ys = offsets[:, 0] - shift, offsets[:, 1]
    x0 = 0 if math.isinf(rx) else int(np.floor(xs.min() - rx)) - 1
    x1 = width if math.isinf(rx) else int(np.ceil(xs.max() + rx)) + 2
    y0, y1 = int(np.floor(ys.min() - ry)) - 1, int(np.ceil(ys.max() + ry)) + 2
    return max(0, y0), min(height, y1), max(0, x0), min(width, x1)


def _render_view(params: SceneParams, offsets: np.ndarray, view: int, device: torch.device):
    """Z-buffered composite of all layers for the left (view 0) or right (view 1) eye."""
    t_count, h, w = params.num_frames, params.height, params.width
    image = torch.zeros((t_count, 3, h, w), dtype=torch.float32, device=device)
    disparity = torch.zeros((t_count, 1, h, w), dtype=torch.float32, device=device)
    layer_index = torch.zeros((t_count, 1, h, w), dtype=torch.int64, device=device)
    cols = torch.arange(w, dtype=torch.float64, device=device)
    rows = torch.arange(h, dtype=torch.float64, device=device)
    # Paint far to near; the stable sort keeps equal-disparity layers in one order in both eyes.
    order = sorted(range(len(params.layers)), key=lambda k: params.layers[k].disparity)
    for k in order:
        layer = params.layers[k]
        shift = view * layer.disparity  # the right eye sees layer point x_L at x_L - d
        y0, y1, x0, x1 = _bounds(layer, offsets[k], shift, h, w)
        if y0 >= y1 or x0 >= x1:
            continue
        ox = torch.as_tensor(offsets[k, :, 0] - shift, device=device)
        oy = torch.as_tensor(offsets[k, :, 1], device=device)
        # Layer coordinates in float64 (offsets grow with time), then float32 for the maths.
        u = (cols[x0:x1].view(1, 1, -1) - ox.view(-1, 1, 1)).float()
        v = (rows[y0:y1].view(1, -1, 1) - oy.view(-1, 1, 1)).float()
        covered = _coverage(layer, u, v)
        if not bool(covered.any()):
            continue
        colour = _texture(layer, u, v)
        sel = covered.unsqueeze(1)
        image[:, :, y0:y1, x0:x1] = torch.where(sel, colour, image[:, :, y0:y1, x0:x1])
        disparity[:, :, y0:y1, x0:x1].masked_fill_(sel, layer.disparity)
        layer_index[:, :, y0:y1, x0:x1].masked_fill_(sel, k)
    return image, disparity, layer_index


def render_scene(params: SceneParams, device: torch.device | str = "cpu") -> SyntheticRender:
    """Render both eyes of ``params`` with exact disparity maps (see :class:`SyntheticRender`)."""
    device = torch.device(device)
    offsets = layer_offsets(params)
    left, disparity, layer_left = _render_view(params, offsets, 0, device)
    right, disparity_right, layer_right = _render_view(params, offsets, 1, device)
    return SyntheticRender(left=left, right=right, disparity=disparity, disparity_right=disparity_right,
                           layer_left=layer_left, layer_right=layer_right, offsets=offsets, params=params)


def _parse_size(size: int | str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``512`` / ``"512"`` -> (512, 512); ``"256x384"`` or (256, 384) -> (height, width)."""
    try:
        if isinstance(size, str):
            parts = [int(p) for p in size.lower().replace(",", "x").split("x")]
        elif isinstance(size, int):
            parts = [size]
        else:
            parts = [int(p) for p in size]
        if len(parts) == 1:
            parts = parts * 2
        if len(parts) != 2:
            raise ValueError
        return parts[0], parts[1]
    except (TypeError, ValueError):
        raise StereobenchError(f"synthetic size {size!r} is not understood; use e.g. size=512 or size=256x384 "
                               f"(height x width)") from None


class SyntheticDataset:
    """Seeded procedural stereo clips ``scene-000``, ``scene-001``, ... with exact ground truth.

    Options (all also accepted as strings from the command line, ``--option size=256``):
        num_clips: how many scenes (default 4).
        size: frame size, ``512`` or ``"HxW"`` (default 512x512).
        num_frames: frames per clip (default 16).
        fps: frame rate (default 5, the paper protocol's rate, so no frames are dropped).
        seed: generator seed (default 0).
        integer_disparity: whole-pixel layer disparities (default True, exact warps).
        device: where to render ("cpu" default).
    """

    def __init__(self, num_clips: int = 4, size: int | str | tuple[int, int] = 192, num_frames: int = 16,
                 fps: float = 5.0, seed: int = 0, integer_disparity: bool | str = True, device: str = "cpu"):
        self.num_clips = option_int("synthetic", "num_clips", num_clips)
        self.height, self.width = _parse_size(size)
        self.num_frames = option_int("synthetic", "num_frames", num_frames)
        self.fps = float(fps)
        self.seed = option_int("synthetic", "seed", seed)
        self.integer_disparity = option_bool("synthetic", "integer_disparity", integer_disparity)
        self.device = device
        if self.height < 8 or self.width < 8:  # checked here too, so nothing starts before the error
            raise StereobenchError(f"synthetic clip size must be at least 8x8 pixels, got {self.height}x{self.width}")
        if self.num_clips < 1 or self.num_frames < 1 or not (self.fps > 0 and math.isfinite(self.fps)):
            raise StereobenchError(f"synthetic needs num_clips >= 1, num_frames >= 1 and fps > 0, got "
                                   f"num_clips={self.num_clips}, num_frames={self.num_frames}, fps={self.fps}")
        settings = dict(version=GENERATOR_VERSION, num_clips=self.num_clips, height=self.height, width=self.width,
                        num_frames=self.num_frames, fps=self.fps, seed=self.seed,
                        integer_disparity=self.integer_disparity)
        revision = "gen" + GENERATOR_VERSION + "-" + hashlib.sha256(
            json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
        self.spec = DatasetSpec(
            name="synthetic",
            description=("Procedural stereo clips with exact ground truth: textured far plane, moving mid-depth "
                         "objects, a thin near fence; object and camera motion; rendered per eye with a z-buffer."),
            licence="Apache-2.0 (generated by the suite)",
            revision=revision,
            has_ground_truth=True,
            default_protocol="quick",
        )

    def clip_names(self) -> list[str]:
        return [f"scene-{i:03d}" for i in range(self.num_clips)]

    def scene_params(self, name: str) -> SceneParams:
        names = self.clip_names()
        if name not in names:
            from benchmark.errors import did_you_mean
            raise did_you_mean(name, names, "synthetic clip")
        return sample_scene(self.seed, names.index(name), self.height, self.width, self.num_frames,
                            integer_disparity=self.integer_disparity)

    def render(self, name: str) -> SyntheticRender:
        """The full render of clip ``name`` (both disparities, layer maps), for tests and analysis."""
        return render_scene(self.scene_params(name), self.device)

    def load_clip(self, name: str, window: TimeWindow | None = None) -> Clip:
        """Clip ``name`` at the rendered size and ``fps``. ``window`` (a protocol's time window) is
        accepted for the common dataset interface and ignored: rendering every frame is cheap and
        the clip protocol cuts the window afterwards."""
        params = self.scene_params(name)
        render = render_scene(params, self.device)
        timestamps = torch.arange(self.num_frames, dtype=torch.float64) / self.fps
        return Clip(
            clip_id=f"synthetic/{name}", left=render.left, fps=self.fps, right=render.right,
            disparity=render.disparity, timestamps=timestamps,
            metadata=dict(source="benchmark.datasets.synthetic", generator_version=GENERATOR_VERSION,
                          seed=self.seed, index=self.clip_names().index(name), revision=self.spec.revision,
                          camera_pan_px_per_frame=params.camera_pan,
                          camera_translation_baselines_per_frame=params.camera_translation,
                          layer_disparities=[layer.disparity for layer in params.layers],
                          layer_kinds=[layer.kind for layer in params.layers]),
        )
