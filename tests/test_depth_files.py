"""Depth files: a round trip per format and layout, the depth/disparity declaration, and the
one-line errors for files that do not match the video (count, size) or cannot be read."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.depth import load_depth_model, read_depth_files, write_depth_files
from benchmark.depth.files import count_depth_frames
from benchmark.errors import StereobenchError


def _depth_video(t=5, h=12, w=20, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((t, h, w)) * 3.0 + 0.5).astype(np.float32)


@pytest.mark.parametrize("fmt,per_frame,exact", [("npy", False, True), ("npz", False, True), ("npy", True, True),
                                                  ("npz", True, True), ("exr", True, True), ("png16", True, False)])
def test_round_trip_per_format(tmp_path, fmt, per_frame, exact):
    depth = _depth_video()
    target = tmp_path / (f"clip.{fmt}" if not per_frame else "frames")
    written = write_depth_files(target, depth, fmt=fmt, per_frame=per_frame)
    back = read_depth_files(written, kind="disparity", num_frames=5, size=(12, 20))
    assert back.dtype == np.float32 and back.shape == (5, 12, 20)
    if exact:
        np.testing.assert_array_equal(back, depth)
    else:  # 16-bit quantisation: the largest value maps to 65535
        scale = 65535.0 / depth.max()
        np.testing.assert_allclose(back / scale, depth, atol=0.5 / scale + 1e-6)
        assert back.max() == 65535.0
    assert count_depth_frames(written) == 5


def test_depth_kind_is_inverted_and_nonpositive_is_invalid(tmp_path):
    depth = _depth_video(t=2, h=4, w=6)
    depth[0, 0, 0] = 0.0
    depth[1, 1, 1] = -2.0
    depth[1, 2, 2] = np.nan
    path = write_depth_files(tmp_path / "d.npy", depth, fmt="npy")
    inv = read_depth_files(path, kind="depth")
    assert np.isnan(inv[0, 0, 0]) and np.isnan(inv[1, 1, 1]) and np.isnan(inv[1, 2, 2])
    ok = np.isfinite(inv)
    np.testing.assert_allclose(inv[ok], 1.0 / depth[ok], rtol=1e-6)
    as_is = read_depth_files(path, kind="disparity")
    assert as_is[0, 0, 0] == 0.0 and as_is[1, 1, 1] == -2.0  # declared disparity: values unchanged


def test_frames_in_natural_order_and_windows(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    for i in range(12):  # f2 must come before f10
        np.save(folder / f"f{i}.npy", np.full((3, 4), float(i), np.float32))
    values = read_depth_files(folder)[:, 0, 0]
    assert values.tolist() == [float(i) for i in range(12)]
    assert read_depth_files(folder, frames=slice(3, 6))[:, 0, 0].tolist() == [3.0, 4.0, 5.0]
    assert read_depth_files(folder, frames=[10, 2])[:, 0, 0].tolist() == [10.0, 2.0]


def test_npz_from_depthcrafter_and_single_images(tmp_path):
    depth = _depth_video(t=3)
    np.savez(tmp_path / "dc.npz", depth=depth, other=np.zeros(2))  # DepthCrafter's --save_npz key
    np.testing.assert_array_equal(read_depth_files(tmp_path / "dc.npz"), depth)
    one = write_depth_files(tmp_path / "one", depth[:1], fmt="exr")
    single = next(one.iterdir())
    np.testing.assert_array_equal(read_depth_files(single), depth[:1])


def test_count_mismatch_is_named(tmp_path):
    path = write_depth_files(tmp_path / "clip_depth.npy", _depth_video(t=5), fmt="npy")
    with pytest.raises(StereobenchError, match=r"clip_depth\.npy.*hold 5 frames but the video has 7"):
        read_depth_files(path, num_frames=7)
    folder = write_depth_files(tmp_path / "frames", _depth_video(t=4), fmt="png16")
    with pytest.raises(StereobenchError, match=r"frames.*hold 4 frames but the video has 3"):
        read_depth_files(folder, num_frames=3)


def test_size_mismatch_is_named(tmp_path):
    path = write_depth_files(tmp_path / "clip.npz", _depth_video(h=12, w=20), fmt="npz")
    with pytest.raises(StereobenchError, match=r"clip\.npz.*20x12 \(WxH\) but the video is 32x16"):
        read_depth_files(path, size=(16, 32))
    folder = tmp_path / "mixed"
    folder.mkdir()
    np.save(folder / "0.npy", np.zeros((3, 4), np.float32))
    np.save(folder / "1.npy", np.zeros((3, 5), np.float32))
    with pytest.raises(StereobenchError, match="different sizes"):
        read_depth_files(folder)


@pytest.mark.parametrize("setup,message", [
    (lambda p: None, "do not exist"),
    (lambda p: p.mkdir(), "holds no depth frames"),
    (lambda p: p.write_text("x"), "unsupported suffix"),
])
def test_unreadable_inputs(tmp_path, setup, message):
    path = tmp_path / "thing.txt"
    setup(path)
    with pytest.raises(StereobenchError, match=message):
        read_depth_files(path)


def test_bad_files_one_line_errors(tmp_path):
    (tmp_path / "broken.npy").write_bytes(b"not numpy")
    with pytest.raises(StereobenchError, match="cannot read depth file"):
        read_depth_files(tmp_path / "broken.npy")
    (tmp_path / "broken.png").write_bytes(b"not png")
    with pytest.raises(StereobenchError, match="cannot read depth image"):
        read_depth_files(tmp_path / "broken.png")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    np.save(mixed / "0.npy", np.zeros((2, 2), np.float32))
    write_depth_files(mixed, np.zeros((1, 2, 2), np.float32), fmt="png16")
    with pytest.raises(StereobenchError, match="mixes"):
        read_depth_files(mixed)
    with pytest.raises(StereobenchError, match="Did you mean 'depth'"):
        read_depth_files(tmp_path / "broken.npy", kind="depht")


def test_files_model_reads_windows_and_checks_the_video(tmp_path):
    depth = _depth_video(t=6, h=8, w=10)
    path = write_depth_files(tmp_path / "d.npy", depth, fmt="npy")
    model = load_depth_model("files", path=str(path), kind="depth")
    frames = torch.rand(3, 3, 8, 10)
    out = model.predict(frames, start=2)
    assert out.dtype == torch.float32 and out.shape == (3, 8, 10)
    torch.testing.assert_close(out, torch.from_numpy(1.0 / depth[2:5]))
    with pytest.raises(StereobenchError, match=r"hold 6 frames but frames 4\.\.6"):
        model.predict(frames, start=4)
    with pytest.raises(StereobenchError, match="10x8 .* the video is 12x8"):
        model.predict(torch.rand(2, 3, 8, 12))
    # the identity changes with the files' content (cache keys)
    key = model.key()
    write_depth_files(tmp_path / "d.npy", depth[:5], fmt="npy")
    assert load_depth_model("files", path=str(path), kind="depth").key() != key
    assert load_depth_model("files", path=str(path), kind="disparity").key() != \
        load_depth_model("files", path=str(path), kind="depth").key()


def test_unknown_model_and_setting(tmp_path):
    with pytest.raises(StereobenchError, match="unknown depth model 'depth-anything-v3'.*Did you mean 'depth-anything-v2'"):
        load_depth_model("depth-anything-v3")
    with pytest.raises(StereobenchError, match="does not take colour; it takes kind, path"):
        load_depth_model("files", path=str(tmp_path), colour=1)
    with pytest.raises(StereobenchError, match="needs the path"):
        load_depth_model("files")
