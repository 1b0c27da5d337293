"""`stereobench score` bad inputs: each one error line, exit 2, no traceback, nothing written.

Every case fails before any network is loaded or any metric runs (the clip is 3 frames of 32x32
PNGs), so the whole file takes seconds. The fixture files are built once per module.
"""

from __future__ import annotations

import fractions
import os
import pickle

import numpy as np
import pytest
import torch

from benchmark.video_io import write_frames, write_mask, write_video
from tests.badinput import assert_clean_error

T, H, W = 3, 32, 32


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("score_bad")
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(T, 3, H, W, generator=g)
    pred = (gt + 0.05 * torch.randn(T, 3, H, W, generator=g)).clamp(0, 1)
    mask = torch.zeros(T, 1, H, W, dtype=torch.bool)
    mask[:, :, 8:20, 10:22] = True
    write_frames(root / "gt", gt)
    write_frames(root / "pred", pred)
    write_frames(root / "left", pred)
    write_mask(root / "mask", mask)
    write_video(root / "pred.mp4", pred, fps=8)
    write_frames(root / "short", pred[:2])
    write_frames(root / "small", pred[..., :24])
    write_frames(root / "left_small", pred[..., :24])
    write_mask(root / "mask_small", mask[..., :16])
    write_mask(root / "mask_short", mask[:2])
    (root / "empty_dir").mkdir()
    (root / "text_dir").mkdir()
    (root / "text_dir" / "notes.txt").write_text("not a frame")
    (root / "bad_png_dir").mkdir()
    (root / "bad_png_dir" / "frame_0.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (root / "corrupt.mp4").write_bytes(os.urandom(4096))
    (root / "empty.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("hello, I am a text file with a video suffix\n")
    (root / "noframes.mp4").write_bytes(_mp4_without_frames(root / "tmp_noframes.mp4"))
    (root / "not_an_image.png").write_text("plain text")
    disparity = np.full((T, H, W), 2.0, np.float32)
    np.save(root / "disp.npy", disparity)
    torch.save({"disparity": torch.from_numpy(disparity)}, root / "disp_dict.pt")
    torch.save([torch.from_numpy(disparity)], root / "disp_list.pt")
    # A pickle of a class the safe loader does not allow (it must be refused, not executed).
    torch.save(fractions.Fraction(1, 3), root / "disp_blocked.pt")
    with open(root / "disp_evil.pt", "wb") as handle:
        pickle.dump(_Evil(), handle, protocol=2)  # torch.save's protocol: the loader sees the global
    with open(root / "disp_evil4.pt", "wb") as handle:
        pickle.dump(_Evil(), handle, protocol=4)  # opcodes the safe loader does not even parse
    (root / "disp_corrupt.pt").write_bytes(os.urandom(512))
    (root / "disp_corrupt.npy").write_bytes(b"\x93NUMPY garbage")
    (root / "disp_empty.npy").write_bytes(b"")
    np.save(root / "disp_object.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(root / "disp_strings.npy", np.array(["a", "b"]))
    np.save(root / "disp_complex.npy", disparity.astype(np.complex64))
    np.save(root / "disp_wide.npy", np.full((T, H, W + 1), 2.0, np.float32))
    np.save(root / "disp_2d.npy", np.full((H, W), 2.0, np.float32))
    np.save(root / "disp_5d.npy", np.full((1, T, 1, H, W), 2.0, np.float32))
    np.save(root / "disp_2ch.npy", np.full((T, 2, H, W), 2.0, np.float32))
    np.save(root / "disp_short.npy", disparity[:2])
    np.save(root / "disp_nan.npy", np.full((T, H, W), np.nan, np.float32))
    np.save(root / "disp_inf.npy", np.full((T, H, W), np.inf, np.float32))
    np.save(root / "disp_zero_frames.npy", np.zeros((0, H, W), np.float32))
    torch.save(torch.full((T, H, W), float("nan")), root / "disp_nan.pt")
    np.savetxt(root / "disp.txt", disparity[0])
    (root / "disp_dir.npy").mkdir()
    (root / "output_dir").mkdir()
    (root / "a_file").write_text("x")
    return root


class _Evil:
    def __reduce__(self):  # would run `os.getpid` on an unsafe load; the safe loader must refuse
        return (os.getpid, ())


def _mp4_without_frames(scratch) -> bytes:
    """An MP4 container with a video stream and no frame (a recording stopped at once)."""
    import av

    with av.open(str(scratch), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        container.start_encoding()  # write the header although no frame follows
        for packet in stream.encode(None):
            container.mux(packet)
    data = scratch.read_bytes()
    scratch.unlink()
    return data


def _score(root, *extra, pred="pred", gt="gt"):
    return ["score", str(root / pred), str(root / gt), "--metrics", "psnr", *extra]


# (case id, argv builder, text the error line must contain)
CASES = [
    # numbers
    ("batch-size-0", lambda r: _score(r, "--batch-size", "0"), "batch"),
    ("batch-size-negative", lambda r: _score(r, "--batch-size", "-4"), "batch"),
    ("batch-size-text", lambda r: _score(r, "--batch-size", "many"), "batch-size"),
    ("batch-size-float", lambda r: _score(r, "--batch-size", "2.5"), "batch-size"),
    ("max-frames-0", lambda r: _score(r, "--max-frames", "0"), "max-frames"),
    ("max-frames-negative", lambda r: _score(r, "--max-frames", "-1"), "max-frames"),
    ("max-frames-text", lambda r: _score(r, "--max-frames", "all"), "max-frames"),
    # prediction / ground truth files
    ("pred-missing", lambda r: _score(r, pred="nope"), "does not exist"),
    ("gt-missing", lambda r: _score(r, gt="nope.mp4"), "does not exist"),
    ("pred-empty-dir", lambda r: _score(r, pred="empty_dir"), "no image frames"),
    ("gt-dir-of-text", lambda r: _score(r, gt="text_dir"), "no image frames"),
    ("pred-corrupt-png", lambda r: _score(r, pred="bad_png_dir"), "frame_0.png"),
    ("pred-corrupt-mp4", lambda r: _score(r, pred="corrupt.mp4"), "corrupt.mp4"),
    ("pred-empty-file", lambda r: _score(r, pred="empty.mp4"), "empty.mp4"),
    ("gt-text-as-mp4", lambda r: _score(r, gt="text.mp4"), "text.mp4"),
    ("pred-video-without-frames", lambda r: _score(r, pred="noframes.mp4"), "noframes.mp4"),
    ("gt-text-as-png", lambda r: _score(r, gt="not_an_image.png"), "not_an_image.png"),
    ("frame-count-mismatch", lambda r: _score(r, pred="short"), "frames"),
    ("frame-size-mismatch", lambda r: _score(r, pred="small"), "resize"),
    ("video-vs-frames-size", lambda r: _score(r, pred="pred.mp4", gt="small"), "resize"),
    # mask
    ("mask-missing", lambda r: _score(r, "--mask", str(r / "nope")), "does not exist"),
    ("mask-wrong-size", lambda r: _score(r, "--mask", str(r / "mask_small")), "same size"),
    ("mask-wrong-length", lambda r: _score(r, "--mask", str(r / "mask_short")), "same size"),
    ("mask-empty-dir", lambda r: _score(r, "--mask", str(r / "empty_dir")), "no image frames"),
    ("mask-corrupt", lambda r: _score(r, "--mask", str(r / "corrupt.mp4")), "corrupt.mp4"),
    # left view and disparity
    ("left-without-disparity", lambda r: _score(r, "--left", str(r / "left")), "--disparity"),
    ("disparity-without-left", lambda r: _score(r, "--disparity", str(r / "disp.npy")), "--left"),
    ("left-missing", lambda r: _score(r, "--left", str(r / "nope"), "--disparity", str(r / "disp.npy")),
     "does not exist"),
    ("left-wrong-size", lambda r: _score(r, "--left", str(r / "left_small"), "--disparity", str(r / "disp.npy")),
     "left"),
    ("left-wrong-length", lambda r: _score(r, "--left", str(r / "short"), "--disparity", str(r / "disp.npy")),
     "left"),
    *[(f"disparity-{name}", (lambda n: lambda r: _score(r, "--left", str(r / "left"), "--disparity", str(r / n)))(file),
       needle) for name, file, needle in [
        ("missing", "nope.npy", "does not exist"),
        ("directory", "disp_dir.npy", "directory"),
        ("dict-in-pt", "disp_dict.pt", "dict"),
        ("list-in-pt", "disp_list.pt", "list"),
        ("blocked-pickle", "disp_blocked.pt", ["disp_blocked.pt", "fractions.Fraction", "refuses"]),
        ("unsafe-pickle", "disp_evil.pt", ["disp_evil.pt", "refuses"]),
        ("unsafe-pickle-protocol-4", "disp_evil4.pt", ["disp_evil4.pt", "refuses"]),
        ("corrupt-pt", "disp_corrupt.pt", ["disp_corrupt.pt", "not a file torch.save wrote"]),
        ("corrupt-npy", "disp_corrupt.npy", "disp_corrupt.npy"),
        ("empty-npy", "disp_empty.npy", "disp_empty.npy"),
        ("object-npy", "disp_object.npy", "disp_object.npy"),
        ("string-npy", "disp_strings.npy", "number"),
        ("complex-npy", "disp_complex.npy", "number"),
        ("wrong-width", "disp_wide.npy", "33x32"),
        ("2d", "disp_2d.npy", "shape"),
        ("5d", "disp_5d.npy", "shape"),
        ("two-channels", "disp_2ch.npy", "shape"),
        ("too-few-frames", "disp_short.npy", "frames"),
        ("zero-frames", "disp_zero_frames.npy", "frames"),
        ("nan-only", "disp_nan.npy", "no finite"),
        ("inf-only", "disp_inf.npy", "no finite"),
        ("nan-only-pt", "disp_nan.pt", "no finite"),
        ("text-file", "disp.txt", ".npy or .pt"),
    ]],
    # metric names and options
    ("metric-typo", lambda r: _score(r, "--metrics", "psnrr"), "Did you mean 'psnr'"),
    ("metric-typo-lpips", lambda r: _score(r, "--metrics", "lpips_vg"), "Did you mean 'lpips_vgg'"),
    ("metric-typo-in-comma-list", lambda r: _score(r, "--metrics", "psnr,msssim3d"), "msssim"),
    ("exclude-typo", lambda r: _score(r, "--exclude", "lpips_vg"), "Did you mean 'lpips_vgg'"),
    ("nothing-left", lambda r: _score(r, "--exclude", "psnr"), "no metric left"),
    ("metrics-only-commas", lambda r: _score(r, "--metrics", ","), "no metric"),
    ("scoring-protocol-typo", lambda r: _score(r, "--protocol", "strct"), "protocol"),
    ("device-unknown", lambda r: _score(r, "--device", "gpu"), "device"),
    ("device-bad-index", lambda r: _score(r, "--device", "cuda:99"), "cuda"),
    # output
    ("output-is-directory", lambda r: _score(r, "--output", str(r / "output_dir")), "directory"),
    ("output-parent-is-file", lambda r: _score(r, "--output", str(r / "a_file" / "s.json")), "a_file"),
]


@pytest.mark.parametrize("build, contains", [pytest.param(b, c, id=i) for i, b, c in CASES])
def test_score_bad_input_is_one_clean_error(files, capsys, build, contains):
    before = sorted(p.name for p in files.iterdir())
    assert_clean_error(build(files), capsys, contains=contains)
    assert sorted(p.name for p in files.iterdir()) == before  # nothing written next to the inputs


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU")
def test_cuda_without_gpu(files, capsys):
    assert_clean_error(_score(files, "--device", "cuda"), capsys, contains="GPU")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_unreadable_prediction(files, capsys, tmp_path):
    locked = tmp_path / "locked.mp4"
    locked.write_bytes((files / "pred.mp4").read_bytes())
    locked.chmod(0)
    assert_clean_error(_score(files, pred=str(locked)), capsys, contains="locked.mp4")


def test_unsafe_pickle_is_never_executed(files, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "getpid", lambda: calls.append(1) or 1)
    for name in ("disp_evil.pt", "disp_evil4.pt"):
        assert_clean_error(_score(files, "--left", str(files / "left"), "--disparity", str(files / name)), capsys)
    assert calls == []


def test_case_count():
    assert len(CASES) >= 35


def test_good_input_still_scores(files, capsys):
    """The fixture itself is valid: the same command without the fault exits 0."""
    from benchmark.cli import main

    assert main(_score(files, "--max-frames", "2", "--batch-size", "1", "--left", str(files / "left"),
                       "--disparity", str(files / "disp.npy"))) == 0
