"""StereoInput building and the on-disk cache: hit/miss, corruption, atomicity, bad input."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from benchmark.errors import StereobenchError
from benchmark.stereo.cache import StereoInputCache, build_stereo_input
from benchmark.stereo.protocol import apply_protocol, get_protocol
from benchmark.stereo.recipe import InputRecipe
from benchmark.stereo.warp import close_hole_mask, forward_warp
from benchmark.types import Clip

PROTOCOL = get_protocol("quick", num_frames=3, short_side=64, crop=(48, 64))
RECIPE = InputRecipe(dataset="synthetic", dataset_revision="1", clip="c0", protocol=PROTOCOL)


def _clip(t=12, h=60, w=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    left = torch.rand(t, 3, h, w, generator=g)
    disparity = torch.full((t, 1, h, w), 2.0)
    disparity[..., 20:40, 30:50] = 9.0
    return Clip("synthetic/c0", left=left, fps=15.0, right=torch.rand(t, 3, h, w, generator=g), disparity=disparity)


class _Loader:
    def __init__(self, clip):
        self.clip, self.calls = clip, 0

    def __call__(self):
        self.calls += 1
        return self.clip


def test_build_applies_closing_and_zeroes_holes():
    clip = apply_protocol(_clip(), PROTOCOL)
    inp = build_stereo_input(clip, RECIPE)
    warped, raw_hole = forward_warp(clip.left, clip.disparity)
    assert torch.equal(inp.mask, close_hole_mask(raw_hole, PROTOCOL.hole_mask_closing))
    assert (inp.mask >= raw_hole).all() and inp.mask.sum() >= raw_hole.sum()
    assert (inp.warped.masked_select(inp.mask.expand_as(inp.warped)) == 0).all()
    keep = ~inp.mask.expand_as(warped)
    assert torch.equal(inp.warped[keep], warped[keep].clamp(0, 1))
    assert inp.params["warp"] == "shared" and inp.params["protocol"]["name"] == PROTOCOL.name
    assert not hasattr(inp, "right")  # ground truth never reaches methods


def test_cache_miss_then_hit_returns_identical_tensors_and_gt(tmp_path):
    cache = StereoInputCache(tmp_path)
    loader = _Loader(_clip())
    inp, gt = cache.get_or_build(RECIPE, loader)
    inp2, gt2 = cache.get_or_build(RECIPE, loader)
    assert loader.calls == 1 and (cache.builds, cache.hits) == (1, 1)
    for name in ("left", "warped", "mask", "disparity"):
        assert torch.equal(getattr(inp, name), getattr(inp2, name))
    assert gt.shape == inp.left.shape and torch.equal(gt, gt2)
    assert inp2.clip_id == "synthetic/c0" and inp2.fps == 5.0
    # Another warp, protocol or revision is another entry.
    cache.get_or_build(replace(RECIPE, warp="m2svid"), loader)
    cache.get_or_build(replace(RECIPE, dataset_revision="2"), loader)
    cache.get_or_build(replace(RECIPE, protocol=get_protocol(PROTOCOL, num_frames=2)), loader)
    assert loader.calls == 4
    assert len(list(tmp_path.glob("*/*/meta.json"))) == 4


def _entry(cache):
    return cache.entry_dir(RECIPE.key())


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_meta", "bad_meta", "no_tensors"])
def test_corrupt_or_partial_entries_are_rebuilt(tmp_path, damage):
    cache = StereoInputCache(tmp_path)
    loader = _Loader(_clip())
    first, _ = cache.get_or_build(RECIPE, loader)
    entry = _entry(cache)
    tensors, meta = entry / "tensors.safetensors", entry / "meta.json"
    if damage == "truncate":
        tensors.write_bytes(tensors.read_bytes()[:1000])
    elif damage == "flip":
        raw = bytearray(tensors.read_bytes())
        raw[-10] ^= 0xFF
        tensors.write_bytes(bytes(raw))
    elif damage == "no_meta":
        meta.unlink()
    elif damage == "bad_meta":
        meta.write_text("{not json")
    else:
        tensors.unlink()
    again, _ = cache.get_or_build(RECIPE, loader)
    assert loader.calls == 2
    assert torch.equal(again.warped, first.warped)
    assert cache.load(RECIPE.key()) is not None
    assert not list(tmp_path.rglob(".*tmp*")) and not list(tmp_path.rglob(".*old*"))


def test_failed_build_leaves_no_entry(tmp_path):
    cache = StereoInputCache(tmp_path)
    bad = _clip()
    bad.disparity = torch.full_like(bad.disparity, float("nan"))
    with pytest.raises(StereobenchError, match="no finite"):
        cache.get_or_build(RECIPE, lambda: bad)
    assert not list(tmp_path.rglob("*.safetensors")) and not list(tmp_path.rglob("meta.json"))

    def exploding_loader():
        raise StereobenchError("dataset missing")

    with pytest.raises(StereobenchError, match="dataset missing"):
        cache.get_or_build(RECIPE, exploding_loader)
    assert not list(tmp_path.rglob("meta.json"))


def test_bad_inputs_are_one_line_errors():
    clip = apply_protocol(_clip(), PROTOCOL)
    short = Clip(clip.clip_id, clip.left, clip.fps, disparity=clip.disparity[:2])
    with pytest.raises(StereobenchError, match="frames"):
        build_stereo_input(short, RECIPE)
    wrong = Clip(clip.clip_id, clip.left, clip.fps, disparity=clip.disparity[..., :-1])
    with pytest.raises(StereobenchError, match="resize"):
        build_stereo_input(wrong, RECIPE)
    with pytest.raises(StereobenchError, match="no disparity"):
        build_stereo_input(Clip(clip.clip_id, clip.left, clip.fps), RECIPE)
    with pytest.raises(StereobenchError, match="Did you mean"):
        build_stereo_input(clip, replace(RECIPE, warp="m2sivd"))


_BUILDER = """
import sys, time, torch
sys.path.insert(0, {tests!r})
from test_stereo_cache import RECIPE, _clip
from benchmark.stereo.cache import StereoInputCache
while time.time() < {start}:
    time.sleep(0.005)
inp, _ = StereoInputCache({root!r}).get_or_build(RECIPE, _clip)
print(float(inp.warped.sum()))
"""


def test_concurrent_builders_in_two_processes_share_one_valid_entry(tmp_path):
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    script = _BUILDER.format(tests=str(Path(__file__).parent), start=time.time() + 3.0, root=str(tmp_path))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    outputs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outputs.append(float(out.strip().splitlines()[-1]))
    assert outputs[0] == outputs[1]
    cache = StereoInputCache(tmp_path)
    assert cache.load(RECIPE.key()) is not None
    metas = list(tmp_path.glob("*/*/meta.json"))
    assert len(metas) == 1
    assert json.loads(metas[0].read_text())["clip_id"] == "synthetic/c0"
    assert not list(tmp_path.rglob(".*tmp*")) and not list(tmp_path.rglob(".*old*"))


def test_default_root_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("STEREOBENCH_CACHE", str(tmp_path / "c"))
    assert StereoInputCache().root == tmp_path / "c"


# ------------------------------------------------------------------ debris of killed writers


def _dead_pid() -> int:
    """A pid that existed a moment ago and is now gone (a finished, reaped child)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _debris(root, name):
    folder = root / "ab" / name
    folder.mkdir(parents=True)
    (folder / "tensors.safetensors").write_bytes(b"half an entry")
    return folder


def test_sweep_removes_debris_of_dead_writers_only(tmp_path):
    import os
    import time

    from benchmark.stereo.cache import _owner_tag

    host = _owner_tag().rsplit("-", 1)[0]
    key = "ab" + "0" * 30
    dead, live = _dead_pid(), os.getppid()
    dead_tmp = _debris(tmp_path, f".{key}.tmp-{host}-{dead}-0123abcd")
    dead_old = _debris(tmp_path, f".{key}.old-{host}-{dead}-0123abce")
    live_tmp = _debris(tmp_path, f".{key}.tmp-{host}-{live}-0123abcf")
    other_host = _debris(tmp_path, f".{key}.tmp-otherhost-{dead}-0123abd0")
    legacy_old = _debris(tmp_path, f".{key}.tmp-{dead}-0123abd1")
    legacy_new = _debris(tmp_path, f".{key}.tmp-{dead}-0123abd2")
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(legacy_old, (day_ago, day_ago))
    entry = _debris(tmp_path, key)  # a real entry folder is never touched

    StereoInputCache(tmp_path)  # opening the cache at the next start sweeps
    assert not dead_tmp.exists() and not dead_old.exists() and not legacy_old.exists()
    assert live_tmp.exists() and other_host.exists() and legacy_new.exists() and entry.exists()
    # Once per process and root: a later open does not walk the cache again.
    again = _debris(tmp_path, f".{key}.tmp-{host}-{dead}-0123abd3")
    StereoInputCache(tmp_path)
    assert again.exists()
    assert again in StereoInputCache(tmp_path, sweep=False).sweep_orphans() and not again.exists()


_KILLED_WRITER = """
import os, sys, time
sys.path.insert(0, {tests!r})
from test_stereo_cache import RECIPE, _clip
from benchmark.stereo import cache as cache_module

def stuck_writer(path, data):
    with open(path, "xb") as handle:
        handle.write(data[: len(data) // 2])
    print("writing", flush=True)
    time.sleep(600)

cache_module._write_file = stuck_writer
cache_module.StereoInputCache({root!r}).get_or_build(RECIPE, _clip)
"""


def test_kill_during_a_cache_write_then_the_next_start_sweeps_the_debris(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    script = _KILLED_WRITER.format(tests=str(Path(__file__).parent), root=str(tmp_path))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "writing", proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    debris = [p for p in tmp_path.rglob(".*.tmp-*") if p.is_dir()]
    assert len(debris) == 1 and str(proc.pid) in debris[0].name
    assert not list(tmp_path.rglob("meta.json"))

    loader = _Loader(_clip())
    cache = StereoInputCache(tmp_path)  # the next start
    assert not debris[0].exists()
    inp, _ = cache.get_or_build(RECIPE, loader)
    assert loader.calls == 1 and cache.load(RECIPE.key()) is not None
    assert not [p for p in tmp_path.rglob(".*") if p.is_dir()]


# ------------------------------------------------------------------ full disk


def _full_disk_after(fraction):
    """A writer that writes ``fraction`` of the data, then fails as a full disk does."""
    import errno

    def write(path, data):
        with open(path, "xb") as handle:
            handle.write(data[: int(len(data) * fraction)])
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    return write


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_full_disk_raises_a_clean_error_and_leaves_no_partial_entry(tmp_path, monkeypatch, fraction):
    import errno

    from benchmark.stereo import cache as cache_module
    from benchmark.stereo.cache import CacheWriteError

    cache = StereoInputCache(tmp_path)
    other = replace(RECIPE, clip="c1")
    kept, _ = cache.get_or_build(other, _Loader(_clip(seed=1)))  # an entry written before the disk filled
    monkeypatch.setattr(cache_module, "_write_file", _full_disk_after(fraction))
    loader = _Loader(_clip())
    with pytest.raises(CacheWriteError) as info:
        cache.get_or_build(RECIPE, loader)
    error = info.value
    assert isinstance(error, OSError) and isinstance(error, StereobenchError)
    assert error.errno == errno.ENOSPC
    message = str(error)
    assert "\n" not in message and str(tmp_path) in message and "No space left on device" in message
    assert "free space" in message
    assert loader.calls == 1 and cache.builds == 1  # the failed build is not counted as stored
    assert not cache.entry_dir(RECIPE.key()).exists()
    assert not [p for p in tmp_path.rglob(".*") if p.is_dir()]  # no temporary folder left
    monkeypatch.undo()
    again = StereoInputCache(tmp_path, sweep=False)
    assert torch.equal(again.load(other.key())[0].warped, kept.warped)  # nothing lost
    again.get_or_build(RECIPE, loader)  # space freed: the same call now stores the entry
    assert again.load(RECIPE.key()) is not None


def test_full_disk_in_prepare_is_one_error_line(tmp_path, monkeypatch, capsys):
    from benchmark.stereo import cache as cache_module
    from tests.badinput import assert_clean_error

    cache = tmp_path / "cache"
    argv = ["prepare", "--dataset", "synthetic", "--option", "num_clips=1", "--option", "size=32x48",
            "--option", "num_frames=3", "--protocol", "native", "--cache", str(cache), "--no-preview"]
    real_write = cache_module._write_file
    monkeypatch.setattr(cache_module, "_write_file",
                        lambda path, data: real_write(path, data) if path.name.startswith(".write-test")
                        else _full_disk_after(0.5)(path, data))
    assert_clean_error(argv, capsys, contains=[str(cache), "No space left on device"])
    assert not list(cache.rglob("meta.json")) and not [p for p in cache.rglob(".*") if p.is_dir()]


def test_cache_root_that_is_a_file_is_refused_before_work(tmp_path):
    from benchmark.stereo.cache import CacheWriteError

    root = tmp_path / "cache"
    root.write_text("a file")
    with pytest.raises(CacheWriteError, match="is a file"):
        StereoInputCache(root).ensure_writable()
    StereoInputCache(tmp_path / "fine").ensure_writable()
    assert not list((tmp_path / "fine").iterdir())  # the probe is removed


def test_filled_disparity_record_survives_the_cache(tmp_path):
    # Middlebury fills invalid disparity from the background; the input must keep saying which
    # pixels were filled (a cache hit included), so scoring can treat them as estimates.
    clip = _clip()
    filled = torch.zeros_like(clip.disparity, dtype=torch.bool)
    filled[..., 5:9, 10:20] = True
    clip = replace(clip, disparity_filled=filled)
    cache = StereoInputCache(tmp_path)
    built, _ = cache.get_or_build(RECIPE, _Loader(clip))
    hit, _ = cache.get_or_build(RECIPE, _Loader(clip))
    assert cache.hits == 1 and built.disparity_filled is not None
    assert torch.equal(built.disparity_filled, hit.disparity_filled)
    assert int(hit.disparity_filled.sum()) > 0
    assert torch.isnan(hit.measured_disparity[hit.disparity_filled]).all()
    assert torch.equal(hit.measured_disparity[~hit.disparity_filled], hit.disparity[~hit.disparity_filled])
