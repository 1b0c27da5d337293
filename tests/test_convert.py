"""stereobench convert: geometry, layouts in the file, audio, rotation, frame rate, resume, memory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.convert import ConvertOptions, convert_video, parse_max_disparity
from benchmark.video_io import read_video
from tests.convert_helpers import decode_audio, make_video, scene, stream_info, tone

REPO = Path(__file__).resolve().parents[1]


class FlatDepth:
    """A depth "model": the same inverse depth everywhere (value), or a near square on a ramp."""

    def __init__(self, value: float | None = None):
        self.value = value

    def predict(self, frames: torch.Tensor, start: int = 0) -> torch.Tensor:
        t, _, h, w = frames.shape
        if self.value is not None:
            return torch.full((t, h, w), float(self.value))
        depth = torch.linspace(0.0, 0.5, w).expand(t, h, w).clone()
        depth[:, h // 3:2 * h // 3, w // 3:w // 3 + w // 5] = 1.0
        return depth


class Identity:
    """A normaliser that keeps depth as it is (values already in [0, 1])."""

    def push(self, raw: torch.Tensor) -> torch.Tensor:
        return raw.clamp(0.0, 1.0)

    def flush(self) -> torch.Tensor:
        return torch.zeros((0, 1, 1))


def _fast(**kw) -> ConvertOptions:
    base = {"depth": FlatDepth(), "preset": "ultrafast", "segment_frames": 8, "window": 6, "overlap": 2}
    base.update(kw)
    return ConvertOptions(**base)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("convert_src")
    return make_video(folder / "clip.mp4", scene(20, 48, 64), fps=24, audio="aac")


def test_parse_max_disparity_percent_and_pixels():
    assert parse_max_disparity("2%", 1920) == pytest.approx(38.4)
    assert parse_max_disparity("24", 1920) == 24.0
    assert parse_max_disparity("24px", 640) == 24.0
    assert parse_max_disparity(5, 640) == 5.0


def test_full_sbs_keeps_left_and_shifts_right_by_the_disparity(tmp_path, source):
    # Flat depth 1 with convergence 0: every pixel has disparity D = 8 px, so the right view is
    # the left one moved 8 px to the left (x_R = x_L - d).
    out = convert_video(source, tmp_path / "out.mp4", _fast(depth=FlatDepth(1.0), normalizer=Identity,
                                                            normalizer_key="identity", max_disparity="8",
                                                            convergence=0.0, crf=0, method="warp-only"))
    assert out.frames == 20 and out.size == (48, 128) and out.fps == Fraction(24)
    info = stream_info(out.output)
    assert (info["codec"], info["pix_fmt"], info["width"], info["height"]) == ("h264", "yuv420p", 128, 48)
    video = read_video(out.output).frames
    src = read_video(source).frames
    assert video.shape == (20, 3, 48, 128)
    left, right = video[..., :64], video[..., 64:]
    assert float((left - src).abs().mean()) < 0.02
    shifted = src[..., 8:]
    assert float((right[..., :56] - shifted).abs().mean()) < 0.02
    assert float((right[..., :56] - src[..., :56]).abs().mean()) > 0.05  # really moved
    assert float(right[..., 58:].abs().max()) < 0.1  # warp-only leaves the disoccluded band black


def test_convergence_puts_that_depth_on_the_screen(tmp_path, source):
    # Depth 0.5 at convergence 0.5: zero disparity, the right eye equals the left one.
    out = convert_video(source, tmp_path / "out.mp4", _fast(depth=FlatDepth(0.5), normalizer=Identity,
                                                            normalizer_key="identity", max_disparity="10%",
                                                            convergence=0.5, crf=0))
    video = read_video(out.output).frames
    assert float((video[..., :64] - video[..., 64:]).abs().mean()) < 0.01


@pytest.mark.parametrize("layout,shape", [("half-sbs", (48, 64)), ("full-tb", (96, 64)), ("cross-eyed", (48, 128)),
                                          ("anaglyph-dubois", (48, 64)), ("right-only", (48, 64))])
def test_layouts_set_the_frame_size(tmp_path, source, layout, shape):
    out = convert_video(source, tmp_path, _fast(layout=layout))
    from benchmark.layouts import output_name

    assert out.output == tmp_path / output_name(source, layout)
    info = stream_info(out.output)
    assert (info["height"], info["width"]) == shape


def test_cross_eyed_puts_the_left_eye_on_the_right(tmp_path, source):
    out = convert_video(source, tmp_path / "x.mp4", _fast(layout="cross-eyed", crf=0))
    video = read_video(out.output).frames
    src = read_video(source).frames
    assert float((video[..., 64:] - src).abs().mean()) < 0.02


def test_audio_is_copied_with_the_same_duration_and_waveform(tmp_path, source):
    out = convert_video(source, tmp_path / "a.mp4", _fast())
    assert out.audio == "copied"
    info = stream_info(out.output)
    assert info["audio"] == "aac"
    got, rate = decode_audio(out.output)
    ref, _ = decode_audio(source)
    assert abs(len(got) - len(ref)) <= 1024
    n = min(len(got), len(ref))
    assert np.corrcoef(got[:n], ref[:n])[0, 1] > 0.99
    assert abs(len(got) / rate - 20 / 24) < 0.05


def test_pcm_audio_is_reencoded_to_aac_and_keeps_the_tone(tmp_path):
    src = make_video(tmp_path / "pcm.mkv", scene(12, 32, 48), fps=24, audio="pcm_s16le")
    out = convert_video(src, tmp_path / "a.mp4", _fast())
    assert out.audio == "aac" and stream_info(out.output)["audio"] == "aac"
    got, rate = decode_audio(out.output)
    assert abs(len(got) / rate - 0.5) < 0.06
    ref = tone(0.5)
    # AAC adds a priming delay: the best lag within 50 ms correlates.
    best = max(np.corrcoef(got[lag:lag + 15000], ref[:15000])[0, 1] for lag in range(0, 2205, 21))
    assert best > 0.95
    # And --audio none drops it.
    out = convert_video(src, tmp_path / "n.mp4", _fast(audio="none"))
    assert out.audio == "none" and stream_info(out.output)["audio"] is None


def test_rotation_metadata_is_applied(tmp_path):
    frames = scene(6, 32, 48)
    frames[:, :4, :4] = 0  # a dark top-left corner to follow
    src = make_video(tmp_path / "rot.mp4", frames, rotation=90)
    out = convert_video(src, tmp_path / "r.mp4", _fast(layout="right-only", depth=FlatDepth(0.5), normalizer=Identity,
                                                       normalizer_key="identity", crf=0))
    video = read_video(out.output).frames
    assert video.shape[-2:] == (48, 32)  # portrait: width and height swapped
    upright = torch.from_numpy(frames[0]).permute(2, 0, 1).float() / 255
    ccw = float((video[0] - torch.rot90(upright, 1, dims=(-2, -1))).abs().mean())
    cw = float((video[0] - torch.rot90(upright, -1, dims=(-2, -1))).abs().mean())
    assert ccw < 0.05 and ccw < 0.5 * cw  # counter-clockwise, as the display matrix says


def test_variable_frame_rate_is_resampled_to_a_constant_rate(tmp_path):
    # 20 frames at irregular times over ~1 s (time base 1/1000).
    pts = [0, 40, 60, 120, 150, 200, 260, 280, 330, 400, 420, 480, 520, 560, 640, 660, 720, 800, 840, 900]
    src = make_video(tmp_path / "vfr.mp4", scene(20, 32, 48), fps=20, pts=pts, time_base=Fraction(1, 1000))
    out = convert_video(src, tmp_path / "v.mp4", _fast())
    info = stream_info(out.output)
    assert info["fps"] == out.fps
    # A constant-rate output covering the source's span (0 .. 0.9 s, plus the last frame's slot).
    assert abs(out.frames / float(out.fps) - 0.95) < 0.15
    assert read_video(out.output).num_frames == out.frames


def test_max_fps_caps_the_rate(tmp_path, source):
    out = convert_video(source, tmp_path / "f.mp4", _fast(max_fps=12))
    assert out.fps == 12 and out.frames == 10
    assert stream_info(out.output)["fps"] == 12


def test_h265_on_request(tmp_path, source):
    out = convert_video(source, tmp_path / "h.mp4", _fast(codec="h265", crf=28))
    info = stream_info(out.output)
    assert info["codec"] == "hevc" and info["pix_fmt"] == "yuv420p"


def test_temporal_normaliser_is_used_by_default(tmp_path, source):
    # With the default normaliser a depth model's raw scale does not matter: x10 gives the same file.
    class Scaled(FlatDepth):
        def predict(self, frames, start=0):
            return super().predict(frames, start) * 10.0 + 3.0

    a = read_video(convert_video(source, tmp_path / "a.mp4", _fast(crf=0)).output).frames
    b = read_video(convert_video(source, tmp_path / "b.mp4", _fast(depth=Scaled(), crf=0)).output).frames
    # (float16 storage of the raw depth may flip a pixel at a depth edge between hole and not)
    assert float((a - b).abs().mean()) < 0.003
    # Without normalisation the same raw values saturate: a clearly different right eye.
    c = read_video(convert_video(source, tmp_path / "c.mp4", _fast(depth=Scaled(), crf=0, normalizer=Identity,
                                                                   normalizer_key="identity")).output).frames
    assert float((a - c).abs().mean()) > 0.01


# ----------------------------------------------------------------------------- resume

_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {repo!r})
    from benchmark.convert import ConvertOptions, convert_video
    src, out, depth, kill_after = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    def on_segment(index, total):
        if kill_after and index + 1 == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)   # no clean-up of any kind: a real crash

    options = ConvertOptions(depth="files:" + depth, method={method!r}, segment_frames=8, window=7, overlap=3,
                             preset="ultrafast", max_disparity="6%", convergence=0.3)
    convert_video(src, out, options, on_segment=on_segment)
""")


def _run_script(tmp_path, method, *args) -> subprocess.CompletedProcess:
    script = tmp_path / "convert_job.py"
    script.write_text(_KILL_SCRIPT.format(repo=str(REPO), method=method))
    return subprocess.run([sys.executable, str(script), *map(str, args)], check=False, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _resume_case(tmp_path, method: str, frames: int = 40) -> None:
    src = make_video(tmp_path / "long.mp4", scene(frames, 40, 56, seed=2), fps=24, audio="aac")
    rng = np.random.default_rng(0)
    depth = np.linspace(0, 1, 56, dtype=np.float32)[None, None, :] * (1 + 0.2 * rng.random((frames, 1, 1)))
    depth = np.broadcast_to(depth, (frames, 40, 56)).astype(np.float32)
    np.save(tmp_path / "depth.npy", depth)
    whole = _run_script(tmp_path, method, src, tmp_path / "whole.mp4", tmp_path / "depth.npy", 0)
    assert whole.returncode == 0, whole.stderr
    killed = _run_script(tmp_path, method, src, tmp_path / "resumed.mp4", tmp_path / "depth.npy", 2)
    assert killed.returncode == -9, killed.stderr  # SIGKILL after the 2nd of 5 segments
    assert not (tmp_path / "resumed.mp4").exists()
    parts = tmp_path / "resumed.mp4.parts"
    assert sorted(p.name for p in parts.glob("seg_*.mp4")) == ["seg_00000.mp4", "seg_00001.mp4"]
    again = _run_script(tmp_path, method, src, tmp_path / "resumed.mp4", tmp_path / "depth.npy", 0)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stderr and "segment 3 of 5" in again.stderr
    a = read_video(tmp_path / "whole.mp4").frames
    b = read_video(tmp_path / "resumed.mp4").frames
    assert a.shape == (frames, 3, 40, 112) and torch.equal(a, b)
    assert (tmp_path / "whole.mp4").read_bytes() == (tmp_path / "resumed.mp4").read_bytes()
    assert not parts.exists()


def test_killed_convert_resumes_and_equals_an_uninterrupted_run(tmp_path):
    _resume_case(tmp_path, "background-fill")


@pytest.mark.slow
def test_killed_convert_resumes_with_a_temporal_method(tmp_path):
    _resume_case(tmp_path, "temporal-fill")


def test_changed_settings_discard_old_parts(tmp_path, source):
    logs: list[str] = []
    opts = _fast()

    def stop(index, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        convert_video(source, tmp_path / "o.mp4", opts, on_segment=stop, log=logs.append)
    assert (tmp_path / "o.mp4.parts" / "seg_00000.mp4").exists()
    result = convert_video(source, tmp_path / "o.mp4", _fast(crf=30), log=logs.append)
    assert result.resumed_segments == 0 and any("discarding" in line for line in logs)
    with pytest.raises(KeyboardInterrupt):
        convert_video(source, tmp_path / "p.mp4", opts, on_segment=stop, log=logs.append)
    assert convert_video(source, tmp_path / "p.mp4", opts, log=logs.append).resumed_segments == 1


def test_interrupted_depth_pass_keeps_its_finished_chunks(tmp_path, source):
    class Counting(FlatDepth):
        def __init__(self, stop_at=None):
            super().__init__()
            self.starts, self.stop_at = [], stop_at

        def predict(self, frames, start=0):
            if start == self.stop_at:
                raise KeyboardInterrupt
            self.starts.append(start)
            return super().predict(frames, start)

        def identity(self):  # the same depth source for the journal key
            return "counting-ramp"

    first = Counting(stop_at=16)
    with pytest.raises(KeyboardInterrupt):
        convert_video(source, tmp_path / "d.mp4", _fast(depth=first, depth_batch=8))
    assert first.starts == [0, 8]
    second = Counting()
    convert_video(source, tmp_path / "d.mp4", _fast(depth=second, depth_batch=8))
    assert second.starts == [16]  # the model ran only on the frames it had not seen
    whole = convert_video(source, tmp_path / "w.mp4", _fast(depth=Counting(), depth_batch=8))
    assert torch.equal(read_video(tmp_path / "d.mp4").frames, read_video(whole.output).frames)


# ----------------------------------------------------------------------------- memory

_RSS_SCRIPT = textwrap.dedent("""
    import resource, sys, torch
    sys.path.insert(0, {repo!r})
    from benchmark.convert import ConvertOptions, convert_video
    from tests.test_convert import FlatDepth
    options = ConvertOptions(depth=FlatDepth(), segment_frames=24, window=12, overlap=4, preset="ultrafast")
    convert_video(sys.argv[1], sys.argv[2], options)
    # VmHWM of this process's own memory map (ru_maxrss would carry the parent's RSS over the fork).
    from benchmark.timing import current_peak_rss_bytes
    print(current_peak_rss_bytes() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
""")


def _peak_rss(tmp_path: Path, frames: int, h: int, w: int) -> int:
    src = make_video(tmp_path / f"rss{frames}.mp4", scene(frames, h, w, seed=frames), fps=30)
    script = tmp_path / "rss.py"
    script.write_text(_RSS_SCRIPT.format(repo=str(REPO)))
    proc = subprocess.run([sys.executable, str(script), str(src), str(tmp_path / f"o{frames}.mp4")],
                          check=False, capture_output=True, text=True, timeout=900, cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.strip().splitlines()[-1])


def _assert_bounded(tmp_path, short: int, long: int, h: int, w: int, limit: int) -> None:
    a = _peak_rss(tmp_path, short, h, w)
    b = _peak_rss(tmp_path, long, h, w)
    grown = (long - short) * 3 * h * w * 4  # the extra frames as float RGB: what a whole-video design adds
    # Noise of the allocator and the imports is a few tens of MB; the bound is well below `grown`.
    assert b - a < max(48 << 20, grown // 4), (a >> 20, b >> 20, grown >> 20)
    assert b < limit, b


def test_memory_does_not_grow_with_length_fast(tmp_path):
    # One convert of 108 frames in 9 segments of 12. The kernel's peak-RSS mark (VmHWM) is reset
    # after segment 1 and read after segment 5 (peak of segments 2-5), then reset and read at the
    # end (segments 6-9 and the join). A design that kept frames would need 48 more frames
    # (177 MB as float RGB at 480x640) in the second half; a streaming one needs the same. The
    # frames are that large so a third of it (59 MB) stays above the allocator's noise between
    # two halves of one run (31 MB seen once in a full-suite run at 240x320, where the bound was 14 MB).
    from benchmark.timing import current_peak_rss_bytes, reset_peak_rss

    if not reset_peak_rss():
        pytest.skip("this kernel cannot reset the peak-RSS mark (/proc/self/clear_refs)")
    h, w, frames = 480, 640, 108
    src = make_video(tmp_path / "m.mp4", scene(frames, h, w, seed=1), fps=30)
    peaks = []

    def on_segment(index, total):
        if index == 4:
            peaks.append(current_peak_rss_bytes())
        if index in (0, 4):
            reset_peak_rss()

    options = ConvertOptions(depth=FlatDepth(), segment_frames=12, window=12, overlap=4, preset="ultrafast")
    convert_video(src, tmp_path / "m_out.mp4", options, on_segment=on_segment)
    peaks.append(current_peak_rss_bytes())
    kept = 48 * 3 * h * w * 4
    assert peaks[1] - peaks[0] < kept // 3, ((peaks[1] - peaks[0]) >> 20, kept >> 20)


@pytest.mark.slow
def test_memory_does_not_grow_with_length_100_vs_300_frames(tmp_path):
    _assert_bounded(tmp_path, 100, 300, 240, 320, 2000 << 20)


@pytest.mark.gpu
def test_convert_on_cuda_matches_the_cpu(tmp_path, source):
    # Unverified here (no GPU in this session): the method and the depth source run on the device.
    cpu = read_video(convert_video(source, tmp_path / "cpu.mp4", _fast(crf=0)).output).frames
    gpu = read_video(convert_video(source, tmp_path / "gpu.mp4", _fast(crf=0, device="cuda")).output).frames
    assert float((cpu - gpu).abs().mean()) < 0.003


def test_cli_with_a_tiny_depth_anything_folder(tmp_path, source, capsys):
    # The real loading code of benchmark.depth on a tiny random Depth Anything V2 written by the test.
    from benchmark.cli import main
    from tests.test_depth_models import write_tiny_depth_anything

    folder = tmp_path / "dav2"
    write_tiny_depth_anything(folder)
    argv = ["convert", str(source), "-o", str(tmp_path), "--depth", "depth-anything-v2", "--depth-weights",
            str(folder), "--preset", "ultrafast", "--segment-frames", "8", "--no-progress", "--json"]
    assert main(argv) == 0, capsys.readouterr().err
    import json

    summary = json.loads(capsys.readouterr().out)
    assert summary["output"] == str(tmp_path / "clip_LRF_Full_SBS.mp4") and summary["frames"] == 20
    assert summary["seconds"]["depth"] > 0
    assert read_video(tmp_path / "clip_LRF_Full_SBS.mp4").frames.shape == (20, 3, 48, 128)
