"""`stereobench leaderboard`: every bad input is one `error:` line, exit 2, no traceback, and the
runs it reads are left as they were."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.results import pair_rows
from benchmark.run_store import RunDir
from tests.badinput import assert_clean_error

RUN_IDS = ("20250101-000000-aaaaaa", "20250101-000001-bbbbbb", "20250102-000000-cccccc")


def _runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for run_id in RUN_IDS:
        run = RunDir(root, run_id)
        run.write_manifest({"run_id": run_id, "status": "finished"})
        run.writer().append(pair_rows(run_id=run_id, method="m", dataset="synthetic", clip="c",
                                      quality=[{"metric": "psnr", "value": 20.0}]))
    return root


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


CASES = [
    # (extra arguments; "{root}" / "{file}" / "{tmp}" are filled in, text the error must contain)
    (["--run", "nope"], "unknown run id"),
    (["--run", "20250101"], "ambiguous"),
    (["--run", "2025010"], "ambiguous"),
    (["--run", ""], "empty run id"),
    (["--run", " "], "empty run id"),
    (["--run", RUN_IDS[0], "nope"], "unknown run id"),
    (["--run", "20250101-000000-aaaaab"], "Did you mean"),
    (["--resamples", "0"], "--resamples"),
    (["--resamples", "-5"], "--resamples"),
    (["--resamples", "abc"], "invalid int"),
    (["--resamples", "1000000000"], "--resamples"),
    (["--resamples", "2.5"], "invalid int"),
    (["--seed", "abc"], "invalid int"),
    (["--out", "{file}"], "is a file"),
    (["--out", "{file}/sub"], "is a file"),
    (["--out", ""], "--out"),
    (["--bogus"], "unrecognized arguments"),
    (["--run"], "expected at least one argument"),
    (["--results"], "expected one argument"),
]


@pytest.mark.parametrize("extra, contains", CASES, ids=[" ".join(e) or "none" for e, _ in CASES])
def test_bad_leaderboard_input(tmp_path, capsys, extra, contains):
    root = _runs(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    before = _snapshot(root)
    extra = [e.replace("{file}", str(blocker)) for e in extra]
    argv = ["leaderboard", "--no-plots", "--resamples", "10", "--out", str(tmp_path / "lb")]
    if "--results" not in extra:
        argv += ["--results", str(root)]
    assert_clean_error(argv + extra, capsys, contains=contains)
    assert _snapshot(root) == before
    assert blocker.read_text() == "keep me"


@pytest.mark.parametrize("results, contains", [
    ("{tmp}/missing", "does not exist"),
    ("{file}", "is a file"),
    ("{tmp}/empty", "no runs found"),
    ("{tmp}/only-junk", "no runs found"),
    ("{tmp}/no-rows", "hold no result rows"),
])
def test_bad_results_folder(tmp_path, capsys, results, contains):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    (tmp_path / "empty").mkdir()
    junk = tmp_path / "only-junk"
    (junk / ".hidden-run").mkdir(parents=True)
    (junk / "notes.txt").parent.mkdir(exist_ok=True)
    (junk / "notes.txt").write_text("not a run")
    RunDir(tmp_path / "no-rows", "r1").write_manifest({"run_id": "r1", "status": "running"})
    path = results.replace("{tmp}", str(tmp_path)).replace("{file}", str(blocker))
    assert_clean_error(["leaderboard", "--results", path, "--out", str(tmp_path / "lb"), "--no-plots"], capsys,
                       contains=contains)
    assert not (tmp_path / "lb").exists() or not any((tmp_path / "lb").iterdir())
