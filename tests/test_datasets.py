"""Dataset registry, option parsing and the folder dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.datasets import BUNDLED, DATASETS, dataset_names, get_dataset, parse_options
from benchmark.datasets.base import DatasetSpec
from benchmark.types import Clip
from benchmark.errors import StereobenchError


def test_registry_lists_working_names_only():
    names = dataset_names()
    assert {"synthetic", "middlebury-motorcycle", "folder"} <= set(names)
    assert {"stereo4d", "ego4d"} <= set(names)  # registered since issue 12 (prepared data, user-fetched)
    assert set(BUNDLED) <= set(names)


def test_unknown_dataset_did_you_mean():
    with pytest.raises(StereobenchError, match="Did you mean 'middlebury-motorcycle'"):
        get_dataset("middlebury-motorcyle")
    with pytest.raises(StereobenchError, match="unknown dataset 'xyz'"):
        get_dataset("xyz")


def test_unknown_option_names_accepted_ones():
    with pytest.raises(StereobenchError, match="num_clips"):
        get_dataset("synthetic", colour="red")


@pytest.mark.parametrize("name, options", [("synthetic", {"num_clips": 2, "size": 32, "num_frames": 3}),
                                           ("middlebury-motorcycle", {"num_frames": 2})])
def test_every_bundled_dataset_follows_the_protocol(name, options):
    dataset = get_dataset(name, **options)
    assert isinstance(dataset.spec, DatasetSpec) and dataset.spec.name == name and dataset.spec.revision
    names = dataset.clip_names()
    assert names and all(isinstance(n, str) for n in names)
    clip = dataset.load_clip(names[0])
    assert isinstance(clip, Clip) and clip.clip_id == f"{name}/{names[0]}"
    t, c, h, w = clip.left.shape
    assert c == 3 and clip.left.dtype == torch.float32 and 0 <= clip.left.min() and clip.left.max() <= 1
    assert clip.right.shape == clip.left.shape
    assert clip.disparity.shape == (t, 1, h, w) and clip.disparity.dtype == torch.float32
    assert not torch.isinf(clip.disparity).any()  # invalid is NaN, never inf


def test_parse_options_types():
    assert parse_options(["size=256x128", "seed=3", "fps=2.5", "integer_disparity=false", "root=a=b"]) == {
        "size": "256x128", "seed": 3, "fps": 2.5, "integer_disparity": False, "root": "a=b"}
    with pytest.raises(StereobenchError, match="KEY=VALUE"):
        parse_options(["size"])


def test_plugin_registration_without_editing_the_suite():
    DATASETS.register("tiny-test-data", "benchmark.datasets.synthetic:SyntheticDataset")
    try:
        assert get_dataset("tiny-test-data", num_clips=1, size=16, num_frames=1).clip_names() == ["scene-000"]
    finally:
        DATASETS._paths.pop("tiny-test-data", None)
        DATASETS._cache.pop("tiny-test-data", None)


def _write_frames(folder, video):
    from benchmark.video_io import write_frames
    write_frames(folder, video)


def test_folder_dataset_pairs_left_only_and_disparity(tmp_path):
    rng = torch.Generator().manual_seed(0)
    left = torch.rand((3, 3, 16, 24), generator=rng)
    right = torch.rand((3, 3, 16, 24), generator=rng)
    _write_frames(tmp_path / "street_left", left)
    _write_frames(tmp_path / "street_right", right)
    disparity = np.full((3, 16, 24), 2.0, dtype=np.float32)
    disparity[0, 0, 0] = np.inf
    np.save(tmp_path / "street_disparity.npy", disparity)
    _write_frames(tmp_path / "beach", left[:2])
    dataset = get_dataset(str(tmp_path))  # a directory path selects the folder dataset
    assert dataset.clip_names() == ["beach", "street"]
    street = dataset.load_clip("street")
    assert street.clip_id == f"folder-{tmp_path.name}/street"
    # PNG frames are lossless at 8 bits.
    assert torch.allclose(street.left, (left * 255).round() / 255, atol=1e-6)
    assert torch.allclose(street.right, (right * 255).round() / 255, atol=1e-6)
    assert street.disparity.shape == (3, 1, 16, 24) and torch.isnan(street.disparity[0, 0, 0, 0])
    beach = dataset.load_clip("beach")
    assert beach.right is None and beach.disparity is None and beach.num_frames == 2
    assert not dataset.spec.has_ground_truth  # one clip lacks a right view


def test_folder_dataset_bad_input(tmp_path):
    with pytest.raises(StereobenchError, match="does not exist"):
        get_dataset("folder", root=str(tmp_path / "missing"))
    with pytest.raises(StereobenchError, match="holds no videos"):
        get_dataset("folder", root=str(tmp_path))
    _write_frames(tmp_path / "a_left", torch.rand(2, 3, 8, 8))
    np.save(tmp_path / "a_disparity.npy", np.zeros((3, 8, 8), np.float32))
    with pytest.raises(StereobenchError, match="a_disparity.npy has shape"):
        get_dataset("folder", root=str(tmp_path)).load_clip("a")


def test_folder_revision_sees_overwritten_frames_and_same_second_rewrites(tmp_path):
    """The stereo-input cache keys on the revision: overwriting a frame inside a PNG folder
    (the folder's own stat stays the same) or rewriting a file with the same size within one
    second must both change it."""
    import os

    _write_frames(tmp_path / "a_left", torch.zeros(2, 3, 8, 8))
    np.save(tmp_path / "a_disparity.npy", np.zeros((2, 8, 8), np.float32))
    frame = tmp_path / "a_left" / "frame_00001.png"
    npy = tmp_path / "a_disparity.npy"
    second = 1_700_000_000 * 10**9
    for path in (frame, npy):
        os.utime(path, ns=(second + 100, second + 100))
    dir_stat = os.stat(tmp_path / "a_left")
    before = get_dataset("folder", root=str(tmp_path)).spec.revision
    assert get_dataset("folder", root=str(tmp_path)).spec.revision == before  # deterministic

    # Same size, new content, same whole second: only st_mtime_ns differs.
    data = frame.read_bytes()
    with open(frame, "r+b") as handle:
        handle.write(data)
    os.utime(frame, ns=(second + 200, second + 200))
    os.utime(tmp_path / "a_left", ns=(dir_stat.st_atime_ns, dir_stat.st_mtime_ns))
    after_frame = get_dataset("folder", root=str(tmp_path)).spec.revision
    assert after_frame != before

    np.save(npy, np.ones((2, 8, 8), np.float32))
    os.utime(npy, ns=(second + 300, second + 300))
    assert get_dataset("folder", root=str(tmp_path)).spec.revision not in (before, after_frame)


# ---- the folder dataset decodes only the protocol's time window ------------------------------------

def _index_frames(n, h=24, w=32):
    """Frame k is uniformly grey at level 4k (recoverable after lossy coding)."""
    return (torch.arange(n).float() * 4 / 255).view(n, 1, 1, 1).expand(n, 3, h, w).contiguous()


def _frame_index(video):
    return (video[:, :, 4:20, 4:28].mean(dim=(1, 2, 3)) * 255 / 4).round().long().tolist()


def _make_folder(tmp_path, kind, n=45):
    from benchmark.video_io import write_video

    left, right = _index_frames(n), _index_frames(n).flip(-1)
    if kind == "mp4":
        write_video(tmp_path / "clip_left.mp4", left, fps=30)
        write_video(tmp_path / "clip_right.mp4", right, fps=30)
    elif kind == "frames":
        _write_frames(tmp_path / "clip_left", left)
        _write_frames(tmp_path / "clip_right", right)
    else:  # variable frame rate MKV, written in-process with explicit presentation times
        from fractions import Fraction

        av = pytest.importorskip("av")
        pts_ms = np.cumsum([0] + [33 if k % 4 else 70 for k in range(1, n)])
        for role, video in (("left", left), ("right", right)):
            with av.open(str(tmp_path / f"clip_{role}.mkv"), "w") as container:
                stream = container.add_stream("libx264", rate=30)
                stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
                stream.options = {"crf": "0"}
                stream.time_base = Fraction(1, 1000)
                frames = (video * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
                for k, image in enumerate(frames):
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                    frame.pts, frame.time_base = int(pts_ms[k]), Fraction(1, 1000)
                    for packet in stream.encode(frame):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
    # Disparity frame k holds the value k: which frames were read is visible in the values.
    np.save(tmp_path / "clip_disparity.npy", np.arange(n, dtype=np.float32)[:, None, None] * np.ones((1, 24, 32), np.float32))
    return get_dataset("folder", root=str(tmp_path))


@pytest.mark.parametrize("kind", ["mp4", "frames", "vfr-mkv"])
@pytest.mark.parametrize("overrides", [dict(num_frames=5, fps=10.0), dict(num_frames=4, fps=7.0),
                                       dict(num_frames=40, fps=12.0), dict(num_frames=6, fps=None)])
def test_windowed_folder_read_gives_the_same_clip_as_the_full_read(tmp_path, kind, overrides):
    from benchmark.datasets import load_clip
    from benchmark.stereo.protocol import apply_protocol, get_protocol

    dataset = _make_folder(tmp_path, kind)
    protocol = get_protocol("native", **overrides)
    full = apply_protocol(dataset.load_clip("clip"), protocol)
    windowed_native = load_clip(dataset, "clip", protocol)
    windowed = apply_protocol(windowed_native, protocol)
    assert windowed_native.num_frames <= protocol.num_frames  # only the window was decoded
    for field in ("left", "right", "disparity", "timestamps"):
        torch.testing.assert_close(getattr(windowed, field), getattr(full, field), rtol=0, atol=1e-9,
                                   equal_nan=True, msg=field)
    assert windowed.fps == full.fps
    assert windowed.metadata["source_frame_indices"] == full.metadata["source_frame_indices"]
    # The disparity frames read are the frames shown (value k on frame k, -1 = padding).
    real = [i for i in full.metadata["source_frame_indices"] if i >= 0]
    assert windowed.disparity[: len(real), 0, 0, 0].tolist() == real == _frame_index(windowed.left[: len(real)])


def test_windowed_folder_read_decodes_only_the_window(tmp_path, monkeypatch):
    import benchmark.video_io as video_io
    from benchmark.datasets import load_clip
    from benchmark.stereo.protocol import get_protocol

    dataset = _make_folder(tmp_path, "mp4", n=90)
    decoded = []
    original = video_io.ContainerSource._to_array
    monkeypatch.setattr(video_io.ContainerSource, "_to_array",
                        lambda self, frame: decoded.append(frame) or original(self, frame))
    clip = load_clip(dataset, "clip", get_protocol("native", num_frames=4, fps=10.0))
    assert clip.num_frames == 4 and _frame_index(clip.left) == [0, 3, 6, 9]
    assert len(decoded) <= 2 * 11  # left and right: frames 0..10 at most, of 90 each
    decoded.clear()
    dataset.load_clip("clip")
    assert len(decoded) == 2 * 90


def test_windowed_folder_read_still_checks_the_disparity_length(tmp_path):
    from benchmark.datasets import load_clip
    from benchmark.stereo.protocol import get_protocol

    dataset = _make_folder(tmp_path, "mp4", n=20)
    np.save(tmp_path / "clip_disparity.npy", np.zeros((19, 24, 32), np.float32))
    with pytest.raises(StereobenchError, match=r"clip_disparity.npy has shape \(19, 1, 24, 32\), expected \(20,"):
        load_clip(dataset, "clip", get_protocol("native", num_frames=2, fps=5.0))


def test_load_clip_passes_a_window_only_to_datasets_that_take_one():
    from benchmark.datasets import load_clip
    from benchmark.stereo.protocol import get_protocol

    calls = []

    class Plain:
        def load_clip(self, name):
            calls.append(("plain", name))

    class Windowed:
        def load_clip(self, name, window=None):
            calls.append(("windowed", name, window))

    load_clip(Plain(), "a", get_protocol("paper"))
    load_clip(Windowed(), "b", "paper")
    load_clip(Windowed(), "c", get_protocol("native"))  # keeps every frame: no window
    load_clip(Windowed(), "d")
    window = get_protocol("paper").time_window()
    assert calls == [("plain", "a"), ("windowed", "b", window), ("windowed", "c", None), ("windowed", "d", None)]


# ---- layering of the contracts ---------------------------------------------------------------------

def _imported_modules(path):
    """Every module a source file imports, at any depth (function-level imports included)."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_stereo_floor_never_imports_the_datasets_and_the_contracts_stand_alone():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "benchmark"
    for path in sorted((root / "stereo").glob("*.py")):
        bad = {name for name in _imported_modules(path) if name.startswith("benchmark.datasets")}
        assert not bad, f"{path.name} imports {bad}: benchmark.stereo must not import benchmark.datasets"
    for ground in ("types.py", "video_io.py"):
        allowed = {"benchmark.errors"}
        bad = {n for n in _imported_modules(root / ground) if n.startswith("benchmark") and n not in allowed}
        assert not bad, f"{ground} is a ground-floor module but imports {bad}"


def test_stereo_input_carries_the_filled_disparity_record():
    from benchmark.types import StereoInput

    t, h, w = 2, 4, 5
    disparity = torch.arange(t * h * w, dtype=torch.float32).view(t, 1, h, w)
    filled = torch.zeros(t, 1, h, w, dtype=torch.bool)
    filled[1, 0, 2, 3] = True
    kwargs = dict(left=torch.zeros(t, 3, h, w), warped=torch.zeros(t, 3, h, w),
                  mask=torch.zeros(t, 1, h, w, dtype=torch.bool), disparity=disparity, clip_id="x/y", fps=5.0)
    inp = StereoInput(**kwargs, disparity_filled=filled)
    inp.validate()
    measured = inp.measured_disparity
    assert torch.isnan(measured[1, 0, 2, 3]) and int(torch.isnan(measured).sum()) == 1
    assert torch.equal(inp.to("cpu").disparity_filled, filled)
    assert StereoInput(**kwargs).measured_disparity is disparity  # nothing filled: the same tensor
    with pytest.raises(ValueError, match="disparity_filled"):
        StereoInput(**kwargs, disparity_filled=filled.float()).validate()


# ---- bad dataset options through the CLI: one `error:` line, exit 2, before any work -----------------

BAD_OPTIONS = [
    ("middlebury-motorcycle", "fill_disparity=maybe", "fill_disparity"),
    ("middlebury-motorcycle", "fill_disparity=2", "fill_disparity"),
    ("middlebury-motorcycle", "fill_disparity=tru", "fill_disparity"),
    ("middlebury-motorcycle", "fill_disparty=true", "fill_disparity"),
    ("middlebury-motorcycle", "num_frames=0", "num_frames"),
    ("middlebury-motorcycle", "num_frames=2.5", "whole number"),
    ("middlebury-motorcycle", "num_frames=-3", "num_frames"),
    ("middlebury-motorcycle", "step=-1", "step"),
    ("middlebury-motorcycle", "step=1.5", "whole number"),
    ("middlebury-motorcycle", "step=abc", "step"),
    ("middlebury-motorcycle", "fps=0", "fps"),
    ("middlebury-motorcycle", "fps=-5", "fps"),
    ("middlebury-motorcycle", "fps=nan", "fps"),
    ("middlebury-motorcycle", "fps=inf", "fps"),
    ("synthetic", "size=abc", "size"),
    ("synthetic", "size=0", "size"),
    ("synthetic", "size=10x0", "size"),
    ("synthetic", "num_clips=0", "num_clips"),
    ("synthetic", "num_clips=1.5", "whole number"),
    ("synthetic", "num_clips=abc", "num_clips"),
    ("synthetic", "num_frames=0", "num_frames"),
    ("synthetic", "num_frames=2.5", "whole number"),
    ("synthetic", "fps=0", "fps"),
    ("synthetic", "fps=nan", "fps"),
    ("synthetic", "seed=x", "seed"),
    ("synthetic", "seed=0.5", "whole number"),
    ("synthetic", "integer_disparity=maybe", "integer_disparity"),
    ("synthetic", "integer_disparity=2", "integer_disparity"),
    ("synthetic", "fill_disparity=true", "accepts"),
    ("synthetic", "=3", "KEY=VALUE"),
    ("synthetic", "num_clips", "KEY=VALUE"),
]


@pytest.mark.parametrize("dataset, option, contains", BAD_OPTIONS, ids=[f"{d}:{o}" for d, o, _ in BAD_OPTIONS])
def test_bad_dataset_options_are_one_line_errors(dataset, option, contains, capsys, tmp_path):
    from tests.badinput import assert_clean_error

    cache = tmp_path / "cache"
    assert_clean_error(["prepare", "--dataset", dataset, "--option", option, "--cache", str(cache), "--no-preview"],
                       capsys, contains=contains)
    assert not cache.exists()  # nothing was built


@pytest.mark.parametrize("layout", ["missing", "empty", "file", "only-disparity"])
def test_bad_folder_datasets_are_one_line_errors(layout, capsys, tmp_path):
    from tests.badinput import assert_clean_error

    root = tmp_path / "videos"
    if layout == "empty":
        root.mkdir()
    elif layout == "file":
        root.write_text("not a folder")
    elif layout == "only-disparity":
        root.mkdir()
        np.save(root / "a_disparity.npy", np.zeros((2, 8, 8), np.float32))
    contains = {"missing": "does not exist", "empty": "holds no videos", "file": "videos",
                "only-disparity": "holds no videos"}[layout]
    assert_clean_error(["prepare", "--dataset", "folder", "--option", f"root={root}", "--cache", str(tmp_path / "c"),
                        "--no-preview"], capsys, contains=contains)


def test_whole_number_and_boolean_options_accept_their_spellings():
    from benchmark.datasets.base import option_bool, option_int

    assert [option_int("d", "n", v) for v in (3, "3", 3.0, "3.0", np.int64(3))] == [3] * 5
    assert [option_bool("d", "b", v) for v in (True, "TRUE", "yes", "on", 1, "1")] == [True] * 6
    assert [option_bool("d", "b", v) for v in (False, "false", "No", "off", 0, "0")] == [False] * 6
    for bad in (2.5, "2.5", "x", None, True, float("nan"), float("inf")):
        with pytest.raises(StereobenchError, match="whole number"):
            option_int("d", "n", bad)


@pytest.mark.parametrize("content, contains", [
    (np.array([["a", "b"]] * 2), "dtype"),
    (np.zeros((2, 8, 8), np.complex64), "dtype"),
    (b"", "cannot read"),
    (b"\x93NUMPY garbage", "cannot read"),
])
def test_folder_disparity_of_the_wrong_kind_is_refused(tmp_path, content, contains):
    _write_frames(tmp_path / "a_left", torch.rand(2, 3, 8, 8))
    if isinstance(content, bytes):
        (tmp_path / "a_disparity.npy").write_bytes(content)
    else:
        np.save(tmp_path / "a_disparity.npy", content)
    with pytest.raises(StereobenchError, match=contains) as info:
        get_dataset("folder", root=str(tmp_path)).load_clip("a")
    assert "a_disparity.npy" in str(info.value) and "\n" not in str(info.value)
