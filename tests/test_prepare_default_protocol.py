"""`prepare` without --protocol warms exactly what `run` without --protocol reads (README: "warm the
same inputs"): both use run's default clip protocol for the dataset, also for a folder of videos."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark import video_io
from benchmark.cli import main
from benchmark.depth import write_depth_files


@pytest.fixture
def footage(tmp_path):
    root = tmp_path / "videos"
    root.mkdir()
    video_io.write_video(root / "beach.mp4", torch.rand(4, 3, 32, 48, generator=torch.Generator().manual_seed(0)),
                         fps=8)
    write_depth_files(root / "beach_depth.npy", np.tile(np.linspace(0.2, 1.0, 48, dtype=np.float32), (4, 32, 1)))
    return root


def test_prepare_without_protocol_warms_what_run_without_protocol_built(footage, tmp_path, capsys):
    cache = tmp_path / "cache"
    flags = ["--depth", "files", "--depth-option", "d_max_percent=3"]
    code = main(["run", "--dataset", str(footage), "--method", "left-copy", "--out", str(tmp_path / "runs"),
                 "--cache", str(cache), "--no-progress", "--no-leaderboard", *flags])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    assert main(["prepare", "--dataset", str(footage), "--no-preview", "--cache", str(cache), *flags]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("folder"))
    # dataset, protocol, clips, cached: the run's input is found (before: prepare used `paper`, run `quick`)
    assert row.split()[1:4] == ["quick", "1", "1"]


def test_prepared_datasets_still_default_to_paper():
    from benchmark.commands.prepare import _run_default_protocol

    assert _run_default_protocol("stereo4d") == "paper" and _run_default_protocol("ego4d") == "paper"
    assert _run_default_protocol("synthetic") == "quick"


def test_run_and_prepare_help_name_every_protocol_and_the_default(capsys):
    import pytest as _pytest

    for command in ("run", "prepare"):
        with _pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "qualitative" in text and "paper for stereo4d and ego4d" in text and "quick otherwise" in text
