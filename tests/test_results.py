"""The results table: atomic appends, crash tolerance, completion markers, the long loader."""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import warnings
from pathlib import Path

import pytest

from benchmark.errors import StereobenchError
from benchmark.results import (KEY_FIELDS, ROW_COLUMNS, SCHEMA_VERSION, ResultRow, ResultsWriter, completed_pairs,
                               pair_rows, read_rows, skip_row, timing_spec, write_json_atomic)
from benchmark.run_store import RunDir, load_results, new_run_id, resolve_runs

METRICS = ("psnr", "msssim", "lpips_vgg")


def _quality(seed: int) -> list[dict]:
    return [{"metric": m, "region": r, "protocol": p, "value": seed + 0.1 * i}
            for i, (m, r, p) in enumerate((m, r, p) for m in METRICS for r in ("full", "inside", "outside")
                                           for p in ("paper", "strict"))]


def _pair(run_id: str, method: str, clip: str, seed: int = 0, **kwargs) -> list[ResultRow]:
    return pair_rows(run_id=run_id, method=method, dataset="synthetic", clip=f"synthetic/{clip}",
                     clip_protocol="quick", warp_mode="shared", device="cpu (test)", quality=_quality(seed),
                     timings={"time_refine_s": 0.5 + seed, "time_refine_s_per_frame": (0.5 + seed) / 8,
                              "peak_mem_bytes": 1e6}, **kwargs)


def _payload(rows: list[ResultRow]) -> bytes:
    return "".join(r.to_json() + "\n" for r in rows).encode()


def _broken_line_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "partially written" in str(w.message)]


def test_round_trip_two_runs_with_a_writer_killed_mid_line(tmp_path):
    root = tmp_path / "runs"
    expected_keys = set()
    run_ids = ["20250101-000000-aaaaaa", "20250101-000001-bbbbbb"]
    for r, run_id in enumerate(run_ids):
        writer = ResultsWriter(root / run_id)
        for method in ("warp-only", "background-fill"):
            for c in range(3):
                rows = _pair(run_id, method, f"clip-{c}", seed=10 * r + c)
                writer.append(rows)
                expected_keys |= {row.key for row in rows if row.kind != "marker"}
    # A writer of run 0 is killed in the middle of a line of its next batch.
    cut_batch = _payload(_pair(run_ids[0], "temporal-fill", "clip-0"))
    path = root / run_ids[0] / "rows.jsonl"
    with open(path, "ab") as handle:
        handle.write(cut_batch[: len(cut_batch) // 2 + 7])
    # The next writer (a resumed run) appends after the broken line without corrupting its rows.
    resumed = _pair(run_ids[0], "temporal-fill", "clip-1", seed=99)
    ResultsWriter(root / run_ids[0]).append(resumed)
    expected_keys |= {row.key for row in resumed if row.kind != "marker"}

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        frame = load_results(root)
    broken = _broken_line_warnings(record)
    assert len(broken) == 1 and "1 partially written" in broken[0]
    # Every complete row of every finished pair is there, exactly once; the cut pair is not.
    keys = set(map(tuple, frame[list(KEY_FIELDS)].itertuples(index=False)))
    assert keys == expected_keys
    assert len(frame) == len(expected_keys)
    assert not frame.duplicated(list(KEY_FIELDS)).any()
    assert not ((frame["method"] == "temporal-fill") & (frame["clip"] == "clip-0")).any()
    # The complete lines of the cut batch are not lost either: the raw reader returns them (the
    # loader leaves them out because their pair has no completion marker; a resume redoes it).
    cut_lines = cut_batch[: len(cut_batch) // 2 + 7].count(b"\n")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        raw = read_rows(root / run_ids[0], dedupe=False)
    assert len(_broken_line_warnings(record)) == 1
    assert sum(r.method == "temporal-fill" and r.clip == "clip-0" for r in raw) == cut_lines > 0
    # Values survive the round trip exactly.
    row = frame[(frame["run_id"] == run_ids[1]) & (frame["method"] == "warp-only") & (frame["clip"] == "clip-2")
                & (frame["metric"] == "psnr") & (frame["region"] == "full") & (frame["protocol"] == "paper")]
    assert row["value"].tolist() == [12.0]


def test_completed_pairs_never_includes_a_cut_batch(tmp_path):
    run_dir = tmp_path / "run"
    writer = ResultsWriter(run_dir)
    writer.append(_pair("r", "warp-only", "clip-0"))
    payload = _payload(_pair("r", "warp-only", "clip-1"))
    line_ends = [i + 1 for i, b in enumerate(payload) if b == ord("\n")]
    # Every line boundary and a point inside every line; only the final newline is left intact
    # (a marker line missing only its newline is complete JSON: nothing of the batch is lost).
    cuts = sorted(set(line_ends[:-1]) | {e - 3 for e in line_ends} | {1, len(payload) // 2})
    base = (run_dir / "rows.jsonl").read_bytes()
    for cut in cuts:
        (run_dir / "rows.jsonl").write_bytes(base + payload[:cut])
        done = completed_pairs(run_dir)
        assert ("warp-only", "synthetic", "clip-1") not in done, f"cut at byte {cut} looks complete"
        assert ("warp-only", "synthetic", "clip-0") in done
    (run_dir / "rows.jsonl").write_bytes(base + payload)
    assert writer.completed_pairs() == {("warp-only", "synthetic", "clip-0"), ("warp-only", "synthetic", "clip-1")}


def test_rows_of_a_cut_batch_are_not_loaded_and_a_rerun_replaces_them(tmp_path):
    root = tmp_path / "runs"
    run_dir = root / "run-a"
    writer = ResultsWriter(run_dir)
    payload = _payload(_pair("run-a", "warp-only", "clip-0", seed=1))
    line_ends = [i + 1 for i, b in enumerate(payload) if b == ord("\n")]
    with open(writer.path, "ab") as handle:  # killed after 5 complete lines, before the marker
        handle.write(payload[: line_ends[4]])
    with pytest.warns(UserWarning, match="before their completion marker"):
        assert load_results(root).empty
    writer.append(_pair("run-a", "warp-only", "clip-0", seed=2))  # the resumed run redoes the pair
    with pytest.warns(UserWarning, match="5 result row"):
        frame = load_results(root)
    assert len(frame) == len(_quality(0)) + 3
    assert set(frame[frame["metric"] == "psnr"]["value"]) >= {2.0}
    assert 1.0 not in set(frame["value"])


def test_error_pairs_are_complete_unless_asked_and_newer_batches_supersede(tmp_path):
    run_dir = tmp_path / "run"
    writer = ResultsWriter(run_dir)
    writer.write_pair(run_id="r", method="m2svid", dataset="synthetic", clip="c0", quality=[],
                      error=RuntimeError("CUDA out of memory"))
    assert ("m2svid", "synthetic", "c0") in writer.completed_pairs()
    assert writer.completed_pairs(include_errors=False) == set()
    rows = read_rows(run_dir)
    error = [r for r in rows if r.kind == "error"]
    assert len(error) == 1 and error[0].error == "RuntimeError: CUDA out of memory" and error[0].value is None
    # A retry that succeeds supersedes the error batch entirely.
    writer.append(_pair("r", "m2svid", "c0"))
    assert writer.completed_pairs(include_errors=False) == {("m2svid", "synthetic", "c0")}
    assert not [r for r in read_rows(run_dir) if r.kind == "error"]


def test_identical_keys_are_merged_last_wins_and_reported(tmp_path):
    run_dir = tmp_path / "run"
    writer = ResultsWriter(run_dir)
    first = ResultRow(run_id="r", method="a", dataset="d", clip="c", kind="quality", metric="psnr", value=1.0,
                      region="full", protocol="paper", written_at=1.0)
    second = ResultRow(run_id="r", method="a", dataset="d", clip="c", kind="quality", metric="psnr", value=2.0,
                       region="full", protocol="paper", written_at=2.0)
    writer.append([first])
    ResultsWriter(run_dir, rank=1).append([second])
    with pytest.warns(UserWarning, match="1 duplicate"):
        rows = read_rows(run_dir)
    assert [r.value for r in rows] == [2.0]


def _append_worker(args):
    run_dir, rank, n = args
    writer = ResultsWriter(run_dir)  # all processes share ONE file on purpose
    for c in range(n):
        writer.append(_pair("r", f"m{rank}", f"clip-{c}", seed=c))


def test_concurrent_appends_from_processes_never_interleave(tmp_path):
    run_dir = tmp_path / "run"
    n_proc, n = 4, 15
    ctx = mp.get_context("fork")
    with ctx.Pool(n_proc) as pool:
        pool.map(_append_worker, [(run_dir, k, n) for k in range(n_proc)])
    lines = (run_dir / "rows.jsonl").read_bytes().splitlines()
    assert all(json.loads(line)["schema_version"] == SCHEMA_VERSION for line in lines)
    assert len(lines) == n_proc * n * (len(_quality(0)) + 4)
    assert completed_pairs(run_dir) == {(f"m{k}", "synthetic", f"clip-{c}") for k in range(n_proc) for c in range(n)}


def test_loader_granularity_columns_and_values(tmp_path):
    root = tmp_path / "runs"
    writer = ResultsWriter(root / "run-1", rank=0)
    writer.append(_pair("run-1", "warp-only", "clip-0"))
    ResultsWriter(root / "run-1", rank=1).write_pair(
        run_id="run-1", method="warp-only", dataset="synthetic", clip="clip-1", error="ValueError: bad", quality=[],
        clip_protocol="quick", warp_mode="shared")
    writer.append([skip_row(run_id="run-1", method="svg", dataset="synthetic", reason="weights missing: see docs")])
    writer.append(pair_rows(run_id="run-1", method="left-copy", dataset="synthetic", clip="clip-0",
                            quality=[{"metric": "psnr", "region": "full", "protocol": "paper", "value": math.inf},
                                     {"metric": "msssim", "region": "full", "protocol": "paper", "value": math.nan}]))
    frame = load_results(root)
    assert tuple(frame.columns) == ROW_COLUMNS
    assert str(frame["value"].dtype) == "float64"
    assert not frame.duplicated(list(KEY_FIELDS)).any()
    assert set(frame["kind"]) == {"quality", "timing", "error", "skip"}  # markers dropped
    timing = frame[frame["kind"] == "timing"]
    assert set(timing["region"]) == {"n/a"} and set(timing["protocol"]) == {"n/a"}
    assert set(timing["metric"]) == {"time_refine_s", "time_refine_s_per_frame", "peak_mem_bytes"}
    quality = frame[(frame["kind"] == "quality") & (frame["method"] == "warp-only")]
    assert len(quality) == len(METRICS) * 3 * 2  # metric x region x protocol for one clip
    assert set(quality["clip"]) == {"clip-0"}  # the "synthetic/" prefix of Clip.clip_id is stripped
    error = frame[frame["kind"] == "error"]
    assert error["error"].tolist() == ["ValueError: bad"] and error["value"].isna().all()
    left = frame[frame["method"] == "left-copy"].set_index("metric")["value"]
    assert left["psnr"] == math.inf and math.isnan(left["msssim"])
    assert "marker" in set(load_results(root, include_markers=True)["kind"])
    # strict JSON on disk: no NaN / Infinity tokens
    for path in (root / "run-1").glob("rows*.jsonl"):
        for line in path.read_text().splitlines():
            json.loads(line, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))


def test_run_selection_and_errors(tmp_path):
    root = tmp_path / "runs"
    with pytest.raises(StereobenchError, match="no runs found"):
        load_results(root)
    for run_id in ("20250101-000000-aaaaaa", "20250102-000000-bbbbbb"):
        ResultsWriter(root / run_id).append(_pair(run_id, "warp-only", "clip-0"))
    assert set(load_results(root, ["20250102-000000-bbbbbb"])["run_id"]) == {"20250102-000000-bbbbbb"}
    assert resolve_runs(root, ["20250101"]) == ["20250101-000000-aaaaaa"]  # unique prefix
    with pytest.raises(StereobenchError, match="Did you mean '20250101-000000-aaaaaa'"):
        load_results(root, ["20250101-000000-aaaaab"])


def test_helpers(tmp_path):
    a, b = new_run_id(), new_run_id()
    assert a != b and len(a) == len("20250101-000000-abcdef")
    with pytest.raises(StereobenchError, match="unknown timing metric"):
        pair_rows(run_id="r", method="m", dataset="d", clip="c", timings={"refine_seconds": 1.0})
    assert timing_spec("time_depth_s_per_frame").higher_is_better is False
    assert RunDir.at(tmp_path).video_path("synthetic", "synthetic/clip-3", "gt") == tmp_path / "videos/synthetic/clip-3/gt.mp4"
    target = tmp_path / "m.json"
    write_json_atomic(target, {"x": 1})
    write_json_atomic(target, {"x": 2, "y": [1.5, math.inf]})
    assert json.loads(target.read_text()) == {"x": 2, "y": [1.5, "inf"]}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left
    umask = os.umask(0)
    os.umask(umask)
    assert (target.stat().st_mode & 0o777) == (0o666 & ~umask)


def test_unwritable_results_folder_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("a file where the results folder should be\n")  # fails even as root
    with pytest.raises(StereobenchError, match="cannot create the results folder") as info:
        ResultsWriter(blocker / "run")
    assert "\n" not in str(info.value)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "rows.jsonl").mkdir()  # the rows file cannot be opened for writing
    with pytest.raises(StereobenchError, match="cannot write results"):
        ResultsWriter(run_dir).append(_pair("r", "m", "c"))


def test_read_rows_of_a_missing_file(tmp_path):
    with pytest.raises(StereobenchError, match="no results file"):
        read_rows(Path(tmp_path) / "nope.jsonl")


@pytest.mark.parametrize("code, fix", [("ENOSPC", "free space"), ("EACCES", "permissions"), ("EROFS", "read-only")])
def test_a_failed_rows_write_names_its_real_cause(tmp_path, monkeypatch, code, fix):
    import errno

    import benchmark.results as results

    writer = ResultsWriter(tmp_path / "run")
    writer.append(_pair("r", "m", "clip-0"))

    def failing_write(fd, data):
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))

    monkeypatch.setattr(results.os, "write", failing_write)
    with pytest.raises(StereobenchError) as info:
        writer.append(_pair("r", "m", "clip-1"))
    message = str(info.value)
    assert fix in message and str(writer.path) in message and "completed rows are kept" in message
    if code != "ENOSPC":
        assert "free space" not in message
    monkeypatch.undo()
    assert writer.completed_pairs() == {("m", "synthetic", "clip-0")}  # the earlier pair is kept
