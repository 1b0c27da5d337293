"""convert with depth files on a resampled clock (--max-fps, variable frame rate): one map per
SOURCE frame, each output frame takes the map of the source frame it was decoded from."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch

from benchmark.convert import ConvertOptions, convert_video
from benchmark.depth import write_depth_files
from benchmark.video_io import read_video
from tests.convert_helpers import make_video, scene


class Identity:
    def push(self, raw: torch.Tensor) -> torch.Tensor:
        return raw.clamp(0.0, 1.0)

    def flush(self) -> torch.Tensor:
        return torch.zeros((0, 1, 1))


def _stored_depth(out_path) -> np.ndarray:
    parts = out_path.with_name(out_path.name + ".parts")
    data = np.fromfile(parts / "depth.f16", dtype=np.float16).astype(np.float32)
    return data.reshape(-1, 32, 48)


def _per_frame_constant(n: int) -> np.ndarray:
    """Map k is the constant k / (n - 1): which source frame a map came from is readable."""
    return np.broadcast_to((np.arange(n) / (n - 1))[:, None, None], (n, 32, 48)).astype(np.float32).copy()


def _options(path, **kw) -> ConvertOptions:
    return ConvertOptions(depth=f"files:{path}", normalizer=Identity, preset="ultrafast", segment_frames=8,
                          window=6, overlap=2, **kw)


def test_max_fps_takes_each_output_frames_own_source_map(tmp_path):
    src = make_video(tmp_path / "c.mp4", scene(20, 32, 48), fps=24)
    depth = write_depth_files(tmp_path / "c_depth.npy", _per_frame_constant(20))
    out = convert_video(src, tmp_path / "o.mp4", _options(depth, max_fps=12), keep_parts=True)
    assert out.frames == 10
    got = _stored_depth(out.output)[:, 16, 24]
    # 24 -> 12 fps: output frame k is source frame 2k (the nearest at or before each tick).
    np.testing.assert_allclose(got, np.arange(0, 20, 2) / 19, atol=2e-3)


def test_variable_frame_rate_uses_the_source_frames_maps(tmp_path):
    pts = [0, 40, 80, 150, 190, 230, 300, 340, 380, 420, 500, 540, 580, 620, 660, 700]
    src = make_video(tmp_path / "v.mkv", scene(16, 32, 48), fps=25, pts=pts, time_base=Fraction(1, 1000))
    depth = write_depth_files(tmp_path / "v_depth", _per_frame_constant(16), fmt="exr")
    out = convert_video(src, tmp_path / "o.mp4", _options(depth), keep_parts=True)
    assert out.frames > 16  # the gaps are filled by repeated frames on the constant clock
    got = np.round(_stored_depth(out.output)[:, 16, 24] * 15).astype(int)
    source = read_video(src).timestamps.numpy()
    ticks = np.arange(out.frames) / float(out.fps)
    expected = [int(np.searchsorted(source, t + 1e-6, side="right") - 1) for t in ticks]
    # Every output frame's map is its own source frame's (nearest at or before the tick, +-1 for rounding).
    assert np.max(np.abs(got - np.asarray(expected))) <= 1
    assert got[0] == 0 and got[-1] == 15 and np.all(np.diff(got) >= 0)


def test_depth_files_short_of_the_source_are_named(tmp_path):
    import pytest

    from benchmark.errors import StereobenchError

    src = make_video(tmp_path / "c.mp4", scene(20, 32, 48), fps=24)
    depth = write_depth_files(tmp_path / "c_depth.npy", _per_frame_constant(20)[:15])
    with pytest.raises(StereobenchError, match="hold 15 frames but"):
        convert_video(src, tmp_path / "o.mp4", _options(depth, max_fps=12))


def test_a_second_convert_to_the_same_output_is_refused_while_the_first_runs(tmp_path):
    import pytest

    from benchmark.convert.pipeline import _OutputLock
    from benchmark.errors import StereobenchError

    src = make_video(tmp_path / "c.mp4", scene(12, 32, 48), fps=24)
    depth = write_depth_files(tmp_path / "c_depth.npy", _per_frame_constant(12))
    out = tmp_path / "new" / "o.mp4"
    out.parent.mkdir()
    first = _OutputLock(out)  # what a running convert holds (its own file description)
    try:
        with pytest.raises(StereobenchError, match="is being converted by another process"):
            convert_video(src, out, _options(depth))
    finally:
        first.release()
    result = convert_video(src, out, _options(depth))  # free again: converts, and leaves no lock file
    assert result.frames == 12 and out.is_file()
    assert not (out.parent / ".o.mp4.lock").exists()


def test_h265_output_keeps_the_hvc1_tag_after_the_join(tmp_path):
    import av

    src = make_video(tmp_path / "c.mp4", scene(12, 32, 48), fps=24)
    depth = write_depth_files(tmp_path / "c_depth.npy", _per_frame_constant(12))
    out = convert_video(src, tmp_path / "h.mp4", _options(depth, codec="h265", crf=28))
    with av.open(str(out.output)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "hevc"
        assert stream.codec_tag == "hvc1"  # docs/convert.md: Apple players and browsers want hvc1 (was hev1)
    assert read_video(out.output).num_frames == 12


def test_convert_help_states_what_depth_files_hold_and_the_defaults(capsys):
    import pytest

    from benchmark.cli import main

    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "one per frame of the video, at its upright size" in text
    assert "frames per depth-model call (default 8)" in text
