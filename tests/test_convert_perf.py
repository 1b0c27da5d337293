"""Speed of ``stereobench convert`` per phase, and its warp and encode stages against references.

One run measures, on the same frames:

- ``convert_video`` end to end with ``background-fill`` and ``temporal-fill``, frames per second
  per phase (decode / depth / normalise / warp / method / layout / encode / join), full SBS,
  H.264 crf 20 preset medium (the defaults). The depth source is a synthetic per-frame model
  (no depth weights on this machine), so ``depth`` is the storage of the depth chunks, not a
  network;
- our warp stage (:func:`benchmark.stereo.warp.forward_warp`, all frames) against the official
  M2SVid NumPy scatter (:func:`benchmark.stereo.native_warps.reference_m2svid_scatter_numpy`,
  frame by frame);
- our segment encoder (:class:`benchmark.convert.encode.SegmentWriter`) against a plain PyAV
  libx264 encode of the same packed frames with the same settings (both from float frames).

Run it with one thread (``OMP_NUM_THREADS=1``) on a shared machine: OpenMP with 2 threads stalls
at its barriers whenever another process holds a core (see tests/test_warp_perf.py).

Command (figures in docs/performance.md)::

    OMP_NUM_THREADS=1 .venv/bin/python -m tests.test_convert_perf --size 512 --frames 24
    OMP_NUM_THREADS=1 .venv/bin/python -m tests.test_convert_perf --size 1080 --frames 8

``pytest -m perf tests/test_convert_perf.py`` runs a small version as a check.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

SIZES = {"512": (512, 512), "1080": (1080, 1920)}


class RampDepth:
    """Per-frame synthetic inverse depth: a ramp with a near block (what a depth model returns)."""

    def predict(self, frames: torch.Tensor, start: int = 0) -> torch.Tensor:
        t, _, h, w = frames.shape
        depth = torch.linspace(0.0, 0.6, w).expand(t, h, w).clone()
        depth[:, h // 4:3 * h // 4, w // 3:w // 2] = 1.0
        return depth


def _source(folder: Path, h: int, w: int, frames: int) -> Path:
    from tests.convert_helpers import make_video, scene

    return make_video(folder / f"src_{h}x{w}.mp4", scene(frames, h, w), fps=24, audio="aac")


def measure(size: str = "512", frames: int = 48, methods=("background-fill", "temporal-fill")) -> dict:
    from benchmark.convert import ConvertOptions, convert_video
    from benchmark.convert.encode import SegmentWriter
    from benchmark.layouts import pack
    from benchmark.stereo.native_warps import reference_m2svid_scatter_numpy
    from benchmark.stereo.warp import forward_warp
    from benchmark.video_io import read_video

    h, w = SIZES[size]
    report: dict = {"size": f"{w}x{h}", "frames": frames, "threads": torch.get_num_threads(), "convert": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        src = _source(folder, h, w, frames)
        for method in methods:
            start = time.perf_counter()
            result = convert_video(src, folder / f"{method}.mp4", ConvertOptions(method=method, depth=RampDepth()))
            wall = time.perf_counter() - start
            report["convert"][method] = {"wall_s": wall, "fps": frames / wall,
                                         "fps_by_phase": result.fps_by_phase(), "seconds": result.seconds}
        # Stage comparisons on the same frames.
        left = read_video(src).frames
        disparity = RampDepth().predict(left)[:, None] * (0.02 * w)
        start = time.perf_counter()
        warped, _ = forward_warp(left, disparity)
        ours = time.perf_counter() - start
        frames_np = left.permute(0, 2, 3, 1).numpy()
        disp_np = disparity[:, 0].numpy()
        start = time.perf_counter()
        for k in range(frames):
            reference_m2svid_scatter_numpy(frames_np[k], disp_np[k])
        reference = time.perf_counter() - start
        report["warp"] = {"ours_fps": frames / ours, "m2svid_numpy_fps": frames / reference}
        packed = pack("full-sbs", left, warped)
        writer = SegmentWriter(folder / "seg.mp4", Fraction(24), crf=20, preset="medium")
        start = time.perf_counter()
        writer.append(packed)
        writer.close()
        ours = time.perf_counter() - start
        report["encode"] = {"ours_fps": frames / ours, "plain_pyav_fps": frames / _plain_encode(folder, packed)}
    return report


def _plain_encode(folder: Path, packed: torch.Tensor) -> float:
    """A plain PyAV libx264 encode (crf 20, medium, yuv420p) of the same frames; seconds."""
    import av

    start = time.perf_counter()  # from the same float frames as ours: the uint8 conversion counts in both
    images = (packed.permute(0, 2, 3, 1).numpy() * 255.0).round().astype(np.uint8)
    container = av.open(str(folder / "plain.mp4"), "w", format="mp4")
    stream = container.add_stream("libx264", rate=24)
    stream.height, stream.width = images.shape[1:3]
    stream.pix_fmt = "yuv420p"
    stream.options = {"crf": "20", "preset": "medium"}
    for image in images:
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return time.perf_counter() - start


@pytest.mark.perf
def test_convert_perf_small():
    report = measure("512", frames=8, methods=("background-fill",))
    phases = report["convert"]["background-fill"]["fps_by_phase"]
    assert {"decode", "depth", "warp", "method", "encode", "join"} <= set(phases)
    assert report["warp"]["ours_fps"] > 0 and report["encode"]["plain_pyav_fps"] > 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="512")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--methods", default="background-fill,temporal-fill")
    args = parser.parse_args()
    report = measure(args.size, args.frames, tuple(args.methods.split(",")))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
