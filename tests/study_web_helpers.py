"""Tiny study packages for the study web tests (tests/test_study_app.py, tests/test_study_browser.py).

``video_folder`` writes a folder of videos in the study-builder layout (one sub-folder per clip:
left, mask, warped, gt and one file per method) with distinctive method names, so that the
anonymity checks can grep for them. Colours are chosen for the headset test: every left view is
pure red and every right view (methods, gt, warped) pure blue, so a side-by-side frame is red on
the left half and blue on the right half, and each eye of a correct stereo renderer sees one
colour. Each frame also carries a moving white bar, so players at different times differ.
"""

from __future__ import annotations

from pathlib import Path

import torch

from benchmark.video_io import write_video

METHODS = ("zebrafill", "yakinpaint", "wombatnet", "volediffusion")
FPS = 8.0


def _clip(color: tuple[float, float, float], frames: int, size: int) -> torch.Tensor:
    video = torch.tensor(color, dtype=torch.float32).view(1, 3, 1, 1).repeat(frames, 1, size, size)
    for t in range(frames):  # a white bar that moves one step per frame
        x = (t * size) // frames
        video[t, :, : size // 4, x: x + max(2, size // frames)] = 1.0
    return video


def video_folder(root: Path, n_videos: int = 3, frames: int = 16, size: int = 32) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    red, blue = (0.9, 0.05, 0.05), (0.05, 0.05, 0.9)
    for v in range(n_videos):
        clip = root / f"clip{v}"
        clip.mkdir(exist_ok=True)
        write_video(clip / "left.mp4", _clip(red, frames, size), FPS)
        mask = torch.zeros(frames, 3, size, size)
        mask[:, :, :, : size // 4] = 1.0
        write_video(clip / "mask.mp4", mask, FPS)
        for name in ("warped", "gt", *METHODS):
            write_video(clip / f"{name}.mp4", _clip(blue, frames, size), FPS)
    return root


def build(tmp: Path, kind: str = "ranking", participants: int = 2, **kwargs):
    """A built study package under ``tmp`` (videos built once per folder)."""
    from study_app.package import build_study

    videos = tmp / "videos"
    if not videos.is_dir():
        video_folder(videos)
    options = {"kind": kind, "participants": participants, "seed": 0, "progress": False}
    if kind == "pairwise":
        options.update(methods=list(METHODS[:2]), pairs=[(METHODS[0], METHODS[1])])
    options.update(kwargs)
    return build_study(videos, tmp / f"study-{kind}", **options)
