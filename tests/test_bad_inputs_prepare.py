"""`stereobench prepare`: every bad input is one `error:` line, exit 2, no traceback, nothing lost.

Each case runs the real CLI in-process (tests/badinput.py) on tiny inputs and must fail before
any heavy work (milliseconds per case); afterwards the cache holds no entry and no debris.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.badinput import assert_clean_error

T, H, W = 4, 32, 48  # frames and size of the folder-dataset clips below


@pytest.fixture(scope="module")
def base_video(tmp_path_factory) -> Path:
    """One tiny left video (4 frames, 32x48) that every folder case copies."""
    from benchmark.video_io import write_video

    folder = tmp_path_factory.mktemp("video")
    video = torch.rand(T, 3, H, W, generator=torch.Generator().manual_seed(0))
    return Path(write_video(folder / "base.mp4", video, fps=5.0))


def _folder(root: Path, base_video: Path, disparity=None, *, raw: bytes | None = None, right: bool = True,
            name: str = "street") -> Path:
    """A folder dataset with one clip ``name`` (left [+ right] video [+ disparity])."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(base_video, root / f"{name}_left.mp4")
    if right:
        shutil.copy(base_video, root / f"{name}_right.mp4")
    if raw is not None:
        (root / f"{name}_disparity.npy").write_bytes(raw)
    elif disparity is not None:
        np.save(root / f"{name}_disparity.npy", disparity, allow_pickle=True)
    return root


def _good_disparity() -> np.ndarray:
    return np.full((T, H, W), 2.0, dtype=np.float32)


def _no_entries(cache: Path) -> bool:
    return not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))


def _run(argv, capsys, contains, tmp_path):
    cache = tmp_path / "cache"
    full = ["prepare", *argv]
    if "--cache" not in argv:
        full += ["--cache", str(cache)]
    if "--preview" not in argv and "--no-preview" not in argv:
        full += ["--preview", str(tmp_path / "preview")]
    line = assert_clean_error(full, capsys, contains=contains)
    assert _no_entries(cache), f"{argv}: a cache entry was written before the error"
    return line


SYN = ["--dataset", "synthetic", "--option", "num_clips=1", "--option", "size=32x48", "--option", "num_frames=4"]

# (argv, text the error must contain)
ARGUMENT_CASES = [
    # --preview-frame: silently clamped before; now an error naming the valid range.
    ([*SYN, "--protocol", "quick", "--preview-frame", "99"], ["99", "0..15"]),
    ([*SYN, "--protocol", "quick", "--preview-frame", "16"], ["16", "0..15"]),
    ([*SYN, "--protocol", "paper", "--preview-frame", "-1"], ["-1", ">= 0"]),
    ([*SYN, "--preview-frame", "-5"], ">= 0"),
    ([*SYN, "--preview-frame", "abc"], "--preview-frame"),
    ([*SYN, "--preview-frame", "1.5"], "--preview-frame"),
    ([*SYN, "--clips", "0"], "--clips"),
    ([*SYN, "--clips", "-3"], "--clips"),
    ([*SYN, "--clips", "two"], "--clips"),
    (["--dataset", "synthtic"], "Did you mean 'synthetic'"),
    (["--dataset", "midlebury-motorcycle"], "Did you mean 'middlebury-motorcycle'"),
    (["--dataset", ""], "dataset"),
    ([*SYN, "--protocol", "papr"], "Did you mean 'paper'"),
    ([*SYN, "--protocol", ""], "protocol"),
    ([*SYN, "--protocol", "quick[num_frames=3]"], "protocol"),
    ([*SYN, "--warp", "m2svd"], "Did you mean 'm2svid'"),
    ([*SYN, "--warp", "stereo-crafter"], "Did you mean 'stereocrafter'"),
    ([*SYN, "--warp", ""], "warp"),
    ([*SYN, "--option", "colour=red"], "does not accept options"),
    ([*SYN, "--option", "size=abc"], "size"),
    (["--dataset", "synthetic", "--option", "num_clips=0"], "num_clips"),
    (["--dataset", "synthetic", "--option", "num_clips=-1"], "num_clips"),
    (["--dataset", "synthetic", "--option", "num_clips=abc"], "num_clips"),
    (["--dataset", "synthetic", "--option", "num_frames=0"], "num_frames"),
    (["--dataset", "synthetic", "--option", "fps=0"], "fps"),
    (["--dataset", "synthetic", "--option", "fps=nan"], "fps"),
    (["--dataset", "synthetic", "--option", "fps=inf"], "fps"),
    (["--dataset", "synthetic", "--option", "novalue"], "KEY=VALUE"),
    (["--dataset", "synthetic", "--option", "=5"], "KEY=VALUE"),
    (["--dataset", "synthetic", "--option", "other:size=5"], "'other'"),
    (["--dataset", "middlebury-motorcycle", "--option", "step=-1"], "step"),
    (["--dataset", "middlebury-motorcycle", "--option", "num_frames=0"], "num_frames"),
    (["--dataset", "folder"], "directory"),
]


@pytest.mark.parametrize("argv, contains", ARGUMENT_CASES, ids=[" ".join(a[-2:]) for a, _ in ARGUMENT_CASES])
def test_prepare_bad_arguments(argv, contains, capsys, tmp_path):
    _run(argv, capsys, contains, tmp_path)


def test_preview_frame_beyond_a_native_clip_is_refused_and_the_entry_kept(capsys, tmp_path):
    """With the native protocol the frame count is known only after loading: the error comes after
    the entry was built, and the entry is kept (nothing computed is lost)."""
    cache = tmp_path / "cache"
    argv = ["prepare", *SYN, "--protocol", "native", "--preview-frame", "4", "--cache", str(cache),
            "--preview", str(tmp_path / "p")]
    assert_clean_error(argv, capsys, contains=["4", "0..3"])
    assert list(cache.rglob("meta.json")), "the built entry must be kept"
    assert not list(cache.rglob(".*tmp*"))
    assert not list((tmp_path / "p").glob("*.png")) if (tmp_path / "p").exists() else True


# ------------------------------------------------------------------ output folders


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    return path


@pytest.mark.parametrize("where, make, contains", [
    ("--cache", lambda p: _file(p), ["cache", "is a file"]),
    ("--cache", lambda p: _file(p) / "sub", "cache"),
    ("--cache", lambda p: Path("/proc/version/cache"), "cache"),
    ("--preview", lambda p: _file(p), ["preview", "a-file"]),
    ("--preview", lambda p: _file(p) / "sub", ["preview"]),
    ("--preview", lambda p: Path("/proc/version/previews"), "preview"),
])
def test_prepare_unwritable_output_folders(where, make, contains, capsys, tmp_path):
    target = make(tmp_path)
    argv = [*SYN, where, str(target)]
    line = assert_clean_error(["prepare", *argv, *(["--cache", str(tmp_path / "c")] if where != "--cache" else [])],
                              capsys, contains=contains)
    assert "Traceback" not in line
    assert _no_entries(tmp_path / "c")


# ------------------------------------------------------------------ folder datasets


def _complex():
    return _good_disparity().astype(np.complex64)


def _strings():
    return np.full((T, H, W), "abc")


def _objects():
    array = np.empty((T, H, W), dtype=object)
    array[...] = 1.0
    return array


FOLDER_CASES = {
    # name: (builder(root, base_video) -> dataset path, text the error must contain)
    "missing folder": (lambda r, v: r / "no-such-folder", "does not exist"),
    "a file, not a folder": (lambda r, v: _file(r), "a-file"),
    "empty folder": (lambda r, v: (r / "empty").mkdir() or r / "empty", "no videos"),
    "only text files": (lambda r, v: _write(r / "txt", "notes.txt"), "no videos"),
    "only right views": (lambda r, v: _only_right(r / "right", v), "no"),
    "no disparity": (lambda r, v: _folder(r / "nodisp", v), "disparity"),
    "disparity 2-D": (lambda r, v: _folder(r / "d2", v, np.zeros((H, W), np.float32)), "street_disparity.npy"),
    "disparity 5-D": (lambda r, v: _folder(r / "d5", v, np.zeros((T, 1, 1, H, W), np.float32)), "street_disparity.npy"),
    "disparity wrong height": (lambda r, v: _folder(r / "dh", v, np.zeros((T, H + 1, W), np.float32)), "street_disparity"),
    "disparity wrong width": (lambda r, v: _folder(r / "dw", v, np.zeros((T, H, W - 2), np.float32)), "street_disparity"),
    "disparity too few frames": (lambda r, v: _folder(r / "dt", v, np.zeros((T - 1, H, W), np.float32)), "street_disparity"),
    "disparity too many frames": (lambda r, v: _folder(r / "dT", v, np.zeros((T + 3, 1, H, W), np.float32)), "street_disparity"),
    "disparity of strings": (lambda r, v: _folder(r / "ds", v, _strings()), ["street_disparity.npy", "dtype"]),
    "disparity complex": (lambda r, v: _folder(r / "dc", v, _complex()), ["street_disparity.npy", "dtype"]),
    "disparity of objects (pickle)": (lambda r, v: _folder(r / "do", v, _objects()), "street_disparity.npy"),
    "disparity all NaN": (lambda r, v: _folder(r / "dn", v, np.full((T, H, W), np.nan, np.float32)), "no finite"),
    "disparity all inf": (lambda r, v: _folder(r / "di", v, np.full((T, H, W), np.inf, np.float32)), "no finite"),
    "disparity garbage bytes": (lambda r, v: _folder(r / "dg", v, raw=b"\x93NUMPY garbage"), "street_disparity.npy"),
    "disparity empty file": (lambda r, v: _folder(r / "de", v, raw=b""), "street_disparity.npy"),
    "left video garbage": (lambda r, v: _garbage_video(r / "gv"), "street"),
}


def _write(folder: Path, name: str) -> Path:
    folder.mkdir()
    (folder / name).write_text("hello")
    return folder


def _only_right(folder: Path, base_video: Path) -> Path:
    folder.mkdir()
    shutil.copy(base_video, folder / "street_right.mp4")
    np.save(folder / "street_disparity.npy", _good_disparity())
    return folder


def _garbage_video(folder: Path) -> Path:
    folder.mkdir()
    (folder / "street_left.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    np.save(folder / "street_disparity.npy", _good_disparity())
    return folder


@pytest.mark.parametrize("case", list(FOLDER_CASES))
def test_prepare_bad_folder_datasets(case, base_video, capsys, tmp_path):
    build, contains = FOLDER_CASES[case]
    root = build(_mkdir(tmp_path / "data"), base_video)
    _run(["--dataset", str(root), "--protocol", "native"], capsys, contains, tmp_path)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_prepare_good_folder_dataset_for_contrast(base_video, capsys, tmp_path):
    """The same folder with a correct disparity works: the cases above fail for their defect."""
    from benchmark.cli import main

    root = _folder(tmp_path / "good", base_video, _good_disparity())
    assert main(["prepare", "--dataset", str(root), "--protocol", "native", "--cache", str(tmp_path / "c"),
                 "--no-preview"]) == 0
    assert len(list((tmp_path / "c").rglob("meta.json"))) == 1

