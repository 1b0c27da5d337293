"""`stereobench convert` bad input: one `error:` line naming the problem and the fix, exit 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.badinput import assert_clean_error
from tests.convert_helpers import make_video, scene


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("bad_convert") / "clip.mp4", scene(10, 32, 48), fps=24)


def _argv(src, out, *extra):
    return ["convert", str(src), "-o", str(out), "--preset", "ultrafast", "--segment-frames", "4", "--window", "4",
            "--overlap", "1", "--no-progress", *extra]


def test_not_a_video(tmp_path, capsys):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n")
    assert_clean_error(_argv(bad, tmp_path / "o.mp4"), capsys, contains=["notes.mp4", "video"])


def test_missing_input(tmp_path, capsys):
    assert_clean_error(_argv(tmp_path / "nope.mp4", tmp_path / "o.mp4"), capsys, contains="does not exist")


def test_zero_frames(tmp_path, capsys):
    import av

    empty = tmp_path / "empty.avi"  # AVI keeps a video stream without frames (MP4 drops the track)
    container = av.open(str(empty), "w", format="avi")
    stream = container.add_stream("libx264", rate=24)
    stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
    container.start_encoding()  # header and an empty video track, no frame
    container.close()
    assert_clean_error(_argv(empty, tmp_path / "o.mp4"), capsys, contains="no frames")


def test_output_exists_is_refused_unless_overwrite(tmp_path, capsys, clip):
    out = tmp_path / "o.mp4"
    out.write_bytes(b"precious")
    depth = tmp_path / "d.npy"
    np.save(depth, np.random.default_rng(0).random((10, 32, 48), dtype=np.float32))
    assert_clean_error(_argv(clip, out, "--depth", f"files:{depth}"), capsys, contains=["exists", "--overwrite"])
    assert out.read_bytes() == b"precious"
    from benchmark.cli import main

    assert main(_argv(clip, out, "--depth", f"files:{depth}", "--overwrite")) == 0
    assert out.stat().st_size > 1000


def test_layout_typo_gets_did_you_mean(tmp_path, capsys, clip):
    assert_clean_error(_argv(clip, tmp_path / "o.mp4", "--layout", "half-sbss"), capsys,
                       contains=["half-sbss", "did you mean 'half-sbs'"])


def test_method_typo_gets_did_you_mean(tmp_path, capsys, clip):
    assert_clean_error(_argv(clip, tmp_path / "o.mp4", "--method", "background-fil"), capsys,
                       contains="did you mean 'background-fill'")


@pytest.mark.parametrize("flags,needle", [
    (["--max-disparity", "lots"], "max-disparity"),
    (["--max-disparity", "-3%"], "max-disparity"),
    (["--crf", "80"], "crf"),
    (["--codec", "h266"], "codec"),
    (["--preset", "fastest"], "preset"),
    (["--window", "4", "--overlap", "4"], "overlap"),
    (["--max-fps", "0"], "max-fps"),
    (["--method-option", "search"], "KEY=VALUE"),
])
def test_bad_settings_fail_before_any_work(tmp_path, capsys, clip, flags, needle):
    assert_clean_error(_argv(clip, tmp_path / "o.mp4", *flags), capsys, contains=needle)
    assert not (tmp_path / "o.mp4.parts").exists()


def test_wrong_output_extension(tmp_path, capsys, clip):
    assert_clean_error(_argv(clip, tmp_path / "o.avi"), capsys, contains=".mp4")


def test_depth_files_with_the_wrong_count_are_named(tmp_path, capsys, clip):
    depth = tmp_path / "short_depth.npy"
    np.save(depth, np.random.default_rng(0).random((7, 32, 48), dtype=np.float32))
    assert_clean_error(_argv(clip, tmp_path / "o.mp4", "--depth", f"files:{depth}"), capsys,
                       contains=["short_depth.npy", "7"])
    longer = tmp_path / "long_depth.npy"
    np.save(longer, np.random.default_rng(0).random((13, 32, 48), dtype=np.float32))
    assert_clean_error(_argv(clip, tmp_path / "p.mp4", "--depth", f"files:{longer}"), capsys,
                       contains=["13", "10"])


def test_depth_files_with_the_wrong_size_are_named(tmp_path, capsys, clip):
    depth = tmp_path / "big_depth.npy"
    np.save(depth, np.random.default_rng(0).random((10, 30, 40), dtype=np.float32))
    assert_clean_error(_argv(clip, tmp_path / "o.mp4", "--depth", f"files:{depth}"), capsys,
                       contains=["40", "48"])


def test_unknown_depth_model_gets_did_you_mean(tmp_path, capsys, clip):
    assert_clean_error(_argv(clip, tmp_path / "o.mp4", "--depth", "depth-anything-v3"), capsys,
                       contains="depth model")


def test_variable_frame_rate_is_handled_from_the_cli(tmp_path, capsys):
    from fractions import Fraction

    from benchmark.cli import main

    pts = [0, 50, 70, 140, 160, 230, 260, 300, 380, 400]
    src = make_video(tmp_path / "vfr.mp4", scene(10, 32, 48), fps=20, pts=pts, time_base=Fraction(1, 1000))
    from benchmark.convert.encode import probe
    from benchmark.video_io import iter_video, read_video

    info = probe(src)
    # The output clock is the mean rate; its frame count is what the depth files must match.
    expected = sum(chunk.num_frames for chunk in iter_video(src, fps=float(info.fps), start_time=None))
    assert 8 <= expected <= 11
    depth = tmp_path / "d.npy"
    np.save(depth, np.ones((expected, 32, 48), dtype=np.float32))
    assert main(_argv(src, tmp_path / "o.mp4", "--depth", f"files:{depth}")) == 0, capsys.readouterr().err
    assert read_video(tmp_path / "o.mp4").num_frames == expected
