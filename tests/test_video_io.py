"""Video I/O round trips, frame-rate resampling and bad-input errors (tiny videos written here)."""

from __future__ import annotations

import math

import numpy as np
import subprocess
import sys

import pytest
import torch

from benchmark.errors import StereobenchError
from benchmark.stereo.video_io import (
    iter_video, read_mask, read_video, write_frames, write_mask, write_video)


def _smooth_video(t=6, h=48, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    phase = torch.rand(t, 3, 1, 1, generator=g) * 6
    return (0.5 + 0.4 * torch.sin(3 * xx + 2 * yy + phase)).float()


def _index_video(n, h=32, w=32):
    """Frame k is uniformly grey at level 8k: its index is recoverable after lossy coding."""
    return (torch.arange(n).float() * 8 / 255).view(n, 1, 1, 1).expand(n, 3, h, w).contiguous()


def _decoded_index(video):
    return (video[:, :, 8:24, 8:24].mean(dim=(1, 2, 3)) * 255 / 8).round().long().tolist()


def _psnr(a, b):
    return 10 * math.log10(1 / float(((a - b) ** 2).mean()))


def test_mp4_round_trip_psnr(tmp_path):
    video = _smooth_video()
    path = write_video(tmp_path / "a.mp4", video, fps=24)
    data = read_video(path)
    assert data.frames.shape == video.shape and data.frames.dtype == torch.float32
    assert data.fps == pytest.approx(24)
    assert _psnr(data.frames, video) > 35
    torch.testing.assert_close(data.timestamps, torch.arange(6, dtype=torch.float64) / 24, atol=1e-6, rtol=0)
    assert not list(tmp_path.glob(".*tmp*"))  # atomic: no temporary left behind


def test_mp4_is_browser_friendly(tmp_path):
    av = pytest.importorskip("av")
    path = write_video(tmp_path / "b.mp4", _smooth_video(t=3, h=21, w=33), fps=10)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.width, stream.height) == (34, 22)  # odd sizes padded to even
    # +faststart: the moov atom comes before mdat.
    raw = path.read_bytes()
    assert raw.find(b"moov") < raw.find(b"mdat")
    data = read_video(path)
    # Padding replicates the last row/column.
    assert torch.equal(data.frames[..., -1, :], data.frames[..., -2, :]) or _psnr(data.frames[..., -1, :], data.frames[..., -2, :]) > 35


def test_png_round_trip_is_exact(tmp_path):
    video = torch.randint(0, 256, (4, 3, 10, 12), generator=torch.Generator().manual_seed(1)).float() / 255
    write_frames(tmp_path / "frames", video)
    data = read_video(tmp_path / "frames", folder_fps=12)
    assert torch.equal(data.frames, video)
    assert data.fps == 12
    # Rewriting replaces the folder atomically.
    write_frames(tmp_path / "frames", video[:2])
    assert read_video(tmp_path / "frames").num_frames == 2


def test_folder_sorted_naturally(tmp_path):
    from PIL import Image

    folder = tmp_path / "nat"
    folder.mkdir()
    for k in (1, 2, 10):
        Image.fromarray(np.full((4, 4, 3), 8 * k, np.uint8)).save(folder / f"f{k}.png")
    data = read_video(folder)
    assert (data.frames[:, 0, 0, 0] * 255 / 8).round().tolist() == [1, 2, 10]


_ENCODE_FIXTURE = """
import sys, numpy as np, av
codec, path = sys.argv[1], sys.argv[2]
frames = np.load(sys.argv[3])
with av.open(path, "w") as container:
    stream = container.add_stream(codec, rate=10)
    stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
    if codec == "libx265":
        stream.options = {"x265-params": "log-level=none:pools=none:frame-threads=1"}
    for arr in frames:
        for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
"""


@pytest.mark.parametrize("codec,suffix", [("libx265", ".mkv"), ("libvpx-vp9", ".webm"), ("libx264", ".mov")])
def test_reads_other_codecs_and_containers(tmp_path, codec, suffix):
    av = pytest.importorskip("av")
    if codec not in av.codecs_available:
        pytest.skip(f"{codec} not in this FFmpeg build")
    video = _smooth_video(t=4, h=32, w=48)
    frames = (video.permute(0, 2, 3, 1) * 255).round().byte().numpy()
    np.save(tmp_path / "frames.npy", frames)
    path = tmp_path / f"clip{suffix}"
    # The fixture is encoded in a child process: libx265 has been seen to abort() intermittently
    # inside a long pytest process (its thread pool), which would take the whole suite down.
    # Only the encoder runs there; reading, the code under test, runs here.
    for _attempt in range(2):
        proc = subprocess.run([sys.executable, "-c", _ENCODE_FIXTURE, codec, str(path), str(tmp_path / "frames.npy")],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            break
    assert proc.returncode == 0, f"fixture encoder failed: {proc.stderr[-500:]}"
    data = read_video(path)
    assert data.frames.shape == (4, 3, 32, 48)
    assert _psnr(data.frames, video) > 30


def test_fps_resampling_picks_nearest_frames(tmp_path):
    path = write_video(tmp_path / "idx.mp4", _index_video(30), fps=30)
    assert _decoded_index(read_video(path).frames) == list(range(30))
    # 5 fps from 30 fps: frames 0, 6, 12, 18, 24 (t = k / 5 s).
    data = read_video(path, fps=5)
    assert _decoded_index(data.frames) == [0, 6, 12, 18, 24]
    torch.testing.assert_close(data.timestamps, torch.arange(5, dtype=torch.float64) / 5)
    # 7 fps: nearest frame to 30 k / 7 = 0, 4.29, 8.57, 12.86, ... -> 0, 4, 9, 13, 17, 21, 26
    assert _decoded_index(read_video(path, fps=7).frames) == [round(30 * k / 7) for k in range(7)]
    # max_frames stops early; start_time shifts the clock.
    assert _decoded_index(read_video(path, fps=5, max_frames=2).frames) == [0, 6]
    assert _decoded_index(read_video(path, fps=10, start_time=0.5, max_frames=3).frames) == [15, 18, 21]
    assert _decoded_index(read_video(path, max_frames=4, start_time=0.2).frames) == [6, 7, 8, 9]


def test_iter_video_chunks_concatenate_to_read_video(tmp_path):
    path = write_video(tmp_path / "idx.mp4", _index_video(23), fps=30)
    chunks = list(iter_video(path, chunk_frames=5))
    assert [c.num_frames for c in chunks] == [5, 5, 5, 5, 3]
    assert torch.equal(torch.cat([c.frames for c in chunks]), read_video(path).frames)
    resampled = list(iter_video(path, chunk_frames=2, fps=10))
    assert _decoded_index(torch.cat([c.frames for c in resampled])) == [0, 3, 6, 9, 12, 15, 18, 21]
    assert all(c.fps == 10 for c in resampled)


@pytest.mark.parametrize("suffix", ["", ".mp4"])
def test_mask_round_trip_is_lossless(tmp_path, suffix):
    mask = torch.rand(3, 1, 20, 30, generator=torch.Generator().manual_seed(2)) > 0.7
    path = write_mask(tmp_path / f"mask{suffix}", mask)
    assert torch.equal(read_mask(path), mask)


def test_bad_inputs_give_one_line_errors(tmp_path):
    with pytest.raises(StereobenchError, match="does not exist"):
        read_video(tmp_path / "missing.mp4")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"this is not a video" * 100)
    with pytest.raises(StereobenchError, match="cannot"):
        read_video(corrupt)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(StereobenchError):
        read_video(empty)
    (tmp_path / "no_frames").mkdir()
    with pytest.raises(StereobenchError, match="no image frames"):
        read_video(tmp_path / "no_frames")
    # Truncated file: header kept, most of the data cut.
    good = write_video(tmp_path / "good.mp4", _smooth_video(t=8), fps=10)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(StereobenchError):
        read_video(truncated)
    with pytest.raises(StereobenchError, match="no frames"):
        read_video(good, start_time=100.0)
    with pytest.raises(StereobenchError):
        write_video(tmp_path / "x.mp4", torch.zeros(0, 3, 4, 4), fps=10)
    for err in (StereobenchError,):
        try:
            read_video(corrupt)
        except err as exc:
            assert "\n" not in str(exc)


def test_16bit_png_frames_keep_their_values_and_precision(tmp_path):
    """16-bit grayscale PNGs (PIL mode I;16) used to be clipped to white by convert("RGB")."""
    from PIL import Image

    folder = tmp_path / "i16"
    folder.mkdir()
    levels = [0, 1, 30000, 30001, 65535]
    for k, level in enumerate(levels):
        Image.fromarray(np.full((5, 7), level, np.uint16)).save(folder / f"f{k}.png")
    with Image.open(folder / "f2.png") as img:
        assert img.mode.startswith("I;16")  # the case under test
    data = read_video(folder)
    assert data.frames.shape == (5, 3, 5, 7) and data.frames.dtype == torch.float32
    expected = torch.tensor(levels, dtype=torch.float32) / 65535
    for c in range(3):
        torch.testing.assert_close(data.frames[:, c, 2, 3], expected, atol=1e-7, rtol=0)
    # Not quantised to 8 bits: 30000 and 30001 stay distinct.
    assert data.frames[3, 0, 0, 0] > data.frames[2, 0, 0, 0]


def _encode_levels(path, levels, rate=30, pts_ms=None, h=32, w=32):
    """Encode grey frames (level per frame) losslessly with libx264 in-process; ``pts_ms`` gives
    explicit presentation times in milliseconds (variable frame rate)."""
    from fractions import Fraction

    av = pytest.importorskip("av")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "0"}
        if pts_ms is not None:
            stream.time_base = Fraction(1, 1000)
        for k, level in enumerate(levels):
            frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), level, np.uint8), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[k], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_start_time_on_mpeg_ts(tmp_path):
    """Seeking in MPEG-TS decodes nothing (or lands far past the target); reading then decodes
    from the start and skips the early frames. Reference: the full decode from the start."""
    path = _encode_levels(tmp_path / "idx.ts", [(37 * k) % 256 for k in range(90)], rate=30, h=48, w=64)
    full = read_video(path)
    assert full.num_frames == 90 and len(set(full.frames[:, 0, 20, 20].tolist())) > 80
    torch.testing.assert_close(full.timestamps, torch.arange(90, dtype=torch.float64) / 30, atol=1e-4, rtol=0)
    data = read_video(path, start_time=1.0, max_frames=3)
    assert torch.equal(data.frames, full.frames[30:33])
    torch.testing.assert_close(data.timestamps, full.timestamps[30:33])
    assert torch.equal(read_video(path, fps=10, start_time=1.5).frames, full.frames[45::3])


def test_variable_frame_rate_keeps_the_nearest_frame_before_start_time(tmp_path):
    pts_ms = [0, 30, 70, 100, 300, 330, 360, 700, 733, 766]
    path = _encode_levels(tmp_path / "vfr.mkv", [8 * k for k in range(len(pts_ms))], pts_ms=pts_ms)
    native = read_video(path)
    assert _decoded_index(native.frames) == list(range(len(pts_ms)))
    times = native.timestamps.numpy()
    assert times[7] - times[6] > 0.3  # a long gap: a fixed cut-off in mean intervals drops frame 6
    start, fps = 0.45, 10
    data = read_video(path, fps=fps, start_time=start)
    # Independent reference: argmin |t_source - target| per output time (target 0.45 s is
    # nearest to the frame before the gap, several mean frame intervals before it).
    targets = start + np.arange(data.num_frames) / fps
    assert data.num_frames == 4
    # Ties (target 0.75 s between frames at 0.733 and 0.767 s) go to the later frame.
    expected = []
    for t in targets:
        distance = np.abs(times - t)
        expected.append(int(np.flatnonzero(distance <= distance.min() + 1e-6).max()))
    assert _decoded_index(data.frames) == expected and expected[0] == 6


@pytest.mark.parametrize("size", [(7, 9), (8, 9), (7, 10)])
def test_odd_sized_mask_mp4_round_trip_is_exact(tmp_path, size):
    mask = torch.rand(5, 1, *size, generator=torch.Generator().manual_seed(3)) > 0.5
    path = write_mask(tmp_path / "mask.mp4", mask, fps=10)
    back = read_mask(path)
    assert back.shape == mask.shape and torch.equal(back, mask)
    assert read_video(path).frames.shape == (5, 3, *size)
    # The stream itself stays even-sized (yuv420p); only reading crops.
    av = pytest.importorskip("av")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.height, stream.width) == (size[0] + size[0] % 2, size[1] + size[1] % 2)


def test_resampling_ties_go_to_the_later_frame(tmp_path):
    """30 -> 20 fps: odd targets lie exactly between two source frames; FFmpeg's fps filter
    (round=near) takes the later one, so output k is source frame ceil(1.5 k)."""
    path = write_video(tmp_path / "idx.mp4", _index_video(30), fps=30)
    data = read_video(path, fps=20)
    assert _decoded_index(data.frames) == [math.ceil(1.5 * k) for k in range(data.num_frames)]
    shifted = read_video(path, fps=20, start_time=0.1)  # targets 0.1 + k / 20 s
    assert _decoded_index(shifted.frames) == [3 + math.ceil(1.5 * k) for k in range(shifted.num_frames)]
