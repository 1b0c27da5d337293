"""A rectified synthetic stereo scene with known disparity, rendered analytically at any (float)
pixel coordinates, and the Ego4D-like miniature files built from it (used by tests/test_sgbm.py
and tests/test_ego4d*.py; nothing here is downloaded).

Scene (rectified coordinates, LEFT view, ``x_R = x_L - d``):

- a slanted background plane with disparity ``d_bg(x, y) = d0 + gx * x + gy * y`` (a plane in
  space is affine in disparity), textured with smooth colour noise;
- a fronto-parallel box with constant disparity ``d_box`` over ``box = (x0, y0, x1, y1)`` of the
  left view, with its own texture;
- optionally a black-and-white checkerboard texture on the background (for corner tests).

The right view is rendered from the same textures: a right pixel ``x_R`` shows the box if
``x_R + d_box`` falls inside the box, else the background point with ``x_L - d_bg(x_L) = x_R``
(closed form for the affine plane). A ``frame_shift`` translates the whole scene sideways per
frame so that frames of a video differ.

The "raw" (unrectified) eye of an Ego4D-like video is ``raw(p) = rect(H p)`` for the eye's
rectifying homography ``H``: evaluated directly at ``H p``, so the test data has one
interpolation, and rectifying with ``H`` (``cv2.warpPerspective``) recovers the scene.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TEX = 512           # texture size (pixels); scene coordinates are offset into it by MARGIN
MARGIN = 128


def _noise_texture(seed: int) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    tex = np.zeros((TEX, TEX, 3), np.float32)
    for sigma, weight in ((1.0, 0.5), (3.0, 0.8), (9.0, 1.0)):
        layer = rng.normal(size=(TEX, TEX, 3)).astype(np.float32)
        layer = cv2.GaussianBlur(layer, (0, 0), sigma)
        tex += weight * layer / (layer.std() + 1e-6)
    tex = (tex - tex.mean()) / (tex.std() * 4.0) + 0.5
    return np.clip(tex, 0.02, 0.98)


@dataclass
class Scene:
    d0: float = 6.0
    gx: float = 0.02
    gy: float = 0.01
    box: tuple[int, int, int, int] = (60, 40, 110, 90)
    d_box: float = 16.0
    checker: int = 0          # > 0: background is a checkerboard with squares of this many pixels
    tint: bool = False        # multiply the checkerboard by smooth colour noise
    seed: int = 0
    _tex: dict = field(default_factory=dict, repr=False)

    def texture(self, which: str) -> np.ndarray:
        if which not in self._tex:
            self._tex[which] = _noise_texture(self.seed * 2 + (which == "box"))
        return self._tex[which]

    def d_bg(self, x, y):
        return self.d0 + self.gx * x + self.gy * y

    def disparity(self, x, y) -> np.ndarray:
        """True disparity of the LEFT view at left coordinates (x, y)."""
        x0, y0, x1, y1 = self.box
        in_box = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
        return np.where(in_box, self.d_box, self.d_bg(x, y)).astype(np.float32)

    def occluded_left(self, x, y) -> np.ndarray:
        """True where a LEFT background pixel is hidden by the box in the right view."""
        x0, y0, x1, y1 = self.box
        xr = x - self.d_bg(x, y)
        in_box = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
        hidden = (xr + self.d_box >= x0) & (xr + self.d_box < x1) & (y >= y0) & (y < y1)
        return hidden & ~in_box

    def _sample(self, which: str, u, v, shift: float) -> np.ndarray:
        import cv2

        if which == "bg" and self.checker > 0:
            # A smooth checkerboard (no aliasing): corners exactly at multiples of the square size.
            s = np.sin(np.pi * (u + shift) / self.checker) * np.sin(np.pi * v / self.checker)
            val = (0.5 + 0.35 * np.clip(4.0 * s, -1.0, 1.0)).astype(np.float32)
            val = np.repeat(val[..., None], 3, axis=-1)
            if self.tint:   # smooth colour noise multiplied in: feature matches become unique
                mx = (u + shift + MARGIN).astype(np.float32)
                my = (v + MARGIN).astype(np.float32)
                noise = cv2.remap(self.texture("box"), mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
                val = val * (0.55 + 0.45 * cv2.GaussianBlur(noise, (0, 0), 2.0))
            return val
        mx = (u + shift + MARGIN).astype(np.float32)
        my = (v + MARGIN).astype(np.float32)
        return cv2.remap(self.texture(which), mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)

    def left(self, x, y, shift: float = 0.0) -> np.ndarray:
        x0, y0, x1, y1 = self.box
        in_box = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
        bg = self._sample("bg", x, y, shift)
        fg = self._sample("box", x, y, shift)
        return np.where(in_box[..., None], fg, bg)

    def right(self, x, y, shift: float = 0.0) -> np.ndarray:
        x0, y0, x1, y1 = self.box
        xb = x + self.d_box
        in_box = (xb >= x0) & (xb < x1) & (y >= y0) & (y < y1)
        xl = (x + self.d0 + self.gy * y) / (1.0 - self.gx)     # x_L - d_bg(x_L, y) = x
        bg = self._sample("bg", xl, y, shift)
        fg = self._sample("box", xb, y, shift)
        return np.where(in_box[..., None], fg, bg)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def grid(h: int, w: int, offset=(0.0, 0.0)):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    return x + offset[0], y + offset[1]


def render_pair(scene: Scene, h: int, w: int, shift: float = 0.0):
    """Rectified left, right (uint8 (H, W, 3)) and the left view's true disparity (H, W)."""
    x, y = grid(h, w)
    return to_uint8(scene.left(x, y, shift)), to_uint8(scene.right(x, y, shift)), scene.disparity(x, y)


def warp_points(H: np.ndarray, x, y):
    """Apply a 3x3 homography to point arrays."""
    den = H[2, 0] * x + H[2, 1] * y + H[2, 2]
    return (H[0, 0] * x + H[0, 1] * y + H[0, 2]) / den, (H[1, 0] * x + H[1, 1] * y + H[1, 2]) / den


def render_raw_eye(scene: Scene, H: np.ndarray, h: int, w: int, eye: str, shift: float = 0.0) -> np.ndarray:
    """The unrectified eye: raw(p) = rect(H p), uint8 (h, w, 3)."""
    x, y = grid(h, w)
    u, v = warp_points(H, x, y)
    return to_uint8((scene.left if eye == "left" else scene.right)(u, v, shift))


def homography(angle_deg: float = 0.0, tx: float = 0.0, ty: float = 0.0, scale: float = 1.0,
               px: float = 0.0, py: float = 0.0, center=(80.0, 60.0)) -> np.ndarray:
    """A mild homography about ``center``: rotation, scale, translation and a perspective term."""
    a = np.deg2rad(angle_deg)
    cx, cy = center
    T1 = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], float)
    R = np.array([[scale * np.cos(a), -scale * np.sin(a), 0], [scale * np.sin(a), scale * np.cos(a), 0], [0, 0, 1]])
    P = np.array([[1, 0, 0], [0, 1, 0], [px, py, 1]], float)
    T2 = np.array([[1, 0, cx + tx], [0, 1, cy + ty], [0, 0, 1]], float)
    return T2 @ P @ R @ T1


#: The rectifying homographies of the miniature video (raw eye -> rectified eye).
H_LEFT = homography(angle_deg=1.2, tx=1.5, ty=-2.0, scale=1.02, px=2e-5)
H_RIGHT = homography(angle_deg=-0.8, tx=-1.0, ty=2.5, scale=0.99, py=-3e-5)


def write_sbs_video(path: Path, frames: np.ndarray, fps: float, lossless: bool = True) -> Path:
    """Write (T, H, W, 3) uint8 RGB frames with PyAV (H.264; crf 0 when lossless)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=round(fps))
        stream.width = frames.shape[2]
        stream.height = frames.shape[1]
        stream.pix_fmt = "yuv444p" if lossless else "yuv420p"
        stream.options = {"crf": "0" if lossless else "16", "preset": "ultrafast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def ego4d_frames(scene: Scene, num_frames: int, eye_h: int = 120, eye_w: int = 160, portrait: bool = False,
                 pan: float = 1.0, H_left: np.ndarray = H_LEFT, H_right: np.ndarray = H_RIGHT) -> np.ndarray:
    """Side-by-side raw frames (T, eye_h, 2 * eye_w, 3); ``portrait`` stores them stretched to
    (T, 2 * eye_w, eye_h, 3) (width < height), as some Ego4D videos are stored."""
    import torch
    import torch.nn.functional as F

    frames = []
    for t in range(num_frames):
        left = render_raw_eye(scene, H_left, eye_h, eye_w, "left", shift=pan * t)
        right = render_raw_eye(scene, H_right, eye_h, eye_w, "right", shift=pan * t)
        frames.append(np.concatenate([left, right], axis=1))
    video = np.stack(frames)
    if portrait:
        x = torch.from_numpy(video).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(2 * eye_w, eye_h), mode="bilinear", antialias=True, align_corners=False)
        video = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return video


def homography_json(path: Path, H_left: np.ndarray, H_right: np.ndarray, crop) -> Path:
    """The published per-video JSON layout: homography_left/right (3x3 lists) and croping."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"homography_left": np.asarray(H_left).tolist(),
                                "homography_right": np.asarray(H_right).tolist(),
                                "croping": [int(c) for c in crop]}))
    return path
