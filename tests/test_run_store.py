"""benchmark.run_store: RunDir paths, manifest, status, resume lookup, saved-video read API,
the one-owner lock (two real processes, a stale lock of a dead pid) and debris sweeping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark.errors import StereobenchError
from benchmark.fileio import sweep_orphaned_temp_files
from benchmark.results import pair_rows
from benchmark.run_store import (RunDir, RunLock, RunStatus, find_resumable_run, list_runs, load_manifests,
                                 newest_run, resolve_runs, safe_component)
from tests.badinput import assert_clean_error, assert_clean_error_subprocess

REPO = Path(__file__).resolve().parents[1]


def _dead_pid() -> int:
    """A pid that certainly belongs to no process: a child that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --------------------------------------------------------------------------------------------
# Names and paths
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["synthetic", "scene-000", "middlebury-motorcycle", "folder-my_clips", "a.b+c=d"])
def test_plain_names_are_kept(name):
    assert safe_component(name) == name


@pytest.mark.parametrize("dataset, clip, name", [
    ("/some/dir/of/videos", "street", "left-copy"),
    ("..", "..", ".."),
    ("../../etc", "../passwd", "x"),
    ("synthetic", "a/b/../../../../c", "m"),
    (".", ".hidden", ".bashrc"),
    ("C:\\\\Users\\\\x", "clip with spaces", "méthode"),
    ("~/videos", "$HOME", "gt/../../up"),
    ("", "", ""),
])
def test_video_path_never_leaves_the_run_folder(tmp_path, dataset, clip, name):
    run = RunDir(tmp_path / "runs", "r1")
    path = run.video_path(dataset, clip, name)
    videos = (tmp_path / "runs" / "r1" / "videos").resolve()
    resolved = path.resolve()
    assert resolved.is_relative_to(videos), path
    # exactly <videos>/<one component>/<one component>/<one component>.mp4
    assert len(resolved.relative_to(videos).parts) == 3 and path.suffix == ".mp4"
    assert not any(part in ("", ".", "..") for part in resolved.relative_to(videos).parts)


def test_different_unsafe_names_get_different_folders():
    names = ["/a/b", "_a_b", "a/b", "a_b", "/a/b/", "a b"]
    assert len({safe_component(n) for n in names}) == len(names)


def test_dataset_prefix_of_a_clip_id_is_dropped(tmp_path):
    run = RunDir(tmp_path, "r")
    assert run.video_path("synthetic", "synthetic/clip-3", "gt") == tmp_path / "r/videos/synthetic/clip-3/gt.mp4"


@pytest.mark.parametrize("run_id", ["", ".", "..", "a/b", ".hidden", "has space", "tab\there", "x" * 201])
def test_bad_run_ids_are_refused(tmp_path, run_id):
    with pytest.raises(StereobenchError, match="plain folder name"):
        RunDir(tmp_path, run_id)


# --------------------------------------------------------------------------------------------
# Manifest, status, resume lookup
# --------------------------------------------------------------------------------------------
def _make_run(root: Path, run_id: str, status: str, config_hash: str, started: float) -> RunDir:
    run = RunDir(root, run_id)
    run.write_manifest({"run_id": run_id, "status": status, "extra": {"config_hash": config_hash,
                                                                       "started_unix": started}})
    return run


def test_manifest_round_trip_and_status(tmp_path):
    run = _make_run(tmp_path, "r1", "finished-with-errors", "abc", 100.0)
    assert run.read_manifest()["extra"]["config_hash"] == "abc"
    assert run.status() is RunStatus.FINISHED_WITH_ERRORS and run.config_hash() == "abc"
    assert run.started() == 100.0
    assert [p.name for p in run.path.iterdir()] == ["manifest.json"]  # atomic: no temp file left
    run.manifest_path().write_text("{ half")
    assert run.read_manifest() is None and run.status() is None
    with pytest.warns(UserWarning, match="unreadable manifest"):
        assert load_manifests(tmp_path) == {}
    # a non-finite value is stored as strict JSON
    run.write_manifest({"run_id": "r1", "wall": float("nan")})
    assert json.loads(run.manifest_path().read_text())["wall"] == "nan"


def test_find_resumable_run_follows_status_hash_and_start_time(tmp_path):
    root = tmp_path / "runs"
    _make_run(root, "zz-old-running", "running", "h1", 10.0)
    _make_run(root, "aa-new-running", "running", "h1", 20.0)  # newer by start time, smaller id
    _make_run(root, "finished", "finished", "h1", 30.0)
    _make_run(root, "other-config", "running", "h2", 40.0)
    assert find_resumable_run(root, "h1") == "aa-new-running"
    _make_run(root, "errors", "finished-with-errors", "h1", 50.0)
    assert find_resumable_run(root, "h1", "only-missing") == "errors"
    assert find_resumable_run(root, "h1", "never") == "aa-new-running"  # errors are kept under never
    _make_run(root, "failed", "failed", "h1", 60.0)
    assert find_resumable_run(root, "h1", "never") == "failed"  # the environment stopped it
    assert find_resumable_run(root, "h3") is None
    assert find_resumable_run(tmp_path / "missing", "h1") is None
    assert newest_run(root) == "failed"
    assert list_runs(root) == sorted(["zz-old-running", "aa-new-running", "finished", "other-config", "errors",
                                      "failed"])


def test_resolve_runs_prefixes(tmp_path):
    for run_id in ("20250101-000000-aaaaaa", "20250101-000001-bbbbbb", "20250102-000000-cccccc"):
        _make_run(tmp_path, run_id, "finished", "h", 0.0)
    assert resolve_runs(tmp_path, ["20250102"]) == ["20250102-000000-cccccc"]
    with pytest.raises(StereobenchError, match="ambiguous"):
        resolve_runs(tmp_path, ["20250101"])
    with pytest.raises(StereobenchError, match="unknown run id"):
        resolve_runs(tmp_path, ["nope"])


# --------------------------------------------------------------------------------------------
# Rows and saved videos (the study builder's read API)
# --------------------------------------------------------------------------------------------
def test_rows_and_saved_videos_read_back_with_the_rows_names(tmp_path):
    run = RunDir(tmp_path, "r1")
    dataset = "/data/my videos"  # a name that is not a safe folder name
    writer = run.writer()
    for method in ("left-copy", "warp only (v2)"):  # a label that is not a safe file name
        writer.append(pair_rows(run_id="r1", method=method, dataset=dataset, clip="street",
                                quality=[{"metric": "psnr", "value": 20.0}]))
    assert run.completed_pairs() == {("left-copy", dataset, "street"), ("warp only (v2)", dataset, "street")}
    assert len(run.read_rows()) == 4
    for name in ("left", "warped", "mask", "gt", "left-copy", "warp only (v2)"):
        path = run.video_path(dataset, "street", name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not really a video")
    (run.video_path(dataset, "street", "x").parent / ".x.mp4.1.abc.tmp").write_bytes(b"")  # a write in progress
    videos = run.saved_videos()
    assert {(v.dataset, v.clip) for v in videos} == {(dataset, "street")}
    assert sorted(v.name for v in videos) == ["gt", "left", "left-copy", "mask", "warp only (v2)", "warped"]
    assert all(v.path.is_file() and v.path.is_relative_to(run.path) for v in videos)
    assert run.saved_clips() == [(dataset, "street")]
    assert run.saved_methods(dataset, "street") == ["left-copy", "warp only (v2)"]
    assert run.saved_videos(dataset, "other") == []
    assert RunDir(tmp_path, "empty").saved_videos() == []


# --------------------------------------------------------------------------------------------
# One owner per run
# --------------------------------------------------------------------------------------------
def test_second_lock_in_the_same_process_is_refused_and_release_frees_it(tmp_path):
    run = RunDir(tmp_path, "r1")
    first = run.lock()
    owner = json.loads(run.lock_path().read_text())
    assert owner["pid"] == os.getpid() and owner["host"]
    with pytest.raises(StereobenchError, match=rf"in use by pid {os.getpid()} on .*--wait"):
        run.lock()
    first.release()
    assert not run.lock_path().exists()  # released: no owner recorded
    run.lock().release()  # free again
    # shards of one run lock separately (array jobs work side by side)
    a, b = run.lock(shard=0), run.lock(shard=1)
    a.release(), b.release()


def test_stale_lock_of_a_dead_pid_is_taken_over(tmp_path):
    run = RunDir(tmp_path, "r1")
    run.path.mkdir(parents=True)
    dead = _dead_pid()
    run.lock_path().write_text(json.dumps({"pid": dead, "host": "somewhere", "started_at": "2025-01-01"}))
    lock = run.lock()
    assert json.loads(run.lock_path().read_text())["pid"] == os.getpid()
    lock.release()


HOLDER = """
import sys, time
from benchmark.run_store import RunDir
lock = RunDir(sys.argv[1], sys.argv[2]).lock()
print("locked", flush=True)
time.sleep(float(sys.argv[3]))
lock.release()
"""


def _hold(root: Path, run_id: str, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), run_id, str(seconds)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_two_processes_on_one_run_the_second_refuses_naming_the_owner(tmp_path):
    root = tmp_path / "runs"
    holder = _hold(root, "shared-run", 120)
    try:
        with pytest.raises(StereobenchError, match=rf"run shared-run is in use by pid {holder.pid}"):
            RunDir(root, "shared-run").lock()
        # the real command, as a second process: one line naming the owner, exit 2, nothing run
        line = assert_clean_error_subprocess(
            ["run", "--dataset", "synthetic", "--option", "num_clips=1", "--option", "size=32",
             "--option", "num_frames=2", "--method", "left-copy", "--metrics", "psnr", "--device", "cpu",
             "--out", root, "--run-id", "shared-run", "--no-progress", "--cache", tmp_path / "cache"],
            contains=[f"pid {holder.pid}", "--wait"])
        assert "in use" in line
        assert not list((root / "shared-run").glob("rows*.jsonl"))
    finally:
        holder.kill()
        holder.wait()
    # the owner died (SIGKILL): its lock is stale and the next process takes the run
    RunDir(root, "shared-run").lock().release()


def test_wait_takes_the_run_once_the_owner_is_done(tmp_path):
    root = tmp_path / "runs"
    holder = _hold(root, "r", 1.5)
    start = time.monotonic()
    lock = RunDir(root, "r").lock(wait=True)
    waited = time.monotonic() - start
    holder.wait()
    lock.release()
    assert waited > 0.5  # it did wait for the owner
    with pytest.raises(StereobenchError, match="in use"):
        holder = _hold(root, "r", 30)
        try:
            RunLock(RunDir(root, "r").lock_path()).acquire(wait=True, poll_s=0.1, timeout_s=0.5)
        finally:
            holder.kill()
            holder.wait()


# --------------------------------------------------------------------------------------------
# Debris
# --------------------------------------------------------------------------------------------
def test_sweep_removes_temp_files_of_dead_writers_only(tmp_path):
    dead = _dead_pid()
    old = time.time() - 3600
    orphan = tmp_path / "plots" / f".board-per-clip.png.{dead}.k2j3h4.tmp"
    live = tmp_path / "plots" / f".board-scatter.png.{os.getpid()}.a1b2c3.tmp"
    fresh = tmp_path / "plots" / f".board-frames.png.{dead}.zzzzzz.tmp"
    other = tmp_path / "plots" / ".notes.tmp"
    for path in (orphan, live, fresh, other):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    for path in (orphan, live, other):
        os.utime(path, (old, old))
    removed = sweep_orphaned_temp_files(tmp_path, recursive=True)
    assert removed == [orphan]
    assert live.exists() and fresh.exists() and other.exists()  # alive, too young, not ours


def test_leaderboard_sweeps_an_orphaned_plot_temp_file(tmp_path, capsys):
    from benchmark.leaderboard import build_leaderboard
    from benchmark.results import rows_to_frame

    out = tmp_path / "lb"
    orphan = out / "plots" / f".synthetic-quality-vs-latency.png.{_dead_pid()}.q1w2e3.tmp"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"half a png")
    os.utime(orphan, (time.time() - 3600,) * 2)
    rows = pair_rows(run_id="r", method="m", dataset="synthetic", clip="c", quality=[{"metric": "psnr", "value": 1.0}],
                     timings={"time_refine_s": 1.0})
    build_leaderboard(rows_to_frame(rows), out, plots=True, n_resamples=10)
    assert not orphan.exists()
    assert not [p for p in out.rglob("*.tmp")]


def test_a_half_line_in_rows_warns_once_per_read(tmp_path):
    run = RunDir(tmp_path / "runs", "r1")
    run.writer().append(pair_rows(run_id="r1", method="m", dataset="d", clip="c",
                                  quality=[{"metric": "psnr", "value": 1.0}]))
    with open(run.rows_path(), "ab") as handle:
        handle.write(b'{"run_id": "r1", "meth')
    code = ("import sys; from benchmark.run_store import load_results; "
            "print(len(load_results(sys.argv[1])))")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "runs")], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1"
    assert proc.stderr.count("partially written") == 1, proc.stderr


def test_leaderboard_command_reads_a_run_through_the_store(tmp_path, capsys):
    from benchmark.cli import main

    run = RunDir(tmp_path / "runs", "r1")
    run.write_manifest({"run_id": "r1", "status": "finished", "protocol": {"name": "quick", "num_frames": 8}})
    run.writer().append(pair_rows(run_id="r1", method="m", dataset="d", clip="c", clip_protocol="quick",
                                  quality=[{"metric": "psnr", "value": 1.0}]))
    assert main(["leaderboard", "--results", str(tmp_path / "runs"), "--out", str(tmp_path / "lb"),
                 "--no-plots", "--resamples", "10", "-q"]) == 0
    assert "8 frames" in (tmp_path / "lb" / "leaderboard.md").read_text()  # the manifest was read
    assert_clean_error(["leaderboard", "--results", str(tmp_path / "runs"), "--run", "r2"], capsys,
                       contains="unknown run id")


def test_a_filesystem_without_locks_falls_back_to_the_recorded_pid(tmp_path, monkeypatch):
    # Lustre without -o flock answers ENOSYS, some NFS mounts ENOLCK: runs must still start there,
    # and a live owner recorded in the lock file must still be respected.
    import errno
    import socket

    import benchmark.run_store as run_store

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(run_store.fcntl, "flock", no_flock)
    path = RunDir(tmp_path, "r").lock_path()
    with pytest.warns(UserWarning, match="no file locks"):
        lock = RunLock(path)
        lock.acquire()
    assert json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()
    assert not path.exists()

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"pid": other.pid, "host": socket.gethostname()}))
        with pytest.raises(StereobenchError, match=f"pid {other.pid}"):
            RunLock(path).acquire()
    finally:
        other.kill()
        other.wait()
    stale = RunLock(path)  # the recorded owner is dead now: taken over
    stale.acquire()
    assert json.loads(path.read_text())["pid"] == os.getpid()
    stale.release()


def test_a_killed_video_save_leaves_no_debris_for_good(tmp_path):
    # The video writer's temp names (.<name>.tmp-<pid>-<hex>.mp4, and PNG-frame temp folders)
    # are swept like the atomic writer's once their writer is dead.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = RunDir(tmp_path, "r")
    clip_dir = run.video_path("synthetic", "scene-000", "left").parent
    clip_dir.mkdir(parents=True)
    orphan_video = clip_dir / f".left.mp4.tmp-{dead.pid}-0123abcd.mp4"
    orphan_frames = clip_dir / f".frames.tmp-{dead.pid}-89abcdef"
    live_video = clip_dir / f".gt.mp4.tmp-{os.getpid()}-0123abcd.mp4"
    user_file = clip_dir / ".notes.tmp-1-x"  # not one of the suite's names: never touched
    orphan_video.write_bytes(b"x")
    orphan_frames.mkdir()
    (orphan_frames / "frame_000.png").write_bytes(b"x")
    live_video.write_bytes(b"x")
    user_file.write_bytes(b"x")
    old = time.time() - 7200
    for path in (orphan_video, orphan_frames, live_video, user_file):
        os.utime(path, (old, old))
    removed = set(run.sweep_debris())
    assert removed == {orphan_video, orphan_frames}
    assert live_video.exists() and user_file.exists()
