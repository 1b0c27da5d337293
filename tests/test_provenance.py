"""Provenance: git commit and dirty flag (against the git CLI), versions, device, manifest lifecycle."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import metadata

import pytest

from benchmark.provenance import RunManifest, collect_provenance, cpu_model, git_info, package_versions
from benchmark.results import SCHEMA_VERSION
from benchmark.run_store import MANIFEST_FILE

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git binary")


def _git(repo, *args) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "HOME": str(repo), "PATH": "/usr/bin:/bin:/usr/local/bin"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout.strip()


@needs_git
def test_git_commit_and_dirty_flag_in_a_fresh_repository(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.txt").write_text("one\n")
    _git(repo, "add", "a.txt")
    _git(repo, "commit", "-q", "-m", "first")
    head = _git(repo, "rev-parse", "HEAD")
    info = git_info(repo)
    assert info["commit"] == head and len(head) == 40
    assert info["dirty"] is False
    (repo / "untracked.txt").write_text("results are untracked on purpose\n")
    assert git_info(repo)["dirty"] is False
    (repo / "a.txt").write_text("two\n")
    assert git_info(repo)["dirty"] is True
    prov = collect_provenance({"k": 1}, seeds=[0], datasets={}, protocol="quick", warp_mode="shared", repo_path=repo)
    assert prov["git"]["commit"] == head and prov["git"]["dirty"] is True


def test_outside_git_the_commit_is_none(tmp_path):
    info = git_info(tmp_path)
    assert info == {"commit": None, "dirty": None, "branch": None}


def test_versions_device_and_fields():
    import numpy
    import torch

    prov = collect_provenance(config={"methods": ["warp-only"], "nested": {"x": 1.5}}, seeds={"torch": 0},
                              datasets={"synthetic": {"revision": "v1", "sha256": "ab" * 32}},
                              protocol={"name": "quick", "num_frames": 8, "crop": [256, 256]}, warp_mode="shared",
                              argv=["stereobench", "run"])
    assert prov["packages"]["numpy"] == numpy.__version__
    assert torch.__version__.startswith(prov["packages"]["torch"])
    assert prov["packages"]["pytorch_msssim"] == metadata.version("pytorch_msssim")
    assert prov["packages"]["lpips"] == metadata.version("lpips")
    assert prov["python"] == sys.version.split()[0]
    assert prov["device"]["name"] and prov["device"]["kind"] in ("cpu", "cuda")
    if not torch.cuda.is_available():
        assert prov["device"]["name"] == cpu_model()
    assert prov["threads"]["torch_threads"] == torch.get_num_threads()
    assert prov["command"] == ["stereobench", "run"]
    assert prov["results_schema_version"] == SCHEMA_VERSION
    assert prov["seeds"] == {"torch": 0} and prov["warp_mode"] == "shared"
    assert prov["datasets"]["synthetic"]["revision"] == "v1"
    assert prov["started_at"].endswith("+00:00") and prov["finished_at"] is None
    json.dumps(prov, allow_nan=False)  # serialisable as strict JSON


def test_missing_packages_are_recorded_as_none():
    assert package_versions(["surely-not-installed-xyz", "numpy"])["surely-not-installed-xyz"] is None


def test_protocol_objects_are_recorded_as_data():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Proto:
        name: str = "quick"
        num_frames: int = 8

    assert collect_provenance(protocol=Proto())["protocol"] == {"name": "quick", "num_frames": 8}


def test_manifest_is_written_running_then_finished(tmp_path):
    run_dir = tmp_path / "run"
    prov = collect_provenance({"a": 1}, seeds=[0], datasets={}, protocol="quick", warp_mode="shared")
    manifest = RunManifest.start(run_dir, "run-1", prov)
    on_disk = json.loads((run_dir / MANIFEST_FILE).read_text())
    assert on_disk["status"] == "running" and on_disk["run_id"] == "run-1" and on_disk["finished_at"] is None
    assert on_disk["git"] == prov["git"] and on_disk["config"] == {"a": 1}
    manifest.update(skipped={"svg": "weights missing"})
    manifest.finish(clips=3)
    on_disk = json.loads((run_dir / MANIFEST_FILE).read_text())
    assert on_disk["status"] == "finished" and on_disk["finished_at"] >= on_disk["started_at"]
    assert on_disk["extra"] == {"skipped": {"svg": "weights missing"}, "clips": 3}
    loaded = RunManifest.load(run_dir)
    loaded.finish("failed", error="boom")
    again = json.loads((run_dir / MANIFEST_FILE).read_text())
    assert again["status"] == "failed" and again["error"] == "boom" and again["config"] == {"a": 1}
    assert [p.name for p in run_dir.iterdir()] == [MANIFEST_FILE]  # no temp files left behind
