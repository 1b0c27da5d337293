"""The runner end to end on tiny synthetic clips: rows, resume after SIGKILL, errors, bad input.

Tiny on purpose: 2 synthetic clips of 4 frames at 192x192 (MS-SSIM needs > 160 px), metrics psnr,
msssim and lpips_alex, three cheap baselines.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmark.cli import main
from benchmark.config import parse_config
from benchmark.errors import StereobenchError
from benchmark.results import read_rows
from benchmark.runner import run_benchmark
from methods.base import Method, MethodMeta
from methods.registry import METHODS
from tests.badinput import assert_clean_error

REPO = Path(__file__).resolve().parents[1]
TINY_PROTOCOL = {"name": "quick", "num_frames": 4, "short_side": 192, "crop": [192, 192]}
METHODS_UNDER_TEST = ["left-copy", "warp-only", "background-fill"]


def tiny_config(tmp_path: Path, **overrides):
    data = {
        "datasets": [{"name": "synthetic", "options": {"num_clips": 2, "size": 192, "num_frames": 4}}],
        "methods": METHODS_UNDER_TEST,
        "protocol": TINY_PROTOCOL,
        "metrics": ["psnr", "msssim", "lpips_alex"],
        "out": str(tmp_path / "runs"),
        "cache": str(tmp_path / "cache"),
        "device": "cpu",
    }
    data.update(overrides)
    return parse_config(data)


def quality(rows):
    """{(method, dataset, clip, region, protocol, metric): value} of the quality rows."""
    return {(r.method, r.dataset, r.clip, r.region, r.protocol, r.metric): r.value for r in rows if r.kind == "quality"}


def same_values(a: dict, b: dict, rel: float = 0.0) -> bool:
    """Same keys and values (NaN equals NaN); ``rel`` > 0 allows float reduction-order noise."""
    import math

    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if x != x and y != y:
            continue
        if not (x == y or (rel and math.isclose(x, y, rel_tol=rel, abs_tol=1e-9))):
            return False
    return True


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clean")
    config = tiny_config(tmp)
    summary = run_benchmark(config, progress=False, echo=lambda s: None)
    return tmp, config, summary, read_rows(summary.run_dir, report=False)


def test_clean_run_writes_every_pair_and_the_leaderboard(clean_run):
    tmp, config, summary, rows = clean_run
    pairs = {(m, "synthetic", c) for m in METHODS_UNDER_TEST for c in ("scene-000", "scene-001")}
    assert {r.pair for r in rows if r.kind == "marker"} == pairs
    q = quality(rows)
    # 3 metrics x 3 regions x 2 scoring protocols per pair
    assert len(q) == len(pairs) * 3 * 3 * 2
    timing = {(r.pair, r.metric) for r in rows if r.kind == "timing"}
    for pair in pairs:
        assert (pair, "time_refine_s") in timing and (pair, "time_refine_s_per_frame") in timing
        assert (pair, "time_score_s") in timing and (pair, "peak_mem_bytes") in timing
    assert not summary.errors and not [r for r in rows if r.kind == "error"]
    # every row names the data it was computed on (the revision encodes the dataset options)
    from benchmark.datasets import get_dataset

    revision = get_dataset("synthetic", num_clips=2, size=192, num_frames=4).spec.revision
    assert revision and {r.dataset_revision for r in rows} == {revision}
    assert (summary.run_dir / "leaderboard" / "leaderboard.html").is_file()
    import json

    manifest = json.loads((summary.run_dir / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["extra"]["config_hash"] == config.content_hash()
    # warp-only = ground truth outside the holes up to the warp's resampling; left-copy is worst in full PSNR
    full_psnr = {m: sum(v for k, v in q.items() if k[0] == m and k[3:] == ("full", "strict", "psnr")) for m in METHODS_UNDER_TEST}
    assert full_psnr["background-fill"] > full_psnr["warp-only"]
    inside = {m: sum(v for k, v in q.items() if k[0] == m and k[3:] == ("inside", "strict", "psnr")) for m in METHODS_UNDER_TEST}
    assert inside["background-fill"] > inside["warp-only"]


def test_explicit_run_id_of_a_finished_run_recomputes_nothing(clean_run, tmp_path):
    tmp, config, summary, rows = clean_run
    # an explicit run id of a finished run: everything is complete, nothing recomputed
    again = run_benchmark(parse_config({**config.to_dict(), "run_id": summary.run_id, "leaderboard": False}),
                          progress=False, echo=lambda s: None)
    assert again.run_id == summary.run_id and again.pairs_done == 0 and again.pairs_skipped_complete == 6
    assert same_values(quality(read_rows(summary.run_dir, report=False)), quality(rows))


def test_sigkill_mid_run_then_resume_gives_the_clean_rows(clean_run, tmp_path):
    _, _, _, clean_rows = clean_run
    config_path = tmp_path / "tiny.yaml"
    import yaml

    config = tiny_config(tmp_path, leaderboard=False)
    config_path.write_text(yaml.safe_dump(config.to_dict()))
    cmd = [sys.executable, "-m", "benchmark.cli", "run", "--config", str(config_path), "--no-progress"]
    env = dict(os.environ, STEREOBENCH_FAULT="kill-after-pairs:3")
    killed = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    partial = read_rows(runs[0], report=False)
    assert len({r.pair for r in partial if r.kind == "marker"}) == 3
    # the same command again, in-process: resumes the unfinished run with the same config hash
    summary = run_benchmark(config, progress=False, echo=lambda s: None)
    assert summary.resumed and summary.run_id == runs[0].name
    assert summary.pairs_done == 3 and summary.pairs_skipped_complete == 3
    final = read_rows(runs[0], report=False)
    assert same_values(quality(final), quality(clean_rows))
    # no duplicates on disk: each pair's marker was written exactly once
    raw = [line for path in runs[0].glob("rows*.jsonl") for line in path.read_text().splitlines() if line.strip()]
    markers = [line for line in raw if '"kind": "marker"' in line]
    assert len(markers) == 6


class Boom(Method):
    meta = MethodMeta(name="boom", display_name="Boom", licence="test")

    def refine(self, inp):
        if inp.clip_id.endswith("scene-001"):
            raise RuntimeError("boom on purpose")
        return inp.warped.clone()


class NeedsWeights(Method):
    meta = MethodMeta(name="needs-weights", display_name="Needs weights", licence="test")

    def weights_status(self):
        from benchmark.weights import WeightsStatus

        return WeightsStatus(present=False, location="/nowhere", how_to_get="run `get-the-weights --now`")

    def refine(self, inp):  # pragma: no cover - never called
        raise AssertionError("a method without weights must not run")


SHADE = {"value": 0.2}
BOOM = {"fail": True}


class Shade(Method):
    """Outputs a constant grey whose level the test changes between runs (a stand-in for a
    method whose output changed, e.g. after a bug fix)."""

    meta = MethodMeta(name="shade", display_name="Shade", licence="test")

    def refine(self, inp):
        return torch.full_like(inp.warped, SHADE["value"])


class FlakyBoom(Method):
    """Fails on scene-001 while ``BOOM["fail"]`` is set (e.g. a transient out-of-memory)."""

    meta = MethodMeta(name="flaky-boom", display_name="Flaky boom", licence="test")

    def refine(self, inp):
        if BOOM["fail"] and inp.clip_id.endswith("scene-001"):
            raise RuntimeError("transient failure")
        return inp.warped.clone()


@pytest.fixture
def fake_methods():
    names = {"boom": "Boom", "needs-weights": "NeedsWeights", "shade": "Shade", "flaky-boom": "FlakyBoom"}
    for name, cls in names.items():
        METHODS.register(name, f"tests.test_runner:{cls}")
    yield
    for name in names:
        METHODS._paths.pop(name, None)


def test_failing_method_and_missing_weights_are_recorded_and_the_run_goes_on(tmp_path, fake_methods):
    config = tiny_config(tmp_path, methods=["boom", "needs-weights", "left-copy"], metrics=["psnr"], leaderboard=False)
    lines = []
    summary = run_benchmark(config, progress=False, echo=lines.append)
    rows = read_rows(summary.run_dir, report=False)
    errors = [r for r in rows if r.kind == "error"]
    assert [(r.method, r.clip) for r in errors] == [("boom", "scene-001")]
    assert "boom on purpose" in errors[0].error and errors[0].metric == "error_refine"
    assert any(r.method == "boom" and r.clip == "scene-000" and r.kind == "quality" for r in rows)
    assert {r.clip for r in rows if r.method == "left-copy" and r.kind == "marker"} == {"scene-000", "scene-001"}
    skips = [r for r in rows if r.kind == "skip"]
    assert [(r.method, r.dataset) for r in skips] == [("needs-weights", "synthetic")]
    assert "get-the-weights --now" in skips[0].error
    text = "\n".join(lines)
    assert "get-the-weights --now" in text and "boom on purpose" in text
    # resume retries only the errored pair (only-missing), never duplicates the skip row
    again = run_benchmark(parse_config({**config.to_dict(), "run_id": summary.run_id}), progress=False,
                          echo=lambda s: None)
    assert again.pairs_done == 1
    rows = read_rows(summary.run_dir, report=False)
    assert len([r for r in rows if r.kind == "skip"]) == 1
    # overwrite "never" keeps the error and runs nothing
    never = run_benchmark(parse_config({**config.to_dict(), "run_id": summary.run_id, "overwrite": "never"}),
                          progress=False, echo=lambda s: None)
    assert never.pairs_done == 0


def test_unknown_method_suggests(tmp_path, capsys):
    code = main(["run", "--method", "temporal-fil", "--out", str(tmp_path), "--no-progress"])
    assert code == 2
    assert "Did you mean 'temporal-fill'" in capsys.readouterr().err


def test_config_typo_names_the_key(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("datasets: [synthetic]\nmetrcs: [psnr]\n")
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "metrcs" in err and "Did you mean 'metrics'" in err and "Traceback" not in err


def test_unwritable_results_folder_fails_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the results folder should be")
    code = main(["run", "--dataset", "synthetic", "--option", "num_clips=1", "--method", "left-copy",
                 "--metrics", "psnr", "--out", str(blocker / "runs"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot write results" in err and "--out" in err


def test_disk_full_while_writing_keeps_completed_pairs_and_resumes(tmp_path, monkeypatch):
    import errno

    import benchmark.results as results

    config = tiny_config(tmp_path, metrics=["psnr"], leaderboard=False)
    real_write, calls = os.write, {"n": 0}

    def full_disk(fd, data):
        # the 3rd batch hits a full disk after half of its bytes
        if len(data) > 200:
            calls["n"] += 1
            if calls["n"] == 3:
                real_write(fd, data[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(results.os, "write", full_disk)
    with pytest.raises(StereobenchError, match="free space and rerun"):
        run_benchmark(config, progress=False, echo=lambda s: None)
    monkeypatch.setattr(results.os, "write", real_write)
    run_dir = next((tmp_path / "runs").iterdir())
    kept = read_rows(run_dir, report=False)
    assert len({r.pair for r in kept if r.kind == "marker"}) == 2  # the half batch is not a pair
    summary = run_benchmark(config, progress=False, echo=lambda s: None)
    assert summary.resumed and summary.pairs_done == 4
    final = read_rows(run_dir, report=False)
    assert len({r.pair for r in final if r.kind == "marker"}) == 6
    assert len(quality(final)) == 6 * 3 * 2


def test_shard_flag_splits_clips(tmp_path):
    config = tiny_config(tmp_path, methods=["left-copy"], metrics=["psnr"], leaderboard=False)
    a = run_benchmark(config, shard="0/2", progress=False, echo=lambda s: None)
    b = run_benchmark(config, shard="1/2", progress=False, echo=lambda s: None)
    assert a.run_id == b.run_id and a.run_id.startswith("shard-")
    files = sorted(p.name for p in a.run_dir.glob("rows*.jsonl"))
    assert files == ["rows-rank0.jsonl", "rows-rank1.jsonl"]
    clips = {p: {r.clip for r in read_rows(a.run_dir / p, report=False) if r.kind == "marker"} for p in files}
    assert clips == {"rows-rank0.jsonl": {"scene-000"}, "rows-rank1.jsonl": {"scene-001"}}
    with pytest.raises(StereobenchError, match="i/n"):
        run_benchmark(config, shard="2/2", progress=False)


def _status(run_dir: Path) -> str:
    import json

    return json.loads((run_dir / "manifest.json").read_text())["status"]


def test_explicit_or_latest_run_id_with_another_config_is_refused(clean_run):
    tmp, config, summary, rows = clean_run
    before = sorted(p.name for p in summary.run_dir.iterdir())
    for run_id in (summary.run_id, "latest"):
        changed = parse_config({**config.to_dict(), "run_id": run_id, "metrics": ["psnr"], "leaderboard": False})
        with pytest.raises(StereobenchError, match=rf"config differs from run {summary.run_id} \(.*metrics.*\); "
                                                   r"use --new or another --run-id"):
            run_benchmark(changed, progress=False, echo=lambda s: None)
    # nothing was written into the old run
    assert sorted(p.name for p in summary.run_dir.iterdir()) == before
    assert same_values(quality(read_rows(summary.run_dir, report=False)), quality(rows))
    # --new with an existing explicit id is refused too (it would mix two configs in one folder)
    with pytest.raises(StereobenchError, match="already exists"):
        run_benchmark(parse_config({**config.to_dict(), "run_id": summary.run_id}), fresh=True, progress=False)


def test_latest_is_the_run_that_started_last_not_the_largest_id(tmp_path, fake_methods):
    from benchmark.runner import Distributed, resolve_run_id

    config = tiny_config(tmp_path, methods=["left-copy"], metrics=["psnr"], leaderboard=False)
    first = run_benchmark(parse_config({**config.to_dict(), "run_id": "zz-custom"}), progress=False,
                          echo=lambda s: None)
    second = run_benchmark(config, fresh=True, progress=False, echo=lambda s: None)
    assert second.run_id < first.run_id  # a timestamp id sorts before "zz-custom"...
    latest = parse_config({**config.to_dict(), "run_id": "latest"})
    assert resolve_run_id(latest, Distributed()) == (second.run_id, True)  # ...but started later


def test_same_command_after_errors_retries_only_the_failed_pairs_in_the_same_run(tmp_path, fake_methods):
    BOOM["fail"] = True
    config = tiny_config(tmp_path, methods=["flaky-boom", "left-copy"], metrics=["psnr"], leaderboard=False)
    first = run_benchmark(config, progress=False, echo=lambda s: None)
    assert first.pairs_done == 4 and len(first.errors) == 1
    assert _status(first.run_dir) == "finished-with-errors"
    # the very same command: same run, only the failed pair runs (it fails again)
    again = run_benchmark(config, progress=False, echo=lambda s: None)
    assert again.run_id == first.run_id and again.resumed
    assert again.pairs_done == 1 and again.pairs_skipped_complete == 3
    assert _status(first.run_dir) == "finished-with-errors"
    # the cause went away: the same command fixes the run, which is then finished
    BOOM["fail"] = False
    fixed = run_benchmark(config, progress=False, echo=lambda s: None)
    assert fixed.run_id == first.run_id and fixed.pairs_done == 1 and not fixed.errors
    assert _status(first.run_dir) == "finished"
    rows = read_rows(first.run_dir, report=False)
    assert not [r for r in rows if r.kind == "error"]
    assert {r.pair for r in rows if r.kind == "quality"} == {(m, "synthetic", c) for m in ("flaky-boom", "left-copy")
                                                           for c in ("scene-000", "scene-001")}
    # a finished run is never reopened implicitly: the same command now starts a new run
    fresh = run_benchmark(config, progress=False, echo=lambda s: None)
    assert fresh.run_id != first.run_id and not fresh.resumed and fresh.pairs_done == 4


def test_overwrite_always_replaces_the_saved_video_of_a_recomputed_pair(tmp_path, fake_methods):
    from benchmark.run_store import RunDir
    from benchmark.video_io import read_video

    config = tiny_config(tmp_path, methods=["shade"], metrics=["psnr"], leaderboard=False, save_videos=True,
                         datasets=[{"name": "synthetic", "options": {"num_clips": 1, "size": 192, "num_frames": 4}}])
    SHADE["value"] = 0.2
    first = run_benchmark(config, progress=False, echo=lambda s: None)
    path = RunDir.at(first.run_dir).video_path("synthetic", "scene-000", "shade")
    assert abs(float(read_video(path).frames.mean()) - 0.2) < 0.02
    SHADE["value"] = 0.8
    again = run_benchmark(parse_config({**config.to_dict(), "run_id": first.run_id, "overwrite": "always"}),
                          progress=False, echo=lambda s: None)
    assert again.pairs_done == 1
    # the video shows the output the rows now describe, not the first run's
    assert abs(float(read_video(path).frames.mean()) - 0.8) < 0.02
    assert not list(path.parent.glob(".*tmp*"))  # the atomic write left no temporary file


# ---------------------------------------------------------------------------------------------
# Bug 1: a folder dataset given by its absolute path; nothing is written outside the run / cache
# ---------------------------------------------------------------------------------------------
def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_folder_dataset_by_absolute_path_writes_nothing_there_and_rows_use_spec_name(tmp_path):
    import numpy as np

    from benchmark.datasets import get_dataset
    from benchmark.run_store import RunDir
    from benchmark.video_io import write_frames

    data = tmp_path / "my videos"  # the user's folder (with a space, as users' folders have)
    rng = torch.Generator().manual_seed(0)
    write_frames(data / "street_left", torch.rand((2, 3, 32, 48), generator=rng))
    write_frames(data / "street_right", torch.rand((2, 3, 32, 48), generator=rng))
    np.save(data / "street_disparity.npy", np.full((2, 32, 48), 3.0, dtype=np.float32))
    before = _listing(data)
    spec_name = get_dataset(str(data)).spec.name
    out, cache = tmp_path / "runs-x", tmp_path / "cache"
    code = main(["run", "--dataset", str(data.resolve()), "--method", "left-copy", "--save-videos",
                 "--metrics", "psnr", "--protocol", "native", "--device", "cpu", "--out", str(out),
                 "--cache", str(cache), "--no-progress", "--no-leaderboard"])
    assert code == 0
    assert _listing(data) == before  # not one file added, removed or touched in the user's folder
    run = RunDir.at(next(out.iterdir()))
    rows = run.read_rows(report=False)
    assert rows and {r.dataset for r in rows} == {spec_name} and not spec_name.startswith("/")
    # the saved videos are inside the run, found again under the rows' names
    saved = run.saved_videos()
    assert {v.name for v in saved} >= {"left", "warped", "mask", "gt", "left-copy"}
    assert {(v.dataset, v.clip) for v in saved} == {(spec_name, "street")}
    assert all(v.path.resolve().is_relative_to(run.path.resolve()) for v in saved)
    # and nothing else was written anywhere under tmp_path but the run folder and the cache
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["my videos", "runs-x", "cache"])
    manifest = run.read_manifest()
    assert list(manifest["datasets"]) == [spec_name]


# ---------------------------------------------------------------------------------------------
# The environment's failures stop the run with one line, resumably
# ---------------------------------------------------------------------------------------------
def test_full_disk_under_the_input_cache_stops_with_one_line_and_resumes(tmp_path, monkeypatch, capsys):
    import errno

    from benchmark.run_store import RunDir
    from benchmark.stereo.cache import StereoInputCache

    calls = {"n": 0}
    real_store = StereoInputCache.store

    def full_disk(self, key, *args, **kwargs):
        calls["n"] += 1
        raise OSError(errno.ENOSPC, "No space left on device", str(self.root / "entry"))

    monkeypatch.setattr(StereoInputCache, "store", full_disk)
    cache = tmp_path / "cache"
    argv = ["run", "--dataset", "synthetic", "--option", "num_clips=2", "--option", "size=192",
            "--option", "num_frames=4", "--method", "left-copy", "--method", "warp-only", "--metrics", "psnr",
            "--protocol", "quick", "--device", "cpu", "--out", str(tmp_path / "runs"), "--cache", str(cache),
            "--no-progress", "--no-leaderboard"]
    line = assert_clean_error(argv, capsys, contains=["disk is full", str(cache), "rerun the same command"])
    assert "Traceback" not in line
    assert calls["n"] == 1  # stopped at the first failure: no warp redone per method or clip
    run = RunDir.at(next((tmp_path / "runs").iterdir()))
    assert not [r for r in run.read_rows(report=False) if r.kind == "error"]  # no error rows
    assert run.status().value == "failed"
    monkeypatch.setattr(StereoInputCache, "store", real_store)
    assert main(argv) == 0  # the same command resumes the same run and finishes it
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [run.run_id]
    assert len(run.completed_pairs(include_errors=False)) == 4 and run.status().value == "finished"


def test_full_disk_while_saving_a_video_stops_the_run(tmp_path, monkeypatch):
    import errno

    import benchmark.runner.pair as pair

    def full_disk(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pair, "save_video", full_disk)
    config = tiny_config(tmp_path, methods=["left-copy"], metrics=["psnr"], leaderboard=False, save_videos=True)
    with pytest.raises(OSError) as info:
        run_benchmark(config, progress=False, echo=lambda s: None)
    assert info.value.errno == errno.ENOSPC
    run_dir = next((tmp_path / "runs").iterdir())
    assert not [r for r in read_rows(run_dir, report=False) if r.kind == "error"]


@pytest.mark.parametrize("code, contains", [
    ("ENOSPC", "disk is full"), ("EACCES", "permission"), ("EROFS", "read-only"), ("EISDIR", "a folder is where"),
])
def test_cli_names_the_users_path_and_the_real_cause(tmp_path, monkeypatch, capsys, code, contains):
    import errno

    import benchmark.commands.run as run_command

    target = tmp_path / "runs" / "r" / "rows.jsonl"

    def failing(args):
        from benchmark.fileio import atomic_write_bytes

        real_replace = os.replace

        def replace(src, dst):
            raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)), src, dst)

        monkeypatch.setattr(os, "replace", replace)
        try:
            atomic_write_bytes(target, b"x")
        finally:
            monkeypatch.setattr(os, "replace", real_replace)

    monkeypatch.setattr(run_command, "run", failing)
    from tests.badinput import assert_clean_error as check

    line = check(["run"], capsys, contains=[contains, str(target)])
    assert ".tmp" not in line  # the user's file, not our temporary one
    if code != "ENOSPC":
        assert "free space" not in line


def test_wait_runs_after_the_owner_of_the_run_is_done(tmp_path):
    """`--wait`: a second process on an owned run waits for the owner, then continues the run."""
    from tests.test_run_store import _hold

    config = tiny_config(tmp_path, methods=["left-copy"], metrics=["psnr"], leaderboard=False, run_id="shared",
                         datasets=[{"name": "synthetic", "options": {"num_clips": 1, "size": 192, "num_frames": 4}}])
    holder = _hold(tmp_path / "runs", "shared", 2.0)
    try:
        with pytest.raises(StereobenchError, match=f"in use by pid {holder.pid}"):
            run_benchmark(config, progress=False, echo=lambda s: None)
        summary = run_benchmark(config, wait=True, progress=False, echo=lambda s: None)
    finally:
        holder.kill()
        holder.wait()
    assert summary.run_id == "shared" and summary.pairs_done == 1
    assert not (summary.run_dir / "run.lock").exists()  # released at the end
