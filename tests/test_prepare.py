"""`stereobench prepare` end to end on a tiny synthetic dataset, and its bad-input exits."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("benchmark.stereo.cache")

from benchmark.cli import main  # noqa: E402

TINY = ["--dataset", "synthetic", "--option", "num_clips=2", "--option", "size=48x64",
        "--option", "num_frames=4", "--protocol", "native"]


def _cache_files(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_prepare_builds_cache_and_previews_then_hits_the_cache(tmp_path, capsys):
    cache, preview = tmp_path / "cache", tmp_path / "preview"
    argv = ["prepare", *TINY, "--cache", str(cache), "--preview", str(preview)]
    assert main(argv) == 0
    first = capsys.readouterr().out
    entries = _cache_files(cache)
    assert entries, "nothing was cached"
    assert "synthetic" in first and str(preview) in first

    from PIL import Image

    from benchmark.video_io import read_video

    for name in ("scene-000", "scene-001"):
        png = np.asarray(Image.open(preview / f"{name}.png"))
        # One labelled frame: a label strip on top, 4 panels of 64 px side by side with gaps.
        assert png.shape[0] > 48 and png.shape[1] >= 4 * 64 and png.shape[2] == 3
        video = read_video(preview / f"{name}.mp4")
        assert video.num_frames == 4 and video.frames.shape[-1] >= 4 * 64
        # The mask panel (third) is black/white only, and the GT right panel is not blank.
        assert png[png.shape[0] // 2:, :, :].std() > 5

    mtimes = {p: p.stat().st_mtime_ns for p in entries}
    assert main(argv) == 0
    second = capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in _cache_files(cache)} == mtimes  # nothing rebuilt
    row = next(line for line in second.splitlines() if line.startswith("synthetic"))
    assert row.split()[2:4] == ["2", "2"]  # 2 clips, 2 cache hits


def test_prepare_clips_limit_and_no_preview(tmp_path, capsys):
    argv = ["prepare", *TINY, "--clips", "1", "--cache", str(tmp_path / "c"), "--no-preview",
            "--preview", str(tmp_path / "p")]
    assert main(argv) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("synthetic"))
    assert row.split()[2] == "1"
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("args, message", [
    (["--dataset", "synthtic"], "Did you mean 'synthetic'"),
    (["--dataset", "synthetic", "--protocol", "papr"], "Did you mean 'paper'"),
    (["--dataset", "synthetic", "--warp", "m2svd"], "Did you mean 'm2svid'"),
    (["--dataset", "synthetic", "--option", "colour=red"], "does not accept options"),
    (["--dataset", "synthetic", "--clips", "0"], "--clips"),
])
def test_prepare_bad_input_one_line_error_and_no_cache(tmp_path, capsys, args, message):
    cache = tmp_path / "cache"
    assert main(["prepare", *args, "--cache", str(cache), "--preview", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not cache.exists() or not _cache_files(cache)


def test_prepare_unreadable_folder(tmp_path, capsys):
    missing = tmp_path / "no_such_videos"
    assert main(["prepare", "--dataset", "folder", "--option", f"root={missing}", "--cache",
                 str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err and "\n" not in err
    (tmp_path / "empty").mkdir()
    assert main(["prepare", "--dataset", str(tmp_path / "empty"), "--cache", str(tmp_path / "cache")]) == 2
    assert "holds no videos" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists() or not _cache_files(tmp_path / "cache")


def test_prepare_help_teaches():
    from benchmark.cli import build_parser

    text = build_parser("prepare")._subparsers._group_actions[0].choices["prepare"].format_help()
    for needle in ("--dataset", "--protocol", "--warp", "--clips", "--cache", "--preview", "Examples"):
        assert needle in text


def test_preview_png_shows_the_requested_frame(tmp_path):
    """--preview-frame K writes panel frame K (not a clamped neighbour); out of range is an error."""
    import torch
    from PIL import Image

    from benchmark.commands.prepare import preview_panels, write_preview
    from benchmark.errors import StereobenchError
    from benchmark.types import StereoInput

    g = torch.Generator().manual_seed(0)
    t, h, w = 3, 24, 32
    left = torch.rand(t, 3, h, w, generator=g)
    inp = StereoInput(left=left, warped=torch.rand(t, 3, h, w, generator=g), mask=torch.rand(t, 1, h, w, generator=g) > 0.8,
                      disparity=torch.zeros(t, 1, h, w), clip_id="x/c", fps=5.0, params={"warp": "shared"})
    panels = preview_panels(inp, None)
    for k in range(t):
        png, _ = write_preview(inp, None, tmp_path, f"f{k}", frame=k)
        expected = (panels[k].permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
        assert np.array_equal(np.asarray(Image.open(png)), expected)
    with pytest.raises(StereobenchError, match="0..2"):
        write_preview(inp, None, tmp_path, "bad", frame=3)
    assert not (tmp_path / "bad.png").exists()
