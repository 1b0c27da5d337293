"""A run on footage without a right view: the leaderboard counts the clips that were run (not 0)
and says there are no scores, instead of "scoring protocol `None`"."""

from __future__ import annotations

import numpy as np
import torch

from benchmark import video_io
from benchmark.cli import main
from benchmark.depth import write_depth_files


def test_footage_board_counts_its_clips_and_says_why_there_are_no_scores(tmp_path, capsys):
    root = tmp_path / "videos"
    root.mkdir()
    g = torch.Generator().manual_seed(0)
    for name in ("beach", "street"):
        video_io.write_video(root / f"{name}.mp4", torch.rand(4, 3, 32, 48, generator=g), fps=8)
        write_depth_files(root / f"{name}_depth.npy", np.tile(np.linspace(0.2, 1.0, 48, dtype=np.float32), (4, 32, 1)))
    runs = tmp_path / "runs"
    code = main(["run", "--dataset", str(root), "--method", "left-copy", "--depth", "files", "--protocol", "native",
                 "--out", str(runs), "--cache", str(tmp_path / "cache"), "--no-progress", "--no-leaderboard"])
    assert code == 0, capsys.readouterr()
    capsys.readouterr()
    assert main(["leaderboard", "--results", str(runs), "--out", str(tmp_path / "lb"), "--no-plots", "--quiet"]) == 0
    text = (tmp_path / "lb" / "leaderboard.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| left-copy |"))
    assert row.split("|")[2].strip() == "2"
    assert "no scores: these clips have no ground-truth right view" in text
    assert "scoring protocol `None`" not in text
