"""Video I/O round trips, frame-rate resampling and bad-input errors (tiny videos written here)."""

from __future__ import annotations

import math

import numpy as np
import subprocess
import sys

import pytest
import torch

from benchmark.errors import StereobenchError
from benchmark.video_io import (
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


# ---- frame sources -------------------------------------------------------------------------------

def test_open_source_picks_one_source_per_type(tmp_path):
    from PIL import Image

    from benchmark.video_io import ContainerSource, ImageFolderSource, ImageSource, open_source

    video = write_video(tmp_path / "v.mp4", _index_video(5), fps=10)
    write_frames(tmp_path / "frames", _index_video(4))
    Image.fromarray(np.full((6, 8), 40000, np.uint16)).save(tmp_path / "still.png")
    sources = {name: open_source(tmp_path / name, folder_fps=12) for name in ("v.mp4", "frames", "still.png")}
    assert isinstance(sources["v.mp4"], ContainerSource) and sources["v.mp4"].native_fps == pytest.approx(10)
    assert sources["v.mp4"].frame_count == 5
    assert isinstance(sources["frames"], ImageFolderSource) and sources["frames"].frame_count == 4
    assert sources["frames"].native_fps == 12
    assert isinstance(sources["still.png"], ImageSource)
    # Source frames: the container's carry their decode index and presentation time.
    frames = list(sources["v.mp4"].frames())
    assert [f.index for f in frames] == list(range(5))
    np.testing.assert_allclose([f.time for f in frames], np.arange(5) / 10, atol=1e-6)
    # A still 16-bit image keeps its precision (FFmpeg's image decoder would give 8 bits).
    still = read_video(tmp_path / "still.png")
    assert still.frames.shape == (1, 3, 6, 8)
    torch.testing.assert_close(still.frames, torch.full((1, 3, 6, 8), 40000 / 65535), atol=1e-7, rtol=0)
    assert video.exists()


def test_read_video_reports_the_source_index_of_every_output_frame(tmp_path):
    path = write_video(tmp_path / "idx.mp4", _index_video(30), fps=30)
    data = read_video(path, fps=20)
    # Independent of the resampler: the index recovered from the pixels is the source index.
    assert data.source_indices.tolist() == _decoded_index(data.frames)
    folder = write_frames(tmp_path / "frames", _index_video(12))
    data = read_video(folder, fps=10, start_time=0.2, folder_fps=30)
    assert data.source_indices.tolist() == _decoded_index(data.frames) == [6, 9]


# ---- the streaming writer ------------------------------------------------------------------------

def _reference_encode(path, video, fps):
    """Independent reference: the pre-streaming writer's encode (all frames at once, PyAV)."""
    from fractions import Fraction

    av = pytest.importorskip("av")
    frames = (video.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "18", "preset": "medium"}
        for arr in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_streaming_writer_equals_the_one_shot_encode(tmp_path):
    from benchmark.video_io import VideoWriter

    video = _smooth_video(t=10, h=48, w=64, seed=4)
    with VideoWriter(tmp_path / "stream.mp4", fps=12) as writer:
        writer.append(video[0])                        # one frame (3, H, W)
        writer.append(video[1:4])                      # a float batch
        writer.append((video[4:] * 255).round().to(torch.uint8))  # a uint8 batch
    assert writer.frames_written == 10
    streamed = read_video(tmp_path / "stream.mp4")
    reference = read_video(_reference_encode(tmp_path / "ref.mp4", video, 12))
    assert streamed.frames.shape == video.shape and streamed.fps == pytest.approx(12)
    # Same encoder and settings: the decoded frames agree (in practice bit for bit; x264 may
    # differ by a level across thread counts, hence the tolerance of two 8-bit steps).
    assert float((streamed.frames - reference.frames).abs().max()) <= 2 / 255
    assert _psnr(streamed.frames, video) > 35
    raw = (tmp_path / "stream.mp4").read_bytes()
    assert raw.find(b"moov") < raw.find(b"mdat")  # +faststart


def test_streaming_writer_is_atomic(tmp_path):
    from benchmark.video_io import VideoWriter

    target = tmp_path / "out" / "right.mp4"
    writer = VideoWriter(target, fps=10)
    with writer:
        writer.append(_smooth_video(t=3))
        assert not target.exists()                          # nothing under the final name yet
    assert target.exists() and not list(target.parent.glob(".*tmp*"))
    assert read_video(target).num_frames == 3

    failed = tmp_path / "out" / "failed.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(failed, fps=10) as writer:
            writer.append(_smooth_video(t=3))
            raise RuntimeError("boom")
    assert not failed.exists() and not list(failed.parent.glob(".failed.mp4*"))
    # An existing file is replaced only by a complete new one.
    with pytest.raises(RuntimeError):
        with VideoWriter(target, fps=10) as writer:
            writer.append(_smooth_video(t=2))
            raise RuntimeError("interrupted")
    assert read_video(target).num_frames == 3


def test_streaming_writer_keeps_no_frames(tmp_path):
    """Bounded memory: appended frames are not referenced after append returns, and the encoded
    data reaches the disk while frames are still arriving."""
    import gc
    import weakref

    from benchmark.video_io import VideoWriter

    with VideoWriter(tmp_path / "long.mp4", fps=30, preset="ultrafast") as writer:
        refs = []
        for k in range(240):
            frame = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(k))
            writer.append(frame)
            refs.append(weakref.ref(frame))
            del frame
        gc.collect()
        assert sum(ref() is not None for ref in refs) == 0
        temp = next(tmp_path.glob(".long.mp4.tmp-*"))
        # Muxed as it goes (noise frames: ~2.5 kB each; FFmpeg flushes in 256 kB blocks).
        assert temp.stat().st_size > 250_000
    assert read_video(tmp_path / "long.mp4").num_frames == 240


def test_streaming_writer_peak_memory_is_far_below_the_video_size(tmp_path):
    """Bounded memory: once the encoder's look-ahead is full (x264 holds about 60 frames), the
    resident set stops growing; over the next 128 frames of 128x128 (25 MB as float32) it grows
    by far less than those frames' size, where a writer that kept its frames would grow by all of it."""
    psutil = pytest.importorskip("psutil")
    from benchmark.video_io import VideoWriter

    process = psutil.Process()
    base = _smooth_video(t=1, h=128, w=128, seed=6)[0]  # smooth: cheap to encode, test stays fast
    with VideoWriter(tmp_path / "big.mp4", fps=30, preset="ultrafast") as writer:
        for k in range(64):
            writer.append(base.roll(k, dims=-1))
        start = peak = process.memory_info().rss
        for k in range(64, 192):
            writer.append(base.roll(k, dims=-1))
            peak = max(peak, process.memory_info().rss)
    streamed = 128 * base.numel() * 4
    assert peak - start < streamed / 5, f"grew {(peak - start) / 2**20:.1f} MiB"
    assert writer.frames_written == 192


def test_streaming_mask_round_trip_is_exact(tmp_path):
    from benchmark.video_io import VideoWriter

    mask = torch.rand(7, 1, 15, 21, generator=torch.Generator().manual_seed(5)) > 0.6
    with VideoWriter(tmp_path / "mask.mp4", fps=10, lossless=True, keep_size=True) as writer:
        writer.append(mask[:2])
        writer.append(mask[2:])
    assert torch.equal(read_mask(tmp_path / "mask.mp4"), mask)


@pytest.mark.parametrize("options, message", [
    *[(dict(fps=fps), "fps") for fps in (0, -1, float("nan"), float("inf"), "ten", None, True)],
    (dict(fps=10, crf=-1), "crf"), (dict(fps=10, crf=52), "crf"), (dict(fps=10, crf=2.5), "crf"),
    (dict(fps=10, preset="fastest"), "Did you mean 'faster'"),
])
def test_streaming_writer_rejects_bad_options(tmp_path, options, message):
    from benchmark.video_io import VideoWriter

    with pytest.raises(StereobenchError, match=message):
        VideoWriter(tmp_path / "x.mp4", **options)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("frames", [
    torch.zeros(2, 4, 8, 8),        # 4 channels
    torch.zeros(8, 8),              # no channel axis
    torch.zeros(0, 3, 8, 8),        # no frames
    np.zeros((2, 3, 8, 8)),         # not a tensor
])
def test_streaming_writer_rejects_bad_frames(tmp_path, frames):
    from benchmark.video_io import VideoWriter

    with pytest.raises(StereobenchError, match="must be a tensor|no frames"):
        with VideoWriter(tmp_path / "x.mp4", fps=10) as writer:
            writer.append(frames)
    assert not list(tmp_path.iterdir())


def test_streaming_writer_rejects_a_size_change_and_an_empty_close(tmp_path):
    from benchmark.video_io import VideoWriter

    with pytest.raises(StereobenchError, match="one size"):
        with VideoWriter(tmp_path / "x.mp4", fps=10) as writer:
            writer.append(torch.zeros(1, 3, 8, 8))
            writer.append(torch.zeros(1, 3, 8, 10))
    with pytest.raises(StereobenchError, match="no frames"):
        with VideoWriter(tmp_path / "y.mp4", fps=10):
            pass
    assert not list(tmp_path.iterdir())
    closed = VideoWriter(tmp_path / "z.mp4", fps=10)
    closed.append(torch.zeros(1, 3, 8, 8))
    closed.close()
    with pytest.raises(StereobenchError, match="closed"):
        closed.append(torch.zeros(1, 3, 8, 8))
